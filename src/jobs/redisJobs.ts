/**
 * The distributed job backend for API processes (REDIS_URL set): jobs go to a BullMQ queue that
 * any number of workers consume (redisWorker.ts); job state lives in Redis with TTLs; events fan
 * out through Redis pub/sub, so a subscriber on any API process sees every event of any job.
 * One subscriber connection per process, fanned out to per-subscription streams.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EditInput } from '../inference/editRunner.js';
import { declaredPixels } from './merging.js';
import type { ResolvedEdit } from '../inference/request.js';
import { ServiceError } from '../errors.js';
import { JobEventStream } from './eventStream.js';
import type { CancelReason, JobBackend, JobEvent, JobSnapshot, TenantQuota } from './types.js';
import { currentEvent, queuedSnapshot, quotaExceeded } from './types.js';
import { ownerLabel } from './access.js';
import type { WebhookOutbox } from './redisWebhooks.js';
import { createdMs, type HistoryPage, type HistoryQuery, isAfter, type JobMetadata, matches } from './history.js';
import { fairKeys, fairRemove, fairScore, PUSH_LUA } from './redisFair.js';
import {
  CANCEL_CHANNEL,
  HISTORY_TRIM_LUA,
  QUEUE_NAME,
  RESERVE_QUOTA_LUA,
  connectRedis,
  fromWire,
  keys,
  liveTtlMs,
  parseSnapshot,
  readSnapshot,
  recordEvent,
  redisUnavailable,
  releaseQuota,
  snapshotFields,
  warnAboutRedisSettings,
  watchRedis,
  type RedisLog,
  type WireEvent,
} from './redisShared.js';

export interface RedisJobsConfig {
  redisUrl: string;
  retentionMs: number;
  maxQueuedJobs: number;
  /** BullMQ attempts per job (a lost worker's job is retried until this many). */
  attempts: number;
  /** Largest total input bytes stored for one job. */
  maxInputBytes: number;
  /** Per-owner bounds on unfinished jobs, shared by every API process (null: none). */
  tenantQuota?: TenantQuota | null;
  log?: (fields: Record<string, unknown>, message: string) => void;
  /** Connection trouble and Redis settings warnings (structured, leveled). */
  redisLog?: RedisLog;
  onEvent?: (event: JobEvent) => void;
  /** Queues webhook deliveries of the events this process records (a cancelled queued job). */
  webhooks?: WebhookOutbox;
}

/** A job's reference images: every input holds the same ones (EditInput.references). */
const referencesOf = (inputs: readonly EditInput[]): readonly Uint8Array[] => inputs[0]?.references ?? [];

/** Job data as queued in BullMQ (inputs are stored beside it, not in it). */
export interface QueuedEdit {
  id: string;
  modelId: string;
  edit: ResolvedEdit;
  inputCount: number;
  /** Declared source pixels of the inputs and references (declaredPixels) and whether any has a mask: the worker's merging decisions (see merging.ts). */
  pixels?: number;
  masked?: boolean;
  /** Reference images stored once (fields `ref:<k>`) and given to every input; absent: none. */
  referenceCount?: number;
  /** The owner's log label (not the owner id itself). */
  ownerLabel?: string;
  /** When it was queued (ms since the epoch): its queue time. */
  queuedAt?: number;
}

/** The snapshot hash's fields a listing reads (snapshotFields without `result`). */
const LISTED_FIELDS = ['base', 'seq', 'status', 'queuePosition', 'progress', 'error', 'cancelReason'];

export class RedisJobBackend implements JobBackend {
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly queue: Queue<QueuedEdit>;
  /** BullMQ leaves a connection it was given open on close. */
  private readonly queueConnection: Redis;
  private readonly streams = new Map<string, Set<{ stream: JobEventStream; afterSeq: number }>>();
  private accepting = true;
  /** Submissions whose client was told they failed but that may have reached Redis: withdrawn once it is back. */
  private readonly withdrawals = new Map<string, string>();
  private subscriberWasReady = false;
  private resyncing: Promise<void> | null = null;

  constructor(private readonly config: RedisJobsConfig) {
    const log = config.redisLog;
    // Requests fail fast while Redis is down (UNAVAILABLE); the subscriber retries for ever.
    this.redis = connectRedis(config.redisUrl, 'request', 'jobs', log);
    this.sub = connectRedis(config.redisUrl, 'background', 'events', log);
    this.queueConnection = connectRedis(config.redisUrl, 'request', 'queue', log);
    this.queue = new Queue<QueuedEdit>(QUEUE_NAME, { connection: this.queueConnection });
    watchRedis(this.queue, 'queue-bullmq', log);
    warnAboutRedisSettings(this.redis, log);
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.dispatch(channel.toString(), message.toString()));
    // After a reconnect (ioredis resubscribes by itself), events published meanwhile are gone:
    // resynchronise every watched job from its snapshot, and end watches of vanished jobs.
    this.sub.on('ready', () => {
      if (this.subscriberWasReady) this.resync();
      this.subscriberWasReady = true;
    });
    this.redis.on('ready', () => {
      if (this.withdrawals.size > 0) void this.withdrawAbandoned();
    });
  }

  /** Why this backend cannot serve now, or null when Redis answers. */
  async health(): Promise<string | null> {
    if (this.redis.status !== 'ready') return `redis ${this.redis.status}`;
    try {
      await this.redis.ping();
      return null;
    } catch (err) {
      return `redis: ${(err as Error).message.split('\n')[0]}`;
    }
  }

  private ttl(): number {
    return liveTtlMs(this.config.retentionMs);
  }

  async submit(
    modelId: string,
    edit: ResolvedEdit,
    inputs: EditInput[],
    owner: string,
    metadata: JobMetadata | null = null,
    priority = 0,
  ): Promise<JobSnapshot> {
    if (!this.accepting) throw new ServiceError('UNAVAILABLE', 'the server is shutting down and takes no new jobs');
    if (this.redis.status !== 'ready') throw redisUnavailable(null);
    const waiting = await this.queue.getWaitingCount().catch((err: unknown) => {
      throw redisUnavailable(err);
    });
    if (waiting >= this.config.maxQueuedJobs) {
      throw new ServiceError('QUEUE_FULL', `the queue is full (${this.config.maxQueuedJobs} jobs waiting); retry later`, { retryAfterSeconds: 5 });
    }
    const bytes = inputs.reduce((n, i) => n + i.bytes.byteLength + (i.mask?.byteLength ?? 0), 0) + referencesOf(inputs).reduce((n, r) => n + r.byteLength, 0);
    if (bytes > this.config.maxInputBytes)
      throw new ServiceError('PAYLOAD_TOO_LARGE', `inputs of ${bytes} bytes are over the queue's limit of ${this.config.maxInputBytes}`);
    const snapshot = queuedSnapshot({ modelId, inputImages: inputs.length, n: edit.n, owner, metadata }, waiting + 1);
    const id = snapshot.id;
    const ttl = this.ttl();
    const quota = this.config.tenantQuota;
    if (quota) {
      const now = Date.now();
      let reserved: [number, number, number];
      try {
        reserved = (await this.redis.eval(
          RESERVE_QUOTA_LUA,
          2,
          keys.tenantJobs(owner),
          keys.tenantImages(owner),
          now,
          id,
          inputs.length * edit.n,
          quota.maxJobs,
          quota.maxImages,
          now + ttl,
          ttl,
        )) as [number, number, number];
      } catch (err) {
        // The reservation may have been made: given back with the rest when Redis answers.
        this.withdrawals.set(id, owner);
        void this.withdrawAbandoned();
        throw redisUnavailable(err);
      }
      const [ok, jobs, images] = reserved;
      if (!ok)
        throw new ServiceError('QUOTA_EXCEEDED', quotaExceeded(quota, jobs, images, inputs.length * edit.n) ?? 'tenant quota exceeded', {
          retryAfterSeconds: 5,
        });
    }
    try {
      await this.store(id, modelId, edit, inputs, snapshot, ttl, priority);
    } catch (err) {
      // The client is told this submission failed; some of its writes (even the queue entry) may
      // have reached Redis. It is withdrawn now, or as soon as Redis is back, so it never runs.
      this.withdrawals.set(id, owner);
      await this.withdrawAbandoned();
      throw redisUnavailable(err);
    }
    this.config.log?.({ jobId: id, owner: ownerLabel(owner), model: modelId, status: 'QUEUED', images: inputs.length, n: edit.n }, 'job queued');
    return snapshot;
  }

  private async store(
    id: string,
    modelId: string,
    edit: ResolvedEdit,
    inputs: EditInput[],
    snapshot: JobSnapshot,
    ttl: number,
    priority: number,
  ): Promise<void> {
    const queued: QueuedEdit = {
      id,
      modelId,
      edit,
      inputCount: inputs.length,
      pixels: declaredPixels(inputs, edit),
      masked: inputs.some((i) => i.mask),
      ...(referencesOf(inputs).length ? { referenceCount: referencesOf(inputs).length } : {}),
      ownerLabel: ownerLabel(snapshot.owner),
      queuedAt: createdMs(snapshot),
    };
    const multi = this.redis.multi();
    multi.hset(keys.snapshot(id), snapshotFields(snapshot)).pexpire(keys.snapshot(id), ttl);
    multi.set(keys.owner(id), snapshot.owner, 'PX', ttl);
    const buffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    inputs.forEach((input, i) => {
      multi.hset(keys.inputs(id), String(i), buffer(input.bytes));
      if (input.mask) multi.hset(keys.inputs(id), `mask:${i}`, buffer(input.mask));
    });
    referencesOf(inputs).forEach((r, k) => multi.hset(keys.inputs(id), `ref:${k}`, buffer(r)));
    // What the worker runs: a token carries no job of its own (redisFair.ts).
    multi.hset(keys.inputs(id), 'queued', JSON.stringify(queued));
    multi.pexpire(keys.inputs(id), ttl);
    const ms = createdMs(snapshot);
    for (const [history, live] of [
      [keys.history(snapshot.owner), keys.live(snapshot.owner)],
      [keys.historyAll, keys.liveAll],
    ] as const) {
      multi.eval(HISTORY_TRIM_LUA, 1, history, Date.now() - this.config.retentionMs, keys.snapshot(''));
      multi.zadd(history, ms, id).pexpire(history, ttl).incr(live).pexpire(live, ttl);
    }
    multi.eval(PUSH_LUA, 2, fairKeys.owners, fairKeys.queue(snapshot.owner), snapshot.owner, id, fairScore(priority, ms), ttl);
    await multi.exec();
    await this.queue.add('edit', queued, { jobId: id, attempts: this.config.attempts, removeOnComplete: true, removeOnFail: true });
  }

  /**
   * Marks abandoned submissions terminal (the worker skips a job with a terminal key, and stops a
   * running one on the cancel channel) and removes them from the queue; what fails stays listed.
   */
  private async withdrawAbandoned(): Promise<void> {
    for (const [id, owner] of [...this.withdrawals]) {
      try {
        await this.redis.set(keys.terminal(id), '1', 'PX', this.config.retentionMs);
        await this.redis.publish(CANCEL_CHANNEL, `${id}|CLIENT`);
        await fairRemove(this.redis, owner, id, this.config.retentionMs);
        await this.queue.remove(id).catch(() => 0);
        await this.redis.del(keys.snapshot(id), keys.owner(id), keys.inputs(id));
        await this.redis.zrem(keys.history(owner), id);
        await this.redis.zrem(keys.historyAll, id);
        await releaseQuota(this.redis, owner, id);
        this.withdrawals.delete(id);
        this.config.log?.({ jobId: id, owner: ownerLabel(owner) }, 'abandoned submission withdrawn');
      } catch {
        return; // Redis is still down: retried on the next 'ready'
      }
    }
  }

  async get(id: string): Promise<JobSnapshot | null> {
    try {
      return (await readSnapshot(this.redis, id))?.snapshot ?? null;
    } catch (err) {
      throw redisUnavailable(err);
    }
  }

  /** Reads the history set in batches (see history.ts); entries whose job is gone are dropped as they are met. */
  async list(q: HistoryQuery): Promise<HistoryPage> {
    const key = q.owner === null ? keys.historyAll : keys.history(q.owner);
    const jobs: JobSnapshot[] = [];
    const gone: string[] = [];
    const batch = Math.max(q.first + 1, 50);
    try {
      for (let offset = 0; jobs.length <= q.first; offset += batch) {
        const entries = await this.redis.zrevrangebyscore(key, q.after ? q.after.ms : '+inf', '-inf', 'WITHSCORES', 'LIMIT', offset, batch);
        const ids: string[] = [];
        for (let i = 0; i < entries.length; i += 2) if (isAfter(Number(entries[i + 1]), entries[i]!, q.after)) ids.push(entries[i]!);
        const read = this.redis.pipeline();
        // Everything but the result (a page of large results would be read for nothing): EditJob.result loads it when asked.
        for (const id of ids) read.hmget(keys.snapshot(id), ...LISTED_FIELDS);
        const replies = ids.length ? ((await read.exec()) ?? []) : [];
        for (const [i, [err, hash]] of replies.entries()) {
          if (err) throw err;
          const values = hash as (string | null)[];
          const stored = parseSnapshot(Object.fromEntries(LISTED_FIELDS.flatMap((f, k) => (values[k] === null ? [] : [[f, values[k]!]]))));
          if (!stored) gone.push(ids[i]!);
          else if (matches(stored.snapshot, q) && jobs.push(stored.snapshot) > q.first) break;
        }
        if (entries.length < 2 * batch) break;
      }
      if (gone.length > 0) await this.redis.zrem(key, ...gone);
    } catch (err) {
      throw redisUnavailable(err);
    }
    return { jobs: jobs.slice(0, q.first), hasNextPage: jobs.length > q.first };
  }

  async ownerOf(id: string): Promise<string | null> {
    try {
      return await this.redis.get(keys.owner(id));
    } catch (err) {
      throw redisUnavailable(err);
    }
  }

  async cancel(id: string, reason: CancelReason = 'CLIENT'): Promise<JobSnapshot> {
    try {
      return await this.cancelOrThrow(id, reason);
    } catch (err) {
      throw redisUnavailable(err);
    }
  }

  private async cancelOrThrow(id: string, reason: CancelReason): Promise<JobSnapshot> {
    const stored = await readSnapshot(this.redis, id);
    if (!stored) throw new ServiceError('NOT_FOUND', `no job with id "${id}"`);
    const s = stored.snapshot;
    // Still in its owner's queue: no worker has it, and none will. Its token is removed when still
    // waiting (else it runs another job, or none: redisFair.ts).
    if (s.status === 'QUEUED') {
      if (await fairRemove(this.redis, s.owner, id, this.config.retentionMs)) {
        await this.queue.remove(id).catch(() => 0);
        const event: JobEvent = { type: 'cancelled', jobId: id, status: 'CANCELLED', reason };
        await recordEvent(this.redis, id, event, this.config.retentionMs, (seq, e) => this.config.webhooks?.onEvent(id, seq, e) ?? Promise.resolve());
        return (await this.get(id)) ?? s;
      }
    }
    // The worker running it stops before its next step and records the reason.
    if (s.status === 'QUEUED' || s.status === 'RUNNING') await this.redis.publish(CANCEL_CHANNEL, `${id}|${reason}`);
    return s;
  }

  async subscribe(id: string): Promise<AsyncIterableIterator<JobEvent>> {
    if (this.redis.status !== 'ready' || this.sub.status !== 'ready') throw redisUnavailable(null);
    const channel = keys.channel(id);
    let subs = this.streams.get(channel);
    if (!subs) {
      subs = new Set();
      this.streams.set(channel, subs);
      await this.sub.subscribe(channel);
    }
    const entry = { stream: null as unknown as JobEventStream, afterSeq: Number.POSITIVE_INFINITY };
    entry.stream = new JobEventStream(() => {
      subs.delete(entry);
      if (subs.size === 0) {
        this.streams.delete(channel);
        void this.sub.unsubscribe(channel).catch(() => undefined);
      }
    });
    subs.add(entry);
    // Subscribed first, then the snapshot: events after it (higher seq) are live, older ones dropped.
    let stored;
    try {
      stored = await readSnapshot(this.redis, id);
    } catch (err) {
      entry.stream.finish();
      throw redisUnavailable(err);
    }
    if (!stored) {
      entry.stream.finish();
      throw new ServiceError('NOT_FOUND', `no job with id "${id}"`);
    }
    entry.afterSeq = stored.seq;
    const current = currentEvent(stored.snapshot);
    if (current) entry.stream.push(current);
    return entry.stream;
  }

  private dispatch(channel: string, message: string): void {
    const subs = this.streams.get(channel);
    if (!subs) return;
    const { seq, event } = fromWire<WireEvent>(message);
    this.config.onEvent?.(event);
    for (const entry of subs) if (seq > entry.afterSeq) entry.stream.push(event);
  }

  /**
   * After the subscriber reconnected: each watched job's snapshot is read again. A newer state than
   * a watcher has seen is pushed (a terminal one ends the watch); a job whose state is gone (Redis
   * restarted without persistence) ends every watch with one EditFailed JOB_LOST. Retried until
   * Redis answers.
   */
  private resync(): void {
    if (this.resyncing) return;
    this.resyncing = (async () => {
      for (let attempt = 0; this.accepting && this.streams.size > 0; attempt++) {
        try {
          for (const [channel, subs] of [...this.streams]) {
            const id = channel.slice(keys.channel('').length);
            const stored = await readSnapshot(this.redis, id);
            if (!stored) {
              const lost: JobEvent = {
                type: 'failed',
                jobId: id,
                status: 'FAILED',
                error: { code: 'JOB_LOST', message: 'the job was lost: the job store (Redis) restarted without its data; submit it again' },
              };
              this.config.onEvent?.(lost);
              this.config.log?.({ jobId: id, status: 'FAILED', code: 'JOB_LOST' }, 'job lost');
              for (const entry of [...subs]) entry.stream.push(lost);
              continue;
            }
            const current = currentEvent(stored.snapshot);
            for (const entry of [...subs]) {
              if (stored.seq > entry.afterSeq && current) {
                entry.afterSeq = stored.seq;
                entry.stream.push(current);
              }
            }
          }
          return;
        } catch {
          await new Promise((r) => setTimeout(r, Math.min(250 * (attempt + 1), 2_000)));
        }
      }
    })().finally(() => (this.resyncing = null));
  }

  async stats(): Promise<{ queued: number; running: number; jobs: number }> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed').catch((err: unknown) => {
      throw redisUnavailable(err);
    });
    return { queued: (counts.waiting ?? 0) + (counts.delayed ?? 0), running: counts.active ?? 0, jobs: (counts.waiting ?? 0) + (counts.active ?? 0) };
  }

  async shutdown(): Promise<void> {
    this.accepting = false;
    for (const subs of this.streams.values()) for (const e of subs) e.stream.finish();
    await this.queue.close();
    await this.config.webhooks?.close();
    this.queueConnection.disconnect();
    this.sub.disconnect();
    this.redis.disconnect();
  }
}
