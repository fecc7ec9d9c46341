/**
 * Owns the loaded runtimes (tokenizers + ONNX sessions, created once per model and reused) and runs
 * edits on them one at a time. Lives in the inference worker thread, or inline for tools that do
 * not mind a blocked event loop.
 *
 * Pipeline calls go through three stages (editRunner's PipelineCall): `prepare` (decode inputs,
 * plan micro-batches, one call after another), `denoise` (every session run: text encoders and VAE
 * encoder, the denoise loop, VAE decoder; each output is PNG-encoded as it is decoded) and
 * `finish` (settle jobs once their outputs are encoded), which runs beside later calls. With the stage thread (SessionConfig.stageThread) two calls denoise at once
 * when their memory plans fit the budget together: one runs its denoise loop, the only one that
 * may (the engine's turn, FIFO), while the other's encoders or decoder run on the stage thread, so
 * the engine's thread goes from one denoise loop to the next. Without it, one call denoises at a time.
 *
 * Models load at start when listed in `preload`, else on first use, within `modelMemoryBytes`
 * (their weights, as the memory model counts them): loading one that does not fit first releases
 * the least recently used idle models. A call loads its model in its prepare turn, once no other
 * call is denoising or waiting to, so no other call holds sessions while one loads.
 */
import type { ModelSpec } from './modelFolder.js';
import { openModelSessions } from './sessions.js';
import { StageThread } from './stageThread.js';
import type { SessionConfig } from './sessions.js';
import { loadTokenizer } from './tokenizer.js';
import { PipelineCall } from './editRunner.js';
import { ScratchPool } from './scratch.js';
import type { EditTask, ModelRuntime, RunOptions } from './editRunner.js';
import { InferenceError } from './errors.js';

/** 'error': the folder cannot be read or its sessions cannot open (the reason goes with it); tried again on next use. */
export type ModelState = 'available' | 'loading' | 'loaded' | 'error';

export interface HostOptions extends SessionConfig {
  /**
   * Text encoders and VAEs on a thread of their own (stageThread.ts), beside the denoise loop on
   * this one; off, every component runs on this thread and one call denoises at a time.
   */
  stageThread?: boolean;
  /** Model ids opened at start (the others on first use). */
  preload: readonly string[];
  /** Weights (bytes) the loaded models may hold together; unbounded when absent. */
  modelMemoryBytes?: number;
  /** `reason`: why, with state 'error'. */
  onState?: (modelId: string, state: ModelState, provider: string | null, reason?: string) => void;
}

/** A promise and its resolver. */
function latch(): { done: Promise<void>; open: () => void } {
  let open!: () => void;
  const done = new Promise<void>((resolve) => (open = resolve));
  return { done, open };
}

/** A FIFO lock: `take` resolves, in call order, with the function that releases it. */
class Turns {
  private tail: Promise<void> = Promise.resolve();

  take(): Promise<() => void> {
    const mine = latch();
    const before = this.tail;
    this.tail = before.then(() => mine.done);
    return before.then(() => mine.open);
  }
}

/** A call in `denoise`: its model and the memory plan's figure for it. */
interface Denoising {
  weightsOf: string;
  weightBytes: number;
  bytes: number;
}

/**
 * Admission to `denoise`, in arrival order: a call enters when none is in, or when fewer than
 * `limit` are and every call's transient memory plus the weights of their models fit the budget.
 */
export class DenoiseSlots {
  private readonly inside = new Set<Denoising>();
  private readonly waiting: { call: Denoising; budget: number; enter: () => void }[] = [];
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  enter(call: Denoising, budget: number): Promise<() => void> {
    return new Promise((resolve) => {
      this.waiting.push({ call, budget, enter: () => resolve(() => this.leave(call)) });
      this.admit();
    });
  }

  /** Resolves once no call is inside or waiting. */
  idle(): Promise<void> {
    if (this.inside.size === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private fits(call: Denoising, budget: number): boolean {
    if (this.inside.size === 0) return true;
    if (this.inside.size >= this.limit) return false;
    const all = [...this.inside, call];
    const weights = new Map(all.map((c) => [c.weightsOf, c.weightBytes]));
    const transient = all.reduce((sum, c) => sum + c.bytes - c.weightBytes, 0);
    return [...weights.values()].reduce((a, b) => a + b, 0) + transient <= budget;
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.call, this.waiting[0]!.budget)) {
      const next = this.waiting.shift()!;
      this.inside.add(next.call);
      next.enter();
    }
    if (this.inside.size === 0 && this.waiting.length === 0) this.idleWaiters.splice(0).forEach((r) => r());
  }

  private leave(call: Denoising): void {
    this.inside.delete(call);
    this.admit();
  }
}

export class ModelHost {
  /** The last call submitted has prepared: the next may start preparing. */
  private prepared: Promise<void> = Promise.resolve();
  private readonly slots: DenoiseSlots;
  private readonly stage: StageThread | null;
  private readonly turns = new Turns();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly runtimes = new Map<string, ModelRuntime>();
  private readonly lastUsed = new Map<string, number>();
  private readonly scratchPools = new Map<string, ScratchPool>();

  private constructor(
    private readonly specs: Map<string, ModelSpec>,
    private readonly options: HostOptions,
  ) {
    this.stage = options.stageThread ? new StageThread(options, options.log) : null;
    this.slots = new DenoiseSlots(this.stage ? 2 : 1);
  }

  static async open(specs: readonly ModelSpec[], options: HostOptions): Promise<ModelHost> {
    const host = new ModelHost(new Map(specs.map((s) => [s.id, s])), options);
    // A model that cannot open is reported (state 'error') and left for its next use: the others are served.
    for (const id of options.preload) await host.runtime(id).catch(() => undefined);
    return host;
  }

  /** A model folder that became readable after start (catalogue.ts re-reads failed folders). */
  addModel(spec: ModelSpec): void {
    this.specs.set(spec.id, spec);
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
      const sessions = await openModelSessions(spec, this.options, this.stage ?? undefined);
      const runtime: ModelRuntime = { spec, sessions, tokenizer: tokenizers[0]!, tokenizers, scratch: this.scratchOf(id) };
      this.runtimes.set(id, runtime);
      this.options.onState?.(id, 'loaded', sessions.provider);
      return runtime;
    } catch (err) {
      this.options.onState?.(id, 'error', null, (err as Error).message);
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
      this.scratchPools.delete(victim!);
      await runtime.sessions.release();
      this.options.log?.(`model ${victim} released to make room for ${spec.id} (MODEL_MEMORY_MB)`, 'info');
      this.options.onState?.(victim!, 'available', null);
    }
    if (spec.memory.weightBytes > budget) {
      this.options.log?.(
        `model ${spec.id} needs ${Math.ceil(spec.memory.weightBytes / 2 ** 20)} MiB of weights, over MODEL_MEMORY_MB; loading it alone`,
        'warn',
      );
    }
  }

  /**
   * Runs one pipeline call; the tasks of one call share it (cross-request batching). A model not
   * loaded yet is loaded first, and its tasks hear so through a progress update at step 0 with
   * phase 'loading-model'. Resolves when every task has settled.
   */
  run(modelId: string, tasks: readonly EditTask[], options: RunOptions): Promise<void> {
    const afterPrepare = this.prepared;
    const prepared = latch();
    this.prepared = prepared.done;
    const result = (async () => {
      let call: PipelineCall | null = null;
      let leave: (() => void) | null = null;
      try {
        await afterPrepare;
        let runtime = this.runtimes.get(modelId);
        if (runtime) this.lastUsed.set(modelId, performance.now());
        const spec = runtime?.spec ?? this.specs.get(modelId);
        if (!spec) {
          const error = new InferenceError('NOT_FOUND', `model "${modelId}" is not known to this worker`);
          for (const t of tasks) t.onSettled({ error });
          return;
        }
        // Prepared before a load: a job the memory plan refuses (IMAGE_TOO_LARGE) or whose inputs
        // do not decode fails at once, without waiting for the model's sessions.
        call = new PipelineCall(runtime ?? { spec, scratch: this.scratchOf(modelId) }, tasks, options, () => this.turns.take());
        await call.prepare();
        if (!runtime) {
          if (!call.hasWork) {
            call.abandon(null); // every job has failed: nothing to load the model for
            return;
          }
          await this.slots.idle();
          call.loadingModel();
          runtime = await this.load(modelId);
          call.attach(runtime);
        }
        prepared.open();
        const { weightBytes } = runtime.spec.memory;
        leave = await this.slots.enter({ weightsOf: modelId, weightBytes, bytes: Math.max(call.plannedBytes, weightBytes) }, options.memoryBudgetBytes);
        await call.denoise();
      } catch (err) {
        call?.abandon(err);
      } finally {
        prepared.open();
        leave?.();
      }
      await call?.finished;
    })();
    this.inFlight.add(result);
    void result.then(() => this.inFlight.delete(result));
    return result;
  }

  /** The model's runtime, loading it; throws MODEL_UNAVAILABLE (or the InferenceError) when it cannot be loaded. */
  private async load(modelId: string): Promise<ModelRuntime> {
    try {
      return await this.runtime(modelId);
    } catch (err) {
      throw err instanceof InferenceError ? err : new InferenceError('MODEL_UNAVAILABLE', `model ${modelId} could not be loaded: ${(err as Error).message}`);
    }
  }

  /** The model's scratch pool, kept from a call prepared before its load to the loaded runtime. */
  private scratchOf(modelId: string): ScratchPool {
    let pool = this.scratchPools.get(modelId);
    if (!pool) this.scratchPools.set(modelId, (pool = new ScratchPool()));
    return pool;
  }

  async close(): Promise<void> {
    await Promise.all(this.inFlight);
    await Promise.all([...this.runtimes.values()].map((r) => r.sessions.release()));
    this.runtimes.clear();
    await this.stage?.close();
  }
}
