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
