/**
 * The inference engine's public face for the rest of the server: the model catalogue (catalogue.ts:
 * what folders exist and their specs) and an executor that runs edits on them (executor.ts): on an
 * inference worker thread (`threading: 'worker'`, the server) or on the calling thread
 * (`'inline'`: CLI, benchmarks). `'remote'` starts no executor: an API process that queues work
 * for remote workers answers model queries and refuses edits.
 */
import type { ModelSpec } from './modelFolder.js';
import type { ExecutionProviderName } from './sessions.js';
import type { ModelState } from './modelHost.js';
import type { EngineLog } from './log.js';
import type { EditInput, EditOutput, ProgressUpdate, RunOptions } from './editRunner.js';
import type { ResolvedEdit } from './request.js';
import { InferenceError } from './errors.js';
import { ModelCatalogue } from './catalogue.js';
import type { CatalogueConfig } from './catalogue.js';
import { InlineExecutor } from './executor.js';
import type { Executor, ExecutorJob } from './executor.js';
import { WorkerExecutor } from './workerExecutor.js';
import { STAGE_THREAD_BYTES } from './stageThread.js';

export { DEFAULT_MAX_INPUT_PIXELS, defaultMemoryBudget } from './catalogue.js';

export interface EngineConfig extends CatalogueConfig {
  provider?: ExecutionProviderName;
  intraOpThreads?: number;
  /** ONNX Runtime pool threads busy-wait between operators (see SessionConfig). */
  allowSpinning?: boolean;
  /** ONNX Runtime's CPU memory arena (see SessionConfig; default on). */
  cpuMemArena?: boolean;
  /** ONNX Runtime's memory pattern (see SessionConfig; default on). */
  memPattern?: boolean;
  /** ONNX Runtime's optimized-model cache folder (see optimizedCache.ts); null or absent: off. */
  optimizedCacheDir?: string | null;
  /** One small run of each large component as it opens (see SessionConfig.warmUp). */
  warmUp?: boolean;
  /** Text encoders and VAE on a thread of their own, beside the denoise loop (see SessionConfig; default on). */
  stageThread?: boolean;
  /** zlib level 0–9 of PNG outputs (see imageIO's DEFAULT_PNG_COMPRESSION_LEVEL). */
  pngCompressionLevel?: number;
  /** Weights the loaded models may hold together (least recently used idle models are released). */
  modelMemoryBytes?: number;
  /** Where edits run; 'remote': in other processes (this one reads the catalogue only). */
  threading?: 'worker' | 'inline' | 'remote';
  log?: EngineLog;
  /** Each load state the executor reports: the model's spec, its provider once loaded, `reason` with 'error'. */
  onState?: (event: { spec: ModelSpec; state: ModelState; provider: string | null; reason?: string }) => void;
}

export interface EditCallOptions {
  onProgress?: (update: ProgressUpdate) => void;
  signal?: AbortSignal;
}

export type EditRequest = ExecutorJob;

export class InferenceEngine {
  private constructor(
    readonly catalogue: ModelCatalogue,
    private readonly executor: Executor | null,
    private readonly runOptions: RunOptions,
  ) {}

  /** Reads every model folder, then opens the default (or preloaded) models' sessions. */
  static async start(config: EngineConfig): Promise<InferenceEngine> {
    const stageThread = config.stageThread ?? true;
    // Processes that only queue work plan jobs as the workers that run them do.
    const catalogue = ModelCatalogue.read({ ...config, reservedBytes: stageThread ? STAGE_THREAD_BYTES : 0 });
    const runOptions: RunOptions = {
      memoryBudgetBytes: catalogue.memoryBudgetBytes,
      maxInputPixels: catalogue.maxInputPixels,
      pngCompressionLevel: config.pngCompressionLevel,
    };
    const threading = config.threading ?? 'worker';
    if (threading === 'remote') return new InferenceEngine(catalogue, null, runOptions);
    const onState = (modelId: string, state: ModelState, provider: string | null, reason?: string): void => {
      catalogue.setState(modelId, state, provider, reason);
      const spec = catalogue.models().find((s) => s.id === modelId);
      if (spec) config.onState?.({ spec, state, provider, reason });
    };
    const readable = new Set(catalogue.models().map((s) => s.id));
    const settings = {
      provider: config.provider ?? 'cpu',
      intraOpThreads: config.intraOpThreads,
      allowSpinning: config.allowSpinning,
      cpuMemArena: config.cpuMemArena,
      memPattern: config.memPattern,
      optimizedCacheDir: config.optimizedCacheDir,
      warmUp: config.warmUp,
      stageThread,
      // Broken folders are not opened; their state says why.
      preload: (config.preloadModels ?? [catalogue.defaultModelId]).filter((id) => readable.has(id)),
      modelMemoryBytes: config.modelMemoryBytes,
    };
    const executor =
      threading === 'inline'
        ? await InlineExecutor.open(catalogue.models(), { ...settings, log: config.log, onState })
        : await WorkerExecutor.open({ ...settings, models: catalogue.models().map((s) => ({ id: s.id, dir: s.dir })) }, { log: config.log, onState });
    catalogue.onModelAdded = (spec) => executor.addModel(spec);
    return new InferenceEngine(catalogue, executor, runOptions);
  }

  get memoryBudgetBytes(): number {
    return this.catalogue.memoryBudgetBytes;
  }

  get maxInputPixels(): number {
    return this.catalogue.maxInputPixels;
  }

  get defaultModelId(): string {
    return this.catalogue.defaultModelId;
  }

  models(): ModelSpec[] {
    return this.catalogue.models();
  }

  /** The model for an id, or the default; NOT_FOUND names the known ids (ids are never paths). */
  model(id?: string | null): ModelSpec {
    return this.catalogue.model(id);
  }

  /** Execution provider of each loaded model. */
  providers(): Record<string, string> {
    return this.catalogue.providers();
  }

  /** `loaded`, `loading`, `available` (a folder that loads on first use) or `error` (`errorReason`). */
  modelState(id: string): ModelState {
    return this.catalogue.modelState(id);
  }

  /** Why a model is in state 'error'; null otherwise. */
  errorReason(id: string): string | null {
    return this.catalogue.errorReason(id);
  }

  /** Every model in state 'error', with its reason. */
  failures(): { id: string; reason: string }[] {
    return this.catalogue.failures();
  }

  /** Reads the folders that failed again (SIGHUP); returns the ids now readable. */
  reload(): string[] {
    return this.catalogue.reload();
  }

  /** Times a dead inference worker was restarted. */
  get workerRestarts(): number {
    return this.executor?.restarts ?? 0;
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
    if (!this.executor) return requests.map(() => Promise.reject(new InferenceError('INTERNAL', 'this process only queues work (ROLE=api); workers run it')));
    return this.executor.run(modelId, requests, this.runOptions);
  }

  async close(): Promise<void> {
    await this.executor?.close();
  }
}
