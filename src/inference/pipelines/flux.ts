/**
 * FLUX.1 (diffusers' FluxImg2ImgPipeline and FluxKontextPipeline) on optimum's ONNX export:
 *
 * - prompts: CLIP-L's `pooler_output` → `pooled_projections`, T5's `last_hidden_state` →
 *   `encoder_hidden_states` at `max_sequence_length` tokens (`</s>`, then `<pad>`), `txt_ids` zeros.
 * - latents: 16 channels, (z − shift_factor)·scaling_factor, packed in 2×2 patches to
 *   [B, (h/2)(w/2), 64] tokens with `img_ids` (0, row, col).
 * - scheduler: FLOW_MATCH_EULER with FLUX's σ = linspace(1, 1/n, n) and `mu` from the image token
 *   count when the folder's config shifts dynamically; `timestep` fed as t/1000.
 * - img2img: the input's latents noised to the σ at `strength`'s begin index (scale_noise).
 * - Kontext: the input's packed latents (the VAE's mode) appended to every row's sequence with
 *   `img_ids` (1, row, col); only the first part of the output (the generated tokens) is used.
 * - guidance: `guidance` = guidanceScale per row when the transformer embeds guidance (dev);
 *   true CFG (`trueCfgScale` > 1 and a negative prompt) runs the negative prompt in the same
 *   batch, v = v_neg + s·(v_pos − v_neg), as FluxPipeline does.
 *
 * - masks (img2img only; refused on Kontext): latent blending in the packed layout, as diffusers'
 *   FluxInpaintPipeline does for FLUX.1's 64-channel transformer: after every step the tokens
 *   outside the mask become the input's packed latents noised to the next σ (the input's latents
 *   after the last step). Outside the mask the runner composites the input back.
 */
import { InferenceError } from '../errors.js';
import type { ModelDefaults, ModelSpec } from '../modelTypes.js';
import { calculateShift, flowImg2ImgBeginIndex, fluxSigmas, parseFlowMatchSchedulerConfig } from '../schedulers/flowMatchEuler.js';
import type { Scheduler } from '../schedulers/types.js';
import type { MaskBlend, PipelineContext, PipelineItem, PipelineParams, StepInfo } from './common.js';
import { decodeUnscaled, drawNoise, encodeImages, latentMask, latentShapeFor, sampleLatent } from './common.js';
import type { LatentShape } from './common.js';
import type { EditShape, FamilyStages, PipelineFamilyDef, PreparedLatents } from './family.js';
import { IMG2IMG_LATENT_SAMPLE_COST, patchSizeMultiple, transformerRole } from './family.js';

/** FLUX's defaults (diffusers' FluxPipeline: dev 28 steps, guidance 3.5, T5 512 tokens; img2img strength 0.6). */
const DEV_DEFAULTS: ModelDefaults = {
  steps: 28,
  guidanceScale: 3.5,
  imageGuidanceScale: null,
  strength: 0.6,
  scheduler: 'FLOW_MATCH_EULER',
  size: '1024x1024',
  trueCfgScale: 1,
  maxSequenceLength: 512,
};
/** FLUX.1-schnell (no `guidance` input): 4 steps, no guidance, T5 256 tokens. */
const SCHNELL_DEFAULTS: ModelDefaults = { ...DEV_DEFAULTS, steps: 4, guidanceScale: 0, maxSequenceLength: 256 };
/** T5's largest `max_sequence_length` (diffusers refuses more). */
export const MAX_T5_SEQUENCE_LENGTH = 512;

const PACK = 2;

/** [B, C, h, w] → [B, (h/2)(w/2), C·4], as diffusers' `_pack_latents`. */
export function packLatents(src: Float32Array, batch: number, shape: LatentShape, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const { channels: C, height: h, width: w } = shape;
  const wp = w / PACK;
  const cp = C * PACK * PACK;
  for (let b = 0; b < batch; b++) {
    const base = b * C * h * w;
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < h; y++) {
        const py = y >> 1;
        const dy = y & 1;
        for (let x = 0; x < w; x++) {
          const token = py * wp + (x >> 1);
          out[base + token * cp + c * 4 + dy * 2 + (x & 1)] = src[base + (c * h + y) * w + x]!;
        }
      }
    }
  }
  return out;
}

/** The inverse of `packLatents`. */
export function unpackLatents(src: Float32Array, batch: number, shape: LatentShape, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const { channels: C, height: h, width: w } = shape;
  const wp = w / PACK;
  const cp = C * PACK * PACK;
  for (let b = 0; b < batch; b++) {
    const base = b * C * h * w;
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) out[base + (c * h + y) * w + x] = src[base + ((y >> 1) * wp + (x >> 1)) * cp + c * 4 + (y & 1) * 2 + (x & 1)]!;
      }
    }
  }
  return out;
}

/** `img_ids` rows (first, row, col) for an hp×wp token grid. */
export function imageIds(hp: number, wp: number, first: number): Float32Array {
  const ids = new Float32Array(hp * wp * 3);
  for (let y = 0; y < hp; y++) {
    for (let x = 0; x < wp; x++) {
      const k = (y * wp + x) * 3;
      ids[k] = first;
      ids[k + 1] = y;
      ids[k + 2] = x;
    }
  }
  return ids;
}

/** An ids feed as the port declares it: [N, 3] (diffusers ≥ 0.31) or [rows, N, 3] (older exports). */
function idsFeed(ctx: PipelineContext, port: 'img_ids' | 'txt_ids', ids: Float32Array, rows: number): { data: Float32Array; dims: number[] } {
  const n = ids.length / 3;
  const rank = ctx.sessions.spec.signatures.transformer?.inputs.find((p) => p.name === port)?.shape.length ?? 2;
  if (rank !== 3) return { data: ids, dims: [n, 3] };
  const data = new Float32Array(rows * ids.length);
  for (let r = 0; r < rows; r++) data.set(ids, r * ids.length);
  return { data, dims: [rows, n, 3] };
}

/** CLIP pooled (once per prompt) and T5 hidden states at `length` tokens (once per prompt and length). */
async function encodeFluxPrompts(ctx: PipelineContext, prompts: readonly string[], length: number): Promise<void> {
  const clipKey = (p: string): string => `clip-pooled\u0000${p}`;
  const t5Key = (p: string): string => `t5\u0000${length}\u0000${p}`;
  const missingClip = [...new Set(prompts)].filter((p) => !ctx.embeddings.has(clipKey(p)));
  if (missingClip.length) {
    const tok = ctx.tokenizers[0]!;
    const ids = new Int32Array(missingClip.length * tok.maxLength);
    missingClip.forEach((p, i) => ids.set(tok.encode(p), i * tok.maxLength));
    const pooled = await ctx.sessions.run('textEncoder', { input_ids: { data: ids, dims: [missingClip.length, tok.maxLength] } }, 'pooler_output');
    const per = pooled.length / missingClip.length;
    missingClip.forEach((p, i) => ctx.embeddings.set(clipKey(p), pooled.slice(i * per, (i + 1) * per)));
  }
  const missingT5 = [...new Set(prompts)].filter((p) => !ctx.embeddings.has(t5Key(p)));
  if (missingT5.length) {
    const tok = ctx.tokenizers[1]!;
    const ids = new Int32Array(missingT5.length * length);
    missingT5.forEach((p, i) => ids.set(tok.encode(p, length), i * length));
    const hidden = await ctx.sessions.run('textEncoder2', { input_ids: { data: ids, dims: [missingT5.length, length] } }, 'last_hidden_state');
    const per = hidden.length / missingT5.length;
    missingT5.forEach((p, i) => ctx.embeddings.set(t5Key(p), hidden.slice(i * per, (i + 1) * per)));
  }
}

function stack(ctx: PipelineContext, keys: readonly string[]): Float32Array {
  const first = ctx.embeddings.get(keys[0]!)!;
  const out = new Float32Array(keys.length * first.length);
  keys.forEach((k, i) => out.set(ctx.embeddings.get(k)!, i * first.length));
  return out;
}

export function isKontext(spec: Pick<ModelSpec, 'pipelineClass'>): boolean {
  return /Kontext/.test(spec.pipelineClass);
}

function refuseMasks(spec: ModelSpec, masks: boolean): void {
  if (masks && isKontext(spec))
    throw new InferenceError(
      'BAD_USER_INPUT',
      `model ${spec.id} (${spec.family.describe}) does not take masks: masked edits are not implemented for FLUX Kontext; send no mask, or use a FLUX img2img or Stable Diffusion model`,
    );
}

/**
 * `maskBlend` in the packed layout: each masked item's kept latent cells (`latentMask` 0), packed
 * as its latents are, reset after step `index` to `packedImage` noised to the next σ.
 */
function packedMaskBlend(
  scheduler: Scheduler,
  timesteps: ArrayLike<number>,
  items: readonly PipelineItem[],
  params: PipelineParams,
  shape: LatentShape,
  packedImage: Float32Array,
  noise: Float32Array,
): MaskBlend | null {
  if (!items.some((i) => i.mask)) return null;
  const pixels = shape.height * shape.width;
  const itemSize = shape.channels * pixels;
  const keep = items.map((i) => {
    if (!i.mask) return null;
    const cells = latentMask(i.mask, params.width, params.height, shape);
    const tiled = new Float32Array(itemSize);
    for (let c = 0; c < shape.channels; c++) tiled.set(cells, c * pixels);
    return packLatents(tiled, 1, shape);
  });
  return (latents, index) => {
    const known = index === timesteps.length - 1 ? packedImage : scheduler.addNoise(packedImage, noise, timesteps[index + 1]!);
    keep.forEach((m, b) => {
      if (!m) return;
      const base = b * itemSize;
      for (let k = 0; k < itemSize; k++) if (m[k] === 0) latents[base + k] = known[base + k]!;
    });
  };
}

/** Whether this edit runs true CFG (diffusers: true_cfg_scale > 1 and a negative prompt given). */
export function trueCfgActive(edit: Pick<EditShape, 'trueCfgScale' | 'negativePrompt'>): boolean {
  return (edit.trueCfgScale ?? 1) > 1 && (edit.negativePrompt ?? '') !== '';
}

/** FLUX's text conditioning of every row ([negative × B,] positive × B): CLIP pooled and T5 states. */
interface FluxConditioning {
  pooled: Float32Array;
  t5: Float32Array;
  rows: number;
  length: number;
  textDim: number;
}

/** The packed input image (Kontext's reference), the transformer's sequence buffer and its ids. */
interface FluxLatents extends PreparedLatents {
  /** The VAE's latent layout (the loop steps packed tokens). */
  vaeShape: LatentShape;
  packedImage: Float32Array;
  hidden: Float32Array;
  imgIds: { data: Float32Array; dims: number[] };
  txtIds: { data: Float32Array; dims: number[] };
  /** Image tokens per row (the generated ones; Kontext appends as many reference tokens). */
  tokens: number;
  seq: number;
  cp: number;
}

function fluxStages(kontext: boolean): FamilyStages<FluxConditioning, FluxLatents> {
  return {
    async encodePrompt(ctx, items, params) {
      const length = params.maxSequenceLength ?? MAX_T5_SEQUENCE_LENGTH;
      const prompts = items.map((i) => i.prompt);
      const cfg = trueCfgActive(params);
      await encodeFluxPrompts(ctx, cfg ? [...prompts, params.negativePrompt] : prompts, length);
      // Rows: [negative × B,] positive × B.
      const rowPrompts = cfg ? [...items.map(() => params.negativePrompt), ...prompts] : prompts;
      const rows = rowPrompts.length;
      const pooled = stack(
        ctx,
        rowPrompts.map((p) => `clip-pooled\u0000${p}`),
      );
      const t5 = stack(
        ctx,
        rowPrompts.map((p) => `t5\u0000${length}\u0000${p}`),
      );
      return { pooled, t5, rows, length, textDim: t5.length / rows / length };
    },

    async prepareLatents(ctx, items, params, { scheduler, timesteps }, generators) {
      const spec = ctx.sessions.spec;
      refuseMasks(
        spec,
        items.some((i) => i.mask),
      );
      const batch = items.length;
      const shape = latentShapeFor(ctx, params);
      if (shape.height % PACK || shape.width % PACK)
        throw new InferenceError(
          'BAD_USER_INPUT',
          `FLUX sizes must be multiples of ${spec.vaeScaleFactor * PACK} pixels (got ${params.width}x${params.height})`,
        );
      const itemSize = shape.channels * shape.height * shape.width;
      const hp = shape.height / PACK;
      const wp = shape.width / PACK;
      const tokens = hp * wp;
      const cp = shape.channels * PACK * PACK;
      const { scalingFactor, shiftFactor } = spec;
      const distinct = [...new Set(items.map((i) => i.image))];
      const encoded = await encodeImages(ctx, distinct, params, shape, !kontext);
      // Model-scale image latents per item: (z − shift)·scale; img2img samples z, Kontext takes the mode.
      const imageLatents = ctx.scratch.floats(batch * itemSize);
      items.forEach((item, b) => {
        const { mean, std } = encoded[distinct.indexOf(item.image)]!;
        const out = sampleLatent(generators[b]!, mean, std, imageLatents.subarray(b * itemSize, (b + 1) * itemSize));
        for (let k = 0; k < itemSize; k++) out[k] = (out[k]! - shiftFactor) * scalingFactor;
      });
      const packedImage = packLatents(imageLatents, batch, shape, ctx.scratch.floats(batch * itemSize));
      // Noise drawn in the unpacked layout, as diffusers' prepare_latents draws it, then packed.
      const noise = packLatents(drawNoise(generators, itemSize, ctx.scratch.floats(batch * itemSize)), batch, shape, ctx.scratch.floats(batch * itemSize));
      const latents = kontext ? noise : scheduler.addNoise(packedImage, noise, timesteps[0]!);

      const rows = trueCfgActive(params) ? 2 * batch : batch;
      const length = params.maxSequenceLength ?? MAX_T5_SEQUENCE_LENGTH;
      const seq = kontext ? 2 * tokens : tokens;
      const outIds = imageIds(hp, wp, 0);
      let ids = outIds;
      if (kontext) {
        ids = new Float32Array(seq * 3);
        ids.set(outIds);
        ids.set(imageIds(hp, wp, 1), outIds.length);
      }
      // Previews and progress see the unpacked x₀ estimate.
      const unpackedPreview = ctx.scratch.floats(batch * itemSize);
      return {
        latents,
        shape: { channels: cp, height: tokens, width: 1 },
        blend: kontext ? null : packedMaskBlend(scheduler, timesteps, items, params, shape, packedImage, noise),
        preview: (info: StepInfo): StepInfo => ({
          ...info,
          predOriginal: unpackLatents(info.predOriginal, batch, shape, unpackedPreview),
          latentChannels: shape.channels,
          latentHeight: shape.height,
          latentWidth: shape.width,
        }),
        vaeShape: shape,
        packedImage,
        hidden: ctx.scratch.floats(rows * seq * cp),
        imgIds: idsFeed(ctx, 'img_ids', ids, rows),
        txtIds: idsFeed(ctx, 'txt_ids', new Float32Array(length * 3), rows),
        tokens,
        seq,
        cp,
      };
    },

    predict(ctx, items, params, { pooled, t5, rows, length, textDim }, { packedImage, hidden, imgIds, txtIds, tokens, seq, cp }) {
      const batch = items.length;
      const cfg = rows > batch;
      const hasGuidance = ctx.sessions.hasInput('transformer', 'guidance');
      const tokenRow = tokens * cp;
      const guided = cfg ? ctx.scratch.floats(batch * tokenRow) : null;
      const velocity = ctx.scratch.floats(batch * tokenRow);
      return async (x, t) => {
        for (let r = 0; r < rows; r++) {
          const b = r % batch;
          hidden.set(x.subarray(b * tokenRow, (b + 1) * tokenRow), r * seq * cp);
          if (kontext) hidden.set(packedImage.subarray(b * tokenRow, (b + 1) * tokenRow), r * seq * cp + tokenRow);
        }
        const feeds: Record<string, { data: Float32Array; dims: number[] }> = {
          hidden_states: { data: hidden, dims: [rows, seq, cp] },
          encoder_hidden_states: { data: t5, dims: [rows, length, textDim] },
          pooled_projections: { data: pooled, dims: [rows, pooled.length / rows] },
          timestep: { data: new Float32Array(rows).fill(Math.fround(t) / 1000), dims: [rows] },
          img_ids: imgIds,
          txt_ids: txtIds,
        };
        if (hasGuidance) feeds.guidance = { data: new Float32Array(rows).fill(params.guidanceScale), dims: [rows] };
        const out = await ctx.sessions.run('transformer', feeds, 'out_hidden_states');
        // The generated tokens are the first `tokens` of each row.
        const rowOut = (r: number): Float32Array => out.subarray(r * seq * cp, r * seq * cp + tokenRow);
        if (!cfg) {
          for (let b = 0; b < batch; b++) velocity.set(rowOut(b), b * tokenRow);
          return velocity;
        }
        const s = params.trueCfgScale;
        for (let b = 0; b < batch; b++) {
          const neg = rowOut(b);
          const pos = rowOut(batch + b);
          const o = b * tokenRow;
          for (let k = 0; k < tokenRow; k++) guided![o + k] = neg[k]! + s * (pos[k]! - neg[k]!);
        }
        return guided!;
      };
    },

    decode(ctx, final, items, { vaeShape: shape }, hooks) {
      const { scalingFactor, shiftFactor } = ctx.sessions.spec;
      const batch = items.length;
      const z = unpackLatents(final, batch, shape, ctx.scratch.floats(final.length));
      for (let k = 0; k < z.length; k++) z[k] = z[k]! / scalingFactor + shiftFactor;
      return decodeUnscaled(ctx, z, batch, shape, hooks);
    },
  };
}

const hasGuidanceInput = (signatures: ModelSpec['signatures']): boolean => !!signatures.transformer?.inputs.some((p) => p.name === 'guidance');

function fluxFamily(kind: string, describe: string, pipelineClasses: RegExp, kontext: boolean): PipelineFamilyDef {
  // FluxKontextPipeline has no strength: it generates from noise, conditioned on the reference.
  const strength = (d: ModelDefaults): ModelDefaults => (kontext ? { ...d, strength: null } : d);
  return {
    kind,
    describe,
    pipelineClasses,
    maskMethod: 'latent-blend',
    components: ['textEncoder', 'textEncoder2', 'transformer', 'vaeEncoder', 'vaeDecoder'],
    // The transformer's ports (`guidance` where the model embeds guidance).
    denoiser: transformerRole(['hidden_states', 'encoder_hidden_states', 'pooled_projections', 'timestep', 'img_ids', 'txt_ids', 'guidance'], ['guidance']),
    tokenizers: ['tokenizer', 'tokenizer_2'],
    // The transformer takes packed 2×2 patches.
    denoiserInChannels: (latentChannels) => latentChannels * PACK * PACK,
    // diffusers' FluxPipeline: vae_scale_factor × 2, so that the latents pack into 2×2 patches.
    sizeMultiple: patchSizeMultiple,
    latentSampleCost: IMG2IMG_LATENT_SAMPLE_COST,
    // σ = linspace(1, 1/n, n), shifted by `mu` from the image token count where the folder's config
    // shifts dynamically.
    timestepOptions: (spec, steps, size) => {
      const config = parseFlowMatchSchedulerConfig(spec.schedulerJson);
      const tokens = (size.height / spec.vaeScaleFactor / PACK) * (size.width / spec.vaeScaleFactor / PACK);
      return { sigmas: fluxSigmas(steps), mu: config.use_dynamic_shifting ? calculateShift(tokens, config) : undefined };
    },
    defaults: strength(DEV_DEFAULTS),
    defaultsFor: ({ signatures }) => strength(hasGuidanceInput(signatures) ? DEV_DEFAULTS : SCHNELL_DEFAULTS),
    scheduler: 'FLOW_MATCH_EULER',
    // FLUX.1's transformer, fp32 and unfused: 24 heads over 2×2-patch tokens (plus the text and
    // reference tokens, `extraAttentionTokens`), ~48 KiB of activations per latent pixel (3072-wide
    // tokens, 4 latent pixels each), the 16-channel VAE decoder as SD's.
    memoryDefaults: { unetBytesPerLatentPixel: 48 * 1024, attentionHeads: 24, attentionDownscale: PACK, vaeBytesPerPixel: 4 * 1024 },
    guidanceBranches: (edit) => (trueCfgActive(edit) ? 2 : 1),
    // Kontext generates from noise: no begin index.
    startIndex: (edit) => (kontext ? null : flowImg2ImgBeginIndexSafe(edit.steps, edit.strength)),
    checkEdit: (spec, edit) => refuseMasks(spec, edit.masks),
    extraAttentionTokens: (spec, edit, width, height) => {
      const text = edit.maxSequenceLength ?? spec.defaults.maxSequenceLength ?? MAX_T5_SEQUENCE_LENGTH;
      // Kontext: the reference image's tokens, as many as the output's.
      return kontext ? text + Math.floor(width / spec.vaeScaleFactor / PACK) * Math.floor(height / spec.vaeScaleFactor / PACK) : text;
    },
    stages: fluxStages(kontext),
  };
}

/** flowImg2ImgBeginIndex, with "no step left" as the step count (the request check reports it). */
function flowImg2ImgBeginIndexSafe(steps: number, strength: number): number {
  try {
    return flowImg2ImgBeginIndex(steps, strength);
  } catch {
    return steps;
  }
}

/** FLUX.1 [dev]/[schnell] driven as img2img (text-to-image and inpainting folders are served this way too). */
export const fluxImg2Img = fluxFamily('flux-img2img', 'FLUX img2img', /^(ORT)?Flux(Img2Img|Inpaint)?Pipeline$/, false);
/** FLUX.1 Kontext: the input image is the reference, its tokens appended to the sequence. */
export const fluxKontext = fluxFamily('flux-kontext', 'FLUX Kontext', /^(ORT)?FluxKontextPipeline$/, true);
