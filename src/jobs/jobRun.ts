/**
 * One attempt at running a job on the inference engine, shared by both job backends (jobService.ts in memory,
 * redisWorker.ts on Redis): its abort signal, its time limit, and the one terminal event its
 * outcome maps to. A cancel or the time limit stops the engine with an error; that error is never
 * what the client sees: the first stop wins (EditCancelled with its reason, or EditFailed TIMEOUT).
 */
import type { EditOutput } from '../inference/editRunner.js';
import { type ServiceError, toServiceError } from '../errors.js';
import type { CancelReason, JobEvent } from './types.js';

export type TerminalEvent = Extract<JobEvent, { type: 'completed' | 'failed' | 'cancelled' }>;

export type RunOutcome = { output: EditOutput } | { error: unknown };

export class JobAttempt {
  private readonly abort = new AbortController();
  private stop: { kind: 'CANCELLED'; reason: CancelReason } | { kind: 'TIMEOUT' } | null = null;
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    readonly jobId: string,
    private readonly timeoutMs: number,
  ) {
    this.timer = timeoutMs > 0 ? setTimeout(() => this.halt({ kind: 'TIMEOUT' }), timeoutMs).unref() : null;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Asks the run to stop for `reason`; false when it is already stopping (the first stop wins). */
  cancel(reason: CancelReason): boolean {
    return this.halt({ kind: 'CANCELLED', reason });
  }

  /**
   * The terminal event for the engine's outcome (the time limit is cleared). `error` is set for an
   * engine failure that was not a stop: the Redis worker may retry those instead of recording them.
   */
  finish(outcome: RunOutcome, queueTimeSeconds: number): { event: TerminalEvent; error: ServiceError | null } {
    this.close();
    const jobId = this.jobId;
    if ('output' in outcome) {
      const { images, usage, warnings } = outcome.output;
      return {
        event: {
          type: 'completed',
          jobId,
          status: 'SUCCEEDED',
          result: { created: Date.now() / 1000, images, usage: { ...usage, queueTimeSeconds }, warnings },
        },
        error: null,
      };
    }
    if (this.stop?.kind === 'CANCELLED') return { event: { type: 'cancelled', jobId, status: 'CANCELLED', reason: this.stop.reason }, error: null };
    if (this.stop?.kind === 'TIMEOUT')
      return {
        event: { type: 'failed', jobId, status: 'FAILED', error: { code: 'TIMEOUT', message: `the job ran longer than ${this.timeoutMs / 1000} s` } },
        error: null,
      };
    const error = toServiceError(outcome.error);
    return { event: { type: 'failed', jobId, status: 'FAILED', error: { code: error.code, message: error.message } }, error };
  }

  /** Clears the time limit (a run that ends without an outcome: its job was not run after all). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private halt(stop: NonNullable<JobAttempt['stop']>): boolean {
    if (this.stop) return false;
    this.stop = stop;
    this.abort.abort();
    return true;
  }
}
