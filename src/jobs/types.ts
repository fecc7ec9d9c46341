/** Jobs and their events, independent of GraphQL (the schema maps these 1:1). */
import type { OutputImage, PreviewImage, EditUsage } from '../inference/editRunner.js';

export type JobStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

export interface JobError {
  code: string;
  message: string;
}

export interface JobResult {
  /** Unix seconds. */
  created: number;
  images: OutputImage[];
  usage: EditUsage & { queueTimeSeconds: number };
}

export interface JobProgress {
  step: number;
  totalSteps: number;
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
}

export type JobEvent =
  | { type: 'queued'; jobId: string; status: 'QUEUED'; position: number }
  | ({ type: 'progress'; jobId: string; status: 'RUNNING' } & JobProgress)
  | { type: 'completed'; jobId: string; status: 'SUCCEEDED'; result: JobResult }
  | { type: 'failed'; jobId: string; status: 'FAILED'; error: JobError }
  | { type: 'cancelled'; jobId: string; status: 'CANCELLED' };

export const isTerminal = (e: JobEvent): boolean => e.type === 'completed' || e.type === 'failed' || e.type === 'cancelled';

/**
 * What the API needs from a job system: the in-process JobService, or the Redis/BullMQ backend
 * that spreads jobs over worker processes. Methods may answer synchronously or with a promise.
 */
export interface JobBackend {
  submit(modelId: string, edit: import('../inference/request.js').ResolvedEdit, inputs: import('../inference/editRunner.js').EditInput[]): JobSnapshot | Promise<JobSnapshot>;
  get(id: string): JobSnapshot | null | Promise<JobSnapshot | null>;
  cancel(id: string): JobSnapshot | Promise<JobSnapshot>;
  /** The job's current state first, then live events; ends after exactly one terminal event. */
  subscribe(id: string): AsyncIterableIterator<JobEvent> | Promise<AsyncIterableIterator<JobEvent>>;
  stats(): { queued: number; running: number; jobs: number } | Promise<{ queued: number; running: number; jobs: number }>;
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
      return { type: 'cancelled', jobId: s.id, status: 'CANCELLED' };
  }
}
