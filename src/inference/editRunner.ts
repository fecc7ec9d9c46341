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
import { denoiseStepsPerBatch, sizeMultiple } from './request.js';
import { createScheduler, parseSchedulerConfig } from './schedulers/index.js';
import { deriveSeed } from './random.js';
import { decodeToTensor, encodeFromTensor, encodePreview, mimeTypeFor } from './imageIO.js';
import type { DecodedImage } from './imageIO.js';
import { planMicroBatches } from './memory.js';
import { projectLatentToRgb } from './tensor.js';
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams, StepInfo } from './pipelines/common.js';
import { instructPix2PixUsesGuidance, runInstructPix2Pix } from './pipelines/instructPix2Pix.js';
import { runImg2Img } from './pipelines/img2img.js';
import { toInferenceError } from './errors.js';

export interface ModelRuntime {
  spec: ModelSpec;
  sessions: ModelSessions;
  tokenizer: PromptTokenizer;
}

export interface EditInput {
  bytes: Uint8Array;
  /** Original file name, used by the CLI to name outputs. */
  name?: string;
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
  step: number;
  totalSteps: number;
  previews: PreviewImage[];
  /** Unix time in ms (sub-ms precision) when the step finished, for latency measurements. */
  emittedAt: number;
}

export interface EditUsage {
  inputImages: number;
  generatedImages: number;
  steps: number;
  batches: number;
  processingTimeSeconds: number;
}

export interface EditOutput {
  images: OutputImage[];
  usage: EditUsage;
  /** Where the time went: inside session.run versus everything else. */
  timings: { totalMs: number; sessionRunMs: number };
}

export interface RunOptions {
  memoryBudgetBytes: number;
  maxInputPixels: number;
  /** Longest side of progress previews. */
  previewMaxSide?: number;
  onProgress?: (update: ProgressUpdate) => void;
  throwIfAborted?: () => void;
}

interface MicroBatch {
  items: PipelineItem[];
  width: number;
  height: number;
}

function guidanceBranches(spec: ModelSpec, edit: ResolvedEdit): number {
  if (spec.family === 'instruct-pix2pix') return instructPix2PixUsesGuidance(edit) ? 3 : 1;
  return edit.guidanceScale > 1 ? 2 : 1;
}

function sessionRunMs(sessions: ModelSessions): number {
  const r = sessions.stats.runMs;
  return r.textEncoder + r.unet + r.vaeEncoder + r.vaeDecoder;
}

/** Lays out every output in index order and splits them into micro-batches by size and memory. */
export function planEdit(spec: ModelSpec, edit: ResolvedEdit, decoded: readonly DecodedImage[], memoryBudgetBytes: number): MicroBatch[] {
  const groups = new Map<string, MicroBatch>();
  decoded.forEach((img, inputIndex) => {
    const key = `${img.width}x${img.height}`;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { items: [], width: img.width, height: img.height }));
    for (let variant = 0; variant < edit.n; variant++) {
      group.items.push({ inputIndex, variant, seed: deriveSeed(edit.seed, inputIndex, variant), prompt: edit.prompts[inputIndex]!, image: img.data });
    }
  });
  const branches = guidanceBranches(spec, edit);
  const batches: MicroBatch[] = [];
  for (const group of groups.values()) {
    const sizes = planMicroBatches(group.items.length, spec.memory, { width: group.width, height: group.height, vaeScaleFactor: spec.vaeScaleFactor, branches }, memoryBudgetBytes);
    let offset = 0;
    for (const size of sizes) {
      batches.push({ items: group.items.slice(offset, offset + size), width: group.width, height: group.height });
      offset += size;
    }
  }
  return batches;
}

export async function runEdit(runtime: ModelRuntime, edit: ResolvedEdit, inputs: readonly EditInput[], options: RunOptions): Promise<EditOutput> {
  const started = performance.now();
  const runMsBefore = sessionRunMs(runtime.sessions);
  const { spec } = runtime;
  try {
    const multiple = sizeMultiple(spec);
    const [dw, dh] = spec.defaults.size.split('x').map(Number);
    const decoded = await Promise.all(
      inputs.map((input) =>
        decodeToTensor(input.bytes, edit.size, {
          multiple,
          maxPixels: spec.limits.maxPixels,
          defaultSize: { width: dw ?? 512, height: dh ?? 512 },
          limits: { maxInputPixels: options.maxInputPixels },
        }),
      ),
    );
    const batches = planEdit(spec, edit, decoded, options.memoryBudgetBytes);
    const stepsPerBatch = denoiseStepsPerBatch(spec, edit);
    const totalSteps = stepsPerBatch * batches.length;
    const ctx: PipelineContext = {
      sessions: runtime.sessions,
      tokenizer: runtime.tokenizer,
      embeddings: new Map(),
      createScheduler: (name) => createScheduler(name, parseSchedulerConfig(spec.schedulerJson, name)),
    };
    const run = spec.family === 'instruct-pix2pix' ? runInstructPix2Pix : runImg2Img;
    const results: { item: PipelineItem; rgb: Float32Array; width: number; height: number }[] = [];
    let step = 0;
    for (const batch of batches) {
      let stepInBatch = 0;
      const hooks: PipelineHooks = {
        throwIfAborted: () => options.throwIfAborted?.(),
        afterStep: async (info: StepInfo) => {
          step += 1;
          stepInBatch += 1;
          const wantPreview = edit.previewEvery > 0 && spec.preview !== null && (stepInBatch % edit.previewEvery === 0 || stepInBatch === stepsPerBatch);
          const previews = wantPreview ? await renderPreviews(spec, batch, info, options.previewMaxSide ?? 128, edit.n) : [];
          options.onProgress?.({ step, totalSteps, previews, emittedAt: performance.timeOrigin + performance.now() });
        },
      };
      const params: PipelineParams = {
        width: batch.width,
        height: batch.height,
        steps: edit.steps,
        guidanceScale: edit.guidanceScale,
        imageGuidanceScale: edit.imageGuidanceScale,
        strength: edit.strength,
        negativePrompt: edit.negativePrompt,
        scheduler: edit.scheduler,
      };
      const images = await run(ctx, batch.items, params, hooks);
      images.forEach((rgb, i) => results.push({ item: batch.items[i]!, rgb, width: batch.width, height: batch.height }));
    }
    const mimeType = mimeTypeFor(edit.outputFormat);
    const images = await Promise.all(
      results.map(async ({ item, rgb, width, height }) => ({
        index: item.inputIndex * edit.n + item.variant,
        inputIndex: item.inputIndex,
        variant: item.variant,
        seed: item.seed,
        bytes: await encodeFromTensor(rgb, width, height, edit.outputFormat, edit.outputQuality ?? undefined),
        mimeType,
        width,
        height,
      })),
    );
    images.sort((a, b) => a.index - b.index);
    const totalMs = performance.now() - started;
    return {
      images,
      usage: {
        inputImages: inputs.length,
        generatedImages: images.length,
        steps: totalSteps,
        batches: batches.length,
        processingTimeSeconds: totalMs / 1000,
      },
      timings: { totalMs, sessionRunMs: sessionRunMs(runtime.sessions) - runMsBefore },
    };
  } catch (err) {
    throw toInferenceError(err);
  }
}

async function renderPreviews(spec: ModelSpec, batch: MicroBatch, info: StepInfo, maxSide: number, n: number): Promise<PreviewImage[]> {
  const projection = spec.preview!;
  const pixels = info.latentHeight * info.latentWidth;
  const itemSize = info.latentChannels * pixels;
  return Promise.all(
    batch.items.map(async (item, b) => {
      const rgb = projectLatentToRgb(info.predOriginal.subarray(b * itemSize, (b + 1) * itemSize), info.latentChannels, pixels, projection.factors, projection.bias);
      const { bytes, mimeType } = await encodePreview(rgb, info.latentWidth, info.latentHeight, maxSide);
      return { index: item.inputIndex * n + item.variant, bytes, mimeType };
    }),
  );
}
