/**
 * Job history (`editJobs`) and client metadata. A listing is newest first: by creation time in ms,
 * then by id, both descending; a cursor names the last job a page returned (its time and id), so a
 * page after it is the same whether or not jobs were added or expired meanwhile. Jobs are listed
 * while they are kept (finished ones for JOB_RETENTION_SECONDS).
 */
import { ServiceError } from '../errors.js';
import type { JobSnapshot, JobStatus } from './types.js';

/** Client metadata: a JSON object of at most this many bytes (as compact JSON, UTF-8). */
export const MAX_METADATA_BYTES = 4096;
export type JobMetadata = Record<string, unknown>;

/** A JSON object within MAX_METADATA_BYTES: BAD_USER_INPUT for anything else, PAYLOAD_TOO_LARGE past the bound. */
export function checkMetadata(value: unknown): JobMetadata {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ServiceError('BAD_USER_INPUT', 'metadata must be a JSON object');
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_METADATA_BYTES) throw new ServiceError('PAYLOAD_TOO_LARGE', `metadata is ${bytes} bytes as JSON; the limit is ${MAX_METADATA_BYTES} bytes`);
  return value as JobMetadata;
}

/** Metadata sent as JSON text (REST's `metadata` field). */
export function parseMetadata(text: string): JobMetadata {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ServiceError('BAD_USER_INPUT', 'metadata must be a JSON object (it is not valid JSON)');
  }
  return checkMetadata(value);
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** What one page asks for; `owner` null lists every tenant's jobs (admins). */
export interface HistoryQuery {
  owner: string | null;
  first: number;
  after: HistoryCursor | null;
  status: JobStatus | null;
}

export interface HistoryCursor {
  /** Creation time, Unix ms. */
  ms: number;
  id: string;
}

export interface HistoryPage {
  jobs: JobSnapshot[];
  hasNextPage: boolean;
}

export const createdMs = (s: JobSnapshot): number => Math.round(s.createdAt * 1000);

export const encodeCursor = (s: JobSnapshot): string => Buffer.from(`${createdMs(s)}:${s.id}`).toString('base64url');

/** The arguments of `editJobs` as a query: BAD_USER_INPUT for a page size out of range or a cursor this server did not make. */
export function historyQuery(
  owner: string | null,
  first: number | null | undefined,
  after: string | null | undefined,
  status: JobStatus | null | undefined,
): HistoryQuery {
  const size = first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) throw new ServiceError('BAD_USER_INPUT', `first must be from 1 to ${MAX_PAGE_SIZE}`);
  let cursor: HistoryCursor | null = null;
  if (after != null) {
    const m = /^(\d{1,15}):([\w-]{1,64})$/.exec(Buffer.from(after, 'base64url').toString());
    if (!m) throw new ServiceError('BAD_USER_INPUT', 'after is not a cursor from editJobs (use a pageInfo.endCursor or an edge cursor)');
    cursor = { ms: Number(m[1]), id: m[2]! };
  }
  return { owner, first: size, after: cursor, status: status ?? null };
}

/** Is `s` after the cursor in listing order (older, or as old with a smaller id)? */
export function isAfter(ms: number, id: string, cursor: HistoryCursor | null): boolean {
  return !cursor || ms < cursor.ms || (ms === cursor.ms && id < cursor.id);
}

/** Does the job belong in this listing (owner and status; the cursor is the caller's)? */
export const matches = (s: JobSnapshot, q: HistoryQuery): boolean => (q.owner === null || s.owner === q.owner) && (q.status === null || s.status === q.status);

/** One page of in-memory snapshots. */
export function pageOf(snapshots: Iterable<JobSnapshot>, q: HistoryQuery): HistoryPage {
  const listed = [...snapshots]
    .filter((s) => matches(s, q) && isAfter(createdMs(s), s.id, q.after))
    .sort((a, b) => createdMs(b) - createdMs(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return { jobs: listed.slice(0, q.first), hasNextPage: listed.length > q.first };
}
