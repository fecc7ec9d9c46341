/**
 * Per-client rate limiting: one token bucket per credential (the SHA-256 of the verified
 * Authorization value) or, for anonymous clients, per IP address. RATE_LIMIT_PER_MINUTE tokens
 * come back per minute, up to RATE_LIMIT_BURST held at once; every counted request takes one.
 *
 * Counted: every HTTP request to /graphql (queries, mutations, uploads, SSE subscriptions) and
 * /v1/, and every operation started over graphql-ws. Not counted: the GraphiQL page, /healthz,
 * the progress page's static files. A request over the limit gets 429 with Retry-After and a
 * body in the endpoint's own error shape; a websocket operation gets an error message with code
 * RATE_LIMITED (the socket stays open).
 *
 * State is in memory, per process: behind several replicas each one counts on its own.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export type RateLimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

export interface RateLimiter {
  readonly enabled: boolean;
  /** Takes one token from `key`'s bucket. */
  take(key: string): RateLimitDecision;
  /** Number of buckets held (for tests and metrics). */
  readonly size: number;
  close(): void;
}

export interface RateLimitOptions {
  /** Tokens refilled per minute; 0 disables the limiter. */
  perMinute: number;
  /** Bucket capacity (default: perMinute). */
  burst?: number;
  /** Clock in ms (tests). */
  now?: () => number;
  /** Above this many buckets, full ones are dropped at once rather than at the next sweep. */
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

export function createRateLimiter(options: RateLimitOptions): RateLimiter {
  const perMinute = options.perMinute;
  if (!(perMinute > 0)) {
    return { enabled: false, take: () => ({ ok: true }), size: 0, close() {} };
  }
  const burst = Math.max(1, options.burst || perMinute);
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? 100_000;
  const perMs = perMinute / 60_000;
  const buckets = new Map<string, Bucket>();

  const refill = (b: Bucket, t: number): void => {
    b.tokens = Math.min(burst, b.tokens + (t - b.updated) * perMs);
    b.updated = t;
  };
  /** Drops the buckets that are full again: they hold nothing a fresh one would not. */
  const sweep = (): void => {
    const t = now();
    for (const [key, b] of buckets) {
      refill(b, t);
      if (b.tokens >= burst) buckets.delete(key);
    }
  };
  const timer = setInterval(sweep, 60_000);
  timer.unref();

  return {
    enabled: true,
    get size() {
      return buckets.size;
    },
    take(key) {
      const t = now();
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= maxKeys) sweep();
        b = { tokens: burst, updated: t };
        buckets.set(key, b);
      } else {
        refill(b, t);
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
    },
    close() {
      clearInterval(timer);
      buckets.clear();
    },
  };
}

/** The client's address: the socket's peer, or with trustProxy the hop the proxy appended last. */
export function clientIp(req: Pick<IncomingMessage, 'headers' | 'socket'>, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = req.headers['x-forwarded-for'];
    const value = Array.isArray(forwarded) ? forwarded.join(',') : forwarded;
    const hops = (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (hops.length) return hops[hops.length - 1]!;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/**
 * The bucket key. A credential counts only when auth is on (it has just been verified):
 * with auth off, a client could otherwise dodge its limit by sending a new header each time.
 */
export function rateLimitKey(authorization: string | undefined | null, authEnabled: boolean, ip: string): string {
  if (authEnabled && authorization) return `cred:${createHash('sha256').update(authorization.trim()).digest('hex').slice(0, 32)}`;
  return `ip:${ip}`;
}

export const RATE_LIMITED_MESSAGE = 'rate limit exceeded: too many requests';

/**
 * Counts one HTTP request. Returns true when it may go on; otherwise it has answered with 429,
 * Retry-After, and a body shaped for the endpoint (OpenAI-style for /v1/, GraphQL for the rest).
 */
export function enforceRateLimit(
  limiter: RateLimiter,
  req: IncomingMessage,
  res: ServerResponse,
  options: { pathname: string; authEnabled: boolean; trustProxy: boolean },
): boolean {
  if (!limiter.enabled) return true;
  const key = rateLimitKey(req.headers.authorization, options.authEnabled, clientIp(req, options.trustProxy));
  const decision = limiter.take(key);
  if (decision.ok) return true;
  const { retryAfterSeconds } = decision;
  const message = `${RATE_LIMITED_MESSAGE}; retry after ${retryAfterSeconds} s`;
  const body = options.pathname.startsWith('/v1/')
    ? { error: { message, type: 'rate_limit_error', code: 'RATE_LIMITED' } }
    : { errors: [{ message, extensions: { code: 'RATE_LIMITED', retryAfterSeconds } }] };
  const text = JSON.stringify(body);
  // Any body still arriving is discarded by node (not buffered) once the response has been sent.
  res.writeHead(429, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'retry-after': String(retryAfterSeconds) });
  res.end(text);
  return false;
}
