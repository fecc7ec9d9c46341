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
import type { Redis } from 'ioredis';
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
import { type ResultStore, storeResult } from './resultStore.js';
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
  /** Where results are put before their completed event (resultStore.ts; unset: the job store only). */
  resultStore?: ResultStore;
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

/** A member ready to run: its stored inputs and which attempt this is. */
interface Ready {
  m: Member;
  inputs: EditInput[];
  attempt: number;
}

const candidate = (d: QueuedEdit): MergeCandidate => ({
  modelId: d.modelId,
  edit: d.edit,
  images: d.inputCount,
  pixels: d.pixels ?? 0,
  masked: d.masked ?? false,
});

/**
 * Renews the locks of the jobs a worker took itself beside its processor's job (BullMQ renews that
 * one), as BullMQ's own worker does with its LockManager: every half lock duration (at least every
 * 250 ms) while any is held. A lock that cannot be renewed is left to BullMQ's stalled check.
 */
export class LockRenewal {
  private readonly held = new Map<string, Job>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly durationMs: number) {}

  /** Renews `job`'s lock under `token` until `release(token)`. */
  hold(job: Job, token: string): void {
    this.held.set(token, job);
    this.timer ??= setInterval(() => this.renew(), Math.max(250, Math.floor(this.durationMs / 2)));
  }

  release(token: string): void {
    this.held.delete(token);
    if (this.held.size === 0) this.close();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private renew(): void {
    for (const [token, job] of this.held) void job.extendLock(token, this.durationMs).catch(() => undefined);
  }
}

/** The job a token runs, as claimed from the fair queue. */
type Claimed = { data: QueuedEdit; popped: NonNullable<Awaited<ReturnType<typeof fairPop>>> };

/**
 * A worker process's BullMQ consumer (see the file comment). Each BullMQ job it processes is one
 * pipeline call: its members' runs are registered as they are taken and released in one `finally`.
 */
export class RedisWorker implements RunningRedisWorker {
  readonly workerId = randomUUID().slice(0, 8);
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly queueConnection: Redis;
  /** Runs of the call in progress by job id: where a cancel published on CANCEL_CHANNEL lands. */
  private readonly runs = new Map<string, JobAttempt>();
  private readonly locks: LockRenewal;
  private readonly ttl: number;
  private readonly deliveries: { close(): Promise<void> } | null;
  private worker!: Worker<QueuedEdit>;
  private tokens = 0;

  constructor(
    private readonly engine: InferenceEngine,
    private readonly config: RedisWorkerConfig,
  ) {
    this.redis = connectRedis(config.redisUrl, 'background', 'worker', config.redisLog);
    this.sub = connectRedis(config.redisUrl, 'background', 'worker-cancel', config.redisLog);
    this.queueConnection = connectRedis(config.redisUrl, 'background', 'worker-queue', config.redisLog);
    warnAboutRedisSettings(this.redis, config.redisLog);
    this.locks = new LockRenewal(config.stallMs);
    this.ttl = liveTtlMs(config.retentionMs);
    const hooks = config.webhooks;
    this.deliveries = hooks
      ? startWebhookWorker(hooks.dispatcher, {
          redisUrl: config.redisUrl,
          liveTtlMs: this.ttl,
          stallMs: config.stallMs,
          redisLog: config.redisLog,
        })
      : null;
  }

  /** Subscribes to cancels, then starts taking jobs. */
  async start(): Promise<this> {
    await this.sub.subscribe(CANCEL_CHANNEL);
    // "id|REASON" (a bare id from an older API process means a client's cancel).
    this.sub.on('message', (_channel: string, message: string) => {
      const [id = '', reason = 'CLIENT'] = message.split('|');
      this.runs.get(id)?.cancel((['CLIENT', 'SHUTDOWN', 'TIMEOUT'].includes(reason) ? reason : 'CLIENT') as CancelReason);
    });
    const { config } = this;
    this.worker = new Worker<QueuedEdit>(QUEUE_NAME, (job, token) => this.process(job, token!), {
      connection: this.queueConnection,
      concurrency: 1,
      lockDuration: config.stallMs,
      stalledInterval: Math.max(500, Math.floor(config.stallMs / 2)),
      maxStalledCount: Math.max(0, config.attempts - 1),
    });
    watchRedis(this.worker, 'worker-bullmq', config.redisLog);
    // A job BullMQ gives up on (its token stalled too often: its workers kept dying) fails exactly once. BullMQ
    // emits 'failed' for retried attempts too: only a job it finished as failed (finishedOn) counts.
    this.worker.on('failed', (job, err) => {
      if (job?.finishedOn) void this.failGivenUp(job, err);
    });
    this.log({ queue: QUEUE_NAME }, 'worker started');
    return this;
  }

  async close(): Promise<void> {
    await this.worker.close();
    this.locks.close();
    await this.deliveries?.close();
    await this.config.webhooks?.outbox.close();
    this.queueConnection.disconnect(); // BullMQ leaves a connection it was given open
    this.sub.disconnect();
    this.redis.disconnect();
  }

  private log(fields: Record<string, unknown>, message: string): void {
    this.config.log?.({ workerId: this.workerId, ...fields }, message);
  }

  private onRecorded(id: string): (seq: number, event: JobEvent) => Promise<void> {
    const outbox = this.config.webhooks?.outbox;
    return (seq, event) => outbox?.onEvent(id, seq, event) ?? Promise.resolve();
  }

  /** Records an event of a live job (live TTL). */
  private record(id: string, event: JobEvent): Promise<boolean> {
    return recordEvent(this.redis, id, event, this.ttl, this.onRecorded(id));
  }

  /** Records a job's terminal event (retention TTL); false when it already had one. */
  private finish(id: string, event: JobEvent): Promise<boolean> {
    return recordEvent(this.redis, id, event, this.config.retentionMs, this.onRecorded(id));
  }

  /**
   * One BullMQ job: the call it heads, from taking its members to moving them on in the queue.
   * Every member's run is released in the one `finally` (cancel registration, time limit, lock).
   */
  private async process(head: Job<QueuedEdit>, token: string): Promise<void> {
    const first = await this.claim(head);
    if (!first) return;
    const members: Member[] = [];
    try {
      await this.takeGroup(head, token, first.data, members);
      const taken = members.filter((m) => !m.head);
      let ready: Ready[];
      try {
        ready = await this.prepareAll(members);
      } catch (err) {
        // Redis trouble before the call: every job goes back to the queue (the head through BullMQ's retry).
        await Promise.all(taken.map((m) => m.job.moveToWait(m.token).catch(() => undefined)));
        throw err;
      }
      const disposals = ready.length > 0 ? await this.runCall(ready) : [];
      const disposal = (m: Member): Disposal => disposals[ready.findIndex((r) => r.m === m)] ?? { done: true };
      // A done token gives its claim up; a retried one keeps it and runs the same job again.
      const done = members.filter((m) => disposal(m).done);
      if (done.length > 0) await this.redis.del(...done.map((m) => fairKeys.claim(m.job.id!)));
      await Promise.all(
        taken.map((m) => {
          const d = disposal(m);
          // Completed or retried under its own token (BullMQ's retry rules, as for the head).
          return (d.done ? m.job.moveToCompleted(null, m.token, false) : m.job.moveToFailed(d.error, m.token, false)).catch((err: unknown) =>
            this.log({ jobId: m.data.id, err: { message: (err as Error).message } }, 'could not move the job on in the queue'),
          );
        }),
      );
      const own = disposal(members[0]!);
      if (!own.done) throw own.error; // BullMQ retries it
    } finally {
      for (const m of members) this.release(m);
    }
  }

  /** A member joins the call: its run exists from now on, so a cancel published from then on reaches it. */
  private admit(members: Member[], job: Job<QueuedEdit>, data: QueuedEdit, token: string, head: boolean): void {
    const run = new JobAttempt(data.id, this.config.jobTimeoutMs);
    this.runs.set(data.id, run);
    // BullMQ renews the head's lock; the worker renews those it took itself.
    if (!head) this.locks.hold(job, token);
    members.push({ job, data, token, head, run });
  }

  /** The one place a member leaves: no more cancels, no time limit, no lock renewal. */
  private release(m: Member): void {
    if (this.runs.get(m.data.id) === m.run) this.runs.delete(m.data.id);
    m.run.close();
    if (!m.head) this.locks.release(m.token);
  }

  /** The job a token runs, with its queued data; null when there is none (after giving the claim back). */
  private async claim(job: Job<QueuedEdit>): Promise<Claimed | null> {
    const popped = await fairPop(this.redis, job.id!, this.ttl, this.config.retentionMs);
    if (!popped) return null; // a spare token (its own job was cancelled, or another token ran it)
    const text = await this.redis.hget(keys.inputs(popped.id), 'queued');
    if (text) return { data: JSON.parse(text) as QueuedEdit, popped };
    this.log({ jobId: popped.id, status: 'SKIPPED' }, 'job skipped: its state is gone');
    await this.redis.del(fairKeys.claim(job.id!));
    return null;
  }

  /** The head plus the compatible jobs next in fair order (see the file comment), added to `members`. */
  private async takeGroup(head: Job<QueuedEdit>, token: string, data: QueuedEdit, members: Member[]): Promise<void> {
    this.admit(members, head, data, token, true);
    const { config } = this;
    const group = config.mergeJobs === false ? null : MergeGroup.start(this.engine, candidate(data), config.maxMergedInputPixels);
    try {
      while (group) {
        const t = `${this.workerId}:merge:${this.tokens++}`;
        const next = (await this.worker.getNextJob(t, { block: false })) as Job<QueuedEdit> | undefined;
        if (!next) break;
        const taken = await this.claim(next);
        if (!taken) {
          await next.moveToCompleted(null, t, false);
          continue;
        }
        if (!group.add(candidate(taken.data))) {
          // Back where it was (a retried token keeps its claim), and taking stops.
          if (taken.popped.taken) await fairPutBack(this.redis, next.id!, taken.popped, this.ttl);
          await next.moveToWait(t);
          break;
        }
        this.admit(members, next, taken.data, t, false);
      }
    } catch (err) {
      // Redis trouble: the call runs with what it has (a job left active is taken over after stallMs).
      this.log({ err: { message: (err as Error).message } }, 'could not take more waiting jobs');
    }
  }

  private async prepareAll(members: Member[]): Promise<Ready[]> {
    const ready: Ready[] = [];
    for (const m of members) {
      const p = await this.prepare(m);
      if (p) ready.push(p);
    }
    return ready;
  }

  /** A member's stored inputs, or null (after logging why) when it is not to be run. */
  private async prepare(m: Member): Promise<Ready | null> {
    const { redis } = this;
    const { id, inputCount, referenceCount = 0, ownerLabel: owner = 'none' } = m.data;
    if (await redis.exists(keys.terminal(id))) return null; // cancelled while waiting, or a withdrawn submission
    // Its state is gone (a Redis restart without persistence kept the queue entry but not the job,
    // or the submission was withdrawn): nobody can see a result, so it is not run.
    if (!(await redis.exists(keys.snapshot(id)))) {
      this.log({ jobId: id, owner, status: 'SKIPPED' }, 'job skipped: its state is gone');
      return null;
    }
    const [[, attempt]] = (await redis.multi().incr(keys.attempt(id)).pexpire(keys.attempt(id), this.ttl).exec()) as [[null, number], unknown];
    // Taken over from a lost worker: subscribers see the job queued again, then progress from 1.
    if (attempt > 1) await this.record(id, { type: 'queued', jobId: id, status: 'QUEUED', position: 1 });
    const stored = await redis.hgetallBuffer(keys.inputs(id));
    // The references are stored once; every input holds the same arrays.
    const references = Array.from({ length: referenceCount }, (_, k) => new Uint8Array(stored[`ref:${k}`] ?? Buffer.alloc(0)));
    const inputs = Array.from({ length: inputCount }, (_, i) => {
      const mask = stored[`mask:${i}`];
      return {
        bytes: new Uint8Array(stored[String(i)] ?? Buffer.alloc(0)),
        mask: mask ? new Uint8Array(mask) : null,
        ...(references.length ? { references } : {}),
      };
    });
    // Cancelled since it was taken: it ends here (an already aborted signal would not reach the engine's worker thread).
    if (m.run.signal.aborted) {
      const { event } = m.run.finish({ error: new InferenceError('CANCELLED', 'the job was cancelled') }, 0);
      await this.finish(id, event);
      this.log({ jobId: id, owner, status: event.status }, `job ${event.status.toLowerCase()}`);
      return null;
    }
    return { m, inputs, attempt };
  }

  /** Runs the prepared members as one pipeline call; each member's terminal event is recorded as soon as it has one. */
  private async runCall(ready: Ready[]): Promise<Disposal[]> {
    const started = Date.now();
    const chains = ready.map(() => Promise.resolve() as Promise<unknown>);
    const outcomes = this.engine.editMany(
      ready[0]!.m.data.modelId,
      ready.map(({ m, inputs, attempt }, i) => {
        const { id, ownerLabel: owner = 'none' } = m.data;
        this.log({ jobId: id, owner, model: m.data.modelId, attempt, mergedJobs: ready.length, status: 'RUNNING' }, 'job running');
        return {
          edit: m.data.edit,
          inputs,
          signal: m.run.signal,
          // Progress is recorded in order, without holding the pipeline back.
          onProgress: (update) => {
            chains[i] = chains[i]!.then(() => this.record(id, { type: 'progress', jobId: id, status: 'RUNNING', ...update }));
          },
        };
      }),
    );
    return Promise.all(
      outcomes.map(async (outcome, i): Promise<Disposal> => {
        const { m, attempt } = ready[i]!;
        const { id, ownerLabel: owner = 'none' } = m.data;
        const settled: RunOutcome = await outcome.then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        );
        // The outcome decides the event: a cancel from now on changes nothing.
        const finished = m.run.finish(settled, Math.max(0, (started - (m.data.queuedAt ?? m.job.timestamp)) / 1000));
        const { error } = finished;
        await chains[i]!.catch(() => undefined);
        if ('error' in settled && error && !FINAL_CODES.has(error.code) && attempt < this.config.attempts) {
          const cause = settled.error;
          return { done: false, error: cause instanceof Error ? cause : new InferenceError('INTERNAL', String(cause)) };
        }
        const event = await storeResult(this.config.resultStore, finished.event);
        await this.finish(id, event);
        this.log(
          { jobId: id, owner, status: event.status, ...(event.type === 'failed' ? { code: event.error.code } : {}) },
          `job ${event.status.toLowerCase()}`,
        );
        return { done: true };
      }),
    );
  }

  /** BullMQ gave a token up (see start): the job it had claimed fails once, with a clear message. */
  private async failGivenUp(job: Job<QueuedEdit>, err: Error): Promise<void> {
    const id = await this.redis.get(fairKeys.claim(job.id!));
    if (!id) return; // it had not taken a job
    await this.redis.del(fairKeys.claim(job.id!));
    const won = await this.finish(id, {
      type: 'failed',
      jobId: id,
      status: 'FAILED',
      error: {
        code: 'INTERNAL',
        message: `the job could not be completed after ${this.config.attempts} attempts (${/stalled/i.test(err.message) ? 'its workers were lost' : 'internal error'})`,
      },
    });
    if (won) this.log({ jobId: id, status: 'FAILED' }, 'job failed after its last attempt');
  }
}

/** Starts a worker on `engine` (RedisWorker). */
export async function startRedisWorker(engine: InferenceEngine, config: RedisWorkerConfig): Promise<RunningRedisWorker> {
  return new RedisWorker(engine, config).start();
}
