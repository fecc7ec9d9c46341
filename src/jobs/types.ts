/** Jobs and their events, independent of GraphQL (the schema maps these 1:1). */
import { randomUUID } from 'node:crypto';
import type { OutputImage, PreviewImage, EditUsage } from '../inference/editRunner.js';
import type { HistoryPage, HistoryQuery, JobMetadata } from './history.js';
import { ServiceError } from '../errors.js';

export type JobStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

/** Why a job was cancelled: a client asked (cancelEditJob, a REST client that went away), the server shut down, or a time limit. */
export type CancelReason = 'CLIENT' | 'SHUTDOWN' | 'TIMEOUT';

export interface JobError {
  code: string;
  message: string;
}

export interface JobResult {
  /** Unix seconds. */
  created: number;
  images: OutputImage[];
  usage: EditUsage & { queueTimeSeconds: number };
  /** EditOutput's warnings (absent in results stored before they existed). */
  warnings?: string[];
}

export interface JobProgress {
  step: number;
  totalSteps: number;
  /** 'loading-model' while the model's sessions open (step 0); absent for denoise steps. */
  phase?: 'loading-model';
  previews: PreviewImage[];
  /** Unix time in ms when the step finished on the inference worker. */
  emittedAt: number;
}

export interface JobSnapshot {
  id: string;
  modelId: string;
  status: JobStatus;
  queuePosition: number | null;
  /** Unix seconds. */
  createdAt: number;
  inputImages: number;
  n: number;
  progress: JobProgress | null;
  result: JobResult | null;
  error: JobError | null;
  /** The submitting principal's id (an HMAC, never a secret); see src/jobs/access.ts. Not exposed by the API. */
  owner: string;
  /** Set when CANCELLED. */
  cancelReason?: CancelReason | null;
  /** The client's metadata (history.ts), echoed back and sent in webhooks; null when none was given. */
  metadata?: JobMetadata | null;
}

/** A job's snapshot when it is accepted: queued at `position`, nothing run yet. */
export function queuedSnapshot(
  job: { modelId: string; inputImages: number; n: number; owner: string; metadata: JobMetadata | null },
  position: number,
): JobSnapshot {
  return { id: randomUUID(), status: 'QUEUED', queuePosition: position, createdAt: Date.now() / 1000, progress: null, result: null, error: null, ...job };
}

export type JobEvent =
  | { type: 'queued'; jobId: string; status: 'QUEUED'; position: number }
  | ({ type: 'progress'; jobId: string; status: 'RUNNING' } & JobProgress)
  | { type: 'completed'; jobId: string; status: 'SUCCEEDED'; result: JobResult }
  | { type: 'failed'; jobId: string; status: 'FAILED'; error: JobError }
  | { type: 'cancelled'; jobId: string; status: 'CANCELLED'; reason: CancelReason };

export const isTerminal = (e: JobEvent): boolean => e.type === 'completed' || e.type === 'failed' || e.type === 'cancelled';

/**
 * What the API needs from a job system: the in-process JobService, or the Redis/BullMQ backend
 * that spreads jobs over worker processes. Methods may answer synchronously or with a promise.
 */
export interface JobBackend {
  /**
   * Queues a job owned by `owner`; QUOTA_EXCEEDED when the owner's tenant quota is used up. Jobs
   * are served fairly across owners, and by `priority` (checkPriority) within one.
   */
  submit(
    modelId: string,
    edit: import('../inference/request.js').ResolvedEdit,
    inputs: import('../inference/editRunner.js').EditInput[],
    owner: string,
    metadata?: JobMetadata | null,
    priority?: number,
  ): JobSnapshot | Promise<JobSnapshot>;
  /** One page of jobs still kept, newest first (history.ts); unchecked: JobAccess sets the owner. A SUCCEEDED job's `result` may be left null (read it with get). */
  list(query: HistoryQuery): HistoryPage | Promise<HistoryPage>;
  /** Unchecked: ownership is JobAccess's job (src/jobs/access.ts). */
  get(id: string): JobSnapshot | null | Promise<JobSnapshot | null>;
  /** The job's owner id, or null for an unknown id: a small read that costs the same either way (no result is loaded). */
  ownerOf(id: string): string | null | Promise<string | null>;
  cancel(id: string, reason?: CancelReason): JobSnapshot | Promise<JobSnapshot>;
  /** The job's current state first, then live events; ends after exactly one terminal event. */
  subscribe(id: string): AsyncIterableIterator<JobEvent> | Promise<AsyncIterableIterator<JobEvent>>;
  stats(): { queued: number; running: number; jobs: number } | Promise<{ queued: number; running: number; jobs: number }>;
  /** Declared input pixels of this process's unfinished jobs (in memory); absent where jobs live elsewhere. */
  pendingInputPixels?(): number;
  shutdown(graceMs: number): Promise<void>;
}

/** What a late subscriber sees first; a running job without progress yet has nothing to report. */
export function currentEvent(s: JobSnapshot): JobEvent | null {
  switch (s.status) {
    case 'QUEUED':
      return { type: 'queued', jobId: s.id, status: 'QUEUED', position: s.queuePosition ?? 1 };
    case 'RUNNING':
      return s.progress ? { type: 'progress', jobId: s.id, status: 'RUNNING', ...s.progress } : null;
    case 'SUCCEEDED':
      return { type: 'completed', jobId: s.id, status: 'SUCCEEDED', result: s.result! };
    case 'FAILED':
      return { type: 'failed', jobId: s.id, status: 'FAILED', error: s.error! };
    case 'CANCELLED':
      return { type: 'cancelled', jobId: s.id, status: 'CANCELLED', reason: s.cancelReason ?? 'CLIENT' };
  }
}

/** Per-tenant bounds on unfinished (queued or running) jobs; 0 turns a bound off. */
export interface TenantQuota {
  maxJobs: number;
  maxImages: number;
}

export function quotaExceeded(quota: TenantQuota, jobs: number, images: number, more: number): string | null {
  if (quota.maxJobs > 0 && jobs + 1 > quota.maxJobs)
    return `tenant quota exceeded: you have ${jobs} unfinished jobs and the limit is ${quota.maxJobs} per tenant; retry when one has finished`;
  if (quota.maxImages > 0 && images + more > quota.maxImages)
    return `tenant quota exceeded: your unfinished jobs have ${images} output images, this one ${more}, and the limit is ${quota.maxImages} per tenant; retry when one has finished`;
  return null;
}

/** `priority` orders a tenant's own queued jobs (higher first); it never moves a job past another tenant's turn. */
export const PRIORITY = { min: -10, default: 0, max: 10 } as const;

/** The priority asked for, checked: an integer in PRIORITY's range; above the default only for admins (FORBIDDEN). */
export function checkPriority(priority: number | null | undefined, admin: boolean): number {
  if (priority == null) return PRIORITY.default;
  if (!Number.isInteger(priority) || priority < PRIORITY.min || priority > PRIORITY.max)
    throw new ServiceError('BAD_USER_INPUT', `priority must be an integer from ${PRIORITY.min} to ${PRIORITY.max} (got ${priority})`);
  if (priority > PRIORITY.default && !admin)
    throw new ServiceError('FORBIDDEN', `only an admin may raise priority above ${PRIORITY.default}; you may lower it (down to ${PRIORITY.min})`);
  return priority;
}
