/**
 * Everything the server does, without transport: the inference engine, the job backend (in
 * memory, or Redis with REDIS_URL), the Redis worker of ROLE=all, metrics, uploads (EditService),
 * job ownership, and admission (auth and rate limits). HTTP routes (routes.ts), the Yoga instance
 * (yoga.ts) and graphql-ws (websocket.ts) are built on top of these; tests build them alone.
 */
import type { IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type EngineConfig, InferenceEngine } from '../inference/engine.js';
import { JobAccess } from '../jobs/access.js';
import { EditService } from '../jobs/editService.js';
import { MemoryIdempotencyStore, RedisIdempotencyStore } from '../jobs/idempotency.js';
import { ResultUrls } from '../jobs/resultUrls.js';
import { WebhookDispatcher } from '../jobs/webhooks.js';
import { JobService } from '../jobs/jobService.js';
import { RedisJobBackend } from '../jobs/redisJobs.js';
import { connectRedis, liveTtlMs, type RedisLog, watchRedis } from '../jobs/redisShared.js';
import { WebhookOutbox } from '../jobs/redisWebhooks.js';
import { type RedisWorkerConfig, startRedisWorker } from '../jobs/redisWorker.js';
import type { JobBackend } from '../jobs/types.js';
import { type Authenticator, createAuthenticator } from './auth.js';
import type { ServerConfig } from './config.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { createLogger } from './logging.js';
import { type AdmissionControl, createAdmission } from './rateLimit.js';

export interface Services {
  config: ServerConfig;
  log: Logger;
  engine: InferenceEngine;
  jobs: JobBackend;
  /** Jobs as a principal may see them (another tenant's job is an unknown id). */
  access: JobAccess;
  edits: EditService;
  metrics: ServerMetrics;
  auth: Authenticator;
  /** The one decision on auth and rate limits for every transport. */
  admission: AdmissionControl;
  /** Signs and checks result URLs (RESULT_URL_SECRET). */
  resultUrls: ResultUrls;
  /** The address clients reach this server at: PUBLIC_URL, else the request's Host (X-Forwarded-Proto with TRUST_PROXY). */
  publicBase(req: IncomingMessage | undefined): string;
  /** No new jobs; running ones (and ROLE=all's Redis worker) finish within `graceMs`. */
  drain(graceMs: number): Promise<void>;
  /** Releases the limit counters' Redis connection and the engine (after drain). */
  close(): Promise<void>;
}

export interface ServicesOptions {
  logger?: Logger;
  /**
   * false: the engine reads the model catalogue and runs nothing (what an API process in front of
   * Redis workers needs; tests of transport and admission). Default: the catalogue-only engine for
   * ROLE=api with REDIS_URL, else the worker-thread engine.
   */
  inference?: boolean;
}

export async function createServices(config: ServerConfig, options: ServicesOptions = {}): Promise<Services> {
  const log = options.logger ?? createLogger(config.logLevel, config.logFormat);
  const auth = createAuthenticator(config);
  // With auth off the server is one tenant: no per-tenant quota (MAX_QUEUED_JOBS still bounds the queue).
  const tenantQuota =
    auth.enabled && (config.tenantMaxQueuedJobs > 0 || config.tenantMaxQueuedImages > 0)
      ? { maxJobs: config.tenantMaxQueuedJobs, maxImages: config.tenantMaxQueuedImages }
      : null;
  const inference = options.inference ?? !(config.redisUrl && config.role === 'api');
  const engine = await InferenceEngine.start(engineConfig(config, log, inference ? 'worker' : 'remote'));
  const resultUrls = new ResultUrls(config.resultUrlSecret, config.resultUrlTtlSeconds);
  const { webhooks, outbox } = webhookServices(config, log, resultUrls);
  const jobs: JobBackend = config.redisUrl
    ? new RedisJobBackend({
        redisUrl: config.redisUrl,
        retentionMs: config.retentionSeconds * 1000,
        maxQueuedJobs: config.maxQueuedJobs,
        attempts: config.jobAttempts,
        maxInputBytes: config.maxTotalBytes,
        tenantQuota,
        log: (fields, message) => log.info(fields, message),
        redisLog: redisLog(log),
        onEvent: (event) => metrics.observe(event),
        webhooks: outbox ?? undefined,
      })
    : new JobService(engine, {
        retentionMs: config.retentionSeconds * 1000,
        maxQueuedJobs: config.maxQueuedJobs,
        jobTimeoutMs: config.jobTimeoutSeconds * 1000,
        mergeJobs: config.mergeJobs,
        maxMergedInputPixels: config.maxJobInputPixels,
        tenantQuota,
        log: (fields, message) => log.info(fields, message),
        onEvent: (event) => {
          metrics.observe(event);
          webhooks.observe(event);
        },
      });
  const worker = config.redisUrl && config.role === 'all' ? await startRedisWorker(engine, redisWorkerConfig(config, log)) : null;
  const metrics = createMetrics(jobs, engine);
  // Keys are shared by every API process on the same Redis (SET NX), else per process.
  const idempotency = config.redisUrl
    ? new RedisIdempotencyStore(connectRedis(config.redisUrl, 'request', 'idempotency', redisLog(log)))
    : new MemoryIdempotencyStore();
  const edits = new EditService(
    engine,
    jobs,
    {
      maxFilesPerJob: config.maxImagesPerJob,
      maxFileBytes: config.maxFileBytes,
      maxTotalBytes: config.maxTotalBytes,
      maxInputPixels: config.maxInputPixels,
      maxJobInputPixels: config.maxJobInputPixels,
      maxProcessInputPixels: config.maxProcessInputPixels,
    },
    idempotency,
    webhooks,
  );
  // Limits shared by every API process on the same Redis (rate-limiter-flexible), else per process.
  const limitRedis = config.redisUrl ? new Redis(config.redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 }) : null;
  if (limitRedis) {
    watchRedis(limitRedis, 'rate-limit', redisLog(log));
    // Unreachable at start: the limits run on per-process memory counters until ioredis reconnects.
    await limitRedis.connect().catch((err: unknown) => log.warn({ err }, 'rate-limit redis not reachable yet: per-process limits until it is'));
  }
  const admission = createAdmission({
    auth,
    perMinute: config.rateLimitPerMinute,
    burst: config.rateLimitBurst,
    authFailLimit: config.authFailLimit,
    authFailWindowSeconds: config.authFailWindowSeconds,
    authFailBlockSeconds: config.authFailBlockSeconds,
    redis: limitRedis,
  });
  return {
    config,
    log,
    engine,
    jobs,
    access: new JobAccess(jobs),
    edits,
    resultUrls,
    publicBase: (req) => publicBase(config, req),
    metrics,
    auth,
    admission,
    async drain(graceMs) {
      if (worker) await Promise.race([worker.close(), new Promise((r) => setTimeout(r, graceMs).unref())]);
      await jobs.shutdown(graceMs);
    },
    async close() {
      limitRedis?.disconnect();
      idempotency.close();
      await engine.close();
    },
  };
}

function publicBase(config: ServerConfig, req: IncomingMessage | undefined): string {
  if (config.publicUrl) return config.publicUrl;
  const forwarded = config.trustProxy ? req?.headers['x-forwarded-proto'] : undefined;
  const proto = forwarded === 'https' ? 'https' : 'http';
  const host = req?.headers.host && /^[\w.:[\]-]+$/.test(req.headers.host) ? req.headers.host : `${config.host}:${config.port}`;
  return `${proto}://${host}`;
}

/** The webhook dispatcher; with REDIS_URL and WEBHOOK_SECRET also the Redis outbox it stores and queues through. */
function webhookServices(config: ServerConfig, log: Logger, resultUrls: ResultUrls): { webhooks: WebhookDispatcher; outbox: WebhookOutbox | null } {
  const retentionMs = config.retentionSeconds * 1000;
  const outbox =
    config.redisUrl && config.webhookSecret
      ? new WebhookOutbox({
          redisUrl: config.redisUrl,
          maxAttempts: config.webhookMaxAttempts,
          retryBaseMs: config.webhookRetrySeconds * 1000,
          liveTtlMs: liveTtlMs(retentionMs),
          retentionMs,
          resultUrls,
          redisLog: redisLog(log),
        })
      : null;
  const webhooks = new WebhookDispatcher({
    secret: config.webhookSecret,
    allowPrivate: config.webhookAllowPrivate,
    maxAttempts: config.webhookMaxAttempts,
    retryBaseMs: config.webhookRetrySeconds * 1000,
    retentionMs,
    outbox: outbox ?? undefined,
    log: (fields, message) => log.info(fields, message),
  });
  return { webhooks, outbox };
}

export function redisWorkerConfig(config: ServerConfig, log: Logger): RedisWorkerConfig {
  const { webhooks, outbox } = webhookServices(config, log, new ResultUrls(config.resultUrlSecret, config.resultUrlTtlSeconds));
  return {
    webhooks: outbox ? { outbox, dispatcher: webhooks } : undefined,
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

/** pino's levels as the Redis helpers' structured log sink. */
export function redisLog(log: Logger): RedisLog {
  return { info: (f, m) => log.info(f, m), warn: (f, m) => log.warn(f, m), debug: (f, m) => log.debug(f, m) };
}

export function engineConfig(config: ServerConfig, log: Logger, threading: EngineConfig['threading']): EngineConfig {
  return {
    modelsDir: config.modelsDir,
    defaultModel: config.defaultModel,
    provider: config.provider,
    intraOpThreads: config.intraOpThreads,
    allowSpinning: config.ortAllowSpinning,
    cpuMemArena: config.ortCpuMemArena,
    optimizedCacheDir: config.ortOptimizedCache,
    memPattern: config.ortMemPattern,
    warmUp: config.ortWarmUp,
    stageThread: config.stageThread,
    memoryBudgetBytes: config.memoryBudgetBytes,
    preloadModels: config.preloadModels,
    modelMemoryBytes: config.modelMemoryBytes,
    maxInputPixels: config.maxInputPixels,
    pngCompressionLevel: config.pngCompressionLevel,
    threading,
    log: (message, level) => log[level](message),
    onState: ({ spec, state, provider, reason }) => {
      const model = spec.id;
      if (state === 'loaded') {
        log.info({ model, family: spec.kind, exporter: spec.export.generation, precision: spec.export.precision, provider }, 'model loaded');
      } else if (state === 'error') log.error({ model, reason }, `model ${model} cannot be served`);
      else log.debug({ model }, `model ${model}: ${state}`);
    },
  };
}
