/**
 * A Redis/BullMQ worker (ROLE=worker or all with REDIS_URL): runs one pipeline call at a time (one
 * pipeline per device) on the local inference engine, and records each job's events in Redis for
 * every API process. With merging on (MERGE_JOBS), the call takes the job BullMQ hands the worker
 * plus the compatible jobs waiting right behind it (merging.ts), as the in-memory queue does; each
 * job keeps its own progress, cancel, time limit, result and retries.
 *
 * Which job runs: BullMQ hands the worker a token, and the job it runs is the head job of the least
 * recently served owner (redisFair.ts, where the reason is), so tenants take turns.
 *
 * How jobs are taken together: BullMQ's processor gets the head token (BullMQ fetches it, renews its
 * lock, and retries or fails it from what the processor returns or throws). The processor then
 * takes the next waiting jobs itself with `Worker.getNextJob(token, { block: false })`, each under
 * its own lock token, as BullMQ's manual-processing pattern does: a compatible job joins the call;
 * the first that does not is put back at the head of the waiting list (`Job.moveToWait`, the
 * front, so no job is overtaken) and taking stops, so only the waiting list's prefix is merged and
 * nothing starves. The worker renews those jobs' locks while they run and moves each to completed
 * or failed (BullMQ's retry) itself. BullMQ offers no way to claim a chosen waiting job, and
 * scanning past an incompatible job would hold it back from other workers. A worker lost mid-call
 * stops renewing every lock of the call, so BullMQ's stalled check puts each job back in the queue
 * and another worker takes it over: it announces EditQueued and counts progress from step 1. After
 * the last attempt the job fails with a clear code, exactly once.
 */
import { randomUUID } from 'node:crypto';
import { type Job, Worker } from 'bullmq';
import type { InferenceEngine } from '../inference/engine.js';
import type { EditInput } from '../inference/editRunner.js';
import { InferenceError } from '../inference/errors.js';
import { JobAttempt, type RunOutcome } from './jobRun.js';
import { type MergeCandidate, MergeGroup } from './merging.js';
import type { QueuedEdit } from './redisJobs.js';
import { CANCEL_CHANNEL, QUEUE_NAME, connectRedis, keys, liveTtlMs, recordEvent, type RedisLog, warnAboutRedisSettings, watchRedis } from './redisShared.js';
import type { CancelReason, JobEvent } from './types.js';
import { startWebhookWorker, type WebhookOutbox } from './redisWebhooks.js';
import { fairKeys, fairPop, fairPutBack } from './redisFair.js';
import type { WebhookDispatcher } from './webhooks.js';

export interface RedisWorkerConfig {
  redisUrl: string;
  retentionMs: number;
  jobTimeoutMs: number;
  attempts: number;
  /** How soon a lost worker's job is taken over (BullMQ lock duration and stall check). */
  stallMs: number;
  /** Cross-request batching: compatible waiting jobs share one pipeline call (MERGE_JOBS; default true). */
  mergeJobs?: boolean;
  /** Declared input pixels of all jobs merged into one pipeline call (default: no bound). */
  maxMergedInputPixels?: number;
  log?: (fields: Record<string, unknown>, message: string) => void;
  /** Connection trouble and Redis settings warnings (structured, leveled). */
  redisLog?: RedisLog;
  /** Webhooks (WEBHOOK_SECRET set): this worker queues its jobs' events and delivers anyone's (redisWebhooks.ts). */
  webhooks?: { outbox: WebhookOutbox; dispatcher: WebhookDispatcher };
}

/** Failures that retrying cannot fix: the job fails at once. */
const FINAL_CODES = new Set(['BAD_USER_INPUT', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'NOT_FOUND', 'OUT_OF_MEMORY']);

export interface RunningRedisWorker {
  readonly workerId: string;
  close(): Promise<void>;
}

/**
 * A job of the call in progress: the head (BullMQ's processor owns its lock) or one taken beside it.
 * Its run exists from the moment it is taken, so a cancel published from then on reaches it.
 */
interface Member {
  /** The BullMQ job: a token (redisFair.ts); `data` is the job it runs. */
  job: Job<QueuedEdit>;
  data: QueuedEdit;
  token: string;
  head: boolean;
  run: JobAttempt;
}

/** How a member ends in BullMQ: done (its terminal event is recorded, or it was skipped), or retried. */
type Disposal = { done: true } | { done: false; error: Error };

const candidate = (d: QueuedEdit): MergeCandidate => ({
  modelId: d.modelId,
  edit: d.edit,
  images: d.inputCount,
  pixels: d.pixels ?? 0,
  masked: d.masked ?? false,
});

export async function startRedisWorker(engine: InferenceEngine, config: RedisWorkerConfig): Promise<RunningRedisWorker> {
  const workerId = randomUUID().slice(0, 8);
  const redis = connectRedis(config.redisUrl, 'background', 'worker', config.redisLog);
  const sub = connectRedis(config.redisUrl, 'background', 'worker-cancel', config.redisLog);
  warnAboutRedisSettings(redis, config.redisLog);
  const runs = new Map<string, JobAttempt>();
  await sub.subscribe(CANCEL_CHANNEL);
  // "id|REASON" (a bare id from an older API process means a client's cancel).
  sub.on('message', (_channel: string, message: string) => {
    const [id = '', reason = 'CLIENT'] = message.split('|');
    runs.get(id)?.cancel((['CLIENT', 'SHUTDOWN', 'TIMEOUT'].includes(reason) ? reason : 'CLIENT') as CancelReason);
  });
  const log = (fields: Record<string, unknown>, message: string): void => config.log?.({ workerId, ...fields }, message);
  const hooks = config.webhooks;
  const onRecorded = (id: string) => (seq: number, event: JobEvent) => hooks?.outbox.onEvent(id, seq, event) ?? Promise.resolve();
  const record = (id: string, event: JobEvent): Promise<boolean> => recordEvent(redis, id, event, liveTtlMs(config.retentionMs), onRecorded(id));
  const finish = (id: string, event: JobEvent): Promise<boolean> => recordEvent(redis, id, event, config.retentionMs, onRecorded(id));
  const deliveries = hooks
    ? startWebhookWorker(hooks.dispatcher, {
        redisUrl: config.redisUrl,
        liveTtlMs: liveTtlMs(config.retentionMs),
        stallMs: config.stallMs,
        redisLog: config.redisLog,
      })
    : null;
  let tokens = 0;

  const ttl = liveTtlMs(config.retentionMs);
  /** The job a token runs, with its queued data; null when there is none (after giving the claim back). */
  const claim = async (job: Job<QueuedEdit>): Promise<{ data: QueuedEdit; popped: NonNullable<Awaited<ReturnType<typeof fairPop>>> } | null> => {
    const popped = await fairPop(redis, job.id!, ttl, config.retentionMs);
    if (!popped) return null; // a spare token (its own job was cancelled, or another token ran it)
    const text = await redis.hget(keys.inputs(popped.id), 'queued');
    if (text) return { data: JSON.parse(text) as QueuedEdit, popped };
    log({ jobId: popped.id, status: 'SKIPPED' }, 'job skipped: its state is gone');
    await redis.del(fairKeys.claim(job.id!));
    return null;
  };

  /** The head plus the compatible jobs next in fair order (see the file comment). */
  const takeGroup = async (head: Job<QueuedEdit>, token: string, data: QueuedEdit): Promise<Member[]> => {
    const member = (job: Job<QueuedEdit>, d: QueuedEdit, t: string, isHead: boolean): Member => {
      const run = new JobAttempt(d.id, config.jobTimeoutMs);
      runs.set(d.id, run);
      return { job, data: d, token: t, head: isHead, run };
    };
    const members: Member[] = [member(head, data, token, true)];
    const group = config.mergeJobs === false ? null : MergeGroup.start(engine, candidate(data), config.maxMergedInputPixels);
    try {
      while (group) {
        const t = `${workerId}:merge:${tokens++}`;
        const next = (await worker.getNextJob(t, { block: false })) as Job<QueuedEdit> | undefined;
        if (!next) break;
        const taken = await claim(next);
        if (!taken) {
          await next.moveToCompleted(null, t, false);
          continue;
        }
        if (!group.add(candidate(taken.data))) {
          // Back where it was (a retried token keeps its claim), and taking stops.
          if (taken.popped.taken) await fairPutBack(redis, next.id!, taken.popped, ttl);
          await next.moveToWait(t);
          break;
        }
        members.push(member(next, taken.data, t, false));
      }
    } catch (err) {
      // Redis trouble: the call runs with what it has (a job left active is taken over after stallMs).
      log({ err: { message: (err as Error).message } }, 'could not take more waiting jobs');
    }
    return members;
  };

  /** A member's stored inputs and run, or null (after logging why) when it is not to be run. */
  const prepare = async (m: Member): Promise<{ m: Member; run: JobAttempt; inputs: EditInput[]; attempt: number } | null> => {
    const { id, inputCount, ownerLabel: owner = 'none' } = m.data;
    const skip = (): null => {
      m.run.close();
      runs.delete(id);
      return null;
    };
    if (await redis.exists(keys.terminal(id))) return skip(); // cancelled while waiting, or a withdrawn submission
    // Its state is gone (a Redis restart without persistence kept the queue entry but not the job,
    // or the submission was withdrawn): nobody can see a result, so it is not run.
    if (!(await redis.exists(keys.snapshot(id)))) {
      log({ jobId: id, owner, status: 'SKIPPED' }, 'job skipped: its state is gone');
      return skip();
    }
    const [[, attempt]] = (await redis.multi().incr(keys.attempt(id)).pexpire(keys.attempt(id), ttl).exec()) as [[null, number], unknown];
    // Taken over from a lost worker: subscribers see the job queued again, then progress from 1.
    if (attempt > 1) await record(id, { type: 'queued', jobId: id, status: 'QUEUED', position: 1 });
    const stored = await redis.hgetallBuffer(keys.inputs(id));
    const inputs = Array.from({ length: inputCount }, (_, i) => {
      const mask = stored[`mask:${i}`];
      return { bytes: new Uint8Array(stored[String(i)] ?? Buffer.alloc(0)), mask: mask ? new Uint8Array(mask) : null };
    });
    // Cancelled since it was taken: it ends here (an already aborted signal would not reach the engine's worker thread).
    if (m.run.signal.aborted) {
      const { event } = m.run.finish({ error: new InferenceError('CANCELLED', 'the job was cancelled') }, 0);
      await finish(id, event);
      log({ jobId: id, owner, status: event.status }, `job ${event.status.toLowerCase()}`);
      return skip();
    }
    return { m, run: m.run, inputs, attempt };
  };

  /** Runs the prepared members as one pipeline call; each member's terminal event is recorded as soon as it has one. */
  const runCall = async (ready: NonNullable<Awaited<ReturnType<typeof prepare>>>[]): Promise<Disposal[]> => {
    const started = Date.now();
    const chains = ready.map(() => Promise.resolve() as Promise<unknown>);
    const outcomes = engine.editMany(
      ready[0]!.m.data.modelId,
      ready.map(({ m, run, inputs, attempt }, i) => {
        const { id, ownerLabel: owner = 'none' } = m.data;
        log({ jobId: id, owner, model: m.data.modelId, attempt, mergedJobs: ready.length, status: 'RUNNING' }, 'job running');
        return {
          edit: m.data.edit,
          inputs,
          signal: run.signal,
          // Progress is recorded in order, without holding the pipeline back.
          onProgress: (update) => {
            chains[i] = chains[i]!.then(() => record(id, { type: 'progress', jobId: id, status: 'RUNNING', ...update }));
          },
        };
      }),
    );
    return Promise.all(
      outcomes.map(async (outcome, i): Promise<Disposal> => {
        const { m, run, attempt } = ready[i]!;
        const { id, ownerLabel: owner = 'none' } = m.data;
        const settled: RunOutcome = await outcome.then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        );
        runs.delete(id);
        await chains[i]!.catch(() => undefined);
        const { event, error } = run.finish(settled, Math.max(0, (started - (m.data.queuedAt ?? m.job.timestamp)) / 1000));
        if ('error' in settled && error && !FINAL_CODES.has(error.code) && attempt < config.attempts) {
          const cause = settled.error;
          return { done: false, error: cause instanceof Error ? cause : new InferenceError('INTERNAL', String(cause)) };
        }
        await finish(id, event);
        log({ jobId: id, owner, status: event.status, ...(event.type === 'failed' ? { code: event.error.code } : {}) }, `job ${event.status.toLowerCase()}`);
        return { done: true };
      }),
    );
  };

  const processJob = async (head: Job<QueuedEdit>, token?: string): Promise<void> => {
    const first = await claim(head);
    if (!first) return;
    const members = await takeGroup(head, token!, first.data);
    const taken = members.filter((m) => !m.head);
    // BullMQ renews the head's lock; the worker renews those it took itself.
    const renew = setInterval(
      () => {
        for (const m of taken) void m.job.extendLock(m.token, config.stallMs).catch(() => undefined);
      },
      Math.max(250, Math.floor(config.stallMs / 2)),
    );
    try {
      const ready: NonNullable<Awaited<ReturnType<typeof prepare>>>[] = [];
      try {
        for (const m of members) {
          const p = await prepare(m);
          if (p) ready.push(p);
        }
      } catch (err) {
        // Redis trouble before the call: every job goes back to the queue (the head through BullMQ's retry).
        for (const m of members) {
          m.run.close();
          runs.delete(m.data.id);
        }
        await Promise.all(taken.map((m) => m.job.moveToWait(m.token).catch(() => undefined)));
        throw err;
      }
      const disposals = ready.length > 0 ? await runCall(ready) : [];
      const disposal = (m: Member): Disposal => disposals[ready.findIndex((r) => r.m === m)] ?? { done: true };
      // A done token gives its claim up; a retried one keeps it and runs the same job again.
      const done = members.filter((m) => disposal(m).done);
      if (done.length > 0) await redis.del(...done.map((m) => fairKeys.claim(m.job.id!)));
      await Promise.all(
        taken.map((m) => {
          const d = disposal(m);
          // Completed or retried under its own token (BullMQ's retry rules, as for the head).
          return (d.done ? m.job.moveToCompleted(null, m.token, false) : m.job.moveToFailed(d.error, m.token, false)).catch((err: unknown) =>
            log({ jobId: m.data.id, err: { message: (err as Error).message } }, 'could not move the job on in the queue'),
          );
        }),
      );
      const own = disposal(members[0]!);
      if (!own.done) throw own.error; // BullMQ retries it
    } finally {
      clearInterval(renew);
    }
  };

  const queueConnection = connectRedis(config.redisUrl, 'background', 'worker-queue', config.redisLog);
  const worker: Worker<QueuedEdit> = new Worker<QueuedEdit>(QUEUE_NAME, processJob, {
    connection: queueConnection,
    concurrency: 1,
    lockDuration: config.stallMs,
    stalledInterval: Math.max(500, Math.floor(config.stallMs / 2)),
    maxStalledCount: Math.max(0, config.attempts - 1),
  });
  watchRedis(worker, 'worker-bullmq', config.redisLog);
  // A job BullMQ gives up on (its token stalled too often: its workers kept dying) fails exactly once. BullMQ
  // emits 'failed' for retried attempts too: only a job it finished as failed (finishedOn) counts.
  worker.on('failed', (job, err) => {
    if (!job?.finishedOn) return;
    void redis.get(fairKeys.claim(job.id!)).then(async (id) => {
      if (!id) return; // it had not taken a job
      await redis.del(fairKeys.claim(job.id!));
      const won = await finish(id, {
        type: 'failed',
        jobId: id,
        status: 'FAILED',
        error: {
          code: 'INTERNAL',
          message: `the job could not be completed after ${config.attempts} attempts (${/stalled/i.test(err.message) ? 'its workers were lost' : 'internal error'})`,
        },
      });
      if (won) log({ jobId: id, status: 'FAILED' }, 'job failed after its last attempt');
    });
  });
  log({ queue: QUEUE_NAME }, 'worker started');
  return {
    workerId,
    async close() {
      await worker.close();
      await deliveries?.close();
      await hooks?.outbox.close();
      queueConnection.disconnect(); // BullMQ leaves a connection it was given open
      sub.disconnect();
      redis.disconnect();
    },
  };
}
