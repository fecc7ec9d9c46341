/**
 * What the Redis job backend (API processes) and the Redis workers share: key names, and the
 * JSON form of snapshots and events (bytes as base64). Each job has a monotonically increasing
 * event sequence number stored with its snapshot, so a subscriber that reads the snapshot after
 * subscribing can drop live events it has already seen (Redis pub/sub has no replay).
 *
 * Why not BullMQ's own progress (`job.updateProgress`) and QueueEvents: those go through one
 * stream per queue that every QueueEvents listener reads whole (each API process would receive
 * every job's progress and previews, not only the jobs it has subscribers for), trimmed to a
 * length rather than kept per job, and they know nothing of events that happen outside a worker
 * (a queued job cancelled by an API process, a job lost with Redis) or of the one-terminal-event
 * rule. Here each job has its own channel, its own sequence numbers and its state in one hash,
 * appended to atomically by whichever process writes (APPEND_EVENT_LUA); BullMQ only queues,
 * locks and retries.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ServiceError } from '../errors.js';
import { isTerminal, type JobEvent, type JobSnapshot } from './types.js';

/** Structured log sinks for Redis connection trouble (pino's methods, bound). */
export interface RedisLog {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  debug?(fields: Record<string, unknown>, message: string): void;
}

/** How long a client is told to wait when Redis is unreachable. */
export const REDIS_RETRY_AFTER_SECONDS = 5;
/** A command that gets no reply within this is failed (half-open connections, a stalled server). */
export const REDIS_COMMAND_TIMEOUT_MS = 5_000;

/**
 * ioredis options per use. `request`: commands an API request waits on fail at once while Redis is
 * down (no offline queue, one retry, a command timeout) so the request can answer UNAVAILABLE;
 * `background`: subscribers and BullMQ workers queue commands and retry for ever (BullMQ requires
 * maxRetriesPerRequest: null for workers; a subscriber must resubscribe after a reconnect).
 */
export function redisOptions(kind: 'request' | 'background'): RedisOptions {
  const common: RedisOptions = { connectTimeout: 5_000, retryStrategy: (times) => Math.min(200 * times, 2_000) };
  return kind === 'request'
    ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS }
    : { ...common, maxRetriesPerRequest: null };
}

/**
 * Every ioredis client and BullMQ Queue/Worker gets this instead of ioredis' default handler
 * ("[ioredis] Unhandled error event" on stderr for every reconnect attempt): one warn line when a
 * connection is lost, debug lines for the retries, one info line when it is back.
 */
// biome-ignore lint/suspicious/noExplicitAny: ioredis clients and BullMQ Queue/Worker type their listeners differently
export function watchRedis(emitter: { on(event: string, listener: (...args: any[]) => void): unknown }, name: string, log: RedisLog | undefined): void {
  let down = false;
  emitter.on('error', (err: Error & { code?: string }) => {
    const fields = { redis: name, err: { message: err.message, code: err.code } };
    if (!down) log?.warn(fields, 'redis connection error');
    else log?.debug?.(fields, 'redis connection error');
    down = true;
  });
  emitter.on('ready', () => {
    if (down) log?.info({ redis: name }, 'redis connection restored');
    down = false;
  });
}

/** A connection for `kind` with its errors logged (see watchRedis). */
export function connectRedis(url: string, kind: 'request' | 'background', name: string, log: RedisLog | undefined): Redis {
  const redis = new Redis(url, redisOptions(kind));
  watchRedis(redis, name, log);
  return redis;
}

/** A Redis failure as the error a client sees: UNAVAILABLE with a retry hint (coded errors pass through). */
export function redisUnavailable(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  return new ServiceError('UNAVAILABLE', 'the job store (Redis) is unreachable; retry later', { retryAfterSeconds: REDIS_RETRY_AFTER_SECONDS });
}

/**
 * BullMQ's production settings (AOF persistence, noeviction), checked with CONFIG GET at start.
 * Returns the warnings; a server where CONFIG is disabled or renamed gets one note instead.
 */
export async function checkRedisSettings(redis: Redis): Promise<{ warnings: string[]; note?: string }> {
  let values: Record<string, string>;
  try {
    const get = async (name: string): Promise<string | undefined> => ((await redis.call('CONFIG', 'GET', name)) as string[])[1];
    values = {
      appendonly: (await get('appendonly')) ?? '',
      appendfsync: (await get('appendfsync')) ?? '',
      'maxmemory-policy': (await get('maxmemory-policy')) ?? '',
    };
  } catch (err) {
    return {
      warnings: [],
      note: `could not read the Redis configuration (${(err as Error).message.split('\n')[0]}): make sure it has appendonly yes, appendfsync everysec or always, and maxmemory-policy noeviction (docs/deploy.md)`,
    };
  }
  const warnings: string[] = [];
  if (values.appendonly !== 'yes')
    warnings.push(
      `Redis has appendonly ${values.appendonly || '(unknown)'}: a Redis restart loses every queued and running job (clients get JOB_LOST); set appendonly yes (docs/deploy.md)`,
    );
  else if (values.appendfsync === 'no')
    warnings.push('Redis has appendfsync no: a crash can lose recent jobs; set appendfsync everysec or always (docs/deploy.md)');
  if (values['maxmemory-policy'] !== 'noeviction')
    warnings.push(
      `Redis has maxmemory-policy ${values['maxmemory-policy'] || '(unknown)'}: Redis may evict queue and job keys under memory pressure; set maxmemory-policy noeviction (docs/deploy.md)`,
    );
  return { warnings };
}

/** Logs checkRedisSettings' findings once the connection is ready (never throws). */
export function warnAboutRedisSettings(redis: Redis, log: RedisLog | undefined): void {
  const run = (): void => {
    void checkRedisSettings(redis).then(
      ({ warnings, note }) => {
        for (const w of warnings) log?.warn({ redis: 'config' }, w);
        if (note) log?.info({ redis: 'config' }, note);
      },
      () => undefined,
    );
  };
  if (redis.status === 'ready') run();
  else redis.once('ready', run);
}

export const QUEUE_NAME = 'image-edit';

/** The TTL of an unfinished job's keys: queued work may wait a while; a terminal event sets `retentionMs`. */
export const liveTtlMs = (retentionMs: number): number => retentionMs + 3_600_000;
export const CANCEL_CHANNEL = 'ie:cancel';
export const keys = {
  /** A hash: see snapshotFields. */
  snapshot: (id: string) => `ie:job:${id}`,
  /** The owner id alone (same TTL as the snapshot): ownership checks read this, never a whole result. */
  owner: (id: string) => `ie:job:${id}:owner`,
  inputs: (id: string) => `ie:job:${id}:inputs`,
  /** Runs started (a worker's INCR, with the live snapshot's TTL); deleted with the terminal event. */
  attempt: (id: string) => `ie:job:${id}:attempt`,
  terminal: (id: string) => `ie:job:${id}:terminal`,
  /** The job's webhook (redisWebhooks.ts) and its delivery attempts (a list). */
  webhook: (id: string) => `ie:job:${id}:webhook`,
  webhookAttempts: (id: string) => `ie:job:${id}:webhook:attempts`,
  channel: (id: string) => `ie:events:${id}`,
  /** Per-owner unfinished jobs (sorted set: id → expiry in ms) and their output images (hash: id → count). */
  tenantJobs: (owner: string) => `ie:tenant:${owner}:jobs`,
  tenantImages: (owner: string) => `ie:tenant:${owner}:images`,
  /** History (sorted sets: id → creation ms): one per owner, and one of every job for admins. See HISTORY_TRIM_LUA. */
  history: (owner: string) => `ie:history:${owner}`,
  historyAll: 'ie:history',
  /** Unfinished jobs of a history set (a counter: INCR at submit, DECR at the terminal event). */
  live: (owner: string) => `ie:live:${owner}`,
  liveAll: 'ie:live',
};

/**
 * Drops history entries whose job is gone (expired or withdrawn). Only entries older than the
 * cutoff are checked (a younger job is still kept), at most 1000 per call.
 * KEYS: a history set. ARGV: cutoff ms, the snapshot key's prefix. Returns how many were dropped.
 */
export const HISTORY_TRIM_LUA = `
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
  if redis.call('EXISTS', ARGV[2] .. id) == 0 then gone[#gone + 1] = id end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return #gone
`;

/**
 * A job's terminal event, for its history sets: once a set has no unfinished job left, it lives as
 * long as its newest finished one (ARGV[1], the retention); until then at least that long.
 * KEYS: pairs of (history set, its live counter). A counter left high (a submission withdrawn
 * after its INCR) only keeps its set to the live TTL of the last submit.
 */
const HISTORY_END_LUA = `
for i = 1, #KEYS, 2 do
  if redis.call('DECR', KEYS[i + 1]) <= 0 then
    redis.call('DEL', KEYS[i + 1])
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  elseif redis.call('PTTL', KEYS[i]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return 0
`;

/**
 * Reserves a place in the owner's quota atomically across API processes. Entries past their
 * expiry (a job whose terminal event was never recorded) are dropped first.
 * KEYS: tenantJobs, tenantImages. ARGV: now ms, job id, images, maxJobs, maxImages, expiry ms, ttl ms.
 * Returns {1, jobs, images} when reserved, {0, jobs, images} when over the quota.
 */
export const RESERVE_QUOTA_LUA = `
local now = tonumber(ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local jobs = redis.call('ZCARD', KEYS[1])
local images = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do images = images + tonumber(v) end
local add = tonumber(ARGV[3])
local maxJobs = tonumber(ARGV[4])
local maxImages = tonumber(ARGV[5])
if (maxJobs > 0 and jobs + 1 > maxJobs) or (maxImages > 0 and images + add > maxImages) then return {0, jobs, images} end
redis.call('ZADD', KEYS[1], ARGV[6], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], add)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {1, jobs, images}
`;

/** Gives a job's place in its owner's quota back (its terminal event, or a failed submit). */
export async function releaseQuota(redis: Redis, owner: string | undefined, id: string): Promise<void> {
  if (!owner) return;
  await redis.multi().zrem(keys.tenantJobs(owner), id).hdel(keys.tenantImages(owner), id).exec();
}

export interface StoredSnapshot {
  seq: number;
  snapshot: JobSnapshot;
}

export interface WireEvent {
  seq: number;
  event: JobEvent;
}

/** JSON with Uint8Arrays as {"$b64": "..."}. */
export function toWire(value: unknown): string {
  // The holder's own value, not `v`: JSON.stringify has already turned a Buffer into
  // {type:'Buffer', data:[…]} through its toJSON by the time the replacer sees it.
  return JSON.stringify(value, function (this: Record<string, unknown>, k, v: unknown) {
    const raw = this[k];
    return raw instanceof Uint8Array ? { $b64: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') } : v;
  });
}

export function fromWire<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) =>
    v && typeof v === 'object' && '$b64' in v ? new Uint8Array(Buffer.from((v as { $b64: string }).$b64, 'base64')) : v,
  ) as T;
}

/** The snapshot fields an event changes, one hash field each (JSON). */
const EVENT_FIELDS = ['status', 'queuePosition', 'progress', 'result', 'error', 'cancelReason'] as const;
type EventField = (typeof EVENT_FIELDS)[number];

/**
 * A job's state as stored: hash fields `base` (what never changes, JSON), `seq` (the last event's
 * sequence number) and one JSON field per part an event changes, so appending an event writes only
 * the fields it changes and never reads the snapshot back (see APPEND_EVENT_LUA).
 */
export function snapshotFields(s: JobSnapshot): Record<string, string> {
  const { status, queuePosition, progress, result, error, cancelReason, ...base } = s;
  const fields: Record<string, string> = { base: toWire(base), seq: '0' };
  for (const [k, v] of Object.entries({ status, queuePosition, progress, result, error, cancelReason })) fields[k] = toWire(v ?? null);
  return fields;
}

/** The snapshot change an event implies. */
export function eventFields(e: JobEvent): Partial<Record<EventField, unknown>> {
  const f: Partial<Record<EventField, unknown>> = { status: e.status, queuePosition: e.type === 'queued' ? e.position : null };
  if (e.type === 'queued') f.progress = null;
  if (e.type === 'progress')
    f.progress = { step: e.step, totalSteps: e.totalSteps, previews: e.previews, emittedAt: e.emittedAt, ...(e.phase ? { phase: e.phase } : {}) };
  if (e.type === 'completed') f.result = e.result;
  if (e.type === 'failed') f.error = e.error;
  if (e.type === 'cancelled') f.cancelReason = e.reason;
  return f;
}

export async function readSnapshot(redis: Redis, id: string): Promise<StoredSnapshot | null> {
  return parseSnapshot(await redis.hgetall(keys.snapshot(id)));
}

/** A snapshot hash as read (HGETALL); null when the job is gone. */
export function parseSnapshot(h: Record<string, string>): StoredSnapshot | null {
  if (!h.base) return null;
  const snapshot = fromWire<JobSnapshot>(h.base);
  for (const k of EVENT_FIELDS) if (h[k] !== undefined) (snapshot as unknown as Record<string, unknown>)[k] = fromWire(h[k]);
  return { seq: Number(h.seq ?? 0), snapshot };
}

/**
 * Appends one event to a job, atomically, whoever else writes the job at the same time (a worker's
 * progress, an API process's cancel, another worker that took the job over): the next sequence
 * number, the changed snapshot fields, the TTLs and the publication happen in one script, so no
 * event is lost or overwritten and the stored seq is always the last published one. A terminal
 * event is taken once per job (SET NX on the terminal key) and refuses every event after it; the
 * job's stored inputs and attempt counter go with it.
 * KEYS: snapshot, owner, terminal, inputs, attempt. ARGV: terminal (1/0), ttl ms, channel, event JSON, the
 * name of a field sent only once (a result: its value is appended to the event as that key; '' for
 * none), then field/value pairs. Returns {seq, owner} when appended, 0 when refused (terminal
 * already, or gone).
 */
const APPEND_EVENT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then
  if not redis.call('SET', KEYS[3], '1', 'PX', ARGV[2], 'NX') then return 0 end
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local event = ARGV[4]
if ARGV[5] ~= '' then
  for i = 6, #ARGV, 2 do
    if ARGV[i] == ARGV[5] then event = string.sub(event, 1, -2) .. ',"' .. ARGV[5] .. '":' .. ARGV[i + 1] .. '}' end
  end
end
redis.call('PUBLISH', ARGV[3], '{"seq":' .. seq .. ',"event":' .. event .. '}')
if ARGV[1] == '1' then redis.call('DEL', KEYS[4], KEYS[5]) end
return {seq, redis.call('GET', KEYS[2])}
`;

type EventAppender = Redis & { appendJobEvent(...args: (string | number)[]): Promise<0 | [number, string | null]> };

/** The connection with the append script defined on it (ioredis runs it by EVALSHA, loading it when Redis lacks it). */
function appender(redis: Redis): EventAppender {
  if (!('appendJobEvent' in redis)) redis.defineCommand('appendJobEvent', { numberOfKeys: 5, lua: APPEND_EVENT_LUA });
  return redis as EventAppender;
}

/**
 * Records `event` for job `id` (see APPEND_EVENT_LUA) and, for a terminal one, gives the job's place
 * in its owner's quota back; `onRecorded` sees it with its sequence number (webhooks). False when it was refused.
 */
export async function recordEvent(
  redis: Redis,
  id: string,
  event: JobEvent,
  ttlMs: number,
  onRecorded?: (seq: number, event: JobEvent) => Promise<void>,
): Promise<boolean> {
  const terminal = isTerminal(event);
  const fields = Object.entries(eventFields(event)).flatMap(([k, v]) => [k, toWire(v)]);
  // A result (images) is sent once: stored as the snapshot's field, and appended to the event there.
  const { result, ...rest } = event as JobEvent & { result?: unknown };
  const reply = await appender(redis).appendJobEvent(
    keys.snapshot(id),
    keys.owner(id),
    keys.terminal(id),
    keys.inputs(id),
    keys.attempt(id),
    terminal ? 1 : 0,
    ttlMs,
    keys.channel(id),
    toWire(result === undefined ? event : rest),
    result === undefined ? '' : 'result',
    ...fields,
  );
  if (reply === 0) return false;
  await onRecorded?.(reply[0], event);
  if (terminal) {
    const owner = reply[1] ?? undefined;
    await releaseQuota(redis, owner, id);
    if (owner) await redis.eval(HISTORY_END_LUA, 4, keys.history(owner), keys.live(owner), keys.historyAll, keys.liveAll, ttlMs);
  }
  return true;
}
