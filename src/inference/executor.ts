/**
 * Executors run edits on loaded models. Two implementations with one contract: `InlineExecutor`
 * runs on the calling thread (CLI, benchmarks, tests), `WorkerExecutor` (workerExecutor.ts) on an
 * inference worker thread so the server's event loop stays free. Both cancel the same way: a job's
 * AbortSignal, read before every denoise step, fails it with CANCELLED.
 */
import type { EditInput, EditOutput, EditTask, ProgressUpdate, RunOptions } from './editRunner.js';
import type { ResolvedEdit } from './request.js';
import type { ModelSpec } from './modelFolder.js';
import { ModelHost } from './modelHost.js';
import type { HostOptions } from './modelHost.js';
import { cancelledError } from './errors.js';

/** One job for an executor: several of them (equal `mergeKey`) share pipeline calls. */
export interface ExecutorJob {
  edit: ResolvedEdit;
  inputs: readonly EditInput[];
  onProgress?: (update: ProgressUpdate) => void;
  /** Aborting cancels the job before its next denoise step (CANCELLED). */
  signal?: AbortSignal;
}

export interface Executor {
  /** Runs `jobs` on `modelId` as shared pipeline calls; each promise settles on its own, as soon as its job is done. */
  run(modelId: string, jobs: readonly ExecutorJob[], options: RunOptions): Promise<EditOutput>[];
  /** A model folder that became readable after start. */
  addModel(spec: ModelSpec): void;
  /** Times the executor's thread died and was started again (always 0 inline). */
  readonly restarts: number;
  /** Finishes the running pipeline call and releases every session. */
  close(): Promise<void>;
}

/** Stops a task when `aborted()` says so, with the one cancellation error. */
export function abortCheck(aborted: () => boolean): () => void {
  return () => {
    if (aborted()) throw cancelledError();
  };
}

export class InlineExecutor implements Executor {
  readonly restarts = 0;

  private constructor(private readonly host: ModelHost) {}

  static async open(specs: readonly ModelSpec[], options: HostOptions): Promise<InlineExecutor> {
    return new InlineExecutor(await ModelHost.open(specs, options));
  }

  run(modelId: string, jobs: readonly ExecutorJob[], options: RunOptions): Promise<EditOutput>[] {
    const results: Promise<EditOutput>[] = [];
    const tasks = jobs.map((job): EditTask => {
      let onSettled!: EditTask['onSettled'];
      results.push(new Promise<EditOutput>((resolve, reject) => (onSettled = (o) => ('output' in o ? resolve(o.output) : reject(o.error)))));
      return { edit: job.edit, inputs: job.inputs, onProgress: job.onProgress, throwIfAborted: abortCheck(() => job.signal?.aborted === true), onSettled };
    });
    void this.host.run(modelId, tasks, options);
    return results;
  }

  addModel(spec: ModelSpec): void {
    this.host.addModel(spec);
  }

  close(): Promise<void> {
    return this.host.close();
  }
}
