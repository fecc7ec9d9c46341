/**
 * Everything the server does, without transport: the inference engine, the job system
 * (jobSystem.ts: its backend, and the worker where it has one), metrics, uploads (EditService),
 * job ownership, and admission (auth and rate limits). HTTP routes (routes.ts), the Yoga instance
 * (yoga.ts) and graphql-ws (websocket.ts) are built on top of these; tests build them alone.
 */
import type { IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type EngineConfig, InferenceEngine } from '../inference/engine.js';
import { JobAccess } from '../jobs/access.js';
import { EditService } from '../jobs/editService.js';
import { createJobSystem, type JobSystem, jobSystemModule } from '../jobs/jobSystem.js';
import type { ResultUrls } from '../jobs/resultUrls.js';
import { createResultUrls } from '../jobs/systemConfig.js';
import { watchRedis } from '../jobs/redisShared.js';
import { redisLog } from '../jobs/systemConfig.js';
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
  /** Where jobs live and run (jobSystem.ts); `jobs` is its API side. */
  jobSystem: JobSystem;
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
  const inference = options.inference ?? jobSystemModule(config).runsInference(config);
  const engine = await InferenceEngine.start(engineConfig(config, log, inference ? 'worker' : 'remote'));
  const resultUrls = createResultUrls(config);
  let metrics: ServerMetrics | undefined;
  const jobSystem = await createJobSystem({ config, log, engine, resultUrls, tenantQuota, onEvent: (event) => metrics?.observe(event) });
  if (!jobSystem.api) throw new Error(`ROLE=${config.role} serves no API: run it with createJobSystem alone`);
  const { backend: jobs, idempotency, webhooks } = jobSystem.api;
  metrics = createMetrics(jobs, engine);
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
    jobSystem,
    access: new JobAccess(jobs),
    edits,
    resultUrls,
    publicBase: (req) => publicBase(config, req),
    metrics,
    auth,
    admission,
    drain: (graceMs) => jobSystem.drain(graceMs),
    async close() {
      limitRedis?.disconnect();
      await jobSystem.close();
      resultUrls.close();
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
