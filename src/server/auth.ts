/**
 * Bearer tokens (AUTH_TOKENS) and HTTP Basic pairs (AUTH_BASIC), compared in constant time.
 * One check serves HTTP requests, SSE, the REST endpoint and websocket connection_init payloads.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ServerConfig } from './config.js';

export interface Authenticator {
  readonly enabled: boolean;
  /** True when the Authorization header value carries valid credentials (or auth is off). */
  check(authorization: string | undefined | null): boolean;
  readonly challenge: string;
}

// Hashing first gives equal-length buffers, so timingSafeEqual never leaks a length.
const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const same = (a: Buffer, b: Buffer): boolean => timingSafeEqual(a, b);

export function createAuthenticator(config: Pick<ServerConfig, 'authTokens' | 'authBasic'>): Authenticator {
  const tokens = config.authTokens.map(digest);
  const basics = config.authBasic.map(({ user, pass }) => digest(`${user}:${pass}`));
  const enabled = tokens.length + basics.length > 0;
  const challenges = [tokens.length ? 'Bearer realm="image-edit"' : null, basics.length ? 'Basic realm="image-edit", charset="UTF-8"' : null].filter(Boolean);
  return {
    enabled,
    challenge: challenges.join(', '),
    check(authorization) {
      if (!enabled) return true;
      if (!authorization) return false;
      const [scheme, ...rest] = authorization.trim().split(/\s+/);
      const value = rest.join(' ');
      if (!scheme || !value) return false;
      let candidates: Buffer[];
      let presented: Buffer;
      if (scheme.toLowerCase() === 'bearer') {
        candidates = tokens;
        presented = digest(value);
      } else if (scheme.toLowerCase() === 'basic') {
        candidates = basics;
        presented = digest(Buffer.from(value, 'base64').toString('utf8'));
      } else {
        return false;
      }
      // Compare against every candidate so the time does not depend on which one matched.
      let ok = false;
      for (const c of candidates) ok = same(c, presented) || ok;
      return ok;
    },
  };
}
