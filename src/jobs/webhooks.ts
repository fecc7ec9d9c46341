/**
 * Per-job webhooks, signed as Standard Webhooks define it (the `standardwebhooks` library,
 * WEBHOOK_SECRET, or the job owner's own secret from WEBHOOK_SECRETS). One delivery per event the job asked for; each is retried with exponential
 * backoff until a 2xx or WEBHOOK_MAX_ATTEMPTS; one job's deliveries go out in order. Progress is
 * sent at most once per 500 ms per job. Targets on private, loopback or link-local addresses are
 * refused (at submission and again at each connection, so DNS cannot rebind past the check) unless
 * WEBHOOK_ALLOW_PRIVATE; redirects are not followed; each attempt times out after 5 s. Logs name
 * the target's host and the outcome, never the secret or a signature.
 * With REDIS_URL deliveries go through Redis instead (redisWebhooks.ts).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ServiceError } from '../errors.js';
import type { JobMetadata } from './history.js';
import type { WebhookOutbox } from './redisWebhooks.js';
import type { ResultUrl } from './resultUrls.js';
import type { JobEvent, JobSnapshot } from './types.js';

/** The one list of webhook events (GraphQL enum, REST `webhook_events`). */
export const WEBHOOK_EVENTS = ['queued', 'running', 'progress', 'completed', 'failed', 'cancelled'] as const;
export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number];
/** Sent when a job names no events. */
export const DEFAULT_WEBHOOK_EVENTS: WebhookEventName[] = ['completed', 'failed', 'cancelled'];

const PROGRESS_INTERVAL_MS = 500;
const ATTEMPT_TIMEOUT_MS = 5000;
const MAX_URL_LENGTH = 2048;

export interface WebhookRequest {
  url: string;
  events?: readonly WebhookEventName[] | null;
}

export interface WebhookConfig {
  /** `whsec_…`; unset: webhooks are refused. */
  secret: string | undefined;
  /** Secrets of tenants that have their own (WEBHOOK_SECRETS), by owner id; the others' deliveries are signed with `secret`. */
  tenantSecrets?: ReadonlyMap<string, string>;
  allowPrivate: boolean;
  maxAttempts: number;
  /** First retry after this long, doubling each time. */
  retryBaseMs: number;
  /** Deliveries stay visible on the job this long after its end. */
  retentionMs: number;
  /** With REDIS_URL: webhooks are stored and delivered through Redis (redisWebhooks.ts), not in this process. */
  outbox?: WebhookOutbox;
  log?: (fields: Record<string, unknown>, message: string) => void;
}

/** One attempt to deliver one event, as `EditJob.webhookDeliveries` shows it. */
export interface WebhookAttempt {
  /** The Standard Webhooks message id (the same for every attempt of one event). */
  id: string;
  type: string;
  attempt: number;
  /** Unix seconds. */
  at: number;
  /** The receiver's HTTP status (null when none came back). */
  status: number | null;
  error: string | null;
  delivered: boolean;
}

interface Hook {
  url: URL;
  /** The job's owner: whose secret signs its deliveries. */
  owner: string;
  events: Set<WebhookEventName>;
  /** Signs the result's image URLs (at the submit request's address). */
  resultUrl: ResultUrl;
  /** The job's metadata, in every event's `data`. */
  metadata: JobMetadata | null;
  attempts: WebhookAttempt[];
  chain: Promise<void>;
  sent: number;
  running: boolean;
  lastProgressAt: number;
}

const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  blocked.addSubnet(net, bits, 'ipv6');

/** Private, loopback, link-local, unspecified or multicast (IPv4-mapped IPv6 as its IPv4). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return blocked.check(mapped[1]!, 'ipv4');
  return blocked.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** An event's `data` (id, status, metadata and what the event carries; a result as image URLs, signed now). */
export async function eventData(event: JobEvent, metadata: JobMetadata | null, resultUrl: ResultUrl): Promise<Record<string, unknown>> {
  const data: Record<string, unknown> = { id: event.jobId, status: event.status, metadata };
  if (event.type === 'progress') Object.assign(data, { step: event.step, totalSteps: event.totalSteps });
  if (event.type === 'completed') {
    const r = event.result;
    data.result = {
      created: r.created,
      images: await Promise.all(
        r.images.map(async (i) => ({
          index: i.index,
          url: await resultUrl(event.jobId, i, r.created),
          mimeType: i.mimeType,
          width: i.width,
          height: i.height,
          seed: i.seed,
        })),
      ),
      warnings: r.warnings ?? [],
    };
  }
  if (event.type === 'failed') data.error = event.error;
  if (event.type === 'cancelled') data.reason = event.reason;
  return data;
}

/** The message body of one event. */
export const messageBody = (name: WebhookEventName, data: Record<string, unknown>): string =>
  JSON.stringify({ type: `edit.${name}`, timestamp: new Date().toISOString(), data });

export class WebhookDispatcher {
  private readonly signer: Webhook | null;
  /** Tenants' own signers (WEBHOOK_SECRETS), by owner id. */
  private readonly tenantSigners = new Map<string, Webhook>();
  private readonly hooks = new Map<string, Hook>();

  constructor(private readonly config: WebhookConfig) {
    this.signer = config.secret ? new Webhook(config.secret) : null;
    for (const [owner, secret] of config.tenantSecrets ?? []) this.tenantSigners.set(owner, new Webhook(secret));
  }

  /** The signer of `owner`'s deliveries: its own secret, else WEBHOOK_SECRET. */
  private signerFor(owner: string | undefined): Webhook {
    return (owner !== undefined ? this.tenantSigners.get(owner) : undefined) ?? this.signer!;
  }

  /** Checks a job's webhook before the job is queued: BAD_USER_INPUT for anything it cannot send to. */
  async check(request: WebhookRequest): Promise<{ url: URL; events: Set<WebhookEventName> }> {
    if (!this.signer) throw new ServiceError('BAD_USER_INPUT', 'webhooks are off on this server (WEBHOOK_SECRET is not set)');
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      throw new ServiceError('BAD_USER_INPUT', 'webhookUrl must be an absolute http(s) URL');
    }
    if (!['http:', 'https:'].includes(url.protocol) || request.url.length > MAX_URL_LENGTH || url.username || url.password)
      throw new ServiceError('BAD_USER_INPUT', `webhookUrl must be an http(s) URL of at most ${MAX_URL_LENGTH} characters, without credentials`);
    const addresses = await this.resolve(url.hostname).catch((err: unknown) => {
      throw new ServiceError('BAD_USER_INPUT', `webhookUrl: ${(err as Error).message}`);
    });
    if (addresses.length === 0) throw new ServiceError('BAD_USER_INPUT', `webhookUrl: ${url.hostname} has no address`);
    return { url, events: new Set(request.events?.length ? request.events : DEFAULT_WEBHOOK_EVENTS) };
  }

  /** Starts a job's deliveries (its `queued` event first). */
  async register(job: JobSnapshot, checked: { url: URL; events: Set<WebhookEventName> }, resultUrl: Hook['resultUrl']): Promise<void> {
    if (this.config.outbox) return this.config.outbox.store(job, checked, resultUrl);
    const hook: Hook = {
      ...checked,
      owner: job.owner,
      resultUrl,
      metadata: job.metadata ?? null,
      attempts: [],
      chain: Promise.resolve(),
      sent: 0,
      running: false,
      lastProgressAt: 0,
    };
    this.hooks.set(job.id, hook);
    if (job.status === 'QUEUED')
      this.enqueue(job.id, hook, 'queued', { id: job.id, status: job.status, metadata: hook.metadata, queuePosition: job.queuePosition });
  }

  /** Every job event of this process (JobService's onEvent). */
  observe(event: JobEvent): void {
    const hook = this.hooks.get(event.jobId);
    if (!hook) return;
    if (event.type === 'queued') return; // a new place in the queue: the queued event was sent at submission
    const data = () => eventData(event, hook.metadata, hook.resultUrl);
    if (event.type === 'progress') {
      if (!hook.running) {
        hook.running = true;
        this.enqueue(event.jobId, hook, 'running', { id: event.jobId, status: event.status, metadata: hook.metadata });
      }
      const now = Date.now();
      if (now - hook.lastProgressAt < PROGRESS_INTERVAL_MS) return;
      hook.lastProgressAt = now;
      this.enqueue(event.jobId, hook, 'progress', data);
      return;
    }
    this.enqueue(event.jobId, hook, event.type, data);
    // Visible on the job while the job is kept.
    void hook.chain.then(() => setTimeout(() => this.hooks.delete(event.jobId), this.config.retentionMs).unref());
  }

  /** Attempts so far (oldest first), or null when the job has no webhook here. */
  attempts(jobId: string): WebhookAttempt[] | null | Promise<WebhookAttempt[] | null> {
    if (this.config.outbox) return this.config.outbox.attempts(jobId);
    return this.hooks.get(jobId)?.attempts.map((a) => ({ ...a })) ?? null;
  }

  /** Queues an event's delivery; `data` given as a function is made when the delivery starts (result URLs are signed then). */
  private enqueue(jobId: string, hook: Hook, name: WebhookEventName, data: Record<string, unknown> | (() => Promise<Record<string, unknown>>)): void {
    if (!hook.events.has(name)) return;
    hook.sent += 1;
    const id = `msg_${jobId}_${hook.sent}`;
    hook.chain = hook.chain
      .then(async () => this.deliver(hook, id, `edit.${name}`, messageBody(name, typeof data === 'function' ? await data() : data)))
      .catch((err: unknown) => this.config.log?.({ jobId, type: `edit.${name}`, error: (err as Error).message }, 'webhook event not sent'));
  }

  private async deliver(hook: Hook, id: string, type: string, body: string): Promise<void> {
    for (let attempt = 1; attempt <= this.config.maxAttempts; attempt++) {
      const record = await this.attempt(hook.url, id, type, body, attempt, hook.owner);
      hook.attempts.push(record);
      if (record.delivered) return;
      if (attempt < this.config.maxAttempts) await new Promise((r) => setTimeout(r, this.config.retryBaseMs * 2 ** (attempt - 1)).unref());
    }
  }

  /** One POST of one event, signed with its owner's secret (also the Redis deliveries worker's, redisWebhooks.ts). */
  async attempt(url: URL, id: string, type: string, body: string, attempt: number, owner?: string): Promise<WebhookAttempt> {
    const record: WebhookAttempt = { id, type, attempt, at: Date.now() / 1000, status: null, error: null, delivered: false };
    try {
      // Signed per attempt: the signature covers the time it is sent (Standard Webhooks' replay window).
      const now = new Date();
      const headers = {
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': this.signerFor(owner).sign(id, now, body),
      };
      record.status = await this.post(url, body, headers);
      record.delivered = record.status >= 200 && record.status < 300;
      if (!record.delivered) record.error = `HTTP ${record.status}`;
    } catch (err) {
      record.error = (err as Error).message;
    }
    this.config.log?.({ webhookHost: url.host, type, attempt, status: record.status, error: record.error }, 'webhook attempt');
    return record;
  }

  /** The host's addresses, refused when any is private and private targets are off. */
  private async resolve(hostname: string): Promise<LookupAddress[]> {
    const host = hostname.replace(/^\[|\]$/g, '');
    const addresses = isIP(host)
      ? [{ address: host, family: isIP(host) }]
      : await new Promise<LookupAddress[]>((resolve, reject) => dnsLookup(host, { all: true }, (err, a) => (err ? reject(err) : resolve(a))));
    if (!this.config.allowPrivate && addresses.some((a) => isPrivateAddress(a.address)))
      throw new Error(`${host} is a private, loopback or link-local address (WEBHOOK_ALLOW_PRIVATE is off)`);
    return addresses;
  }

  private async post(url: URL, body: string, headers: Record<string, string>): Promise<number> {
    const addresses = await this.resolve(url.hostname);
    const pinned = addresses[0]!;
    const client = url.protocol === 'https:' ? https : http;
    return new Promise<number>((resolve, reject) => {
      const req = client.request(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
          timeout: ATTEMPT_TIMEOUT_MS,
          // Connect to the address just checked (no second lookup that could answer otherwise).
          lookup: (_host, options, cb) => ((options as { all?: boolean }).all ? cb(null, [pinned] as never) : cb(null, pinned.address as never, pinned.family)),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}
