/**
 * One pipeline call on loaded sessions (`PipelineCall`), for one job or several merged ones:
 * decode the inputs, lay out outputs as index = image·n + variant, split them into micro-batches
 * that fit the memory budget (grouped by output size), run the model's pipeline over each, report
 * progress over each whole job with optional previews, and encode each job's results.
 */
import type { Component } from './components.js';
import type { ModelSpec } from './modelFolder.js';
import type { ModelSessions } from './sessions.js';
import type { PromptTokenizer } from './tokenizer.js';
import type { ResolvedEdit } from './request.js';
import { denoiseStepsPerBatch, referenceLayout, schedulerFor, sizeMultiple } from './request.js';
import { deriveSeed } from './random.js';
import { ImageDecodeError, decodeMask, decodeToTensor, encodeFromTensor, encodePreview, mimeTypeFor, probeImage } from './imageIO.js';
import type { DecodedImage } from './imageIO.js';

/** A decoded input with its mask (feathered by maskBlur), [H·W], 1 = edit, and its reference images. */
interface DecodedInput extends DecodedImage {
  mask: Float32Array | null;
  references: ReferenceImage[];
}
import { type BatchGeometry, estimateBatchBytes, perItemBytes, planMicroBatches } from './memory.js';
import { projectLatentToRgb } from './tensor.js';
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams, ReferenceImage, StepInfo } from './pipelines/common.js';
import { runFamily } from './pipelines/stages.js';
import { InferenceError, toInferenceError } from './errors.js';
import type { Scratch, ScratchPool } from './scratch.js';

export interface ModelRuntime {
  spec: ModelSpec;
  sessions: ModelSessions;
  tokenizer: PromptTokenizer;
  /** One per text encoder, in the family's order (the first is `tokenizer`). */
  tokenizers: PromptTokenizer[];
  /** Memory reused from run to run on this model. */
  scratch: ScratchPool;
}

export interface EditInput {
  bytes: Uint8Array;
  /** Where to edit (see imageIO's decodeMask); absent or null edits the whole image. */
  mask?: Uint8Array | null;
  /** Original file name, used by the CLI to name outputs. */
  name?: string;
  /** Declared width × height (the probe at submission), for the job queue's merging decisions. */
  pixels?: number;
  /**
   * Reference images (families with `referenceImages`), conditioning this input's outputs before
   * it; every input of a job holds the same arrays, whose own sizes are the edit's `references`.
   */
  references?: readonly Uint8Array[];
}

/** [issue 16 item 5] Inputs decoded at once per pipeline run (each may be up to MAX_INPUT_PIXELS). */
export const DECODE_CONCURRENCY = 2;

/** Bytes a decoded input holds for the whole run: planar float RGB at the output size, and its mask. */
export const decodedInputBytes = (width: number, height: number, masked = false): number => width * height * 4 * (masked ? 4 : 3);

/**
 * The size a reference image is held at for the run: its own, unless it has more than 4× the
 * pixels of its condition size; then (sharp's Lanczos) its aspect ratio at 4× those pixels, so
 * that the family's own resize (Pillow's Lanczos, as diffusers') starts from at most 2× per side.
 */
export function referenceHeldSize(source: { width: number; height: number }, condition: { width: number; height: number }): { width: number; height: number } {
  const most = 4 * condition.width * condition.height;
  if (source.width * source.height <= most) return { width: source.width, height: source.height };
  const scale = Math.sqrt(most / (source.width * source.height));
  return { width: Math.max(1, Math.round(source.width * scale)), height: Math.max(1, Math.round(source.height * scale)) };
}

/** Bytes a job's decoded reference images hold for the whole run: planar float RGB at their held sizes (decoded once per job). */
export function decodedReferenceBytes(spec: ModelSpec, edit: Pick<ResolvedEdit, 'references'>): number {
  const layout = referenceLayout(spec, edit);
  return (edit.references ?? []).reduce((n, source, k) => {
    const { width, height } = referenceHeldSize(source, layout[k]!);
    return n + decodedInputBytes(width, height);
  }, 0);
}

/** `fn` over `items` with at most `limit` calls in flight; results in order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

export interface OutputImage {
  index: number;
  inputIndex: number;
  variant: number;
  seed: number;
  bytes: Uint8Array;
  mimeType: string;
  width: number;
  height: number;
  /** Its key in the S3 bucket, when results are also kept there (src/jobs/resultStore.ts); its URLs are presigned on each read. */
  objectKey?: string;
}

export interface PreviewImage {
  index: number;
  bytes: Uint8Array;
  mimeType: string;
}

export interface ProgressUpdate {
  /** Denoise steps done (0 while the model loads). */
  step: number;
  totalSteps: number;
  /** 'loading-model' while the job waits for its model's sessions to open; absent for denoise steps. */
  phase?: 'loading-model';
  previews: PreviewImage[];
  /** Unix time in ms (sub-ms precision) when the step finished, for latency measurements. */
  emittedAt: number;
}

export interface EditUsage {
  inputImages: number;
  generatedImages: number;
  steps: number;
  batches: number;
  /** Jobs that shared these pipeline calls (1 when the job ran alone). */
  mergedJobs: number;
  processingTimeSeconds: number;
}

export interface EditOutput {
  images: OutputImage[];
  usage: EditUsage;
  /**
   * Where the time went: inside session.run (of which in the UNet/transformer: `denoiseMs`) versus
   * everything else, with two parts broken out: decoding the call's inputs, and encoding this
   * job's outputs after its last one was decoded (each output is encoded while the next decodes,
   * so this is the encoding left once the model is done). Session times are the call's own, up to
   * this job's last micro-batch; `byComponent` splits them (runs and milliseconds per component).
   */
  timings: {
    totalMs: number;
    sessionRunMs: number;
    denoiseMs: number;
    decodeMs: number;
    encodeMs: number;
    byComponent: Partial<Record<Component, { runs: number; ms: number }>>;
  };
  /** What the client should know about the result: each change from the size asked for (see `sizeWarnings`). */
  warnings: string[];
}

/** Milliseconds inside session.run of a call's own runs: all components, the denoising ones, and per component. */
type SessionMs = { all: number; denoise: number; byComponent: EditOutput['timings']['byComponent'] };

export interface RunOptions {
  memoryBudgetBytes: number;
  maxInputPixels: number;
  /** Longest side of progress previews. */
  previewMaxSide?: number;
  /** zlib level of PNG outputs (imageIO's default when absent). */
  pngCompressionLevel?: number;
}

/** One job's share of a (possibly merged) pipeline run. */
export interface EditTask {
  edit: ResolvedEdit;
  inputs: readonly EditInput[];
  onProgress?: (update: ProgressUpdate) => void;
  /** Throws (e.g. CANCELLED) when this task should stop; checked before every step. */
  throwIfAborted?: () => void;
  /** Called once, as soon as this task has its result or its error (before later tasks finish). */
  onSettled(outcome: { output: EditOutput } | { error: InferenceError }): void;
}

interface TaskItem extends PipelineItem {
  task: number;
}

interface TaskBatch {
  items: TaskItem[];
  width: number;
  height: number;
  /** The memory plan's figure for this micro-batch, weights and the call's decoded inputs included. */
  bytes: number;
}

/**
 * Settings that must be equal for tasks to share one pipeline call (cross-request batching).
 * Prompts, n, seeds, formats and preview cadence may differ: they are per item or per task.
 * Reference images may differ, their layout may not (their condition sizes: `referenceLayout`).
 */
export function mergeKey(spec: ModelSpec, edit: ResolvedEdit): string | null {
  if (edit.size === 'auto') return null; // sizes depend on each input; not worth merging
  return JSON.stringify([
    referenceLayout(spec, edit).map((r) => `${r.width}x${r.height}`),
    edit.size.width,
    edit.size.height,
    edit.steps,
    edit.scheduler,
    edit.guidanceScale,
    edit.imageGuidanceScale,
    edit.strength,
    edit.negativePrompt,
    edit.trueCfgScale,
    edit.maxSequenceLength,
  ]);
}

/**
 * Lays out every output in task then index order and splits them into micro-batches by memory and
 * token layout: the output size and the reference layout (`referenceLayout`, as mergeKey).
 */
function planBatches(
  spec: ModelSpec,
  edit: ResolvedEdit,
  tasks: readonly { edit: ResolvedEdit; decoded: readonly DecodedInput[] }[],
  memoryBudgetBytes: number,
): TaskBatch[] {
  const groups = new Map<string, Omit<TaskBatch, 'bytes'> & { edit: ResolvedEdit }>();
  tasks.forEach(({ edit: e, decoded }, task) => {
    const layout = referenceLayout(spec, e).map((r) => `${r.width}x${r.height}`);
    decoded.forEach((img, inputIndex) => {
      const key = [`${img.width}x${img.height}`, ...layout].join(',');
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { items: [], width: img.width, height: img.height, edit: e }));
      for (let variant = 0; variant < e.n; variant++) {
        group.items.push({
          task,
          inputIndex,
          variant,
          seed: deriveSeed(e.seed, inputIndex, variant),
          generator: e.generator,
          prompt: e.prompts[inputIndex]!,
          image: img.data,
          mask: img.mask,
          ...(img.references.length ? { references: img.references } : {}),
        });
      }
    });
  });
  const branches = spec.family.guidanceBranches(edit);
  // [issue 16 item 5] The decoded inputs (and each job's references) stay in memory for the whole run: the batches get the rest.
  const heldBytes = tasks.reduce(
    (sum, { decoded }) =>
      sum +
      decoded.reduce((n, img) => n + img.data.byteLength + (img.mask?.byteLength ?? 0), 0) +
      [...new Set(decoded.flatMap((img) => img.references))].reduce((n, r) => n + r.data.byteLength, 0),
    0,
  );
  const batches: TaskBatch[] = [];
  for (const group of groups.values()) {
    const geometry = {
      width: group.width,
      height: group.height,
      vaeScaleFactor: spec.vaeScaleFactor,
      branches,
      extraTokens: extraTokensOf(spec, group.edit),
      sizeMultiple: sizeMultiple(spec),
    };
    const sizes = planMicroBatches(group.items.length, spec.memory, geometry, memoryBudgetBytes - heldBytes);
    let offset = 0;
    for (const size of sizes) {
      const bytes = heldBytes + estimateBatchBytes(spec.memory, geometry, size);
      batches.push({ items: group.items.slice(offset, offset + size), width: group.width, height: group.height, bytes });
      offset += size;
    }
  }
  return batches;
}

/** How many outputs of this edit fit in one pipeline call under the budget (for merging decisions). */
export function outputsPerBatch(spec: ModelSpec, edit: ResolvedEdit, memoryBudgetBytes: number): number {
  if (edit.size === 'auto') return 0;
  const per = perItemBytes(spec.memory, {
    width: edit.size.width,
    height: edit.size.height,
    vaeScaleFactor: spec.vaeScaleFactor,
    branches: spec.family.guidanceBranches(edit),
    extraTokens: extraTokensOf(spec, edit),
  });
  return Math.max(0, Math.floor((memoryBudgetBytes - spec.memory.weightBytes - spec.memory.runtimeBytes) / per));
}

/** The family's extra attention tokens at an output size (text, a reference image), if any. */
function extraTokensOf(spec: ModelSpec, edit: ResolvedEdit): BatchGeometry['extraTokens'] {
  const extra = spec.family.extraAttentionTokens;
  return extra && ((width, height) => extra(spec, edit, width, height));
}

/** One output as the VAE decoded it (signed range), until it is encoded. */
interface DecodedOutput {
  item: TaskItem;
  rgb: Float32Array;
  width: number;
  height: number;
}

/**
 * One job's share of a pipeline call: its decoded inputs, its progress over the micro-batches that
 * hold its outputs, those outputs, and its result. It settles exactly once.
 */
class JobShare {
  decoded: DecodedInput[] = [];
  /** Micro-batches holding this job's outputs, and the index of its last one. */
  batches = 0;
  lastBatch = -1;
  /** It has all its outputs: it settles in `finish`. */
  finishing = false;
  private step = 0;
  /** Its outputs, each encoding since it was decoded. */
  private readonly encoded: Promise<OutputImage>[] = [];
  private settled = false;
  /** A failed job's error; a job that succeeded has none. */
  private error: InferenceError | null = null;

  constructor(
    readonly task: EditTask,
    readonly index: number,
  ) {}

  get running(): boolean {
    return !this.settled;
  }

  /** Why the job has stopped (its task says so now, or it settled earlier), or null while it goes on. */
  stopped(): InferenceError | null {
    if (this.settled) return this.error;
    try {
      this.task.throwIfAborted?.();
      return null;
    } catch (err) {
      this.fail(err);
      return this.error;
    }
  }

  fail(err: unknown): void {
    this.settle({ error: toInferenceError(err) });
  }

  succeed(output: EditOutput): void {
    this.settle({ output });
  }

  /** One more denoise step done; `previews` renders them when the job asked for them this step. */
  async stepDone(stepInBatch: number, stepsPerBatch: number, previews: (() => Promise<PreviewImage[]>) | null): Promise<void> {
    this.step += 1;
    const every = this.task.edit.previewEvery;
    const wanted = previews !== null && every > 0 && (stepInBatch % every === 0 || stepInBatch === stepsPerBatch);
    this.task.onProgress?.({
      step: this.step,
      totalSteps: stepsPerBatch * this.batches,
      previews: wanted ? await previews() : [],
      emittedAt: performance.timeOrigin + performance.now(),
    });
  }

  /** One of its outputs is being encoded (a failure surfaces in `outputs`). */
  encoding(image: Promise<OutputImage>): void {
    image.catch(() => undefined);
    this.encoded.push(image);
  }

  /** All its outputs, encoded, in index order; the job settles in `finish` from now on. */
  async outputs(): Promise<OutputImage[]> {
    this.finishing = true;
    return (await Promise.all(this.encoded)).sort((a, b) => a.index - b.index);
  }

  private settle(outcome: { output: EditOutput } | { error: InferenceError }): void {
    if (this.settled) throw new Error('a job settles once');
    this.settled = true;
    if ('error' in outcome) this.error = outcome.error;
    this.task.onSettled(outcome);
  }
}

/**
 * One pipeline call over several compatible tasks (equal `mergeKey`), in named steps:
 * `prepare` (decode every job's inputs, plan the micro-batches), `denoise` (run each micro-batch
 * on the model; each output is encoded as soon as the VAE has decoded it, and a job whose last
 * outputs are decoded is handed to `finish`), and `finish` (wait for a job's encodes and settle
 * it), which runs beside later work: the next micro-batch, or the next call (see ModelHost). Each job keeps its own progress, previews, seeds, result and usage; a job
 * that is cancelled settles at once and its rows are dropped from later micro-batches.
 */
export class PipelineCall {
  private readonly jobs: JobShare[];
  private readonly scratch: Scratch;
  private started = performance.now();
  /** Milliseconds inside session.run of this call's own runs: all components, and the denoising ones. */
  private readonly sessionMs: SessionMs = { all: 0, denoise: 0, byComponent: {} };
  private decodeMs = 0;
  private batches: TaskBatch[] = [];
  private readonly finishing: Promise<void>[] = [];

  constructor(
    /** The model: its spec and scratch pool are enough to `prepare`; `attach` gives the sessions before `denoise`. */
    private model: ModelRuntime | Pick<ModelRuntime, 'spec' | 'scratch'>,
    tasks: readonly EditTask[],
    private readonly options: RunOptions,
    /** The engine's turn to denoise (see PipelineHooks.turn); absent: always this call's. */
    private readonly turn?: () => Promise<() => void>,
  ) {
    this.jobs = tasks.map((task, t) => new JobShare(task, t));
    this.scratch = model.scratch.open();
  }

  /** The loaded model, for a call prepared before its model loaded (its load time is not the jobs' processing time). */
  attach(runtime: ModelRuntime): void {
    this.model = runtime;
    this.started = performance.now() - this.decodeMs;
  }

  private get runtime(): ModelRuntime {
    if (!('sessions' in this.model)) throw new InferenceError('INTERNAL', `model ${this.model.spec.id} is not loaded`);
    return this.model;
  }

  /** Whether any job is still to run (false once every job failed in `prepare`). */
  get hasWork(): boolean {
    return this.jobs.some((job) => job.running);
  }

  /** Tells each running job that the model is loading (a progress update at step 0, phase 'loading-model'). */
  loadingModel(): void {
    const emittedAt = performance.timeOrigin + performance.now();
    for (const job of this.jobs) if (job.running) job.task.onProgress?.({ step: 0, totalSteps: 0, previews: [], emittedAt, phase: 'loading-model' });
  }

  /** The memory plan's figure for the largest micro-batch (weights and decoded inputs included); 0 before `prepare`. */
  get plannedBytes(): number {
    return Math.max(0, ...this.batches.map((b) => b.bytes));
  }

  /** Decodes every job's inputs and plans the micro-batches; a job whose inputs fail fails alone. */
  async prepare(): Promise<void> {
    // Jobs are decoded one after another (DECODE_CONCURRENCY inputs at a time overall).
    for (const job of this.jobs) {
      try {
        job.decoded = await this.decodeInputs(job.task);
      } catch (err) {
        job.fail(err);
      }
    }
    this.decodeMs = performance.now() - this.started;
    try {
      this.batches = planBatches(
        this.model.spec,
        this.shared,
        this.jobs.map((job) => ({ edit: job.task.edit, decoded: job.running ? job.decoded : [] })),
        this.options.memoryBudgetBytes,
      );
    } catch (err) {
      for (const job of this.jobs) if (job.running) job.fail(err);
      this.batches = [];
    }
    this.batches.forEach((batch, bi) => {
      for (const t of new Set(batch.items.map((i) => i.task))) {
        this.jobs[t]!.batches += 1;
        this.jobs[t]!.lastBatch = bi;
      }
    });
    for (const job of this.jobs) if (job.running && job.batches === 0) job.fail(new InferenceError('BAD_USER_INPUT', 'the job has no input images'));
  }

  /** After an unexpected failure of the call itself: every job still running fails with it. */
  abandon(err: unknown): void {
    for (const job of this.jobs) if (job.running && !job.finishing) job.fail(err);
    this.scratch.close();
  }

  /**
   * Runs every micro-batch on the model; resolves when the model is free for the next call. Jobs
   * finish (`finished`) in the background.
   */
  async denoise(): Promise<void> {
    const ctx: PipelineContext = {
      sessions: this.runtime.sessions.metered((component, ms) => {
        this.sessionMs.all += ms;
        if (component === this.runtime.spec.family.denoiser.component) this.sessionMs.denoise += ms;
        const c = (this.sessionMs.byComponent[component] ??= { runs: 0, ms: 0 });
        c.runs += 1;
        c.ms += ms;
      }),
      tokenizer: this.runtime.tokenizer,
      tokenizers: this.runtime.tokenizers,
      embeddings: new Map(),
      createScheduler: (name) => schedulerFor(this.runtime.spec, name),
      scratch: this.scratch,
    };
    try {
      for (const [bi, batch] of this.batches.entries()) {
        // Each micro-batch gives its scratch buffers back to the next one.
        await this.scratch.scoped(() => this.runBatch(ctx, bi, batch));
      }
    } finally {
      // Outputs in encoding point into ONNX Runtime's buffers, not scratch: the run's memory goes back.
      this.scratch.close();
    }
  }

  /** Every job has settled. */
  get finished(): Promise<void> {
    return Promise.all(this.finishing).then(() => undefined);
  }

  private get shared(): ResolvedEdit {
    return this.jobs[0]!.task.edit;
  }

  private async decodeInputs(task: EditTask): Promise<DecodedInput[]> {
    const { spec } = this.model;
    const multiple = sizeMultiple(spec);
    const [dw, dh] = spec.defaults.size.split('x').map(Number);
    const limits = { maxInputPixels: this.options.maxInputPixels };
    const references = await this.decodeReferences(task);
    // [issue 16 item 5] Bounded: each decode briefly holds its whole source image (up to
    // MAX_INPUT_PIXELS × 4 bytes in libvips), so 16 large inputs at once peaked at gigabytes.
    return mapBounded(task.inputs, DECODE_CONCURRENCY, async (input, i) => {
      const mine = (input.references ?? []).map((bytes) => references.get(bytes)!);
      const image = await decodeToTensor(input.bytes, task.edit.size, {
        fit: task.edit.fit,
        multiple,
        maxPixels: spec.limits.maxPixels,
        defaultSize: { width: dw ?? 512, height: dh ?? 512 },
        limits,
        allocate: (length) => this.scratch.floats(length),
      });
      if (!input.mask) return { ...image, mask: null, references: mine };
      try {
        return {
          ...image,
          references: mine,
          mask: await decodeMask(input.mask, image.source, image, { limits, blur: task.edit.maskBlur, size: task.edit.size, fit: task.edit.fit }),
        };
      } catch (err) {
        if (err instanceof ImageDecodeError) throw new InferenceError(err.code, `masks[${i}]: ${err.message}`);
        throw err;
      }
    });
  }

  /**
   * A task's reference images, each decoded once (inputs share the arrays) at its held size
   * (`referenceHeldSize`: its own unless large); their own sizes must be the edit's.
   */
  private async decodeReferences(task: EditTask): Promise<Map<Uint8Array, ReferenceImage>> {
    const { spec } = this.model;
    const distinct = [...new Set(task.inputs.flatMap((input) => input.references ?? []))];
    const declared = task.edit.references ?? [];
    if (distinct.length !== declared.length)
      throw new InferenceError('INTERNAL', `the job has ${distinct.length} reference images and its edit ${declared.length} reference sizes`);
    const layout = referenceLayout(spec, task.edit);
    const limits = { maxInputPixels: this.options.maxInputPixels };
    const decoded = await mapBounded(distinct, DECODE_CONCURRENCY, async (bytes, k): Promise<ReferenceImage> => {
      try {
        const probe = await probeImage(bytes, limits);
        const want = declared[k]!;
        if (probe.width !== want.width || probe.height !== want.height)
          throw new InferenceError(
            'INTERNAL',
            `reference image ${k} is ${probe.width}x${probe.height}, not the ${want.width}x${want.height} its edit declares`,
          );
        const size = referenceHeldSize(probe, layout[k]!);
        const image = await decodeToTensor(bytes, size, {
          fit: 'stretch',
          multiple: 1,
          maxPixels: size.width * size.height,
          defaultSize: size,
          limits,
          allocate: (length) => this.scratch.floats(length),
        });
        return { data: image.data, width: image.width, height: image.height, source: image.source };
      } catch (err) {
        if (err instanceof ImageDecodeError) throw new InferenceError(err.code, `referenceImages[${k}]: ${err.message}`);
        throw err;
      }
    });
    return new Map(distinct.map((bytes, k) => [bytes, decoded[k]!]));
  }

  /** One micro-batch: the rows of jobs still running, through the family's pipeline. */
  private async runBatch(ctx: PipelineContext, bi: number, planned: TaskBatch): Promise<void> {
    const { spec } = this.runtime;
    const shared = this.shared;
    const items = planned.items.filter((i) => this.jobs[i.task]!.running);
    if (items.length === 0) return;
    const batch = { ...planned, items };
    const jobs = [...new Set(items.map((i) => i.task))].map((t) => this.jobs[t]!);
    const stepsPerBatch = denoiseStepsPerBatch(spec, shared);
    let stepInBatch = 0;
    // Each output is composited and encoded as soon as it is decoded, beside the decoding of the next.
    const handed = new Set<number>();
    const decoded = (i: number, rgb: Float32Array): void => {
      if (handed.has(i)) return;
      handed.add(i);
      const item = batch.items[i]!;
      const job = this.jobs[item.task]!;
      if (!job.running) return;
      if (item.mask) compositeOutside(rgb, item.image, item.mask);
      job.encoding(this.encode(job, { item, rgb, width: batch.width, height: batch.height }));
    };
    const hooks: PipelineHooks = {
      turn: this.turn,
      decoded,
      throwIfAborted: () => {
        const reasons = jobs.map((job) => job.stopped());
        // Every job of the batch has stopped (each settled with its own error): end the pipeline.
        if (reasons.every((r) => r !== null)) throw reasons.at(-1);
      },
      afterStep: async (info: StepInfo) => {
        stepInBatch += 1;
        for (const job of jobs.filter((j) => j.running)) {
          const previews = spec.preview ? () => renderPreviews(spec, batch, info, this.options.previewMaxSide ?? 128, job.index, job.task.edit.n) : null;
          await job.stepDone(stepInBatch, stepsPerBatch, previews);
        }
      },
    };
    let images: Float32Array[];
    try {
      images = await runFamily(spec.family, ctx, batch.items, paramsFor(shared, batch), hooks);
    } catch (err) {
      for (const job of jobs) if (job.running) job.fail(err);
      return;
    }
    images.forEach((rgb, i) => decoded(i, rgb));
    // Jobs whose last outputs were in this micro-batch are done: settle each once its encodes are.
    const sessionMs: SessionMs = {
      ...this.sessionMs,
      byComponent: structuredClone(this.sessionMs.byComponent),
    };
    for (const job of jobs) if (job.running && job.lastBatch === bi) this.finishing.push(this.finish(job, stepsPerBatch, sessionMs));
  }

  /** Encodes one output (in memory of its own, so it may run beside later decoding and the next call). */
  private async encode(job: JobShare, { item, rgb, width, height }: DecodedOutput): Promise<OutputImage> {
    const { edit } = job.task;
    const bytes = await this.runtime.scratch.run((scratch) =>
      encodeFromTensor(rgb, width, height, edit.outputFormat, edit.outputQuality ?? undefined, {
        pngCompressionLevel: this.options.pngCompressionLevel,
        allocate: (n) => scratch.bytes(n),
        range: 'signed',
      }),
    );
    return {
      index: item.inputIndex * edit.n + item.variant,
      inputIndex: item.inputIndex,
      variant: item.variant,
      seed: item.seed,
      bytes,
      mimeType: mimeTypeFor(edit.outputFormat),
      width,
      height,
    };
  }

  /** Waits for a job's outputs to be encoded and settles it. */
  private async finish(job: JobShare, stepsPerBatch: number, sessionMs: SessionMs): Promise<void> {
    let output: EditOutput;
    try {
      const waitFrom = performance.now();
      const images = await job.outputs();
      const totalMs = performance.now() - this.started;
      const encodeMs = performance.now() - waitFrom;
      output = {
        images,
        usage: {
          inputImages: job.task.inputs.length,
          generatedImages: images.length,
          steps: stepsPerBatch * job.batches,
          batches: job.batches,
          mergedJobs: this.jobs.length,
          processingTimeSeconds: totalMs / 1000,
        },
        timings: {
          totalMs,
          sessionRunMs: sessionMs.all,
          denoiseMs: sessionMs.denoise,
          decodeMs: this.decodeMs,
          encodeMs,
          byComponent: sessionMs.byComponent,
        },
        warnings: sizeWarnings(this.runtime.spec, job.task.edit, job.decoded),
      };
    } catch (err) {
      job.fail(err);
      return;
    }
    job.succeed(output);
  }
}

/**
 * Each change from the size asked for: an explicit size snapped down to the model's multiple, or
 * (`auto`) an input whose own size was snapped or scaled into the model's pixel limit.
 */
export function sizeWarnings(spec: ModelSpec, edit: Pick<ResolvedEdit, 'size' | 'sizeAsked'>, decoded: readonly DecodedImage[]): string[] {
  const rule = `model ${spec.id}'s sizes are multiples of ${sizeMultiple(spec)} of at most ${spec.limits.maxPixels} pixels`;
  if (edit.size !== 'auto') {
    const made = `${edit.size.width}x${edit.size.height}`;
    return made === edit.sizeAsked ? [] : [`size ${edit.sizeAsked} was changed to ${made}: ${rule}`];
  }
  return decoded.flatMap((img, i) => {
    const { width, height } = img.source;
    return width === img.width && height === img.height ? [] : [`image ${i} is ${width}x${height}; size auto made it ${img.width}x${img.height}: ${rule}`];
  });
}

function paramsFor(shared: ResolvedEdit, batch: TaskBatch): PipelineParams {
  return {
    width: batch.width,
    height: batch.height,
    steps: shared.steps,
    guidanceScale: shared.guidanceScale,
    imageGuidanceScale: shared.imageGuidanceScale,
    strength: shared.strength,
    negativePrompt: shared.negativePrompt,
    scheduler: shared.scheduler,
    trueCfgScale: shared.trueCfgScale,
    maxSequenceLength: shared.maxSequenceLength,
  };
}

async function renderPreviews(spec: ModelSpec, batch: TaskBatch, info: StepInfo, maxSide: number, task: number, n: number): Promise<PreviewImage[]> {
  const projection = spec.preview!;
  const pixels = info.latentHeight * info.latentWidth;
  const itemSize = info.latentChannels * pixels;
  const mine = batch.items.map((item, b) => ({ item, b })).filter(({ item }) => item.task === task);
  return Promise.all(
    mine.map(async ({ item, b }) => {
      const rgb = projectLatentToRgb(
        info.predOriginal.subarray(b * itemSize, (b + 1) * itemSize),
        info.latentChannels,
        pixels,
        projection.factors,
        projection.bias,
      );
      const { bytes, mimeType } = await encodePreview(rgb, info.latentWidth, info.latentHeight, maxSide);
      return { index: item.inputIndex * n + item.variant, bytes, mimeType };
    }),
  );
}

/**
 * Outside the mask an output is its input, exactly: out = m·decoded + (1−m)·input, in the VAE's
 * signed range, in place.
 */
function compositeOutside(rgb: Float32Array, image: Float32Array, mask: Float32Array): void {
  const n = mask.length;
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < n; p++) {
      const m = mask[p]!;
      rgb[c * n + p] = m * rgb[c * n + p]! + (1 - m) * (2 * image[c * n + p]! - 1);
    }
  }
}
