/**
 * The in-process job store and queue: jobs run one at a time on the inference engine (one device),
 * in fair order (fairOrder: round-robin over owners, priority then FIFO within one); each job's events fan out to its own subscribers; finished jobs stay readable for the
 * retention period, their inputs freed at once and their results freed at expiry.
 */
import type { InferenceEngine } from '../inference/engine.js';
import type { EditInput } from '../inference/editRunner.js';
import type { ResolvedEdit } from '../inference/request.js';
import { ServiceError } from '../errors.js';
import { JobEventStream } from './eventStream.js';
import { JobAttempt, type RunOutcome, type TerminalEvent } from './jobRun.js';
import { type ResultStore, storeResult } from './resultStore.js';
import { declaredPixels, type MergeCandidate, MergeGroup } from './merging.js';
import type { CancelReason, JobBackend, JobEvent, JobProgress, JobSnapshot, TenantQuota } from './types.js';
import { currentEvent, queuedSnapshot, quotaExceeded } from './types.js';
import { ownerLabel } from './access.js';
import { type HistoryPage, type HistoryQuery, type JobMetadata, pageOf } from './history.js';

export interface JobServiceConfig {
  /** How long finished jobs stay readable. */
  retentionMs: number;
  /** Queued (not yet running) jobs accepted at once; beyond it QUEUE_FULL. */
  maxQueuedJobs: number;
  /** A running job is ended with TIMEOUT after this long; 0 disables. */
  jobTimeoutMs: number;
  /** Cross-request batching: run compatible queued jobs in one pipeline call (default true). */
  mergeJobs?: boolean;
  /** Declared input pixels of all jobs merged into one pipeline call (default: no bound). */
  maxMergedInputPixels?: number;
  /** Per-owner bounds on unfinished jobs (null: none, e.g. with auth off: one tenant). */
  tenantQuota?: TenantQuota | null;
  /** Sees every event of every job (metrics). */
  onEvent?: (event: JobEvent) => void;
  /** Where results are put before their completed event (resultStore.ts; unset: the job store only). */
  resultStore?: ResultStore;
  log?: (fields: Record<string, unknown>, message: string) => void;
}

interface Job {
  snapshot: JobSnapshot;
  edit: ResolvedEdit;
  inputs: EditInput[] | null;
  /** Declared pixels of its inputs and references (0 when unknown; declaredPixels). */
  pixels: number;
  enqueuedAt: number;
  /** Within its owner's jobs: higher runs first (see fairOrder). */
  priority: number;
  /** Submission order (FIFO tie-break). */
  seq: number;
  /** Set while it runs. */
  run: JobAttempt | null;
  subscribers: Set<JobEventStream>;
  expiresAt: number | null;
}

const candidate = (job: Job): MergeCandidate => ({
  modelId: job.snapshot.modelId,
  edit: job.edit,
  images: job.snapshot.inputImages,
  pixels: job.pixels,
  masked: job.inputs?.some((i) => i.mask) ?? false,
});

/**
 * The queue in the order it is served: owners take turns, the least recently served first (an
 * owner with nothing queued or running is forgotten and counts as never served; ties: the owner whose
 * first job is older); each owner's jobs by priority, then submission order. So one owner's
 * backlog holds another owner's job back by at most the call already running. With auth off every
 * job has one owner and this is priority, then FIFO.
 */
export function fairOrder<T extends { owner: string; priority: number; seq: number }>(queue: readonly T[], lastServed: ReadonlyMap<string, number>): T[] {
  const byOwner = new Map<string, T[]>();
  for (const j of [...queue].sort((a, b) => b.priority - a.priority || a.seq - b.seq)) {
    const list = byOwner.get(j.owner);
    if (list) list.push(j);
    else byOwner.set(j.owner, [j]);
  }
  const owners = [...byOwner.entries()].sort(
    ([a, ja], [b, jb]) => (lastServed.get(a) ?? 0) - (lastServed.get(b) ?? 0) || Math.min(...ja.map((j) => j.seq)) - Math.min(...jb.map((j) => j.seq)),
  );
  const order: T[] = [];
  for (let round = 0; order.length < queue.length; round++) for (const [, jobs] of owners) if (round < jobs.length) order.push(jobs[round]!);
  return order;
}

const fairKey = (job: Job) => ({ owner: job.snapshot.owner, priority: job.priority, seq: job.seq, job });

export class JobService implements JobBackend {
  private jobs = new Map<string, Job>();
  /** Queued jobs in submission order; fairOrder gives the order they are served in. */
  private queue: Job[] = [];
  private seq = 0;
  /** Per owner with queued jobs: the number of the call that last served it (fairOrder). */
  private lastServed = new Map<string, number>();
  private calls = 0;
  /** Jobs in pipeline calls: the group that holds the engine, and earlier ones still decoding or encoding. */
  private running = new Set<Job>();
  /**
   * A group holds the engine until every job of it has finished denoising (or settled); then the
   * next group is taken, so it is prepared and conditioned while the last one decodes and encodes.
   */
  private engineHeld = false;
  private accepting = true;
  private sweeper: NodeJS.Timeout;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly engine: InferenceEngine,
    private readonly config: JobServiceConfig,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(config.retentionMs, 30_000)).unref();
  }

  /** Queues a validated edit; returns the job at once. */
  submit(modelId: string, edit: ResolvedEdit, inputs: EditInput[], owner: string, metadata: JobMetadata | null = null, priority = 0): JobSnapshot {
    if (!this.accepting) throw new ServiceError('UNAVAILABLE', 'the server is shutting down and takes no new jobs');
    if (this.queue.length >= this.config.maxQueuedJobs) {
      throw new ServiceError('QUEUE_FULL', `the queue is full (${this.config.maxQueuedJobs} jobs waiting); retry later`, { retryAfterSeconds: 5 });
    }
    const quota = this.config.tenantQuota;
    if (quota) {
      let jobs = 0;
      let images = 0;
      for (const j of this.jobs.values()) {
        if (j.snapshot.owner !== owner || (j.snapshot.status !== 'QUEUED' && j.snapshot.status !== 'RUNNING')) continue;
        jobs += 1;
        images += j.snapshot.inputImages * j.snapshot.n;
      }
      const refusal = quotaExceeded(quota, jobs, images, inputs.length * edit.n);
      if (refusal) throw new ServiceError('QUOTA_EXCEEDED', refusal, { retryAfterSeconds: 5 });
    }
    const job: Job = {
      snapshot: queuedSnapshot({ modelId, inputImages: inputs.length, n: edit.n, owner, metadata }, this.queue.length + 1),
      edit,
      inputs,
      pixels: declaredPixels(inputs, edit),
      enqueuedAt: performance.now(),
      priority,
      seq: this.seq++,
      run: null,
      subscribers: new Set(),
      expiresAt: null,
    };
    this.jobs.set(job.snapshot.id, job);
    this.queue.push(job);
    this.publishPositions();
    this.log(job, 'job queued', { position: job.snapshot.queuePosition, images: inputs.length, n: edit.n, priority });
    const snapshot = { ...job.snapshot };
    queueMicrotask(() => this.pump());
    return snapshot;
  }

  get(id: string): JobSnapshot | null {
    const job = this.jobs.get(id);
    return job ? { ...job.snapshot } : null;
  }

  list(query: HistoryQuery): HistoryPage {
    return pageOf(
      [...this.jobs.values()].map((j) => ({ ...j.snapshot })),
      query,
    );
  }

  ownerOf(id: string): string | null {
    return this.jobs.get(id)?.snapshot.owner ?? null;
  }

  /** Cancels a queued or running job; a finished job is returned unchanged. */
  cancel(id: string, reason: CancelReason = 'CLIENT'): JobSnapshot {
    const job = this.require(id);
    const s = job.snapshot;
    if (s.status === 'QUEUED') {
      this.queue = this.queue.filter((j) => j !== job);
      this.finish(job, { type: 'cancelled', jobId: s.id, status: 'CANCELLED', reason });
      this.publishPositions();
    } else if (s.status === 'RUNNING') {
      job.run?.cancel(reason);
    }
    return { ...job.snapshot };
  }

  /** The job's current state first (position, latest progress or final event), then live events. */
  subscribe(id: string): AsyncIterableIterator<JobEvent> {
    const job = this.require(id);
    const stream = new JobEventStream(() => job.subscribers.delete(stream));
    const current = currentEvent(job.snapshot);
    job.subscribers.add(stream);
    if (current) stream.push(current);
    return stream;
  }

  pendingInputPixels(): number {
    let pixels = 0;
    for (const job of this.jobs.values()) if (job.inputs) pixels += job.pixels;
    return pixels;
  }

  stats(): { queued: number; running: number; jobs: number } {
    return { queued: this.queue.length, running: this.running.size, jobs: this.jobs.size };
  }

  /** Stops taking jobs, lets queued and running ones finish within `graceMs`, then cancels the rest. */
  async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    const idle = new Promise<void>((resolve) => {
      if (this.running.size === 0 && this.queue.length === 0) resolve();
      else this.idleWaiters.push(resolve);
    });
    const timedOut = await Promise.race([idle.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref())]);
    if (timedOut) {
      for (const job of [...this.queue]) this.cancel(job.snapshot.id, 'SHUTDOWN');
      for (const job of [...this.running]) this.cancel(job.snapshot.id, 'SHUTDOWN');
      await idle;
    }
    clearInterval(this.sweeper);
  }

  private require(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new ServiceError('NOT_FOUND', `no job with id "${id}" (finished jobs are kept for ${Math.round(this.config.retentionMs / 1000)} s)`);
    return job;
  }

  private emit(job: Job, event: JobEvent): void {
    this.config.onEvent?.(event);
    for (const s of job.subscribers) s.push(event);
  }

  private ordered(): Job[] {
    return fairOrder(this.queue.map(fairKey), this.lastServed).map((k) => k.job);
  }

  private publishPositions(): void {
    this.ordered().forEach((job, i) => {
      if (job.snapshot.queuePosition !== i + 1) {
        job.snapshot.queuePosition = i + 1;
        this.emit(job, { type: 'queued', jobId: job.snapshot.id, status: 'QUEUED', position: i + 1 });
      }
    });
  }

  private finish(job: Job, event: TerminalEvent): void {
    const s = job.snapshot;
    s.status = event.status;
    s.queuePosition = null;
    if (event.type === 'completed') s.result = event.result;
    if (event.type === 'failed') s.error = event.error;
    if (event.type === 'cancelled') s.cancelReason = event.reason;
    job.inputs = null;
    job.expiresAt = Date.now() + this.config.retentionMs;
    this.log(job, `job ${event.status.toLowerCase()}`, event.type === 'failed' ? { code: event.error.code } : {});
    this.emit(job, event);
  }

  private pump(): void {
    if (this.queue.length === 0) {
      if (this.running.size === 0) this.idleWaiters.splice(0).forEach((r) => r());
      return;
    }
    if (this.engineHeld) return;
    const group = this.takeGroup();
    group.forEach((job) => this.running.add(job));
    this.publishPositions();
    this.engineHeld = true;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.engineHeld = false;
      this.pump();
    };
    void this.runGroup(group, release).finally(() => {
      group.forEach((job) => this.running.delete(job));
      release();
      this.pump();
    });
  }

  /**
   * The head in fair order, plus (when merging is on) later queued jobs, in fair order, that may
   * share its pipeline call (see MergeGroup). The head always runs first, so merging never delays
   * it and no job starves. Every owner in the call counts as served by it.
   */
  private takeGroup(): Job[] {
    const [head, ...rest] = this.ordered();
    const group = [head!];
    const merged = this.config.mergeJobs === false ? null : MergeGroup.start(this.engine, candidate(head!), this.config.maxMergedInputPixels);
    if (merged) for (const job of rest) if (merged.add(candidate(job))) group.push(job);
    this.queue = this.queue.filter((j) => !group.includes(j));
    this.calls += 1;
    for (const job of group) this.lastServed.set(job.snapshot.owner, this.calls);
    // An owner with nothing queued or running is forgotten: when it comes back it counts as never served.
    const active = new Set([...this.queue, ...this.running, ...group].map((j) => j.snapshot.owner));
    for (const owner of this.lastServed.keys()) if (!active.has(owner)) this.lastServed.delete(owner);
    return group;
  }

  /** Runs the group as one pipeline call; `release` once every job of it has denoised or settled. */
  private async runGroup(group: Job[], release: () => void): Promise<void> {
    const denoised = new Set<Job>();
    const denoisedOrSettled = (job: Job): void => {
      denoised.add(job);
      if (denoised.size === group.length) release();
    };
    const requests = group.map((job) => {
      const s = job.snapshot;
      s.status = 'RUNNING';
      s.queuePosition = null;
      const queueTimeSeconds = (performance.now() - job.enqueuedAt) / 1000;
      this.log(job, 'job running', { queueTimeSeconds, mergedJobs: group.length });
      job.run = new JobAttempt(s.id, this.config.jobTimeoutMs);
      return {
        queueTimeSeconds,
        request: {
          edit: job.edit,
          inputs: job.inputs!,
          signal: job.run.signal,
          onProgress: (update: JobProgress) => {
            s.progress = update;
            this.emit(job, { type: 'progress', jobId: s.id, status: 'RUNNING', ...update });
            if (update.phase === undefined && update.totalSteps > 0 && update.step === update.totalSteps) denoisedOrSettled(job);
          },
        },
      };
    });
    const outcomes = this.engine.editMany(
      group[0]!.snapshot.modelId,
      requests.map((r) => r.request),
    );
    await Promise.all(
      outcomes.map(async (outcome, i) => {
        const job = group[i]!;
        const settled: RunOutcome = await outcome.then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        );
        denoisedOrSettled(job);
        const finished = job.run!.finish(settled, requests[i]!.queueTimeSeconds);
        const { error } = finished;
        if ('error' in settled && (error?.code === 'INTERNAL' || error?.code === 'MODEL_ERROR'))
          this.log(job, 'job failed internally', { error: (settled.error as Error).message });
        const event = await storeResult(this.config.resultStore, finished.event);
        if (event.type === 'failed' && finished.event.type === 'completed') this.log(job, 'job result not stored', { error: event.error.message });
        job.run = null;
        this.finish(job, event);
      }),
    );
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, job] of this.jobs) if (job.expiresAt !== null && job.expiresAt <= now) this.jobs.delete(id);
  }

  private log(job: Job, message: string, fields: Record<string, unknown> = {}): void {
    this.config.log?.(
      { jobId: job.snapshot.id, owner: ownerLabel(job.snapshot.owner), model: job.snapshot.modelId, status: job.snapshot.status, ...fields },
      message,
    );
  }
}
