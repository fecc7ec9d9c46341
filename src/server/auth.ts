/**
 * Who is calling: one parser for the Authorization value (HTTP header, SSE, REST, graphql-ws
 * connection_init payload) and one lookup from credentials to a principal.
 *
 * The scheme is case-insensitive and separated from its value by any whitespace; a Basic value is
 * base64-decoded (Node's decoder, so padding variants decode alike) and the decoded `user:pass`
 * is what is compared. Every spelling of one credential therefore maps to one principal, and
 * rate limits and job ownership key on the principal, never on the raw header.
 *
 * A principal's id is an HMAC of the credential's identity (the token, or the Basic user name)
 * under a per-deployment key: OWNER_HASH_SECRET when set, else a key derived from all configured
 * credentials. Jobs store this id, never a secret. Comparisons are constant-time and go over every
 * configured credential, so the time does not depend on which one matched.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ServerConfig } from './config.js';

export interface Principal {
  /** Stored with each job: an HMAC (hex) of the credential's identity, or ANONYMOUS_OWNER with auth off. */
  readonly owner: string;
  /** Sees and cancels every job (AUTH_ADMIN_TOKENS; everyone when auth is off: one tenant). */
  readonly admin: boolean;
  readonly kind: 'bearer' | 'basic' | 'anonymous';
}

/** With auth off the server is one tenant: every job has this owner and everyone sees them all. */
export const ANONYMOUS_OWNER = 'anonymous';

export type ParsedCredentials = { scheme: 'bearer'; token: string } | { scheme: 'basic'; user: string; pass: string };

/** Normalises an Authorization value; null when it is missing or not Bearer/Basic. */
export function parseAuthorization(authorization: string | undefined | null): ParsedCredentials | null {
  if (typeof authorization !== 'string') return null;
  const match = /^\s*(\S+)\s+([\s\S]*?)\s*$/.exec(authorization);
  if (!match) return null;
  const scheme = match[1]!.toLowerCase();
  const value = match[2]!;
  if (!value) return null;
  if (scheme === 'bearer') return { scheme: 'bearer', token: value };
  if (scheme === 'basic') {
    // Node ignores padding and whitespace in base64: "YTpi", "YTpi=" and "YTpi==" decode alike.
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i <= 0) return null;
    return { scheme: 'basic', user: decoded.slice(0, i), pass: decoded.slice(i + 1) };
  }
  return null;
}

export interface Authenticator {
  readonly enabled: boolean;
  /** The principal for these credentials; null when they are invalid. With auth off: the one anonymous tenant. */
  identify(authorization: string | undefined | null): Principal | null;
  /** True when the Authorization value carries valid credentials (or auth is off). */
  check(authorization: string | undefined | null): boolean;
  readonly challenge: string;
  /** A short, non-secret label of an owner for logs. */
  label(owner: string): string;
}

// Hashing first gives equal-length buffers, so timingSafeEqual never leaks a length.
const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

interface Entry {
  secret: Buffer;
  identity: string;
  admin: boolean;
}

type OwnerConfig = Pick<ServerConfig, 'authTokens' | 'authBasic' | 'authAdminTokens' | 'ownerHashSecret'>;

/**
 * The tenant id of a credential's identity (`bearer:<token>`, `basic:<user>`): an HMAC under the
 * deployment's key, OWNER_HASH_SECRET when set, else one derived from every credential (stable
 * while the credentials are). Processes with the same configuration compute the same ids.
 */
export function ownerIds(config: OwnerConfig): (identity: string) => string {
  const adminTokens = config.authAdminTokens ?? [];
  const key = config.ownerHashSecret
    ? digest(`owner-secret:${config.ownerHashSecret}`)
    : digest(
        `owner-derived:${[...config.authTokens, ...adminTokens]
          .map((t) => `t:${t}`)
          .concat(config.authBasic.map((b) => `b:${b.user}:${b.pass}`))
          .sort()
          .join('\n')}`,
      );
  return (identity) => createHmac('sha256', key).update(identity).digest('hex');
}

export function createAuthenticator(config: OwnerConfig): Authenticator {
  const adminTokens = config.authAdminTokens ?? [];
  const tokens: Entry[] = [
    ...config.authTokens.map((t) => ({ secret: digest(t), identity: `bearer:${t}`, admin: false })),
    ...adminTokens.map((t) => ({ secret: digest(t), identity: `bearer:${t}`, admin: true })),
  ];
  const basics: Entry[] = config.authBasic.map(({ user, pass }) => ({ secret: digest(`${user}:${pass}`), identity: `basic:${user}`, admin: false }));
  const enabled = tokens.length + basics.length > 0;
  const ownerOf = ownerIds(config);
  const owners = new Map<Entry, string>([...tokens, ...basics].map((e) => [e, ownerOf(e.identity)]));
  const challenges = [tokens.length ? 'Bearer realm="image-edit"' : null, basics.length ? 'Basic realm="image-edit", charset="UTF-8"' : null].filter(Boolean);
  const anonymous: Principal = { owner: ANONYMOUS_OWNER, admin: true, kind: 'anonymous' };

  const identify = (authorization: string | undefined | null): Principal | null => {
    if (!enabled) return anonymous;
    const parsed = parseAuthorization(authorization);
    if (!parsed) return null;
    const candidates = parsed.scheme === 'bearer' ? tokens : basics;
    const presented = digest(parsed.scheme === 'bearer' ? parsed.token : `${parsed.user}:${parsed.pass}`);
    // Compare against every candidate so the time does not depend on which one matched.
    let found: Entry | null = null;
    for (const c of candidates) if (timingSafeEqual(c.secret, presented)) found ??= c;
    if (!found) return null;
    // An admin token that is also listed as a plain token stays an admin.
    const admin = found.admin || (parsed.scheme === 'bearer' && tokens.some((t) => t.admin && t.identity === found.identity));
    return { owner: owners.get(found)!, admin, kind: parsed.scheme };
  };

  return {
    enabled,
    challenge: challenges.join(', '),
    identify,
    check: (authorization) => identify(authorization) !== null,
    label: (owner) => (owner === ANONYMOUS_OWNER ? owner : owner.slice(0, 12)),
  };
}
