/** Parts of the job systems built from the server's configuration the same way by every backend. */
import type { Logger } from 'pino';
import { ownerIds } from '../server/auth.js';
import type { ServerConfig } from '../server/config.js';
import type { RedisLog } from './redisShared.js';
import { S3ResultStore } from './resultStore.js';
import { ResultUrls } from './resultUrls.js';
import type { WebhookOutbox } from './redisWebhooks.js';
import { WebhookDispatcher } from './webhooks.js';

/** The webhook dispatcher (WEBHOOK_*); with an outbox, deliveries go through Redis instead of this process. */
export function webhookDispatcher(config: ServerConfig, log: Logger, outbox?: WebhookOutbox): WebhookDispatcher {
  return new WebhookDispatcher({
    secret: config.webhookSecret,
    tenantSecrets: tenantWebhookSecrets(config),
    allowPrivate: config.webhookAllowPrivate,
    maxAttempts: config.webhookMaxAttempts,
    retryBaseMs: config.webhookRetrySeconds * 1000,
    retentionMs: config.retentionSeconds * 1000,
    outbox,
    log: (fields, message) => log.info(fields, message),
  });
}

/** WEBHOOK_SECRETS by tenant id (auth.ts's ownerIds: the ids jobs store as their owner). */
export function tenantWebhookSecrets(config: ServerConfig): Map<string, string> {
  const ownerOf = ownerIds(config);
  return new Map(config.webhookTenantSecrets.map((t) => [ownerOf(t.identity), t.secret]));
}

/** Result URLs (RESULT_URL_*), with the S3 bucket results also go to when S3_BUCKET is set. */
export function createResultUrls(config: ServerConfig): ResultUrls {
  const bucket = config.s3Results ? { store: new S3ResultStore(config.s3Results), retentionSeconds: config.retentionSeconds } : null;
  return new ResultUrls(config.resultUrlSecret, config.resultUrlTtlSeconds, bucket);
}

/** pino's levels as the Redis helpers' structured log sink. */
export function redisLog(log: Logger): RedisLog {
  return { info: (f, m) => log.info(f, m), warn: (f, m) => log.warn(f, m), debug: (f, m) => log.debug(f, m) };
}
