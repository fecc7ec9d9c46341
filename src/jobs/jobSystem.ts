/**
 * The job system: where jobs are stored and run, chosen once from the configuration. A backend is a
 * JobSystemModule (memorySystem.ts: jobs in this process; redisSystem.ts: REDIS_URL, jobs in Redis
 * run by worker processes); `createJobSystem` builds the first module that selects the config. A
 * new backend is one module plus one line in MODULES. Nothing else looks at which backend runs:
 * services.ts takes the API side, main.ts the worker, routes.ts /healthz from `health()`.
 */
import type { Logger } from 'pino';
import type { InferenceEngine } from '../inference/engine.js';
import type { ServerConfig } from '../server/config.js';
import type { IdempotencyStore } from './idempotency.js';
import { memoryJobSystem } from './memorySystem.js';
import { redisJobSystem } from './redisSystem.js';
import type { ResultUrls } from './resultUrls.js';
import type { JobBackend, JobEvent, TenantQuota } from './types.js';
import type { WebhookDispatcher } from './webhooks.js';

export interface JobSystemContext {
  config: ServerConfig;
  log: Logger;
  /** Runs jobs where this process runs them (runsInference); otherwise it only reads the model catalogue. */
  engine: InferenceEngine;
  /** Signs result URLs (webhooks' completed events carry them). */
  resultUrls: ResultUrls;
  /** Per-tenant bounds on unfinished jobs (null: none, e.g. with auth off: one tenant). */
  tenantQuota: TenantQuota | null;
  /** Sees every event this process's backend records (metrics). */
  onEvent?: (event: JobEvent) => void;
}

/** What an API process needs from the job system. */
export interface JobApi {
  backend: JobBackend;
  /** Idempotency-Key claims (shared by every API process where jobs are shared). */
  idempotency: IdempotencyStore;
  /** Checks jobs' webhooks at submission (and delivers them, where this process does). */
  webhooks: WebhookDispatcher;
}

/** A consumer of queued jobs that runs them on this process's engine (ROLE=worker or all with REDIS_URL). */
export interface JobWorker {
  readonly workerId: string;
  /** Finishes the current call, then stops taking jobs. */
  close(): Promise<void>;
}

/** Why the job system cannot serve now: /healthz answers 503 with these. */
export interface JobHealthProblem {
  status: string;
  reason: string;
}

export interface JobSystem {
  /** The module's name ('memory', 'redis'). */
  readonly name: string;
  /** The API side; null where this process serves no API (ROLE=worker). */
  readonly api: JobApi | null;
  /** The worker, when this process consumes jobs that live elsewhere; null otherwise (in memory the backend runs its own jobs). */
  readonly worker: JobWorker | null;
  /** null while the job system serves. */
  health(): Promise<JobHealthProblem | null>;
  /** No new jobs; the worker finishes its call and running jobs end within `graceMs`. */
  drain(graceMs: number): Promise<void>;
  /** Releases what is left (after drain). */
  close(): Promise<void>;
}

export interface JobSystemModule {
  readonly name: string;
  /** Whether this backend serves `config`; the first module in MODULES that does is used. */
  selects(config: ServerConfig): boolean;
  /** Why `config.role` cannot run on this backend (a fatal configuration error), or null. */
  roleProblem(config: ServerConfig): string | null;
  /** Whether this process runs jobs on its own engine (else the engine only reads the catalogue). */
  runsInference(config: ServerConfig): boolean;
  create(context: JobSystemContext): Promise<JobSystem>;
}

/** The backends, in order of preference. */
const MODULES: readonly JobSystemModule[] = [redisJobSystem, memoryJobSystem];

/** The backend `config` selects. */
export function jobSystemModule(config: ServerConfig): JobSystemModule {
  const found = MODULES.find((m) => m.selects(config));
  if (!found) throw new Error('no job backend serves this configuration');
  return found;
}

export function createJobSystem(context: JobSystemContext): Promise<JobSystem> {
  return jobSystemModule(context.config).create(context);
}
