/**
 * Per-tenant access to jobs. Every job stores its owner (an HMAC of the submitting credential,
 * see src/server/auth.ts); a viewer sees a job when it owns it or is an admin. Anything else is
 * answered exactly as an unknown id: the same lookup, the same comparison, the same NOT_FOUND.
 */
import { timingSafeEqual } from 'node:crypto';
import { ServiceError } from '../errors.js';
import type { JobBackend, JobEvent, JobSnapshot, JobStatus } from './types.js';
import { type HistoryPage, historyQuery } from './history.js';

export interface Viewer {
  readonly owner: string;
  readonly admin: boolean;
}

/** Does `viewer` see a job owned by `owner`? The comparison runs whether or not a job was found. */
export function canAccess(viewer: Viewer, owner: string | undefined): boolean {
  const a = Buffer.from(viewer.owner);
  const b = Buffer.from(owner ?? '');
  // timingSafeEqual needs equal lengths: compare a with itself when they differ (same work).
  const same = timingSafeEqual(a, a.length === b.length ? b : a) && a.length === b.length;
  return same || viewer.admin;
}

/** A short, non-secret form of an owner id for logs. */
export const ownerLabel = (owner: string | undefined): string => (owner ? owner.slice(0, 12) : 'none');

export const notFound = (id: string): ServiceError => new ServiceError('NOT_FOUND', `no job with id "${id}"`);

export class JobAccess {
  constructor(readonly backend: JobBackend) {}

  /**
   * The job when `viewer` may see it; null for an unknown id and for another tenant's job alike.
   * Only the owner id is read before the decision (in Redis a small key of its own), so a foreign
   * job with a large result costs what an unknown id costs.
   */
  async get(id: string, viewer: Viewer): Promise<JobSnapshot | null> {
    const owner = await this.backend.ownerOf(id);
    if (!canAccess(viewer, owner ?? undefined)) return null;
    const s = await this.backend.get(id);
    // An admin asking for an unknown id lands here too; a non-admin only for its own job.
    return s && canAccess(viewer, s.owner) ? s : null;
  }

  /** The viewer's jobs, or everyone's for an admin (history.ts). */
  async list(viewer: Viewer, args: { first?: number | null; after?: string | null; status?: JobStatus | null }): Promise<HistoryPage> {
    return this.backend.list(historyQuery(viewer.admin ? null : viewer.owner, args.first, args.after, args.status));
  }

  async cancel(id: string, viewer: Viewer): Promise<JobSnapshot> {
    if (!(await this.get(id, viewer))) throw notFound(id);
    return this.backend.cancel(id, 'CLIENT');
  }

  async subscribe(id: string, viewer: Viewer): Promise<AsyncIterableIterator<JobEvent>> {
    if (!(await this.get(id, viewer))) throw notFound(id);
    return this.backend.subscribe(id);
  }
}
