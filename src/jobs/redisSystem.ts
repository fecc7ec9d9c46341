/**
 * The Redis job system (REDIS_URL): API processes (ROLE=api or all) queue jobs in Redis
 * (redisJobs.ts); worker processes (ROLE=worker or all) run them (redisWorker.ts). Idempotency
 * claims and webhook deliveries are shared through the same Redis.
 */
import type { Logger } from 'pino';
import type { ServerConfig } from '../server/config.js';
import { RedisIdempotencyStore } from './idempotency.js';
import type { JobSystem, JobSystemModule } from './jobSystem.js';
import { RedisJobBackend } from './redisJobs.js';
import { connectRedis, liveTtlMs } from './redisShared.js';
import { redisLog, webhookDispatcher } from './systemConfig.js';
import { WebhookOutbox } from './redisWebhooks.js';
import { type RedisWorkerConfig, startRedisWorker } from './redisWorker.js';
import type { ResultUrls } from './resultUrls.js';
import type { WebhookDispatcher } from './webhooks.js';

export const redisJobSystem: JobSystemModule = {
  name: 'redis',
  selects: (config) => Boolean(config.redisUrl),
  roleProblem: () => null,
  // An API process in front of workers only reads the model catalogue.
  runsInference: (config) => config.role !== 'api',
  async create({ config, log, engine, resultUrls, tenantQuota, onEvent }): Promise<JobSystem> {
    const redisUrl = config.redisUrl!;
    let api: JobSystem['api'] = null;
    let backend: RedisJobBackend | null = null;
    if (config.role !== 'worker') {
      const { webhooks, outbox } = webhookServices(config, log, resultUrls);
      backend = new RedisJobBackend({
        redisUrl,
        retentionMs: config.retentionSeconds * 1000,
        maxQueuedJobs: config.maxQueuedJobs,
        attempts: config.jobAttempts,
        maxInputBytes: config.maxTotalBytes,
        tenantQuota,
        log: (fields, message) => log.info(fields, message),
        redisLog: redisLog(log),
        onEvent,
        webhooks: outbox ?? undefined,
      });
      api = { backend, webhooks, idempotency: new RedisIdempotencyStore(connectRedis(redisUrl, 'request', 'idempotency', redisLog(log))) };
    }
    const worker = config.role === 'api' ? null : await startRedisWorker(engine, redisWorkerConfig(config, log, resultUrls));
    return {
      name: 'redis',
      api,
      worker,
      async health() {
        const reason = backend ? await backend.health() : null;
        return reason ? { status: 'redis-unavailable', reason } : null;
      },
      async drain(graceMs) {
        if (worker) await Promise.race([worker.close(), new Promise((r) => setTimeout(r, graceMs).unref())]);
        await api?.backend.shutdown(graceMs);
      },
      async close() {
        api?.idempotency.close();
      },
    };
  },
};

/** The webhook dispatcher, and with WEBHOOK_SECRET the Redis outbox it stores and queues through. */
function webhookServices(config: ServerConfig, log: Logger, resultUrls: ResultUrls): { webhooks: WebhookDispatcher; outbox: WebhookOutbox | null } {
  const retentionMs = config.retentionSeconds * 1000;
  const outbox = config.webhookSecret
    ? new WebhookOutbox({
        redisUrl: config.redisUrl!,
        maxAttempts: config.webhookMaxAttempts,
        retryBaseMs: config.webhookRetrySeconds * 1000,
        liveTtlMs: liveTtlMs(retentionMs),
        retentionMs,
        resultUrls,
        redisLog: redisLog(log),
      })
    : null;
  return { webhooks: webhookDispatcher(config, log, outbox ?? undefined), outbox };
}

/** A Redis worker's configuration from the server's (the worker's webhooks have their own outbox). */
export function redisWorkerConfig(config: ServerConfig, log: Logger, resultUrls: ResultUrls): RedisWorkerConfig {
  const { webhooks, outbox } = webhookServices(config, log, resultUrls);
  return {
    webhooks: outbox ? { outbox, dispatcher: webhooks } : undefined,
    resultStore: resultUrls.bucket?.store,
    redisUrl: config.redisUrl!,
    retentionMs: config.retentionSeconds * 1000,
    jobTimeoutMs: config.jobTimeoutSeconds * 1000,
    attempts: config.jobAttempts,
    stallMs: config.jobStallSeconds * 1000,
    mergeJobs: config.mergeJobs,
    maxMergedInputPixels: config.maxJobInputPixels,
    log: (fields, message) => log.info(fields, message),
    redisLog: redisLog(log),
  };
}
