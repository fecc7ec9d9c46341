/**
 * The text encoders and VAEs of a host's models on one thread of their own. onnxruntime-node's
 * `session.run` holds its thread for the whole call, so on one thread the UNet/transformer waits
 * while another call's prompts and images are encoded or its latents decoded. Here those runs go to
 * this thread: the engine's thread goes from one denoise loop to the next while the stage thread
 * conditions the next call and decodes the previous one. Conditioning (text and image encoding) is
 * served before decoding, because the next denoise loop waits for it and nothing waits for a decode
 * but its own job.
 *
 * The thread opens only the components it runs, so no weights are held twice; it costs
 * STAGE_THREAD_BYTES of its own, which the memory budget reserves. If it dies, its pending runs
 * fail with WORKER_CRASHED and the next run starts another, which reopens the models it needs.
 */
import type { EngineLog, EngineLogLevel } from './log.js';
import type { Worker } from 'node:worker_threads';
import type { Component } from './components.js';
import type { ModelSpec } from './modelFolder.js';
import { ModelFolderError } from './modelFolder.js';
import { InferenceError } from './errors.js';
import type { InferenceErrorCode } from './errors.js';
import type { ExecutionProviderName, Feed, Port, SessionConfig } from './sessions.js';
import { spawnModuleWorker } from './spawnWorker.js';

/**
 * Memory of the stage thread itself (its isolate and modules, run from TypeScript through tsx as
 * `npm start` does): measured 33–49 MB of extra peak RSS per job, tiny-edit and bench, 1 and 4
 * images at 512² (bench/memoryChild.ts with the thread on and off), rounded up.
 */
export const STAGE_THREAD_BYTES = 64 * 2 ** 20;

/** Feed buffers kept per size for reuse (see StageThread.spare). */
const SPARE_PER_SIZE = 4;

export type StageSettings = Pick<
  SessionConfig,
  'provider' | 'intraOpThreads' | 'allowSpinning' | 'cpuMemArena' | 'memPattern' | 'optimizedCacheDir' | 'warmUp'
>;

export interface ComponentPorts {
  inputs: Port[];
  outputs: Port[];
}

export type StageRequest =
  | { type: 'open'; id: number; modelId: string; dir: string; components: Component[] }
  | { type: 'release'; id: number; modelId: string }
  | {
      type: 'run';
      id: number;
      modelId: string;
      component: Component;
      feeds: Record<string, Feed>;
      outputNames: string[];
    }
  | { type: 'close' };

export type StageResponse =
  | { type: 'log'; message: string; level: EngineLogLevel }
  | { type: 'opened'; id: number; provider: ExecutionProviderName; ports: [Component, ComponentPorts][] }
  | { type: 'released'; id: number }
  /** `feeds`: the request's feed buffers, sent back for the next request's copies. */
  | { type: 'result'; id: number; outputs: Float32Array[]; ms: number; feeds: ArrayBuffer[] }
  | { type: 'error'; id: number; code: InferenceErrorCode | null; message: string; folder: boolean };

/** Order of service: opening and releasing models, then conditioning, then decoding. */
export function stagePriority(request: Exclude<StageRequest, { type: 'close' }>): number {
  if (request.type !== 'run') return 0;
  return request.component === 'vaeDecoder' ? 2 : 1;
}

type PortMaps = Map<Component, { inputs: Map<string, Port>; outputs: Map<string, Port> }>;

/** One model's components on the stage thread. */
export interface StagedModel {
  readonly provider: ExecutionProviderName;
  readonly ports: PortMaps;
  /** Its outputs, and the milliseconds it spent inside session.run. */
  run(component: Component, feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<{ outputs: Float32Array[]; ms: number }>;
  release(): Promise<void>;
}

export class StageThread {
  private worker: Promise<Worker> | null = null;
  /** Spawns so far: a model opened in an earlier one is opened again before its next run. */
  private generation = 0;
  private readonly pending = new Map<number, { resolve(message: StageResponse): void; reject(err: Error): void }>();
  private nextId = 1;
  private closed = false;
  /**
   * Feed buffers the thread has sent back, by size. Copying a feed into a fresh buffer touches new
   * pages, which cost more than the copy (measured: a 3 MB VAE-encoder feed took 8.3 ms to copy
   * fresh, the run itself 7.5 ms); a buffer that has been used before costs a memcpy.
   */
  private readonly spare = new Map<number, ArrayBuffer[]>();

  private readonly settings: StageSettings;

  constructor(
    { provider, intraOpThreads, allowSpinning, cpuMemArena, memPattern, optimizedCacheDir, warmUp }: StageSettings,
    private readonly log?: EngineLog,
  ) {
    this.settings = { provider, intraOpThreads, allowSpinning, cpuMemArena, memPattern, optimizedCacheDir, warmUp };
  }

  private ready(): Promise<Worker> {
    this.worker ??= new Promise<Worker>((resolve) => {
      const worker = spawnModuleWorker('stageWorker', this.settings);
      this.generation += 1;
      let error: Error | null = null;
      worker.on('message', (message: StageResponse) => this.answer(message));
      worker.on('error', (err) => (error = err));
      worker.once('exit', (code) => {
        this.worker = null;
        if (this.closed) return;
        const why = error?.message ?? `exit code ${code}`;
        this.log?.(`the encoder thread died (${why}); the next run starts another`, 'error');
        const failure = new InferenceError('WORKER_CRASHED', `the encoder thread died during this job (${why}): submit the job again`);
        for (const p of this.pending.values()) p.reject(failure);
        this.pending.clear();
      });
      resolve(worker);
    });
    return this.worker;
  }

  private answer(message: StageResponse): void {
    if (message.type === 'log') {
      this.log?.(message.message, message.level);
      return;
    }
    const p = this.pending.get(message.id);
    this.pending.delete(message.id);
    if (!p) return;
    if (message.type !== 'error') p.resolve(message);
    // Errors without a code (allocation failures) stay plain, so they are recognised as out-of-memory.
    else if (message.folder) p.reject(new ModelFolderError(message.message));
    else p.reject(message.code ? new InferenceError(message.code, message.message) : new Error(message.message));
  }

  private async request(message: Exclude<StageRequest, { type: 'close' }>, transfer: ArrayBuffer[] = []): Promise<StageResponse> {
    if (this.closed) throw new InferenceError('INTERNAL', 'the encoder thread has been closed');
    const worker = await this.ready();
    const answered = new Promise<StageResponse>((resolve, reject) => this.pending.set(message.id, { resolve, reject }));
    worker.postMessage(message, transfer);
    return answered;
  }

  /** Opens `components` of `spec` on the thread. */
  async open(spec: ModelSpec, components: Component[]): Promise<StagedModel> {
    const openHere = async (): Promise<Extract<StageResponse, { type: 'opened' }>> =>
      (await this.request({ type: 'open', id: this.nextId++, modelId: spec.id, dir: spec.dir, components })) as Extract<StageResponse, { type: 'opened' }>;
    const opened = await openHere();
    let openedIn = this.generation;
    const ports: PortMaps = new Map(
      opened.ports.map(([c, p]) => [c, { inputs: new Map(p.inputs.map((x) => [x.name, x])), outputs: new Map(p.outputs.map((x) => [x.name, x])) }]),
    );
    return {
      provider: opened.provider,
      ports,
      run: async (component, feeds, outputNames) => {
        await this.ready();
        if (openedIn !== this.generation) {
          await openHere();
          openedIn = this.generation;
        }
        // Feeds may be views into the caller's reused memory: each goes over as a copy of its own.
        const copies: Record<string, Feed> = {};
        const transfer: ArrayBuffer[] = [];
        for (const [name, feed] of Object.entries(feeds)) {
          const data = this.copyToSpare(feed.data);
          copies[name] = { data, dims: [...feed.dims] };
          transfer.push(data.buffer as ArrayBuffer);
        }
        const message: StageRequest = { type: 'run', id: this.nextId++, modelId: spec.id, component, feeds: copies, outputNames: [...outputNames] };
        const result = (await this.request(message, transfer)) as Extract<StageResponse, { type: 'result' }>;
        for (const buffer of result.feeds) this.keepSpare(buffer);
        return { outputs: result.outputs, ms: result.ms };
      },
      release: async () => {
        if (this.closed || !this.worker || openedIn !== this.generation) return;
        await this.request({ type: 'release', id: this.nextId++, modelId: spec.id });
      },
    };
  }

  private copyToSpare(data: Float32Array | Int32Array): Float32Array | Int32Array {
    const buffer = this.spare.get(data.byteLength)?.pop() ?? new ArrayBuffer(data.byteLength);
    const copy = data instanceof Float32Array ? new Float32Array(buffer) : new Int32Array(buffer);
    copy.set(data);
    return copy;
  }

  /** Keeps a returned feed buffer for reuse: a few per size, as many as requests in flight use. */
  private keepSpare(buffer: ArrayBuffer): void {
    const list = this.spare.get(buffer.byteLength) ?? [];
    if (list.length < SPARE_PER_SIZE) list.push(buffer);
    this.spare.set(buffer.byteLength, list);
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = await this.worker;
    if (!worker) return;
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage({ type: 'close' } satisfies StageRequest);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    await worker.terminate();
  }
}
