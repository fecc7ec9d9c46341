/**
 * One edit job end to end on loaded sessions: decode the inputs, lay out outputs as
 * index = image·n + variant, split them into micro-batches that fit the memory budget (grouped by
 * output size), run the model's pipeline over each, report progress over the whole job with
 * optional previews, and encode the results.
 */
import type { ModelSpec } from './modelFolder.js';
import type { ModelSessions } from './sessions.js';
import type { PromptTokenizer } from './tokenizer.js';
import type { ResolvedEdit } from './request.js';
import { denoiseStepsPerBatch, schedulerFor, sizeMultiple } from './request.js';
import { deriveSeed } from './random.js';
import { ImageDecodeError, decodeMask, decodeToTensor, encodeFromTensor, encodePreview, mimeTypeFor } from './imageIO.js';
import type { DecodedImage } from './imageIO.js';

/** A decoded input with its mask (feathered by maskBlur), [H·W], 1 = edit. */
interface DecodedInput extends DecodedImage {
  mask: Float32Array | null;
}
import { perItemBytes, planMicroBatches } from './memory.js';
import { projectLatentToRgb } from './tensor.js';
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams, StepInfo } from './pipelines/common.js';
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
}

/** [issue 16 item 5] Inputs decoded at once per pipeline run (each may be up to MAX_INPUT_PIXELS). */
export const DECODE_CONCURRENCY = 2;

/** Bytes a decoded input holds for the whole run: planar float RGB at the output size, and its mask. */
export const decodedInputBytes = (width: number, height: number, masked = false): number => width * height * 4 * (masked ? 4 : 3);

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
   * Where the time went: inside session.run versus everything else, with the two biggest parts of
   * the rest (decoding the run's inputs, encoding this job's outputs) broken out.
   */
  timings: { totalMs: number; sessionRunMs: number; decodeMs: number; encodeMs: number };
}

export interface RunOptions {
  memoryBudgetBytes: number;
  maxInputPixels: number;
  /** Longest side of progress previews. */
  previewMaxSide?: number;
  /** zlib level of PNG outputs (imageIO's default when absent). */
  pngCompressionLevel?: number;
  onProgress?: (update: ProgressUpdate) => void;
  throwIfAborted?: () => void;
}

function sessionRunMs(sessions: ModelSessions): number {
  const r = sessions.stats.runMs;
  return Object.values(r).reduce((a, b) => a + b, 0);
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
}

/**
 * Settings that must be equal for tasks to share one pipeline call (cross-request batching).
 * Prompts, n, seeds, formats and preview cadence may differ: they are per item or per task.
 */
export function mergeKey(edit: ResolvedEdit): string | null {
  if (edit.size === 'auto') return null; // sizes depend on each input; not worth merging
  return JSON.stringify([
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

/** Lays out every output in task then index order and splits them into micro-batches by size and memory. */
function planBatches(
  spec: ModelSpec,
  edit: ResolvedEdit,
  tasks: readonly { edit: ResolvedEdit; decoded: readonly DecodedInput[] }[],
  memoryBudgetBytes: number,
): TaskBatch[] {
  const groups = new Map<string, TaskBatch>();
  tasks.forEach(({ edit: e, decoded }, task) => {
    decoded.forEach((img, inputIndex) => {
      const key = `${img.width}x${img.height}`;
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { items: [], width: img.width, height: img.height }));
      for (let variant = 0; variant < e.n; variant++) {
        group.items.push({
          task,
          inputIndex,
          variant,
          seed: deriveSeed(e.seed, inputIndex, variant),
          prompt: e.prompts[inputIndex]!,
          image: img.data,
          mask: img.mask,
        });
      }
    });
  });
  const branches = spec.pipeline.guidanceBranches(edit);
  // [issue 16 item 5] The decoded inputs stay in memory for the whole run: the batches get the rest.
  const heldBytes = tasks.reduce((sum, { decoded }) => sum + decoded.reduce((n, img) => n + img.data.byteLength + (img.mask?.byteLength ?? 0), 0), 0);
  const batches: TaskBatch[] = [];
  for (const group of groups.values()) {
    const extraTokens = spec.pipeline.extraAttentionTokens?.(spec, edit, group.width, group.height) ?? 0;
    const sizes = planMicroBatches(
      group.items.length,
      spec.memory,
      { width: group.width, height: group.height, vaeScaleFactor: spec.vaeScaleFactor, branches, extraTokens },
      memoryBudgetBytes - heldBytes,
    );
    let offset = 0;
    for (const size of sizes) {
      batches.push({ items: group.items.slice(offset, offset + size), width: group.width, height: group.height });
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
    branches: spec.pipeline.guidanceBranches(edit),
    extraTokens: spec.pipeline.extraAttentionTokens?.(spec, edit, edit.size.width, edit.size.height) ?? 0,
  });
  return Math.max(0, Math.floor((memoryBudgetBytes - spec.memory.weightBytes) / per));
}

class TaskStopped extends Error {}

/**
 * Runs several compatible tasks (equal `mergeKey`) as shared pipeline calls. Each task keeps its
 * own progress (counted over the micro-batches holding its outputs), previews, seeds, result and
 * usage; a task that is cancelled settles at once and its rows are dropped from later batches.
 */
export function runEdits(runtime: ModelRuntime, tasks: readonly EditTask[], options: RunOptions): Promise<void> {
  return runtime.scratch.run((scratch) => runEditsWith(scratch, runtime, tasks, options));
}

async function runEditsWith(scratch: Scratch, runtime: ModelRuntime, tasks: readonly EditTask[], options: RunOptions): Promise<void> {
  const { spec } = runtime;
  const started = performance.now();
  const runMsBefore = sessionRunMs(runtime.sessions);
  const settled = tasks.map(() => false);
  const settle = (t: number, outcome: { output: EditOutput } | { error: InferenceError }): void => {
    if (settled[t]) return;
    settled[t] = true;
    tasks[t]!.onSettled(outcome);
  };
  const fail = (t: number, err: unknown): void => settle(t, { error: toInferenceError(err) });
  const alive = (t: number): boolean => !settled[t];
  try {
    const shared = tasks[0]!.edit;
    const multiple = sizeMultiple(spec);
    const [dw, dh] = spec.defaults.size.split('x').map(Number);
    // Merged tasks are decoded one after another (DECODE_CONCURRENCY inputs at a time overall).
    const decodedPerTask = await mapBounded(tasks, 1, async (task, t) => {
      try {
        // [issue 16 item 5] Bounded: each decode briefly holds its whole source image (up to
        // MAX_INPUT_PIXELS × 4 bytes in libvips), so 16 large inputs at once peaked at gigabytes.
        return await mapBounded(task.inputs, DECODE_CONCURRENCY, async (input, i) => {
          const limits = { maxInputPixels: options.maxInputPixels };
          const image = await decodeToTensor(input.bytes, task.edit.size, {
            multiple,
            maxPixels: spec.limits.maxPixels,
            defaultSize: { width: dw ?? 512, height: dh ?? 512 },
            limits,
            allocate: (length) => scratch.floats(length),
          });
          if (!input.mask) return { ...image, mask: null };
          try {
            return { ...image, mask: await decodeMask(input.mask, image.source, image, { limits, blur: task.edit.maskBlur }) };
          } catch (err) {
            if (err instanceof ImageDecodeError) throw new InferenceError(err.code, `masks[${i}]: ${err.message}`);
            throw err;
          }
        });
      } catch (err) {
        fail(t, err);
        return [] as DecodedInput[];
      }
    });
    const decodeMs = performance.now() - started;
    let batches: TaskBatch[];
    try {
      batches = planBatches(
        spec,
        shared,
        tasks.map((task, t) => ({ edit: task.edit, decoded: alive(t) ? decodedPerTask[t]! : [] })),
        options.memoryBudgetBytes,
      );
    } catch (err) {
      tasks.forEach((_, t) => fail(t, err));
      return;
    }
    const stepsPerBatch = denoiseStepsPerBatch(spec, shared);
    const batchesOfTask = tasks.map((_, t) => batches.filter((b) => b.items.some((i) => i.task === t)).length);
    const lastBatchOfTask = tasks.map((_, t) => batches.reduce((last, b, bi) => (b.items.some((i) => i.task === t) ? bi : last), -1));
    const stepOfTask = tasks.map(() => 0);
    // Each output's pixels as the VAE decoded them (signed range), until its job is encoded.
    const results = tasks.map(() => [] as { item: TaskItem; rgb: Float32Array; width: number; height: number }[]);
    const ctx: PipelineContext = {
      sessions: runtime.sessions,
      tokenizer: runtime.tokenizer,
      tokenizers: runtime.tokenizers,
      embeddings: new Map(),
      createScheduler: (name) => schedulerFor(spec, name),
      scratch,
    };

    for (const [bi, planned] of batches.entries()) {
      // Each micro-batch gives its scratch buffers back to the next one.
      await scratch.scoped(async () => {
        const batch = { ...planned, items: planned.items.filter((i) => alive(i.task)) };
        if (batch.items.length === 0) return;
        const taskIds = [...new Set(batch.items.map((i) => i.task))];
        let stepInBatch = 0;
        const hooks: PipelineHooks = {
          throwIfAborted: () => {
            for (const t of taskIds) {
              if (!alive(t)) continue;
              try {
                tasks[t]!.throwIfAborted?.();
              } catch (err) {
                fail(t, err);
              }
            }
            if (!taskIds.some(alive)) throw new TaskStopped();
          },
          afterStep: async (info: StepInfo) => {
            stepInBatch += 1;
            for (const t of taskIds) {
              if (!alive(t)) continue;
              const task = tasks[t]!;
              stepOfTask[t]! += 1;
              const every = task.edit.previewEvery;
              const wantPreview = every > 0 && spec.preview !== null && (stepInBatch % every === 0 || stepInBatch === stepsPerBatch);
              const previews = wantPreview ? await renderPreviews(spec, batch, info, options.previewMaxSide ?? 128, t, task.edit.n) : [];
              task.onProgress?.({
                step: stepOfTask[t]!,
                totalSteps: stepsPerBatch * batchesOfTask[t]!,
                previews,
                emittedAt: performance.timeOrigin + performance.now(),
              });
            }
          },
        };
        const params: PipelineParams = {
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
        let images: Float32Array[];
        try {
          images = await spec.pipeline.run(ctx, batch.items, params, hooks);
        } catch (err) {
          if (err instanceof TaskStopped) return;
          taskIds.forEach((t) => fail(t, err));
          return;
        }
        images.forEach((rgb, i) => {
          const item = batch.items[i]!;
          if (item.mask) compositeOutside(rgb, item.image, item.mask);
          results[item.task]!.push({ item, rgb, width: batch.width, height: batch.height });
        });
        // Tasks whose last outputs were in this batch are done: encode and hand them over now.
        await Promise.all(
          taskIds
            .filter((t) => alive(t) && lastBatchOfTask[t] === bi)
            .map(async (t) => {
              try {
                const task = tasks[t]!;
                const mimeType = mimeTypeFor(task.edit.outputFormat);
                const encodeStarted = performance.now();
                const out = await Promise.all(
                  results[t]!.map(async ({ item, rgb, width, height }) => ({
                    index: item.inputIndex * task.edit.n + item.variant,
                    inputIndex: item.inputIndex,
                    variant: item.variant,
                    seed: item.seed,
                    bytes: await encodeFromTensor(rgb, width, height, task.edit.outputFormat, task.edit.outputQuality ?? undefined, {
                      pngCompressionLevel: options.pngCompressionLevel,
                      allocate: (bytes) => scratch.bytes(bytes),
                      range: 'signed',
                    }),
                    mimeType,
                    width,
                    height,
                  })),
                );
                const now = performance.now();
                out.sort((a, b) => a.index - b.index);
                const totalMs = now - started;
                settle(t, {
                  output: {
                    images: out,
                    usage: {
                      inputImages: task.inputs.length,
                      generatedImages: out.length,
                      steps: stepsPerBatch * batchesOfTask[t]!,
                      batches: batchesOfTask[t]!,
                      mergedJobs: tasks.length,
                      processingTimeSeconds: totalMs / 1000,
                    },
                    timings: { totalMs, sessionRunMs: sessionRunMs(runtime.sessions) - runMsBefore, decodeMs, encodeMs: now - encodeStarted },
                  },
                });
              } catch (err) {
                fail(t, err);
              }
            }),
        );
      });
    }
  } finally {
    tasks.forEach((_, t) => fail(t, new InferenceError('INTERNAL', 'the pipeline run ended without a result for this job')));
  }
}

/** A single edit on its own: `runEdits` with one task. */
export function runEdit(runtime: ModelRuntime, edit: ResolvedEdit, inputs: readonly EditInput[], options: RunOptions): Promise<EditOutput> {
  return new Promise((resolve, reject) => {
    void runEdits(
      runtime,
      [
        {
          edit,
          inputs,
          onProgress: options.onProgress,
          throwIfAborted: options.throwIfAborted,
          onSettled: (o) => ('output' in o ? resolve(o.output) : reject(o.error)),
        },
      ],
      options,
    );
  });
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
