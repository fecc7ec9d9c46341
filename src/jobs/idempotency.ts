/**
 * Idempotent submits (Stripe's rule): the first request with a key claims it for 24 h; a later one
 * from the same principal with the same key and the same request gets the job the first created;
 * with a different request, IDEMPOTENCY_CONFLICT. Keys are per principal: the slot is
 * `owner:sha256(key)`. The claim is one atomic step (a Map here, SET NX in Redis), so two API
 * processes racing on one key create one job.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ServiceError } from '../errors.js';
import { redisUnavailable } from './redisShared.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;
const MAX_KEY_LENGTH = 255;

/** What a slot holds: the request's fingerprint and, once queued, the job's id. */
export interface IdempotencyRecord {
  fingerprint: string;
  jobId: string | null;
}

export interface IdempotencyStore {
  /** Claims `slot` with `record` unless it is held; returns the holder's record, or null when claimed. */
  claim(slot: string, record: IdempotencyRecord): Promise<IdempotencyRecord | null>;
  /** The holder's record (null when free). */
  read(slot: string): Promise<IdempotencyRecord | null>;
  /** Records the job a claim created (the claim's expiry stays). */
  settle(slot: string, record: IdempotencyRecord): Promise<void>;
  /** Frees a claim whose submission failed, so the client's retry runs it again. */
  release(slot: string): Promise<void>;
  close(): void;
}

/** A key as clients send it: 1–255 printable ASCII characters (Stripe's bound). */
export function checkIdempotencyKey(key: string): string {
  if (key.length < 1 || key.length > MAX_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(key))
    throw new ServiceError('BAD_USER_INPUT', `an idempotency key is 1 to ${MAX_KEY_LENGTH} printable ASCII characters without spaces`);
  return key;
}

export const idempotencySlot = (owner: string, key: string): string => `${owner}:${createHash('sha256').update(key).digest('hex')}`;

export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly slots = new Map<string, { record: IdempotencyRecord; expiresAt: number }>();
  private readonly sweeper = setInterval(() => this.sweep(), 60_000).unref();

  constructor(private readonly ttlMs = IDEMPOTENCY_TTL_MS) {}

  async claim(slot: string, record: IdempotencyRecord): Promise<IdempotencyRecord | null> {
    const held = await this.read(slot);
    if (held) return held;
    this.slots.set(slot, { record, expiresAt: Date.now() + this.ttlMs });
    return null;
  }

  async read(slot: string): Promise<IdempotencyRecord | null> {
    const held = this.slots.get(slot);
    return held && held.expiresAt > Date.now() ? held.record : null;
  }

  async settle(slot: string, record: IdempotencyRecord): Promise<void> {
    const held = this.slots.get(slot);
    if (held) held.record = record;
  }

  async release(slot: string): Promise<void> {
    this.slots.delete(slot);
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [slot, held] of this.slots) if (held.expiresAt <= now) this.slots.delete(slot);
  }
}

/** `ie:idem:<owner>:<sha256(key)>`, a JSON record with a 24 h TTL, claimed with SET NX. */
export class RedisIdempotencyStore implements IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly ttlMs = IDEMPOTENCY_TTL_MS,
  ) {}

  private key = (slot: string): string => `ie:idem:${slot}`;

  async claim(slot: string, record: IdempotencyRecord): Promise<IdempotencyRecord | null> {
    const set = await this.redis.set(this.key(slot), JSON.stringify(record), 'PX', this.ttlMs, 'NX').catch(fail);
    return set === 'OK' ? null : ((await this.read(slot)) ?? this.claim(slot, record));
  }

  async read(slot: string): Promise<IdempotencyRecord | null> {
    const raw = await this.redis.get(this.key(slot)).catch(fail);
    return raw ? (JSON.parse(raw) as IdempotencyRecord) : null;
  }

  async settle(slot: string, record: IdempotencyRecord): Promise<void> {
    await this.redis.set(this.key(slot), JSON.stringify(record), 'KEEPTTL', 'XX').catch(fail);
  }

  async release(slot: string): Promise<void> {
    await this.redis.del(this.key(slot)).catch(fail);
  }

  close(): void {
    this.redis.disconnect();
  }
}

const fail = (err: unknown): never => {
  throw redisUnavailable(err);
};
