/**
 * The executor on an inference worker thread (worker.ts). A job's AbortSignal sets a shared flag
 * that the worker reads before every step (its event loop is busy while a job runs). A worker that
 * dies fails the jobs it was running with WORKER_CRASHED, is logged, counted (`restarts`) and
 * started again at once; jobs that arrive meanwhile wait for the new one.
 */
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from './spawnWorker.js';
import type { EditOutput, ProgressUpdate, RunOptions } from './editRunner.js';
import type { Executor, ExecutorJob } from './executor.js';
import type { ModelState } from './modelHost.js';
import { ModelFolderError } from './modelFolder.js';
import type { ModelSpec } from './modelFolder.js';
import type { EngineLog } from './log.js';
import { InferenceError } from './errors.js';
import type { WorkerInit, WorkerRequest, WorkerResponse } from './workerProtocol.js';

export interface WorkerExecutorEvents {
  log?: EngineLog;
  onState(modelId: string, state: ModelState, provider: string | null, reason?: string): void;
}

interface PendingRun {
  resolve: (output: EditOutput) => void;
  reject: (err: Error) => void;
  onProgress?: (update: ProgressUpdate) => void;
}

export class WorkerExecutor implements Executor {
  restarts = 0;
  private worker: Worker | null = null;
  private starting: Promise<Worker> | null = null;
  private closing = false;
  private readonly pending = new Map<number, PendingRun>();
  private nextRunId = 1;

  private constructor(
    private readonly init: WorkerInit,
    private readonly events: WorkerExecutorEvents,
  ) {}

  /** Starts the worker; resolves once its preloaded models are open (ModelFolderError if they cannot be). */
  static async open(init: WorkerInit, events: WorkerExecutorEvents): Promise<WorkerExecutor> {
    const executor = new WorkerExecutor(init, events);
    await executor.ready();
    return executor;
  }

  private ready(): Promise<Worker> {
    this.starting ??= this.spawn().catch((err: unknown) => {
      this.starting = null;
      throw err;
    });
    return this.starting;
  }

  private spawn(): Promise<Worker> {
    const worker = spawnModuleWorker('worker', this.init);
    let error: Error | null = null;
    return new Promise<Worker>((resolve, reject) => {
      worker.on('message', (message: WorkerResponse) => {
        switch (message.type) {
          case 'ready':
            this.worker = worker;
            resolve(worker);
            break;
          case 'init-error':
            reject(new ModelFolderError(message.message));
            break;
          case 'log':
            this.events.log?.(message.message, message.level);
            break;
          case 'model-state':
            this.events.onState(message.modelId, message.state, message.provider, message.reason);
            break;
          case 'progress':
            this.pending.get(message.runId)?.onProgress?.(message.update);
            break;
          case 'done':
            this.take(message.runId)?.resolve(message.output);
            break;
          case 'failed':
            this.take(message.runId)?.reject(new InferenceError(message.code, message.message));
            break;
        }
      });
      worker.on('error', (err) => (error = err));
      worker.on('exit', (code) => {
        const why = error ? error.message : `exit code ${code}`;
        reject(new InferenceError('WORKER_CRASHED', `the inference worker did not start (${why})`));
        if (this.worker !== worker) return; // it never became ready: `open` or `ready` reports it
        this.worker = null;
        this.starting = null;
        if (!this.closing) this.restart(why);
      });
    });
  }

  /** A dead worker: fail what it was running, mark its models unloaded, start another. */
  private restart(why: string): void {
    const running = this.pending.size;
    const failure = new InferenceError(
      'WORKER_CRASHED',
      `the inference worker died while running this job (${why}); it has been restarted: submit the job again`,
    );
    for (const p of this.pending.values()) p.reject(failure);
    this.pending.clear();
    for (const { id } of this.init.models) this.events.onState(id, 'available', null);
    this.restarts += 1;
    this.events.log?.(`inference worker died (${why}) with ${running} job(s) running; restarting it (restart ${this.restarts})`, 'error');
    this.ready().then(
      () => this.events.log?.('inference worker restarted', 'info'),
      (err: unknown) => this.events.log?.(`inference worker restart failed (${(err as Error).message}); the next job starts it again`, 'error'),
    );
  }

  private take(runId: number): PendingRun | undefined {
    const p = this.pending.get(runId);
    this.pending.delete(runId);
    return p;
  }

  run(modelId: string, jobs: readonly ExecutorJob[], options: RunOptions): Promise<EditOutput>[] {
    const runs: Extract<WorkerRequest, { type: 'run' }>['runs'] = [];
    const results = jobs.map((job) => {
      const cancelFlag = new SharedArrayBuffer(4);
      const runId = this.nextRunId++;
      runs.push({ runId, edit: job.edit, inputs: [...job.inputs], cancelFlag });
      const onAbort = (): void => void Atomics.store(new Int32Array(cancelFlag), 0, 1);
      job.signal?.addEventListener('abort', onAbort, { once: true });
      return new Promise<EditOutput>((resolve, reject) => {
        this.pending.set(runId, { resolve, reject, onProgress: job.onProgress });
      }).finally(() => job.signal?.removeEventListener('abort', onAbort));
    });
    this.ready().then(
      (worker) => worker.postMessage({ type: 'run', modelId, runs, options } satisfies WorkerRequest),
      (err: unknown) => runs.forEach((run) => this.take(run.runId)?.reject(err as Error)),
    );
    return results;
  }

  addModel(spec: ModelSpec): void {
    const model = { id: spec.id, dir: spec.dir };
    this.init.models = [...this.init.models.filter((m) => m.id !== spec.id), model]; // a restarted worker reads it too
    // Posted before any run that follows (the same promise's callbacks run in order).
    this.ready().then(
      (worker) => worker.postMessage({ type: 'add-model', ...model } satisfies WorkerRequest),
      () => undefined, // the next start reads it from init
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    const worker = await this.starting?.catch(() => null);
    if (!worker) return;
    this.worker = null;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage({ type: 'close' } satisfies WorkerRequest);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    await worker.terminate();
  }
}
