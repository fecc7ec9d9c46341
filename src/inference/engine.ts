/**
 * The inference engine's public face for the rest of the server: the catalogue of models (read
 * on the main thread) and `edit`, which runs on the inference worker thread and reports progress
 * back. `threading: 'inline'` runs the same code on the calling thread (CLI, benchmarks).
 */
import { Worker } from 'node:worker_threads';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from './modelFolder.js';
import { listModelFolders, readModelFolder, ModelFolderError } from './modelFolder.js';
import type { ExecutionProviderName } from './sessions.js';
import { ModelHost } from './modelHost.js';
import type { ModelState } from './modelHost.js';
import type { EditInput, EditOutput, EditTask, ProgressUpdate } from './editRunner.js';
import type { ResolvedEdit } from './request.js';
import { InferenceError } from './errors.js';
import type { WorkerInit, WorkerRequest, WorkerResponse } from './workerProtocol.js';

export interface EngineConfig {
  /** Folder whose sub-folders are model folders. */
  modelsDir: string;
  defaultModel?: string;
  /** Load only these model ids (default: all under modelsDir). */
  modelIds?: string[];
  provider?: ExecutionProviderName;
  intraOpThreads?: number;
  /** ONNX Runtime pool threads busy-wait between operators (see SessionConfig). */
  allowSpinning?: boolean;
  /** ONNX Runtime's CPU memory arena (see SessionConfig; default off). */
  cpuMemArena?: boolean;
  /** Memory a batch may use; default half of this machine's RAM. */
  memoryBudgetBytes?: number;
  /** Decoded-pixel bound per input (decompression-bomb guard). */
  maxInputPixels?: number;
  /** zlib level 0–9 of PNG outputs (see imageIO's DEFAULT_PNG_COMPRESSION_LEVEL). */
  pngCompressionLevel?: number;
  /** Models opened at start (default: the default model); the others load on first use. */
  preloadModels?: string[];
  /** Weights the loaded models may hold together (least recently used idle models are released). */
  modelMemoryBytes?: number;
  /** 'catalogue': read model folders only, no sessions (API processes that queue work for remote workers). */
  threading?: 'worker' | 'inline' | 'catalogue';
  log?: (message: string) => void;
}

export interface EditCallOptions {
  onProgress?: (update: ProgressUpdate) => void;
  signal?: AbortSignal;
}

export interface EditRequest extends EditCallOptions {
  edit: ResolvedEdit;
  inputs: readonly EditInput[];
}

export const DEFAULT_MAX_INPUT_PIXELS = 40_000_000;

export function defaultMemoryBudget(): number {
  return Math.floor(totalmem() * 0.5);
}

interface PendingRun {
  resolve: (output: EditOutput) => void;
  reject: (err: Error) => void;
  onProgress?: (update: ProgressUpdate) => void;
}

export class InferenceEngine {
  readonly memoryBudgetBytes: number;
  readonly maxInputPixels: number;
  private worker: Worker | null = null;
  private host: ModelHost | null = null;
  private pending = new Map<number, PendingRun>();
  private nextRunId = 1;
  private providersById: Record<string, string> = {};
  private readonly states = new Map<string, ModelState>();

  private constructor(
    private readonly config: EngineConfig,
    private readonly specs: Map<string, ModelSpec>,
    readonly defaultModelId: string,
  ) {
    this.memoryBudgetBytes = config.memoryBudgetBytes ?? defaultMemoryBudget();
    this.maxInputPixels = config.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  }

  /** Reads every model folder, then opens its sessions (in the worker unless inline). */
  static async start(config: EngineConfig): Promise<InferenceEngine> {
    const ids = config.modelIds ?? listModelFolders(config.modelsDir);
    if (ids.length === 0) throw new ModelFolderError(`no model folders (with model_index.json) under ${config.modelsDir}`);
    const specs = new Map(ids.map((id) => [id, readModelFolder(join(config.modelsDir, id), id)] as const));
    const defaultModel = config.defaultModel ?? (specs.has('tiny-edit') ? 'tiny-edit' : ids[0]!);
    if (!specs.has(defaultModel)) throw new ModelFolderError(`default model "${defaultModel}" is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    for (const id of config.preloadModels ?? []) {
      if (!specs.has(id)) throw new ModelFolderError(`PRELOAD_MODELS names "${id}", which is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    }
    const engine = new InferenceEngine(config, specs, defaultModel);
    if (config.threading !== 'catalogue') await engine.open();
    return engine;
  }

  private onState(modelId: string, state: ModelState, provider: string | null): void {
    this.states.set(modelId, state);
    if (provider) this.providersById[modelId] = provider;
    else delete this.providersById[modelId];
    this.config.log?.(`model ${modelId}: ${state}`);
  }

  private async open(): Promise<void> {
    const provider = this.config.provider ?? 'cpu';
    const preload = this.config.preloadModels ?? [this.defaultModelId];
    if (this.config.threading === 'inline') {
      this.host = await ModelHost.open([...this.specs.values()], {
        provider,
        intraOpThreads: this.config.intraOpThreads,
        allowSpinning: this.config.allowSpinning,
        cpuMemArena: this.config.cpuMemArena,
        log: this.config.log,
        preload,
        modelMemoryBytes: this.config.modelMemoryBytes,
        onState: (id, state, p) => this.onState(id, state, p),
      });
      return;
    }
    const init: WorkerInit = {
      models: [...this.specs.values()].map((s) => ({ id: s.id, dir: s.dir })),
      preload,
      modelMemoryBytes: this.config.modelMemoryBytes,
      provider,
      intraOpThreads: this.config.intraOpThreads,
      allowSpinning: this.config.allowSpinning,
      cpuMemArena: this.config.cpuMemArena,
    };
    const isTs = import.meta.url.endsWith('.ts');
    const workerUrl = new URL(isTs ? 'worker.ts' : 'worker.js', import.meta.url).href;
    // Running from TypeScript sources: the worker registers tsx's loader before importing itself
    // (Node 20 ignores --import in a worker's execArgv).
    const worker = isTs
      ? new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl)}); });`,
          { eval: true, workerData: init },
        )
      : new Worker(new URL(workerUrl), { workerData: init });
    this.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (message: WorkerResponse) => {
        switch (message.type) {
          case 'ready':
            resolve();
            break;
          case 'init-error':
            reject(new ModelFolderError(message.message));
            break;
          case 'log':
            this.config.log?.(message.message);
            break;
          case 'model-state':
            this.onState(message.modelId, message.state, message.provider);
            break;
          case 'progress':
            this.pending.get(message.runId)?.onProgress?.(message.update);
            break;
          case 'done':
            this.settle(message.runId, (p) => p.resolve(message.output));
            break;
          case 'failed':
            this.settle(message.runId, (p) => p.reject(new InferenceError(message.code, message.message)));
            break;
        }
      });
      worker.on('error', (err) => {
        reject(err);
        this.failAll(new InferenceError('INTERNAL', `inference worker crashed: ${err.message}`));
      });
      worker.on('exit', (code) => {
        this.worker = null;
        reject(new Error(`inference worker exited with code ${code}`));
        this.failAll(new InferenceError('INTERNAL', `inference worker exited (code ${code})`));
      });
    });
  }

  private settle(runId: number, fn: (p: PendingRun) => void): void {
    const p = this.pending.get(runId);
    if (!p) return;
    this.pending.delete(runId);
    fn(p);
  }

  private failAll(err: InferenceError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  models(): ModelSpec[] {
    return [...this.specs.values()];
  }

  /** The model for an id, or the default; NOT_FOUND names the known ids (ids are never paths). */
  model(id?: string | null): ModelSpec {
    const spec = this.specs.get(id ?? this.defaultModelId);
    if (!spec) throw new InferenceError('NOT_FOUND', `unknown model "${id}"; available: ${[...this.specs.keys()].join(', ')}`);
    return spec;
  }

  /** Execution provider of each loaded model. */
  providers(): Record<string, string> {
    return { ...this.providersById };
  }

  /** `loaded`, `loading`, or `available` (a folder that loads on first use). */
  modelState(id: string): ModelState {
    return this.states.get(id) ?? 'available';
  }

  /** One edit as its own pipeline call. */
  edit(modelId: string, edit: ResolvedEdit, inputs: readonly EditInput[], options: EditCallOptions = {}): Promise<EditOutput> {
    return this.editMany(modelId, [{ edit, inputs, ...options }])[0]!;
  }

  /**
   * Several compatible edits (equal `mergeKey`) as shared pipeline calls: each resolves with its
   * own output, or rejects with its own error, as soon as it is done.
   */
  editMany(modelId: string, requests: readonly EditRequest[]): Promise<EditOutput>[] {
    try {
      this.model(modelId);
    } catch (err) {
      return requests.map(() => Promise.reject(err));
    }
    if (this.config.threading === 'catalogue')
      return requests.map(() => Promise.reject(new InferenceError('INTERNAL', 'this process only queues work (ROLE=api); workers run it')));
    const runOptions = { memoryBudgetBytes: this.memoryBudgetBytes, maxInputPixels: this.maxInputPixels, pngCompressionLevel: this.config.pngCompressionLevel };
    const cancelled = (): InferenceError => new InferenceError('CANCELLED', 'the job was cancelled');
    if (this.host) {
      const host = this.host;
      const promises: Promise<EditOutput>[] = [];
      const tasks: EditTask[] = requests.map((r) => {
        let settle!: EditTask['onSettled'];
        promises.push(new Promise<EditOutput>((resolve, reject) => (settle = (o) => ('output' in o ? resolve(o.output) : reject(o.error)))));
        return {
          edit: r.edit,
          inputs: r.inputs,
          onProgress: r.onProgress,
          throwIfAborted: () => {
            if (r.signal?.aborted) throw cancelled();
          },
          onSettled: (o) => settle(o),
        };
      });
      void host.run(modelId, tasks, runOptions);
      return promises;
    }
    const runs: Extract<WorkerRequest, { type: 'run' }>['runs'] = [];
    const promises = requests.map((r) => {
      const cancelFlag = new SharedArrayBuffer(4);
      const runId = this.nextRunId++;
      runs.push({ runId, edit: r.edit, inputs: [...r.inputs], cancelFlag });
      const onAbort = (): void => void Atomics.store(new Int32Array(cancelFlag), 0, 1);
      r.signal?.addEventListener('abort', onAbort, { once: true });
      return new Promise<EditOutput>((resolve, reject) => {
        this.pending.set(runId, { resolve, reject, onProgress: r.onProgress });
      }).finally(() => r.signal?.removeEventListener('abort', onAbort));
    });
    void this.ensureWorker().then(
      () => this.worker!.postMessage({ type: 'run', modelId, runs, options: runOptions } satisfies WorkerRequest),
      (err: unknown) => runs.forEach((run) => this.settle(run.runId, (p) => p.reject(err as Error))),
    );
    return promises;
  }

  private async ensureWorker(): Promise<void> {
    if (!this.worker) await this.open();
  }

  async close(): Promise<void> {
    if (this.host) await this.host.close();
    const worker = this.worker;
    if (worker) {
      this.worker = null;
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage({ type: 'close' } satisfies WorkerRequest);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      await worker.terminate();
    }
  }
}
