/**
 * A Redis/BullMQ worker (ROLE=worker or all with REDIS_URL): takes one job at a time (one pipeline
 * per device), runs it on the local inference engine, and records its events in Redis for every
 * API process. A worker that dies mid-job loses its BullMQ lock; after `stallMs` another worker
 * takes the job again, announces EditQueued, and counts progress from step 1. After the last
 * attempt the job fails with a clear code, exactly once.
 */
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import type { InferenceEngine } from '../inference/engine.js';
import { InferenceError } from '../inference/errors.js';
import { toServiceError } from '../errors.js';
import type { CancelReason, JobEvent } from './types.js';
import type { QueuedEdit } from './redisJobs.js';
import { CANCEL_CHANNEL, QUEUE_NAME, applyEvent, connectRedis, keys, recordEvent, warnAboutRedisSettings, watchRedis, type RedisLog } from './redisShared.js';

export interface RedisWorkerConfig {
  redisUrl: string;
  retentionMs: number;
  jobTimeoutMs: number;
  attempts: number;
  /** How soon a lost worker's job is taken over (BullMQ lock duration and stall check). */
  stallMs: number;
  log?: (fields: Record<string, unknown>, message: string) => void;
  /** Connection trouble and Redis settings warnings (structured, leveled). */
  redisLog?: RedisLog;
}

/** Failures that retrying cannot fix: the job fails at once. */
const FINAL_CODES = new Set(['BAD_USER_INPUT', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'NOT_FOUND', 'OUT_OF_MEMORY']);

export interface RunningRedisWorker {
  readonly workerId: string;
  close(): Promise<void>;
}

export async function startRedisWorker(engine: InferenceEngine, config: RedisWorkerConfig): Promise<RunningRedisWorker> {
  const workerId = randomUUID().slice(0, 8);
  const redis = connectRedis(config.redisUrl, 'background', 'worker', config.redisLog);
  const sub = connectRedis(config.redisUrl, 'background', 'worker-cancel', config.redisLog);
  warnAboutRedisSettings(redis, config.redisLog);
  const aborts = new Map<string, { abort: AbortController; reason: CancelReason }>();
  await sub.subscribe(CANCEL_CHANNEL);
  // "id|REASON" (a bare id from an older API process means a client's cancel).
  sub.on('message', (_channel: string, message: string) => {
    const [id = '', reason = 'CLIENT'] = message.split('|');
    const entry = aborts.get(id);
    if (!entry) return;
    entry.reason = (['CLIENT', 'SHUTDOWN', 'TIMEOUT'].includes(reason) ? reason : 'CLIENT') as CancelReason;
    entry.abort.abort();
  });
  const log = (fields: Record<string, unknown>, message: string): void => config.log?.({ workerId, ...fields }, message);
  const record = (id: string, event: JobEvent): Promise<boolean> => recordEvent(redis, id, event, config.retentionMs + 3_600_000, (s) => applyEvent(s, event));
  const finish = (id: string, event: JobEvent): Promise<boolean> => recordEvent(redis, id, event, config.retentionMs, (s) => applyEvent(s, event));

  const processJob = async (job: Job<QueuedEdit>): Promise<void> => {
    const { id, modelId, edit, inputCount, ownerLabel: owner = 'none' } = job.data;
    if (await redis.exists(keys.terminal(id))) return; // cancelled while waiting, or a withdrawn submission
    // Its state is gone (a Redis restart without persistence kept the queue entry but not the job,
    // or the submission was withdrawn): nobody can see a result, so it is not run.
    if (!(await redis.exists(keys.snapshot(id)))) {
      log({ jobId: id, owner, status: 'SKIPPED' }, 'job skipped: its state is gone');
      return;
    }
    const attempt = await redis.incr(keys.attempt(id));
    if (attempt > 1) {
      // Taken over from a lost worker: subscribers see the job queued again, then progress from 1.
      await record(id, { type: 'queued', jobId: id, status: 'QUEUED', position: 1 });
    }
    const stored = await redis.hgetallBuffer(keys.inputs(id));
    const inputs = Array.from({ length: inputCount }, (_, i) => {
      const mask = stored[`mask:${i}`];
      return { bytes: new Uint8Array(stored[String(i)] ?? Buffer.alloc(0)), mask: mask ? new Uint8Array(mask) : null };
    });
    const abort = new AbortController();
    const entry = { abort, reason: 'CLIENT' as CancelReason };
    aborts.set(id, entry);
    let reason: 'CANCELLED' | 'TIMEOUT' | null = null;
    abort.signal.addEventListener('abort', () => (reason ??= 'CANCELLED'));
    const timer =
      config.jobTimeoutMs > 0
        ? setTimeout(() => {
            reason = 'TIMEOUT';
            abort.abort();
          }, config.jobTimeoutMs)
        : null;
    log({ jobId: id, owner, model: modelId, attempt, status: 'RUNNING' }, 'job running');
    const started = Date.now();
    let chain: Promise<unknown> = Promise.resolve();
    try {
      const output = await engine.edit(modelId, edit, inputs, {
        signal: abort.signal,
        // Progress is recorded in order, without holding the pipeline back.
        onProgress: (update) => (chain = chain.then(() => record(id, { type: 'progress', jobId: id, status: 'RUNNING', ...update }))),
      });
      await chain;
      const queueTimeSeconds = Math.max(0, (started - job.timestamp) / 1000);
      await finish(id, {
        type: 'completed',
        jobId: id,
        status: 'SUCCEEDED',
        result: { created: Date.now() / 1000, images: output.images, usage: { ...output.usage, queueTimeSeconds } },
      });
      log({ jobId: id, owner, status: 'SUCCEEDED' }, 'job succeeded');
    } catch (err) {
      await chain;
      if (reason === 'CANCELLED') {
        await finish(id, { type: 'cancelled', jobId: id, status: 'CANCELLED', reason: entry.reason });
        log({ jobId: id, owner, status: 'CANCELLED' }, 'job cancelled');
        return;
      }
      if (reason === 'TIMEOUT') {
        await finish(id, {
          type: 'failed',
          jobId: id,
          status: 'FAILED',
          error: { code: 'TIMEOUT', message: `the job ran longer than ${config.jobTimeoutMs / 1000} s` },
        });
        log({ jobId: id, owner, status: 'FAILED', code: 'TIMEOUT' }, 'job failed');
        return;
      }
      const e = toServiceError(err);
      if (FINAL_CODES.has(e.code) || attempt >= config.attempts) {
        await finish(id, { type: 'failed', jobId: id, status: 'FAILED', error: { code: e.code, message: e.message } });
        log({ jobId: id, owner, status: 'FAILED', code: e.code }, 'job failed');
        return;
      }
      throw err instanceof Error ? err : new InferenceError('INTERNAL', String(err)); // BullMQ retries it
    } finally {
      if (timer) clearTimeout(timer);
      aborts.delete(id);
    }
  };

  const worker = new Worker<QueuedEdit>(QUEUE_NAME, processJob, {
    connection: connectRedis(config.redisUrl, 'background', 'worker-queue', config.redisLog),
    concurrency: 1,
    lockDuration: config.stallMs,
    stalledInterval: Math.max(500, Math.floor(config.stallMs / 2)),
    maxStalledCount: Math.max(0, config.attempts - 1),
  });
  watchRedis(worker, 'worker-bullmq', config.redisLog);
  // A job BullMQ gives up on (stalled too often: its workers kept dying) fails exactly once.
  worker.on('failed', (job, err) => {
    if (!job) return;
    void finish(job.data.id, {
      type: 'failed',
      jobId: job.data.id,
      status: 'FAILED',
      error: {
        code: 'INTERNAL',
        message: `the job could not be completed after ${config.attempts} attempts (${/stalled/i.test(err.message) ? 'its workers were lost' : 'internal error'})`,
      },
    }).then((won) => won && log({ jobId: job.data.id, owner: job.data.ownerLabel ?? 'none', status: 'FAILED' }, 'job failed after its last attempt'));
  });
  log({ queue: QUEUE_NAME }, 'worker started');
  return {
    workerId,
    async close() {
      await worker.close();
      sub.disconnect();
      redis.disconnect();
    },
  };
}
