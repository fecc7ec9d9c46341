/**
 * Owns the loaded runtimes (tokenizers + ONNX sessions, created once per model and reused) and runs
 * edits on them one at a time. Lives in the inference worker thread, or inline for tools that do
 * not mind a blocked event loop.
 *
 * Pipeline calls go through three stages (editRunner's PipelineCall): `prepare` (decode inputs,
 * plan micro-batches), `denoise` (every session run: text encoder, VAE, UNet/transformer) and
 * `finish` (encode outputs, settle jobs). Denoising is one call at a time; the next call prepares
 * beside it and the previous one finishes beside it, so the model goes from one denoise loop to
 * the next.
 *
 * Models load at start when listed in `preload`, else on first use, within `modelMemoryBytes`
 * (their weights, as the memory model counts them): loading one that does not fit first releases
 * the least recently used idle models. A call loads its model in its prepare turn, after the call
 * before it has denoised, so no other call holds sessions while one loads.
 */
import type { ModelSpec } from './modelFolder.js';
import { openModelSessions } from './sessions.js';
import type { SessionConfig } from './sessions.js';
import { loadTokenizer } from './tokenizer.js';
import { PipelineCall } from './editRunner.js';
import { ScratchPool } from './scratch.js';
import type { EditTask, ModelRuntime, RunOptions } from './editRunner.js';
import { InferenceError } from './errors.js';

export type ModelState = 'available' | 'loading' | 'loaded';

export interface HostOptions extends SessionConfig {
  /** Model ids opened at start (the others on first use). */
  preload: readonly string[];
  /** Weights (bytes) the loaded models may hold together; unbounded when absent. */
  modelMemoryBytes?: number;
  onState?: (modelId: string, state: ModelState, provider: string | null) => void;
}

/** A promise and its resolver. */
function latch(): { done: Promise<void>; open: () => void } {
  let open!: () => void;
  const done = new Promise<void>((resolve) => (open = resolve));
  return { done, open };
}

export class ModelHost {
  /** The last call submitted has prepared: the next may start preparing. */
  private prepared: Promise<void> = Promise.resolve();
  /** The last call submitted has denoised: the sessions are free for the next. */
  private denoised: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly runtimes = new Map<string, ModelRuntime>();
  private readonly lastUsed = new Map<string, number>();

  private constructor(
    private readonly specs: Map<string, ModelSpec>,
    private readonly options: HostOptions,
  ) {}

  static async open(specs: readonly ModelSpec[], options: HostOptions): Promise<ModelHost> {
    const host = new ModelHost(new Map(specs.map((s) => [s.id, s])), options);
    try {
      for (const id of options.preload) await host.runtime(id);
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  /** Execution provider of each loaded model. */
  providers(): Record<string, string> {
    return Object.fromEntries([...this.runtimes].map(([id, r]) => [id, r.sessions.provider]));
  }

  private async runtime(id: string): Promise<ModelRuntime> {
    const loaded = this.runtimes.get(id);
    this.lastUsed.set(id, performance.now());
    if (loaded) return loaded;
    const spec = this.specs.get(id);
    if (!spec) throw new InferenceError('NOT_FOUND', `model "${id}" is not known to this worker`);
    await this.makeRoom(spec);
    this.options.onState?.(id, 'loading', null);
    try {
      const tokenizers = spec.paths.tokenizerDirs.map((d) => loadTokenizer(d));
      const sessions = await openModelSessions(spec, this.options);
      const runtime: ModelRuntime = { spec, sessions, tokenizer: tokenizers[0]!, tokenizers, scratch: new ScratchPool() };
      this.runtimes.set(id, runtime);
      this.options.onState?.(id, 'loaded', sessions.provider);
      return runtime;
    } catch (err) {
      this.options.onState?.(id, 'available', null);
      throw err;
    }
  }

  /** Releases least recently used models until `spec`'s weights fit the budget (a lone model always loads). */
  private async makeRoom(spec: ModelSpec): Promise<void> {
    const budget = this.options.modelMemoryBytes;
    if (budget === undefined) return;
    const held = (): number => [...this.runtimes.values()].reduce((n, r) => n + r.spec.memory.weightBytes, 0);
    while (this.runtimes.size > 0 && held() + spec.memory.weightBytes > budget) {
      const [victim] = [...this.runtimes.keys()].sort((a, b) => (this.lastUsed.get(a) ?? 0) - (this.lastUsed.get(b) ?? 0));
      const runtime = this.runtimes.get(victim!)!;
      this.runtimes.delete(victim!);
      await runtime.sessions.release();
      this.options.log?.(`model ${victim} released to make room for ${spec.id} (MODEL_MEMORY_MB)`);
      this.options.onState?.(victim!, 'available', null);
    }
    if (spec.memory.weightBytes > budget) {
      this.options.log?.(`model ${spec.id} needs ${Math.ceil(spec.memory.weightBytes / 2 ** 20)} MiB of weights, over MODEL_MEMORY_MB; loading it alone`);
    }
  }

  /**
   * Runs one pipeline call; the tasks of one call share it (cross-request batching). A model not
   * loaded yet is loaded first, and its tasks hear so through a progress update at step 0 with
   * phase 'loading-model'. Resolves when every task has settled.
   */
  run(modelId: string, tasks: readonly EditTask[], options: RunOptions): Promise<void> {
    const afterPrepare = this.prepared;
    const afterDenoise = this.denoised;
    const prepared = latch();
    const denoised = latch();
    this.prepared = prepared.done;
    this.denoised = denoised.done;
    const result = (async () => {
      let call: PipelineCall | null = null;
      try {
        await afterPrepare;
        let runtime = this.runtimes.get(modelId);
        if (runtime) this.lastUsed.set(modelId, performance.now());
        else {
          await afterDenoise;
          runtime = await this.load(modelId, tasks);
          if (!runtime) return;
        }
        call = new PipelineCall(runtime, tasks, options);
        await call.prepare();
        prepared.open();
        await afterDenoise;
        await call.denoise();
      } catch (err) {
        call?.abandon(err);
      } finally {
        prepared.open();
        denoised.open();
      }
      await call?.finished;
    })();
    this.inFlight.add(result);
    void result.then(() => this.inFlight.delete(result));
    return result;
  }

  /** The model's runtime, loading it; undefined (every task failed) when it cannot be loaded. */
  private async load(modelId: string, tasks: readonly EditTask[]): Promise<ModelRuntime | undefined> {
    const emittedAt = performance.timeOrigin + performance.now();
    for (const t of tasks) t.onProgress?.({ step: 0, totalSteps: 0, previews: [], emittedAt, phase: 'loading-model' });
    try {
      return await this.runtime(modelId);
    } catch (err) {
      const error = err instanceof InferenceError ? err : new InferenceError('MODEL_ERROR', `model ${modelId} could not be loaded: ${(err as Error).message}`);
      for (const t of tasks) t.onSettled({ error });
      return undefined;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.inFlight);
    await Promise.all([...this.runtimes.values()].map((r) => r.sessions.release()));
    this.runtimes.clear();
  }
}
