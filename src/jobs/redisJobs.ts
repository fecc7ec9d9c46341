/**
 * The distributed job backend for API processes (REDIS_URL set): jobs go to a BullMQ queue that
 * any number of workers consume (redisWorker.ts); job state lives in Redis with TTLs; events fan
 * out through Redis pub/sub, so a subscriber on any API process sees every event of any job.
 * One subscriber connection per process, fanned out to per-subscription streams.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { EditInput } from '../inference/editRunner.js';
import type { ResolvedEdit } from '../inference/request.js';
import { ServiceError } from '../errors.js';
import { JobEventStream } from './eventStream.js';
import type { CancelReason, JobBackend, JobEvent, JobSnapshot, TenantQuota } from './types.js';
import { currentEvent, quotaExceeded } from './types.js';
import { ownerLabel } from './access.js';
import { CANCEL_CHANNEL, QUEUE_NAME, RESERVE_QUOTA_LUA, applyEvent, fromWire, keys, readSnapshot, recordEvent, releaseQuota, toWire, type WireEvent } from './redisShared.js';

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
  onEvent?: (event: JobEvent) => void;
}

/** Job data as queued in BullMQ (inputs are stored beside it, not in it). */
export interface QueuedEdit {
  id: string;
  modelId: string;
  edit: ResolvedEdit;
  inputCount: number;
  /** The owner's log label (not the owner id itself). */
  ownerLabel?: string;
}

export class RedisJobBackend implements JobBackend {
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly queue: Queue<QueuedEdit>;
  private readonly streams = new Map<string, Set<{ stream: JobEventStream; afterSeq: number }>>();
  private accepting = true;

  constructor(private readonly config: RedisJobsConfig) {
    this.redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.sub = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.queue = new Queue<QueuedEdit>(QUEUE_NAME, { connection: new Redis(config.redisUrl, { maxRetriesPerRequest: null }) });
    this.sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.dispatch(channel.toString(), message.toString()));
  }

  private ttl(): number {
    // Queued work may wait a while; results stay readable for the retention period after that.
    return this.config.retentionMs + 3_600_000;
  }

  async submit(modelId: string, edit: ResolvedEdit, inputs: EditInput[], owner: string): Promise<JobSnapshot> {
    if (!this.accepting) throw new ServiceError('UNAVAILABLE', 'the server is shutting down and takes no new jobs');
    const waiting = await this.queue.getWaitingCount();
    if (waiting >= this.config.maxQueuedJobs) {
      throw new ServiceError('QUEUE_FULL', `the queue is full (${this.config.maxQueuedJobs} jobs waiting); retry later`, { retryAfterSeconds: 5 });
    }
    const bytes = inputs.reduce((n, i) => n + i.bytes.byteLength + (i.mask?.byteLength ?? 0), 0);
    if (bytes > this.config.maxInputBytes) throw new ServiceError('PAYLOAD_TOO_LARGE', `inputs of ${bytes} bytes are over the queue's limit of ${this.config.maxInputBytes}`);
    const id = randomUUID();
    const snapshot: JobSnapshot = {
      id, modelId, status: 'QUEUED', queuePosition: waiting + 1, createdAt: Date.now() / 1000,
      inputImages: inputs.length, n: edit.n, progress: null, result: null, error: null, owner,
    };
    const ttl = this.ttl();
    const quota = this.config.tenantQuota;
    if (quota) {
      const now = Date.now();
      const [ok, jobs, images] = (await this.redis.eval(RESERVE_QUOTA_LUA, 2, keys.tenantJobs(owner), keys.tenantImages(owner), now, id, inputs.length * edit.n, quota.maxJobs, quota.maxImages, now + ttl, ttl)) as [number, number, number];
      if (!ok) throw new ServiceError('QUOTA_EXCEEDED', quotaExceeded(quota, jobs, images, inputs.length * edit.n) ?? 'tenant quota exceeded', { retryAfterSeconds: 5 });
    }
    try {
      await this.store(id, modelId, edit, inputs, snapshot, ttl);
    } catch (err) {
      await releaseQuota(this.redis, owner, id).catch(() => undefined);
      throw err;
    }
    this.config.log?.({ jobId: id, owner: ownerLabel(owner), model: modelId, status: 'QUEUED', images: inputs.length, n: edit.n }, 'job queued');
    return snapshot;
  }

  private async store(id: string, modelId: string, edit: ResolvedEdit, inputs: EditInput[], snapshot: JobSnapshot, ttl: number): Promise<void> {
    const multi = this.redis.multi();
    multi.set(keys.snapshot(id), toWire({ seq: 0, snapshot }), 'PX', ttl);
    multi.set(keys.owner(id), snapshot.owner, 'PX', ttl);
    const buffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    inputs.forEach((input, i) => {
      multi.hset(keys.inputs(id), String(i), buffer(input.bytes));
      if (input.mask) multi.hset(keys.inputs(id), `mask:${i}`, buffer(input.mask));
    });
    multi.pexpire(keys.inputs(id), ttl);
    await multi.exec();
    await this.queue.add('edit', { id, modelId, edit, inputCount: inputs.length, ownerLabel: ownerLabel(snapshot.owner) }, { jobId: id, attempts: this.config.attempts, removeOnComplete: true, removeOnFail: true });
  }

  async get(id: string): Promise<JobSnapshot | null> {
    return (await readSnapshot(this.redis, id))?.snapshot ?? null;
  }

  async ownerOf(id: string): Promise<string | null> {
    return this.redis.get(keys.owner(id));
  }

  async cancel(id: string, reason: CancelReason = 'CLIENT'): Promise<JobSnapshot> {
    const stored = await readSnapshot(this.redis, id);
    if (!stored) throw new ServiceError('NOT_FOUND', `no job with id "${id}"`);
    const s = stored.snapshot;
    if (s.status === 'QUEUED') {
      const job = await this.queue.getJob(id);
      const removed = job ? await job.remove().then(() => true, () => false) : true;
      if (removed) {
        const event: JobEvent = { type: 'cancelled', jobId: id, status: 'CANCELLED', reason };
        await recordEvent(this.redis, id, event, this.config.retentionMs, (x) => applyEvent(x, event));
        return (await this.get(id)) ?? s;
      }
    }
    // The worker running it stops before its next step and records the reason.
    if (s.status === 'QUEUED' || s.status === 'RUNNING') await this.redis.publish(CANCEL_CHANNEL, `${id}|${reason}`);
    return s;
  }

  async subscribe(id: string): Promise<AsyncIterableIterator<JobEvent>> {
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
    const stored = await readSnapshot(this.redis, id);
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

  async stats(): Promise<{ queued: number; running: number; jobs: number }> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed');
    return { queued: (counts.waiting ?? 0) + (counts.delayed ?? 0), running: counts.active ?? 0, jobs: (counts.waiting ?? 0) + (counts.active ?? 0) };
  }

  async shutdown(): Promise<void> {
    this.accepting = false;
    for (const subs of this.streams.values()) for (const e of subs) e.stream.finish();
    await this.queue.close();
    this.sub.disconnect();
    this.redis.disconnect();
  }
}
