/**
 * ONNX Runtime sessions for one model folder: opened once, validated against the input/output
 * names and dtypes optimum's exports use, and run through `runModel`, which converts between the
 * pipeline's float32 tensors and the model's declared dtypes (fp16 exports, int32/int64 ids,
 * int64/float timesteps) and accounts the time spent inside `session.run`.
 */
import type { EngineLog } from './log.js';
import { cpus } from 'node:os';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { fitPreviewProjection } from './previewFit.js';
import type { ModelSpec } from './modelFolder.js';
import { ModelFolderError } from './modelFolder.js';
import { fromFloat16, toFloat16 } from './tensor.js';
import { InferenceError } from './errors.js';
import { COMPONENTS, componentFile } from './components.js';
import type { Component } from './components.js';
import type { StagedModel, StageThread } from './stageThread.js';
import { createCachedSession } from './optimizedCache.js';
import type { CacheOutcome } from './optimizedCache.js';

export type ExecutionProviderName = 'cpu' | 'cuda' | 'webgpu';

export interface SessionConfig {
  provider: ExecutionProviderName;
  /** Threads inside one operator; default: all cores. */
  intraOpThreads?: number;
  /**
   * Let ONNX Runtime's idle pool threads busy-wait for the next operator (its default). Off by
   * default here: the spinning threads take the cores the server's own thread needs between steps
   * (measured on 2 cores: progress-event p90 1.5–1.8 ms without spinning, 4.9–6.9 ms with, for
   * the same job times).
   */
  allowSpinning?: boolean;
  /**
   * ONNX Runtime's CPU memory arena (on by default). On, the largest run's activations stay
   * allocated (a 16-image 512×512 job left the process 1.7 GB above its idle RSS); off
   * (ORT_CPU_MEM_ARENA=0), memory goes back after a burst but every run touches fresh pages:
   * measured on this 2-core VM, the bench UNet took 1.6–1.9× as long (batch 12: 329 vs 175 ms;
   * batch 3: 176 vs 112 ms), so hosts facing untrusted uploads choose it deliberately.
   */
  cpuMemArena?: boolean;
  /**
   * ONNX Runtime's memory pattern (`enableMemPattern`; ORT_MEM_PATTERN, default on as in ONNX
   * Runtime). On, the first run of each input shape records its allocations and the second
   * allocates them again as one block, so both touch fresh memory (measured: the bench UNet's first
   * two 512² calls 0.16–0.30 s against 0.02–0.05 s warm, RSS +70 MB on the second; an SD 1.5-size
   * UNet's second call +2.2 GiB, peak 7.7 against 5.5 GiB). Off, only the first run of a shape is
   * cold, but at real size that first run was slower (16–20 s against 11–14 s) and later runs
   * were not measurably faster, so it stays on (BENCHMARKS.md, "Real-size model").
   */
  memPattern?: boolean;
  /**
   * Folder of ONNX Runtime's optimized-model cache (optimizedCache.ts, ORT_OPTIMIZED_CACHE): the
   * first open of a model writes its optimized graph there, later opens load it. Null or absent: off.
   */
  optimizedCacheDir?: string | null;
  /** Components smaller than this open without the cache (they open in milliseconds); default 64 MiB. */
  optimizedCacheMinBytes?: number;
  /**
   * One small run of each component of `warmUpMinBytes` (default 64 MiB) or more right after it
   * opens (ORT_WARM_UP): batch 1, the smallest spatial size. Measured on an SD 1.5-size UNet, it
   * makes the second full-size call a warm one; a 512² CLI job took 10–11% less and peaked 2.25 GiB lower (BENCHMARKS.md).
   */
  warmUp?: boolean;
  warmUpMinBytes?: number;
  log?: EngineLog;
  /** Each component's load, as it starts and as it ends (the doctor prints them; servers log them). */
  onLoadProgress?: (event: LoadProgress) => void;
}

/** One component's session opening or opened. */
export interface LoadProgress {
  modelId: string;
  component: Component;
  file: string;
  /** Bytes of the component's graph and external data. */
  bytes: number;
  phase: 'opening' | 'opened';
  /** With 'opened': milliseconds the open took, and what the optimized-model cache did. */
  ms?: number;
  cache?: CacheOutcome;
  /** With 'opened', when the component was warmed up: that run's milliseconds. */
  warmUpMs?: number;
}

export type { Component };

export interface Port {
  name: string;
  type: string;
  shape: readonly (number | string)[];
}

interface ComponentSession {
  session: ort.InferenceSession;
  inputs: Map<string, Port>;
  outputs: Map<string, Port>;
}

export interface RunStats {
  /** Milliseconds spent inside session.run, per component. */
  runMs: Partial<Record<Component, number>>;
  runs: number;
}

export interface ModelSessions {
  readonly spec: ModelSpec;
  readonly provider: ExecutionProviderName;
  readonly stats: RunStats;
  /** 'latent_parameters' (mean ‖ logvar, current optimum) or 'latent_sample' (older exports). */
  readonly vaeEncoderOutput: 'latent_parameters' | 'latent_sample';
  hasInput(component: Component, name: string): boolean;
  run(component: Component, feeds: Record<string, Feed>, outputName: string): Promise<Float32Array>;
  /** Several outputs of one call, in `outputNames` order. */
  runMany(component: Component, feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<Float32Array[]>;
  /** The component's output names (e.g. `hidden_states.N` of an encoder exported with them). */
  outputNames(component: Component): string[];
  /** The same sessions, also reporting each run's milliseconds inside session.run to `record`. */
  metered(record: (component: Component, ms: number) => void): ModelSessions;
  release(): Promise<void>;
}

/** A float32/int feed; converted to the model's declared dtype. */
export interface Feed {
  data: Float32Array | Int32Array;
  dims: readonly number[];
}

function ports(metadata: readonly ort.InferenceSession.ValueMetadata[]): Map<string, Port> {
  const map = new Map<string, Port>();
  for (const m of metadata) map.set(m.name, m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'non-tensor', shape: [] });
  return map;
}

function providerList(provider: ExecutionProviderName): string[] {
  // onnxruntime-node throws on ['cuda','cpu'] when CUDA is missing instead of falling back,
  // so each provider is tried alone and the fallback is ours.
  return provider === 'cpu' ? ['cpu'] : [provider];
}

/** The options every session of this server is created with (the bench reuses them). */
export function sessionOptions(config: SessionConfig, provider: ExecutionProviderName): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providerList(provider),
    graphOptimizationLevel: 'all',
    intraOpNumThreads: config.intraOpThreads ?? Math.max(1, cpus().length),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: config.cpuMemArena ?? true,
    enableMemPattern: config.memPattern ?? true,
    extra: { session: { intra_op: { allow_spinning: config.allowSpinning ? '1' : '0' } } },
  };
}

async function createSession(
  path: string,
  bytes: number,
  config: SessionConfig,
  provider: ExecutionProviderName,
): Promise<{ session: ort.InferenceSession; cache: CacheOutcome }> {
  const cacheDir = bytes >= (config.optimizedCacheMinBytes ?? CACHE_MIN_BYTES) ? (config.optimizedCacheDir ?? null) : null;
  return createCachedSession(path, sessionOptions(config, provider), cacheDir, config.log);
}

/** Components from this size up log their loading at info (see openComponentSessions). */
const LOUD_LOAD_BYTES = 64 * 2 ** 20;
/** Components from this size up are warmed up when SessionConfig.warmUp is on. */
const WARM_UP_MIN_BYTES = 64 * 2 ** 20;

/**
 * Feeds for a warm-up run from a session's ports: batch dims 1, sequence dims 77 (CLIP's length),
 * other named dims 8 (a latent of 8×8), values 0.1 (ids and integer inputs 0). Dims sharing a
 * name share the value. (With 8 text tokens instead of 77 the SD 1.5-size UNet's second full-size
 * call was cold again: bench/coldCalls.ts `-warm8`.)
 */
export function warmUpFeeds(inputs: ReadonlyMap<string, Port>): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  const named = (d: string): number => (/batch/i.test(d) ? 1 : /seq|token/i.test(d) ? 77 : 8);
  for (const port of inputs.values()) {
    const dims = port.shape.map((d) => (typeof d === 'number' && d > 0 ? d : typeof d === 'string' ? named(d) : 8));
    const length = dims.reduce((a, b) => a * b, 1);
    feeds[port.name] = { data: port.type.startsWith('int') ? new Int32Array(length) : new Float32Array(length).fill(0.1), dims };
  }
  return feeds;
}

/** One small run (see SessionConfig.warmUp); its milliseconds, or undefined when the graph refuses those feeds (logged, the load goes on). */
async function warmUp(spec: ModelSpec, component: Component, cs: ComponentSession, log?: EngineLog): Promise<number | undefined> {
  const started = performance.now();
  try {
    const feeds = Object.fromEntries(Object.entries(warmUpFeeds(cs.inputs)).map(([name, feed]) => [name, toOrtTensor(feed, cs.inputs.get(name))]));
    await cs.session.run(feeds);
    return performance.now() - started;
  } catch (err) {
    log?.(`model ${spec.id}: ${componentFile(component)} warm-up run skipped (${(err as Error).message.split('\n')[0]})`, 'debug');
    return undefined;
  }
}

/** Components from this size up go through the optimized-model cache (SessionConfig.optimizedCacheMinBytes). */
const CACHE_MIN_BYTES = 64 * 2 ** 20;

/** Bytes of a component's ONNX files (its graph and external data) in its folder. */
function componentBytes(path: string): number {
  try {
    const dir = dirname(path);
    return readdirSync(dir)
      .filter((f) => !f.endsWith('.json'))
      .reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  } catch {
    return 0;
  }
}

/** 'opening unet/model.onnx (3,276 MiB)' / 'unet/model.onnx open in 23.4 s (optimized-model cache: hit)'. */
export function describeLoadProgress(event: LoadProgress): string {
  if (event.phase === 'opening') return `model ${event.modelId}: opening ${event.file} (${Math.round(event.bytes / 2 ** 20).toLocaleString('en')} MiB)`;
  const cache = event.cache === 'off' || event.cache === undefined ? '' : ` (optimized-model cache: ${event.cache})`;
  const warm = event.warmUpMs === undefined ? '' : `, warm-up run ${(event.warmUpMs / 1000).toFixed(1)} s`;
  return `model ${event.modelId}: ${event.file} open in ${((event.ms ?? 0) / 1000).toFixed(1)} s${cache}${warm}`;
}

function validate(spec: ModelSpec, component: Component, s: ComponentSession): void {
  const req = COMPONENTS[component];
  const where = `model ${spec.id}: ${componentFile(component)}`;
  for (const name of req.inputs) {
    if (!s.inputs.has(name)) throw new ModelFolderError(`${where} has no input "${name}" (inputs: ${[...s.inputs.keys()].join(', ')})`);
  }
  for (const alternatives of [...req.outputs, ...(spec.family.requiredOutputs?.[component] ?? []).map((n) => [n])]) {
    if (!alternatives.some((n) => s.outputs.has(n))) {
      throw new ModelFolderError(`${where} has no output ${alternatives.map((n) => `"${n}"`).join(' or ')} (outputs: ${[...s.outputs.keys()].join(', ')})`);
    }
  }
  const role = spec.family.denoiser;
  if (component === role.component) {
    // What the family feeds: a denoiser declaring anything else cannot be driven, and one lacking
    // an input the family requires is not its layout.
    const extra = [...s.inputs.keys()].filter((n) => !role.inputs.includes(n));
    if (extra.length) {
      throw new ModelFolderError(
        `${where} needs inputs the ${spec.family.describe} pipeline does not provide (${extra.join(', ')}); it feeds ${role.inputs.join(', ')}`,
      );
    }
    const missing = role.required.filter((n) => !s.inputs.has(n));
    if (missing.length)
      throw new ModelFolderError(`${where} has no input ${missing.map((n) => `"${n}"`).join(', ')} (inputs: ${[...s.inputs.keys()].join(', ')})`);
    const channels = role.channelsInput === null ? undefined : s.inputs.get(role.channelsInput)?.shape[1];
    if (typeof channels === 'number' && channels !== spec.denoiserInChannels) {
      throw new ModelFolderError(`${where}: input "${role.channelsInput}" has ${channels} channels, expected ${spec.denoiserInChannels} for ${spec.kind}`);
    }
    const t = s.inputs.get('timestep')!.type;
    if (!['int64', 'float32', 'float16'].includes(t))
      throw new ModelFolderError(`${where}: input "timestep" has dtype ${t}; expected int64, float32 or float16`);
  }
  if (component === 'textEncoder' || component === 'textEncoder2' || component === 'textEncoder3') {
    const t = s.inputs.get('input_ids')!.type;
    if (t !== 'int32' && t !== 'int64') throw new ModelFolderError(`${where}: input "input_ids" has dtype ${t}; expected int32 or int64`);
  }
  if (component === 'vaeDecoder') {
    const channels = s.inputs.get('latent_sample')!.shape[1];
    if (typeof channels === 'number' && channels !== spec.latentChannels) {
      throw new ModelFolderError(`${where}: input "latent_sample" has ${channels} channels, expected ${spec.latentChannels}`);
    }
  }
}

/**
 * A pipeline feed as the port declares it. A rank-0 port (optimum ≥ 1.24's `timestep`) gets a
 * scalar, whatever the batch: every row shares the value, and a `[1]` tensor would reach a traced
 * Unsqueeze → Expand and break the time embedding. Integer ports truncate as numpy's `astype` does.
 */
export function toOrtTensor(feed: Feed, port: Port | undefined): ort.Tensor {
  const type = port?.type ?? 'float32';
  let { data, dims } = feed;
  if (port && port.shape.length === 0) {
    const first = data[0]!;
    if (data.length === 0 || data.some((v) => v !== first)) throw new Error(`scalar input "${port.name}" was given ${data.length} different values`);
    data = data.subarray(0, 1) as Float32Array | Int32Array;
    dims = [];
  }
  const shape = [...dims];
  switch (type) {
    case 'int64':
      return new ort.Tensor(
        'int64',
        BigInt64Array.from(data, (v) => BigInt(Math.trunc(v))),
        shape,
      );
    case 'int32':
      return new ort.Tensor('int32', data instanceof Int32Array ? data : Int32Array.from(data, (v) => Math.trunc(v)), shape);
    case 'float16':
      return new ort.Tensor('float16', toFloat16(data instanceof Float32Array ? data : Float32Array.from(data)), shape);
    default:
      return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), shape);
  }
}

/**
 * A failed `session.run` as a coded error naming the model and component; the full ONNX Runtime
 * text goes to the log. Allocation failures stay recognisable as out-of-memory.
 */
function modelError(spec: ModelSpec, component: Component, err: unknown, log?: EngineLog): Error {
  const text = err instanceof Error ? err.message : String(err);
  if (/bad_alloc|out of memory|Failed to allocate/i.test(text)) return err instanceof Error ? err : new Error(text);
  log?.(`model ${spec.id}: ${componentFile(component)} failed: ${text}`, 'error');
  const first = text.split('\n')[0]!.slice(0, 300);
  return new InferenceError('MODEL_ERROR', `model ${spec.id}: ${componentFile(component)} failed to run (${first})`, { cause: err });
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') return fromFloat16(tensor.data as Uint16Array);
  throw new Error(`unexpected output dtype ${tensor.type}`);
}

/** Sessions of some of a model's components, on the thread that opened them. */
export interface ComponentSessions {
  provider: ExecutionProviderName;
  ports: Map<Component, { inputs: Map<string, Port>; outputs: Map<string, Port> }>;
  /** One run: its outputs in `outputNames` order and the milliseconds inside session.run. */
  exec(component: Component, feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<{ outputs: Float32Array[]; ms: number }>;
  release(): Promise<void>;
}

/** Opens `components` of `spec` in this thread, each validated against what its family feeds and reads. */
export async function openComponentSessions(spec: ModelSpec, components: readonly Component[], config: SessionConfig): Promise<ComponentSessions> {
  let provider = config.provider;
  // Without a listener, each component's load goes to the log: at info from 64 MiB (a load worth
  // watching), at debug below.
  const report =
    config.onLoadProgress ?? (config.log && ((e: LoadProgress) => config.log!(describeLoadProgress(e), e.bytes >= LOUD_LOAD_BYTES ? 'info' : 'debug')));
  const opened = new Map<Component, ComponentSession>();
  const open = async (component: Component, path: string): Promise<void> => {
    const progress = { modelId: spec.id, component, file: componentFile(component), bytes: componentBytes(path) };
    report?.({ ...progress, phase: 'opening' });
    const started = performance.now();
    let session: ort.InferenceSession;
    let cache: CacheOutcome;
    try {
      ({ session, cache } = await createSession(path, progress.bytes, config, provider));
    } catch (err) {
      if (provider === 'cpu') throw new ModelFolderError(`model ${spec.id}: cannot load ${componentFile(component)}: ${(err as Error).message}`);
      config.log?.(`execution provider "${provider}" unavailable (${(err as Error).message.split('\n')[0]}); falling back to cpu`, 'warn');
      provider = 'cpu';
      ({ session, cache } = await createSession(path, progress.bytes, config, provider));
    }
    const ms = performance.now() - started;
    const cs = { session, inputs: ports(session.inputMetadata), outputs: ports(session.outputMetadata) };
    opened.set(component, cs);
    validate(spec, component, cs);
    const warmUpMs =
      config.warmUp && progress.bytes >= (config.warmUpMinBytes ?? WARM_UP_MIN_BYTES) ? await warmUp(spec, component, cs, config.log) : undefined;
    report?.({ ...progress, phase: 'opened', ms, cache, warmUpMs });
  };
  const release = async (): Promise<void> => {
    await Promise.all([...opened.values()].map((s) => s.session.release()));
  };
  try {
    for (const c of components) await open(c, spec.paths[c]!);
  } catch (err) {
    await release();
    throw err;
  }
  let queue: Promise<unknown> = Promise.resolve();
  return {
    provider,
    ports: new Map([...opened].map(([c, cs]) => [c, { inputs: cs.inputs, outputs: cs.outputs }])),
    // Runs one at a time, each timed from its own start: ONNX Runtime runs them in turn on this
    // thread anyway, and a run requested while another is in progress must not count the wait.
    exec: (component, feeds, outputNames) => {
      const run = queue.then(() => exec(component, feeds, outputNames));
      queue = run.catch(() => undefined);
      return run;
    },
    release,
  };
  async function exec(component: Component, feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<{ outputs: Float32Array[]; ms: number }> {
    const cs = opened.get(component)!;
    const ortFeeds: Record<string, ort.Tensor> = {};
    let result: ort.InferenceSession.ReturnType;
    let started = 0;
    try {
      for (const [name, feed] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(feed, cs.inputs.get(name));
      // onnxruntime-node 1.23.2 labels a fetched subset by the session's first output names (fetching
      // ['pooler_output'] of CLIP returns it as "last_hidden_state"): fetch a prefix of the
      // session's outputs as named, anything else as every output.
      const all = cs.session.outputNames;
      const prefix = outputNames.every((n, i) => all[i] === n);
      started = performance.now();
      result = await cs.session.run(ortFeeds, prefix ? [...outputNames] : [...all]);
    } catch (err) {
      throw modelError(spec, component, err, config.log);
    }
    const ms = performance.now() - started;
    const outputs = outputNames.map((n) => {
      const tensor = result[n];
      if (!tensor) throw new InferenceError('MODEL_ERROR', `model ${spec.id}: ${componentFile(component)} has no output "${n}"`);
      return toFloat32(tensor);
    });
    return { outputs, ms };
  }
}

/**
 * A model's sessions: the family's denoiser in this thread, and the others on `stage` when given
 * (stageThread.ts) or here too.
 */
export async function openModelSessions(spec: ModelSpec, config: SessionConfig, stageThread?: StageThread): Promise<ModelSessions> {
  const staged = stageThread ? spec.family.components.filter((c) => c !== spec.family.denoiser.component) : [];
  // The denoiser here and the encoders/VAEs on the stage thread open at the same time (each open
  // is mostly one core's work: reading, optimizing and pre-packing the graph).
  const [localOpen, stageOpen] = await Promise.allSettled([
    openComponentSessions(
      spec,
      spec.family.components.filter((c) => !staged.includes(c)),
      config,
    ),
    staged.length > 0 ? stageThread!.open(spec, staged) : Promise.resolve(null),
  ]);
  if (localOpen.status === 'rejected' || stageOpen.status === 'rejected') {
    await Promise.all([localOpen.status === 'fulfilled' && localOpen.value.release(), stageOpen.status === 'fulfilled' && stageOpen.value?.release()]);
    throw localOpen.status === 'rejected' ? localOpen.reason : (stageOpen as PromiseRejectedResult).reason;
  }
  const local = localOpen.value;
  const stage: StagedModel | null = stageOpen.value;
  const portsOf = (c: Component): { inputs: Map<string, Port>; outputs: Map<string, Port> } => {
    const p = local.ports.get(c) ?? stage?.ports.get(c);
    if (!p) throw new InferenceError('MODEL_ERROR', `model ${spec.id} has no ${componentFile(c)}`);
    return p;
  };
  const stats: RunStats = { runMs: Object.fromEntries(spec.family.components.map((c) => [c, 0])), runs: 0 };
  const view = (record?: (component: Component, ms: number) => void): ModelSessions => {
    const runMany = async (component: Component, feeds: Record<string, Feed>, outputNames: readonly string[]): Promise<Float32Array[]> => {
      portsOf(component);
      const { outputs, ms } = stage?.ports.has(component) ? await stage.run(component, feeds, outputNames) : await local.exec(component, feeds, outputNames);
      stats.runMs[component] = (stats.runMs[component] ?? 0) + ms;
      stats.runs += 1;
      record?.(component, ms);
      return outputs;
    };
    return {
      spec,
      provider: local.provider,
      stats,
      vaeEncoderOutput: spec.export.vaeEncoderOutput,
      hasInput: (component, name) => portsOf(component).inputs.has(name),
      async run(component, feeds, outputName) {
        return (await runMany(component, feeds, [outputName]))[0]!;
      },
      runMany,
      outputNames: (component) => [...portsOf(component).outputs.keys()],
      metered: (next) => view(next),
      async release() {
        await Promise.all([local.release(), stage?.release()]);
      },
    };
  };
  const sessions = view();
  // Models without latent→RGB factors (16-channel VAEs) get a projection fitted to their own VAE
  // (previewFit.ts); a VAE that cannot encode the fit's images leaves the model without previews.
  if (spec.preview === null && spec.family.components.includes('vaeEncoder')) {
    try {
      spec.preview = await fitPreviewProjection(sessions);
    } catch (err) {
      config.log?.(
        `model ${spec.id}: no latent previews (fitting them to the VAE failed: ${(err as Error).message.split('\n')[0]}; latentRgbFactors in edit-server.json give them)`,
        'warn',
      );
    }
  }
  return sessions;
}
