/**
 * Fair scheduling on Redis: tenants take turns at the workers, as fairOrder (jobService.ts) does in
 * memory. BullMQ's open edition has no fair groups (that is BullMQ Pro's "groups"), and its
 * priorities are global, so one tenant's backlog would hold everyone else's jobs back. So a BullMQ
 * job is only a token here: BullMQ still fetches, locks, retries and recovers stalled tokens, but
 * which job a token runs is chosen in Redis when a worker takes it (POP_LUA): the head job of the
 * least recently served owner that has jobs queued. The token's claim (its job's id) stays until
 * the token is done, so a retried or stalled token runs the same job again.
 *
 * Every submit adds one queue entry and one token, so there are never fewer tokens than entries (a
 * cancelled entry is removed, its token left to find another job or nothing): no job is stranded.
 *
 * Keys: `ie:fair:owners` (owner → number of the pop that last served it; 0: never), one
 * `ie:fair:queue:<owner>` per owner (job id → score: priority, then submission time; gone when
 * empty), `ie:fair:served` (the pop counter), `ie:fair:claim:<token>` (the job a token runs). The
 * job's queued data is the `queued` field of its inputs hash (deleted with its terminal event).
 */
import type { Redis } from 'ioredis';
import { PRIORITY } from './types.js';

export const fairKeys = {
  owners: 'ie:fair:owners',
  queue: (owner: string) => `ie:fair:queue:${owner}`,
  served: 'ie:fair:served',
  claim: (token: string) => `ie:fair:claim:${token}`,
};

/** Higher priority first, then older first (ms since the epoch stay below 1e13). */
export const fairScore = (priority: number, createdMs: number): number => (PRIORITY.max - priority) * 1e13 + createdMs;

/** KEYS: owners, owner's queue. ARGV: owner, id, score, ttl ms. A new owner counts as never served. */
export const PUSH_LUA = `
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
`;

/**
 * The job a token runs: its claim, or else the head of the least recently served owner with jobs
 * queued (owners are few: one per credential), which is taken and claimed. Owners and the counter
 * live as long as queued work (ttl), and only the retention time once nothing is queued.
 * KEYS: owners, served, claim. ARGV: queue key prefix, ttl ms, retention ms. Returns {id} for an
 * existing claim, {id, owner, owner's previous score, job's score} for a new one, or false when
 * nothing is queued.
 */
const POP_LUA = `
local claimed = redis.call('GET', KEYS[3])
if claimed then return {claimed} end
local owners = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local popped = false
local queued = 0
for i = 1, #owners, 2 do
  local q = ARGV[1] .. owners[i]
  if not popped then
    local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #head > 0 then
      redis.call('ZREM', q, head[1])
      local served = redis.call('INCR', KEYS[2])
      redis.call('ZADD', KEYS[1], served, owners[i])
      redis.call('SET', KEYS[3], head[1], 'PX', ARGV[2])
      popped = {head[1], owners[i], owners[i + 1], head[2]}
    end
  end
  queued = queued + redis.call('ZCARD', q)
end
local ttl = ARGV[3]
if queued > 0 then ttl = ARGV[2] end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return popped
`;

/** Undoes a pop (a job that cannot join the call): KEYS owners, queue, claim; ARGV owner, owner's score, id, job's score, ttl ms. */
const PUT_BACK_LUA = `
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('DEL', KEYS[3])
`;

export interface Popped {
  id: string;
  /** Set for a new claim (what putBack needs). */
  taken?: { owner: string; ownerScore: string; score: string };
}

/** The job `token` runs (see POP_LUA), or null when nothing is queued. */
export async function fairPop(redis: Redis, token: string, ttlMs: number, retentionMs: number): Promise<Popped | null> {
  const reply = (await redis.eval(POP_LUA, 3, fairKeys.owners, fairKeys.served, fairKeys.claim(token), fairKeys.queue(''), ttlMs, retentionMs)) as
    | string[]
    | null;
  if (!reply) return null;
  const [id, owner, ownerScore, score] = reply;
  return { id: id!, ...(owner !== undefined ? { taken: { owner, ownerScore: ownerScore!, score: score! } } : {}) };
}

/** Puts a newly popped job back where it was, and its owner's turn with it. */
export async function fairPutBack(redis: Redis, token: string, popped: Popped, ttlMs: number): Promise<void> {
  const t = popped.taken!;
  await redis.eval(PUT_BACK_LUA, 3, fairKeys.owners, fairKeys.queue(t.owner), fairKeys.claim(token), t.owner, t.ownerScore, popped.id, t.score, ttlMs);
}

/**
 * Takes a job out of its owner's queue; when that leaves nothing queued, owners and the counter
 * keep only the retention time, as after the last pop (the job's token is removed with it, so no
 * pop follows). KEYS: owners, served, queue. ARGV: id, queue key prefix, retention ms.
 */
const REMOVE_LUA = `
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local owners = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = 1, #owners do
  if redis.call('ZCARD', ARGV[2] .. owners[i]) > 0 then return 1 end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`;

/** Removes a job not yet taken from its owner's queue (REMOVE_LUA): true when it was there (no worker has it). */
export async function fairRemove(redis: Redis, owner: string, id: string, retentionMs: number): Promise<boolean> {
  return (await redis.eval(REMOVE_LUA, 3, fairKeys.owners, fairKeys.served, fairKeys.queue(owner), id, fairKeys.queue(''), retentionMs)) === 1;
}
