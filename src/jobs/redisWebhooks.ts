/**
 * Webhooks with REDIS_URL: deliveries that survive process restarts. The API process that accepts
 * a job stores its webhook (`ie:job:<id>:webhook`) and queues the `queued` event; whoever records
 * a later event (a worker, or an API process cancelling a queued job) queues that one. Each event
 * is one BullMQ job on WEBHOOK_QUEUE whose id is the message id, so an event is queued once
 * however often it is offered; BullMQ retries it with exponential backoff up to
 * WEBHOOK_MAX_ATTEMPTS, and a worker lost mid-attempt (SIGKILL) has it taken over by another. Only
 * worker processes deliver. Each attempt is appended to `ie:job:<id>:webhook:attempts`.
 * Unlike in memory, one job's events are not held back behind a retrying one.
 */
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobMetadata } from './history.js';
import { RESULTS_PATH, type ResultUrl, type ResultUrls } from './resultUrls.js';
import { connectRedis, keys, type RedisLog, watchRedis } from './redisShared.js';
import type { JobEvent, JobSnapshot } from './types.js';
import { eventData, messageBody, type WebhookAttempt, type WebhookDispatcher, type WebhookEventName } from './webhooks.js';

export const WEBHOOK_QUEUE = 'image-edit-webhooks';
const PROGRESS_INTERVAL_MS = 500;

interface StoredHook {
  url: string;
  /** The job's owner id: whose secret signs the deliveries (absent in hooks stored before per-tenant secrets). */
  owner?: string;
  events: WebhookEventName[];
  metadata: JobMetadata | null;
  /** Where result URLs point (the submit request's address). */
  base: string;
}

interface Delivery {
  jobId: string;
  /** The job's owner id (see StoredHook). */
  owner?: string;
  messageId: string;
  type: string;
  url: string;
  body: string;
}

export interface WebhookOutboxConfig {
  redisUrl: string;
  maxAttempts: number;
  retryBaseMs: number;
  /** The job's keys' TTLs: before its end, and after it. */
  liveTtlMs: number;
  retentionMs: number;
  resultUrls: ResultUrls;
  redisLog?: RedisLog;
}

/** Turns a job's events into queued deliveries. */
export class WebhookOutbox {
  private readonly redis: Redis;
  private readonly connection: Redis;
  private readonly queue: Queue<Delivery>;
  /** Jobs running in this process that have sent `running`: when their last progress was sent. */
  private readonly progressAt = new Map<string, number>();

  constructor(private readonly config: WebhookOutboxConfig) {
    this.redis = connectRedis(config.redisUrl, 'background', 'webhooks', config.redisLog);
    this.connection = connectRedis(config.redisUrl, 'background', 'webhooks-queue', config.redisLog);
    this.queue = new Queue<Delivery>(WEBHOOK_QUEUE, { connection: this.connection });
    watchRedis(this.queue, 'webhooks-bullmq', config.redisLog);
  }

  /** A new job's webhook, and its `queued` event. */
  async store(job: JobSnapshot, checked: { url: URL; events: Set<WebhookEventName> }, resultUrl: ResultUrl): Promise<void> {
    const hook: StoredHook = {
      url: checked.url.href,
      owner: job.owner,
      events: [...checked.events],
      metadata: job.metadata ?? null,
      base: (await resultUrl(job.id, { index: 0 }, job.createdAt)).split(RESULTS_PATH)[0]!,
    };
    await this.redis.set(keys.webhook(job.id), JSON.stringify(hook), 'PX', this.config.liveTtlMs);
    await this.add(job.id, hook, 'queued', `msg_${job.id}_0`, { id: job.id, status: job.status, metadata: hook.metadata, queuePosition: job.queuePosition });
  }

  /** An event just recorded with sequence number `seq` (redisShared.recordEvent); Redis trouble is logged, never thrown. */
  async onEvent(id: string, seq: number, event: JobEvent): Promise<void> {
    await this.queueEvent(id, seq, event).catch((err: unknown) =>
      this.config.redisLog?.warn({ jobId: id, type: event.type, err: { message: (err as Error).message } }, 'webhook event not queued'),
    );
  }

  private async queueEvent(id: string, seq: number, event: JobEvent): Promise<void> {
    if (event.type === 'queued') return; // a new place in the queue (or a retry): `queued` was sent at submission
    const raw = await this.redis.get(keys.webhook(id));
    if (!raw) return;
    const hook = JSON.parse(raw) as StoredHook;
    const data = await eventData(event, hook.metadata, (jobId, image, created) => this.config.resultUrls.image(hook.base, jobId, image, created));
    if (event.type === 'progress') {
      const last = this.progressAt.get(id);
      const now = Date.now();
      if (last === undefined) await this.add(id, hook, 'running', `msg_${id}_${seq}_running`, { id, status: event.status, metadata: hook.metadata });
      else if (now - last < PROGRESS_INTERVAL_MS) return;
      this.progressAt.set(id, now);
      await this.add(id, hook, 'progress', `msg_${id}_${seq}`, data);
      return;
    }
    this.progressAt.delete(id);
    await this.add(id, hook, event.type, `msg_${id}_${seq}`, data);
    await this.redis.pexpire(keys.webhook(id), this.config.retentionMs);
  }

  /** Attempts so far, oldest first; null when the job has no webhook. */
  async attempts(jobId: string): Promise<WebhookAttempt[] | null> {
    const [list, hook] = await Promise.all([this.redis.lrange(keys.webhookAttempts(jobId), 0, -1), this.redis.exists(keys.webhook(jobId))]);
    if (list.length === 0 && !hook) return null;
    return list.map((a) => JSON.parse(a) as WebhookAttempt);
  }

  private async add(jobId: string, hook: StoredHook, name: WebhookEventName, messageId: string, data: Record<string, unknown>): Promise<void> {
    if (!hook.events.includes(name)) return;
    await this.queue.add(
      'deliver',
      { jobId, owner: hook.owner, messageId, type: `edit.${name}`, url: hook.url, body: messageBody(name, data) },
      {
        jobId: messageId,
        attempts: this.config.maxAttempts,
        backoff: { type: 'exponential', delay: this.config.retryBaseMs },
        removeOnComplete: true,
        removeOnFail: true,
      },
    );
  }

  async close(): Promise<void> {
    await this.queue.close();
    this.connection.disconnect();
    this.redis.disconnect();
  }
}

/** A worker process's deliveries: one signed POST per attempt; a failed one is thrown for BullMQ to retry. */
export function startWebhookWorker(
  dispatcher: WebhookDispatcher,
  config: { redisUrl: string; liveTtlMs: number; stallMs: number; redisLog?: RedisLog },
): { close(): Promise<void> } {
  const redis = connectRedis(config.redisUrl, 'background', 'webhook-attempts', config.redisLog);
  const connection = connectRedis(config.redisUrl, 'background', 'webhook-worker', config.redisLog);
  const worker = new Worker<Delivery>(
    WEBHOOK_QUEUE,
    async (job) => {
      const d = job.data;
      const record = await dispatcher.attempt(new URL(d.url), d.messageId, d.type, d.body, job.attemptsMade + 1, d.owner);
      await redis.multi().rpush(keys.webhookAttempts(d.jobId), JSON.stringify(record)).pexpire(keys.webhookAttempts(d.jobId), config.liveTtlMs).exec();
      if (!record.delivered) throw new Error(record.error ?? 'not delivered');
    },
    // A lost worker's attempt is taken over as its jobs are (JOB_STALL_SECONDS).
    { connection, concurrency: 8, lockDuration: config.stallMs, stalledInterval: Math.max(500, Math.floor(config.stallMs / 2)) },
  );
  watchRedis(worker, 'webhook-worker-bullmq', config.redisLog);
  return {
    async close() {
      await worker.close();
      connection.disconnect();
      redis.disconnect();
    },
  };
}
