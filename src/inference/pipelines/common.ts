/**
 * The parts both pipeline families share: prompt encoding (once per distinct prompt), the denoise
 * loop, VAE encode/decode, and per-item noise.
 */
import type { ModelSessions } from '../sessions.js';
import type { PromptTokenizer } from '../tokenizer.js';
import type { EditSchedulerName, Scheduler } from '../schedulers/types.js';
import { createNoiseGenerator, type NoiseGenerator, type NoiseGeneratorName } from '../random.js';
import type { Scratch } from '../scratch.js';
import { concatBatches, scaleInto, writeSignedUnit } from '../tensor.js';

/** One output of a batch: variant `variant` of input `inputIndex`. */
export interface PipelineItem {
  inputIndex: number;
  variant: number;
  seed: number;
  /** Which generator `seed` seeds. */
  generator: NoiseGeneratorName;
  prompt: string;
  /** The decoded input, planar [3, H, W] in [0,1]; variants of one input share the array. */
  image: Float32Array;
  /** Where to edit, [H·W] in [0,1] (1 = edit); null edits the whole image. */
  mask: Float32Array | null;
  /** Reference images, conditioning this output before `image` (families with `referenceImages`); absent: none. */
  references?: readonly ReferenceImage[];
}

/**
 * A decoded reference image: planar [3, H, W] in [0,1] at its own size, or scaled down to 4× its
 * condition size's pixels where it is larger (editRunner's `referenceHeldSize`); the family resizes
 * it to what it needs. Items of one job share them.
 */
export interface ReferenceImage {
  data: Float32Array;
  width: number;
  height: number;
  /** Its own (orientation-corrected) size, before resizing. */
  source: { width: number; height: number };
}

export interface PipelineParams {
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  /** InstructPix2Pix only. */
  imageGuidanceScale: number;
  /** img2img only: 0 < strength ≤ 1. */
  strength: number;
  negativePrompt: string;
  scheduler: EditSchedulerName;
  /** Flow families: true CFG against the negative prompt when > 1 (1: off). */
  trueCfgScale: number;
  /** Families with a T5 encoder: its token count; null elsewhere. */
  maxSequenceLength: number | null;
}

export interface StepInfo {
  /** x₀ estimate of every item after this step, [B, C, h, w]. */
  predOriginal: Float32Array;
  batch: number;
  latentChannels: number;
  latentHeight: number;
  latentWidth: number;
}

export interface PipelineHooks {
  /** Throws (e.g. a cancellation error) to stop before the next step. */
  throwIfAborted(): void;
  afterStep(info: StepInfo): void | Promise<void>;
  /**
   * Waits for the engine's turn to denoise (one denoise loop runs at a time, while other calls
   * encode and decode beside it) and resolves with the function that ends the turn.
   */
  turn?(): Promise<() => void>;
  /** Item `index` of the batch is decoded (RGB as `decodeLatents` returns it), before the rest are. */
  decoded?(index: number, rgb: Float32Array): void;
}

export interface PipelineContext {
  sessions: ModelSessions;
  tokenizer: PromptTokenizer;
  /** One per text encoder, in the family's order. */
  tokenizers: readonly PromptTokenizer[];
  /** Text embeddings by prompt, shared by the micro-batches of one job. */
  embeddings: Map<string, Float32Array>;
  createScheduler(name: EditSchedulerName): Scheduler;
  /** Reused memory for this run's big arrays (see scratch.ts); nothing returned may point into it. */
  scratch: Scratch;
}

/** Runs the text encoder once over every prompt not yet in the cache (one batched call). */
export async function encodePrompts(ctx: PipelineContext, prompts: readonly string[]): Promise<void> {
  const missing = [...new Set(prompts)].filter((p) => !ctx.embeddings.has(p));
  if (missing.length === 0) return;
  const length = ctx.tokenizer.maxLength;
  const ids = new Int32Array(missing.length * length);
  missing.forEach((p, i) => ids.set(ctx.tokenizer.encode(p), i * length));
  const hidden = await ctx.sessions.run('textEncoder', { input_ids: { data: ids, dims: [missing.length, length] } }, 'last_hidden_state');
  const per = hidden.length / missing.length;
  missing.forEach((p, i) => ctx.embeddings.set(p, hidden.slice(i * per, (i + 1) * per)));
}

/** Stacks the cached embeddings of `prompts` into one [B, L, D] batch. */
export function stackEmbeddings(ctx: PipelineContext, prompts: readonly string[]): { data: Float32Array; dims: number[] } {
  const first = ctx.embeddings.get(prompts[0]!)!;
  const out = new Float32Array(prompts.length * first.length);
  prompts.forEach((p, i) => out.set(ctx.embeddings.get(p)!, i * first.length));
  const length = ctx.tokenizer.maxLength;
  return { data: out, dims: [prompts.length, length, first.length / length] };
}

/** A tensor for a UNet input. */
export interface TensorFeed {
  data: Float32Array;
  dims: number[];
}

/**
 * The text conditioning of a UNet call: `encoder_hidden_states` for every row, and the extra UNet
 * inputs a family feeds (SDXL's `text_embeds`, `time_ids`). Rows are classifier-free guidance's
 * [negative…, positive…] when guided, else one per item.
 */
export interface Conditioning {
  embeds: TensorFeed;
  extra: Record<string, TensorFeed>;
}

export type Conditioner = (ctx: PipelineContext, items: readonly PipelineItem[], params: PipelineParams, guided: boolean) => Promise<Conditioning>;

/** One CLIP text encoder's last hidden state, with the negative prompt as the unguided branch. */
export const clipConditioning: Conditioner = async (ctx, items, params, guided) => {
  const prompts = items.map((i) => i.prompt);
  await encodePrompts(ctx, guided ? [...prompts, params.negativePrompt] : prompts);
  const text = stackEmbeddings(ctx, prompts);
  if (!guided) return { embeds: text, extra: {} };
  const negative = stackEmbeddings(
    ctx,
    items.map(() => params.negativePrompt),
  );
  return { embeds: { data: concatBatches([negative.data, text.data]), dims: [2 * items.length, ...text.dims.slice(1)] }, extra: {} };
};

export interface LatentShape {
  channels: number;
  height: number;
  width: number;
}

export function latentShapeFor(ctx: PipelineContext, params: PipelineParams): LatentShape {
  const f = ctx.sessions.spec.vaeScaleFactor;
  return { channels: ctx.sessions.spec.latentChannels, height: params.height / f, width: params.width / f };
}

/**
 * VAE-encodes each distinct input once. Returns, per distinct image, the mean and (when the export
 * provides it) the std of the latent distribution, each [C, h, w].
 */
export async function encodeImages(
  ctx: PipelineContext,
  images: readonly Float32Array[],
  params: PipelineParams,
  shape: LatentShape,
  needStd: boolean,
): Promise<{ mean: Float32Array; std: Float32Array | null }[]> {
  const pixels = 3 * params.height * params.width;
  const batch = ctx.scratch.floats(images.length * pixels);
  images.forEach((img, i) => writeSignedUnit(img, batch, i * pixels));
  const output = ctx.sessions.vaeEncoderOutput;
  const latents = await ctx.sessions.run('vaeEncoder', { sample: { data: batch, dims: [images.length, 3, params.height, params.width] } }, output);
  const item = shape.channels * shape.height * shape.width;
  return images.map((_, i) => {
    if (output === 'latent_sample') return { mean: latents.slice(i * item, (i + 1) * item), std: null };
    // latent_parameters = mean ‖ logvar along channels (diffusers' DiagonalGaussianDistribution).
    const base = i * 2 * item;
    const mean = latents.slice(base, base + item);
    if (!needStd) return { mean, std: null }; // the mode is all InstructPix2Pix needs
    const std = latents.slice(base + item, base + 2 * item);
    for (let k = 0; k < std.length; k++) std[k] = Math.exp(0.5 * Math.min(20, Math.max(-30, std[k]!)));
    return { mean, std };
  });
}

/**
 * Decodes [B, C, h, w] latents (already in model scale) to per-item planar RGB as the VAE gives it,
 * nominally [-1,1] and unclamped: the encoder maps and clamps while converting to bytes, which
 * saves a full-resolution pass.
 */
export function decodeLatents(ctx: PipelineContext, latents: Float32Array, batch: number, shape: LatentShape, hooks: PipelineHooks): Promise<Float32Array[]> {
  return decodeUnscaled(ctx, scaleInto(latents, 1 / ctx.sessions.spec.scalingFactor, ctx.scratch.floats(latents.length)), batch, shape, hooks);
}

/**
 * Decodes latents already in the VAE's own scale, one item per run, every run requested at once:
 * each item goes to `hooks.decoded` as it lands, so its output is encoded while the next decodes
 * (on the stage thread). The VAE gives an item the same values alone as in a batch, and on CPU
 * takes as long per item either way (measured on the bench VAE, 256²: 4 × 1 in 171–175 ms, 4 in
 * one run 162–172 ms, bit-identical).
 */
export async function decodeUnscaled(
  ctx: PipelineContext,
  latents: Float32Array,
  batch: number,
  shape: LatentShape,
  hooks: PipelineHooks,
): Promise<Float32Array[]> {
  const itemSize = shape.channels * shape.height * shape.width;
  const runs = Array.from({ length: batch }, (_, i) =>
    ctx.sessions.run(
      'vaeDecoder',
      { latent_sample: { data: latents.subarray(i * itemSize, (i + 1) * itemSize), dims: [1, shape.channels, shape.height, shape.width] } },
      'sample',
    ),
  );
  // Awaited in order below; a failure surfaces there once, not as an unhandled rejection of the rest.
  for (const run of runs) run.catch(() => undefined);
  const images: Float32Array[] = [];
  for (const [i, run] of runs.entries()) {
    const rgb = await run;
    hooks.decoded?.(i, rgb);
    images.push(rgb);
  }
  return images;
}

/** One noise stream per item, so an item's result does not depend on the rest of its batch. */
export function generatorsFor(items: readonly PipelineItem[]): NoiseGenerator[] {
  return items.map((it) => createNoiseGenerator(it.generator, it.seed));
}

/**
 * diffusers' `retrieve_latents(sample_mode="sample")` for one item into `out`: mean + std·ε, ε one
 * randn of the latent's shape from the item's generator, in float32 as torch computes it. Without a
 * std (exports giving only `latent_sample`, or the mode asked for) it is the mean and draws nothing.
 */
export function sampleLatent(generator: NoiseGenerator, mean: Float32Array, std: Float32Array | null, out: Float32Array): Float32Array {
  if (std === null) {
    out.set(mean);
    return out;
  }
  generator.fillNormal(out, 0, mean.length);
  for (let k = 0; k < mean.length; k++) out[k] = mean[k]! + Math.fround(std[k]! * out[k]!);
  return out;
}

export function drawNoise(
  generators: readonly NoiseGenerator[],
  itemSize: number,
  out: Float32Array = new Float32Array(generators.length * itemSize),
): Float32Array {
  generators.forEach((g, i) => g.fillNormal(out, i * itemSize, itemSize));
  return out;
}

/**
 * The denoise loop shared by every family: in the engine's turn (`hooks.turn`), for each timestep,
 * scale, predict (with guidance, inside `predictNoise`), step, report. Checks for abort before every step. The step is
 * elementwise, so x_{t-1} overwrites x_t in `latents`, which is returned; the scaled input, the
 * noise and the x₀ estimate live in three buffers reused by every step.
 */
export async function denoiseLatents(
  scheduler: Scheduler,
  timesteps: ArrayLike<number>,
  latents: Float32Array,
  predictNoise: (scaledLatents: Float32Array, timestep: number) => Promise<Float32Array>,
  generators: readonly NoiseGenerator[],
  shape: LatentShape,
  hooks: PipelineHooks,
  scratch: Scratch,
  blend: MaskBlend | null = null,
): Promise<Float32Array> {
  const itemSize = shape.channels * shape.height * shape.width;
  const scaled = scratch.floats(latents.length);
  const noise = scheduler.isStochastic ? scratch.floats(latents.length) : undefined;
  const out = { prevSample: latents, predOriginalSample: scratch.floats(latents.length) };
  const endTurn = await hooks.turn?.();
  try {
    for (let i = 0; i < timesteps.length; i++) {
      hooks.throwIfAborted();
      const t = timesteps[i]!;
      scheduler.scaleModelInput(latents, t, scaled);
      const noisePred = await predictNoise(scaled, t);
      if (noise) drawNoise(generators, itemSize, noise);
      scheduler.step(noisePred, t, latents, noise, out);
      blend?.(latents, i);
      await hooks.afterStep({
        predOriginal: out.predOriginalSample,
        batch: generators.length,
        latentChannels: shape.channels,
        latentHeight: shape.height,
        latentWidth: shape.width,
      });
    }
  } finally {
    endTurn?.();
  }
  return latents;
}

/** The [B] timestep feed: the same t for every row. */
export function timestepFeed(t: number, rows: number): { data: Float32Array; dims: number[] } {
  return { data: new Float32Array(rows).fill(t), dims: [rows] };
}

/** Resets the kept region of the latents after step `index` (see `maskBlend`). */
export type MaskBlend = (latents: Float32Array, index: number) => void;

/**
 * The latent cells to denoise: 1 where any pixel of the cell is edited at all (≥ 2%), else 0. Grey
 * and feathered values are applied once, exactly, when the output is composited with the mask.
 */
export function latentMask(mask: Float32Array, width: number, height: number, shape: LatentShape): Float32Array {
  const fx = width / shape.width;
  const fy = height / shape.height;
  const out = new Float32Array(shape.width * shape.height);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / fy) * shape.width;
    for (let x = 0; x < width; x++) if (mask[y * width + x]! >= 0.02) out[row + Math.floor(x / fx)] = 1;
  }
  return out;
}

/**
 * Masked edits on UNets without mask inputs, as diffusers' inpainting pipelines do with a
 * 4-channel UNet: after every step, outside the mask the latents become the input's latents
 * (`imageLatents`, model scale) noised with the run's own starting noise to the next timestep,
 * and the input's latents themselves after the last step. Null when no item has a mask.
 */
export function maskBlend(
  scheduler: Scheduler,
  timesteps: ArrayLike<number>,
  items: readonly PipelineItem[],
  params: PipelineParams,
  shape: LatentShape,
  imageLatents: Float32Array,
  noise: Float32Array,
): MaskBlend | null {
  if (!items.some((i) => i.mask)) return null;
  const pixels = shape.height * shape.width;
  const itemSize = shape.channels * pixels;
  const masks = items.map((i) => (i.mask ? latentMask(i.mask, params.width, params.height, shape) : null));
  return (latents, index) => {
    const last = index === timesteps.length - 1;
    const known = last ? imageLatents : scheduler.addNoise(imageLatents, noise, timesteps[index + 1]!);
    masks.forEach((m, b) => {
      if (!m) return;
      const base = b * itemSize;
      for (let c = 0; c < shape.channels; c++) {
        const o = base + c * pixels;
        for (let p = 0; p < pixels; p++) if (m[p] === 0) latents[o + p] = known[o + p]!;
      }
    });
  };
}
