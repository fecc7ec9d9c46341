/**
 * Admission: one decision per HTTP request (GraphQL, SSE, REST, /metrics) and per graphql-ws
 * connection and operation. `admit(authorization, ip)` identifies the principal (src/server/auth.ts),
 * refuses IPs with too many failed authentications, and charges the request to the principal's
 * rate limit.
 *
 * Counters come from rate-limiter-flexible: RateLimiterRedis on an ioredis client when REDIS_URL is
 * set (one limit for every API process on that Redis, with a per-process RateLimiterMemory as the
 * insurance when Redis is unreachable), RateLimiterMemory otherwise.
 *
 *  - Requests: RATE_LIMIT_BURST requests per window of 60 × burst / RATE_LIMIT_PER_MINUTE seconds,
 *    keyed on the principal (its owner id, so every spelling of a credential shares one bucket);
 *    anonymous clients (auth off) on their IP (TRUST_PROXY: the last X-Forwarded-For hop).
 *  - Failed authentications (wrong or malformed credentials; a request without any is not counted): AUTH_FAIL_LIMIT per IP within AUTH_FAIL_WINDOW_SECONDS; past that the
 *    IP is blocked for AUTH_FAIL_BLOCK_SECONDS, and each failure within the next hour doubles the
 *    block (up to an hour). A blocked IP gets 429 without its credentials being checked, so a
 *    password guess is never answered while blocked.
 */
import type { IncomingMessage } from 'node:http';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { ServiceError } from '../errors.js';
import type { Authenticator, Principal } from './auth.js';

export const RATE_LIMITED_MESSAGE = 'rate limit exceeded: too many requests';
export const AUTH_BLOCKED_MESSAGE = 'too many failed authentications from this address';

export type Admission =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401; code: 'UNAUTHENTICATED'; message: string }
  | { ok: false; status: 429; code: 'RATE_LIMITED'; message: string; retryAfterSeconds: number };

export interface AdmissionOptions {
  auth: Authenticator;
  /** Requests per minute per principal; 0 turns request limiting off. */
  perMinute: number;
  /** Requests allowed at once (default: perMinute). */
  burst?: number;
  /** Failed authentications per IP before 429; 0 turns this off. */
  authFailLimit: number;
  authFailWindowSeconds: number;
  authFailBlockSeconds: number;
  /** Shared counters for every process on this Redis; none: per-process memory. */
  redis?: Redis | null;
  /** Key prefix (tests run several independent deployments on one Redis). */
  prefix?: string;
}

export interface AdmissionControl {
  /**
   * Identifies and limits one request (`count: false`: identify and check failures only, e.g. a
   * websocket connection_init). `authorization` is whatever the client sent (graphql-ws's
   * `connection_init` payload is any JSON): a value that is not a string is a failed authentication.
   */
  admit(authorization: unknown, ip: string, options?: { count?: boolean }): Promise<Admission>;
  readonly rateLimited: boolean;
}

const MAX_BLOCK_SECONDS = 3600;
const STRIKE_WINDOW_SECONDS = 3600;

export function createAdmission(options: AdmissionOptions): AdmissionControl {
  const prefix = options.prefix ?? 'ie:rl';
  const make = (keyPrefix: string, points: number, duration: number): RateLimiterAbstract => {
    const memory = new RateLimiterMemory({ keyPrefix, points, duration });
    if (!options.redis) return memory;
    return new RateLimiterRedis({ storeClient: options.redis, keyPrefix, points, duration, insuranceLimiter: memory, rejectIfRedisNotReady: true });
  };
  const perMinute = options.perMinute;
  const burst = Math.max(1, options.burst || perMinute);
  const requests = perMinute > 0 ? make(`${prefix}:req`, burst, Math.max(1, Math.round((60 * burst) / perMinute))) : null;
  const failLimit = options.authFailLimit;
  const failures = options.auth.enabled && failLimit > 0 ? make(`${prefix}:authfail`, failLimit, options.authFailWindowSeconds) : null;
  const strikes = failures ? make(`${prefix}:authstrike`, 1_000_000, STRIKE_WINDOW_SECONDS) : null;

  const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));
  const limited = (message: string, retryAfterSeconds: number): Admission => ({
    ok: false,
    status: 429,
    code: 'RATE_LIMITED',
    message: `${message}; retry after ${retryAfterSeconds} s`,
    retryAfterSeconds,
  });
  const unauthenticated: Admission = { ok: false, status: 401, code: 'UNAUTHENTICATED', message: 'missing or invalid credentials' };

  /** Blocks `ip` for the next step of its backoff. */
  const block = async (ip: string): Promise<Admission> => {
    const strike = (await strikes!.consume(ip)).consumedPoints;
    const duration = Math.min(MAX_BLOCK_SECONDS, options.authFailBlockSeconds * 2 ** (strike - 1));
    await failures!.block(ip, duration);
    return limited(AUTH_BLOCKED_MESSAGE, duration);
  };

  const failed = async (ip: string): Promise<Admission> => {
    if (!failures) return unauthenticated;
    // An address that was blocked within the last hour is blocked again at its first failure.
    const strike = await strikes!.get(ip);
    if (strike && strike.consumedPoints > 0) return block(ip);
    try {
      await failures.consume(ip);
      return unauthenticated;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      return block(ip);
    }
  };

  return {
    rateLimited: requests !== null,
    async admit(authorization, ip, { count = true } = {}) {
      if (failures) {
        const state = await failures.get(ip);
        if (state && state.consumedPoints > failLimit) return limited(AUTH_BLOCKED_MESSAGE, seconds(state.msBeforeNext));
      }
      if (authorization != null && typeof authorization !== 'string') return failed(ip);
      const principal = options.auth.identify(authorization);
      // No credentials at all guesses nothing (a browser's first request before its Basic prompt): 401, not counted.
      if (!principal) return authorization?.trim() ? failed(ip) : unauthenticated;
      if (count && requests) {
        // The principal, never the raw header: every spelling of one credential is one bucket.
        const key = principal.kind === 'anonymous' ? `ip:${ip}` : `p:${principal.owner}`;
        try {
          await requests.consume(key);
        } catch (err) {
          if (!(err instanceof RateLimiterRes)) throw err;
          return limited(RATE_LIMITED_MESSAGE, seconds(err.msBeforeNext));
        }
      }
      return { ok: true, principal };
    },
  };
}

/** The client's address: the socket's peer, or with trustProxy the hop the proxy appended last. */
export function clientIp(req: Pick<IncomingMessage, 'headers' | 'socket'>, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const value = Array.isArray(forwarded) ? forwarded.join(',') : forwarded;
    const hops = (value ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (hops.length) return hops[hops.length - 1]!;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** A refusal as the coded error every transport answers with (429: with its Retry-After). */
export function refusalError(refusal: Exclude<Admission, { ok: true }>): ServiceError {
  return new ServiceError(refusal.code, refusal.message, refusal.status === 429 ? { retryAfterSeconds: refusal.retryAfterSeconds } : {});
}

/** The headers of a refused HTTP request beyond Retry-After: a 401 carries the challenge. */
export function refusalHeaders(refusal: Exclude<Admission, { ok: true }>, challenge: string): Record<string, string> {
  return refusal.status === 401 ? { 'www-authenticate': challenge } : {};
}
