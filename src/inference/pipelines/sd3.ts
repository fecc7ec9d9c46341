/**
 * Stable Diffusion 3 / 3.5 img2img and inpainting (diffusers' StableDiffusion3Img2ImgPipeline and
 * StableDiffusion3InpaintPipeline) on optimum's ONNX export:
 *
 * - prompts: CLIP-L and CLIP-G (CLIPTextModelWithProjection exported with `hidden_states.N`): the
 *   penultimate hidden states (`hidden_states[-2]`) of both, concatenated on the feature axis and
 *   zero-padded to T5's width, then T5's `last_hidden_state` at `maxSequenceLength` tokens appended
 *   on the sequence axis; `pooled_projections` = CLIP-L's ‖ CLIP-G's `text_embeds`.
 * - latents: 16 channels, (z − shift_factor)·scaling_factor, unpacked [B, 16, h, w].
 * - scheduler: FLOW_MATCH_EULER with the folder's config (SD3: static shift 3, no custom σ);
 *   `timestep` is t itself (0..1000); img2img noises the input to the begin index of `strength`.
 * - classifier-free guidance when guidanceScale > 1, rows [negative, prompt], the negative prompt
 *   "" when none is given (as diffusers).
 *
 * - masks: with a 16-channel transformer the latents outside the mask are reset to the input's,
 *   noised to the next σ, after every step (`maskBlend`); a 33-channel inpainting transformer
 *   takes the mask and the masked image's latents as extra channels. Outside the mask the runner
 *   composites the input back.
 */
import { InferenceError } from '../errors.js';
import type { ModelDefaults } from '../modelTypes.js';
import type { NoiseGenerator } from '../random.js';
import { calculateShift, flowImg2ImgBeginIndex, imageSeqLen, parseFlowMatchSchedulerConfig } from '../schedulers/flowMatchEuler.js';
import { classifierFreeGuidance } from '../tensor.js';
import type { LatentShape, PipelineContext, PipelineItem, PipelineParams } from './common.js';
import { decodeLatents, drawNoise, encodeImages, latentShapeFor, maskBlend, sampleLatent } from './common.js';
import type { FamilyStages, PipelineFamilyDef, PreparedLatents } from './family.js';
import { IMG2IMG_LATENT_SAMPLE_COST, patchSizeMultiple, transformerRole } from './family.js';
import { distinctImageMasks, latentMaskNearest, maskedImage } from './inpaint.js';

/** diffusers' StableDiffusion3Img2ImgPipeline defaults: 28 steps, guidance 7, T5 256 tokens; strength 0.6. */
const SD3_DEFAULTS: ModelDefaults = {
  steps: 28,
  guidanceScale: 7,
  imageGuidanceScale: null,
  strength: 0.6,
  scheduler: 'FLOW_MATCH_EULER',
  size: '1024x1024',
  maxSequenceLength: 256,
};
const MAX_T5 = 512;

/** The penultimate of an encoder's `hidden_states.N` outputs (diffusers' hidden_states[-2]). */
function penultimate(ctx: PipelineContext, component: 'textEncoder' | 'textEncoder2'): string {
  const layers = ctx.sessions
    .outputNames(component)
    .map((n) => /^hidden_states\.(\d+)$/.exec(n))
    .filter((m) => m !== null)
    .map((m) => Number(m![1]));
  if (layers.length < 2) {
    const spec = ctx.sessions.spec;
    throw new InferenceError(
      'MODEL_ERROR',
      `model ${spec.id}: ${component === 'textEncoder' ? 'text_encoder' : 'text_encoder_2'}/model.onnx has no hidden_states.N outputs; SD3 reads the penultimate layer (re-export the text encoders with output_hidden_states)`,
    );
  }
  return `hidden_states.${Math.max(...layers) - 1}`;
}

/** Per prompt: the joint text sequence [77 + L, D] and the pooled [dL + dG] (cached per prompt and length). */
async function encodeSd3Prompts(ctx: PipelineContext, prompts: readonly string[], length: number): Promise<void> {
  const key = (p: string): string => `sd3\u0000${length}\u0000${p}`;
  const missing = [...new Set(prompts)].filter((p) => !ctx.embeddings.has(key(p)));
  if (missing.length === 0) return;
  const n = missing.length;
  const clip = async (
    component: 'textEncoder' | 'textEncoder2',
    tokenizerIndex: number,
  ): Promise<{ hidden: Float32Array; pooled: Float32Array; width: number; pooledWidth: number; tokens: number }> => {
    const tok = ctx.tokenizers[tokenizerIndex]!;
    const ids = new Int32Array(n * tok.maxLength);
    missing.forEach((p, i) => ids.set(tok.encode(p), i * tok.maxLength));
    const [pooled, hidden] = await ctx.sessions.runMany(component, { input_ids: { data: ids, dims: [n, tok.maxLength] } }, [
      'text_embeds',
      penultimate(ctx, component),
    ]);
    return { hidden: hidden!, pooled: pooled!, width: hidden!.length / n / tok.maxLength, pooledWidth: pooled!.length / n, tokens: tok.maxLength };
  };
  const l = await clip('textEncoder', 0);
  const g = await clip('textEncoder2', 1);
  const t5Tok = ctx.tokenizers[2]!;
  const t5Ids = new Int32Array(n * length);
  missing.forEach((p, i) => t5Ids.set(t5Tok.encode(p, length), i * length));
  const t5 = await ctx.sessions.run('textEncoder3', { input_ids: { data: t5Ids, dims: [n, length] } }, 'last_hidden_state');
  const width = t5.length / n / length;
  if (l.width + g.width > width)
    throw new InferenceError('MODEL_ERROR', `model ${ctx.sessions.spec.id}: CLIP widths ${l.width} + ${g.width} exceed T5's ${width}`);
  const rows = l.tokens + length;
  missing.forEach((p, i) => {
    const joint = new Float32Array(rows * width + l.pooledWidth + g.pooledWidth);
    for (let t = 0; t < l.tokens; t++) {
      joint.set(l.hidden.subarray((i * l.tokens + t) * l.width, (i * l.tokens + t + 1) * l.width), t * width);
      joint.set(g.hidden.subarray((i * g.tokens + t) * g.width, (i * g.tokens + t + 1) * g.width), t * width + l.width);
    }
    joint.set(t5.subarray(i * length * width, (i + 1) * length * width), l.tokens * width);
    // The pooled vector rides at the end of the cached entry.
    joint.set(l.pooled.subarray(i * l.pooledWidth, (i + 1) * l.pooledWidth), rows * width);
    joint.set(g.pooled.subarray(i * g.pooledWidth, (i + 1) * g.pooledWidth), rows * width + l.pooledWidth);
    ctx.embeddings.set(key(p), joint);
  });
  ctx.embeddings.set(`sd3-shape\u0000${length}`, Float32Array.of(rows, width, l.pooledWidth + g.pooledWidth));
}

/** SD3's text conditioning of every row: [negative…, prompt…] when guided. */
interface Sd3Conditioning {
  text: Float32Array;
  pooled: Float32Array;
  rows: number;
  seq: number;
  width: number;
  pooledWidth: number;
}

/** The transformer input when rows differ from the latents (guidance, or the 33-channel layout); null: the latents themselves. */
interface Sd3Latents extends PreparedLatents {
  input: Float32Array | null;
  rowChannels: number;
}

/**
 * The SD3 stages. `maskChannels`: a 33-channel inpainting transformer, every row
 * [latents ‖ mask ‖ masked-image latents]; otherwise (16 channels) masks blend latents after
 * every step, as diffusers' StableDiffusion3InpaintPipeline does for each.
 */
function sd3Stages(maskChannels: boolean): FamilyStages<Sd3Conditioning, Sd3Latents> {
  return {
    async encodePrompt(ctx, items, params) {
      const guided = params.guidanceScale > 1;
      const length = params.maxSequenceLength ?? SD3_DEFAULTS.maxSequenceLength!;
      const prompts = items.map((i) => i.prompt);
      await encodeSd3Prompts(ctx, guided ? [...prompts, params.negativePrompt] : prompts, length);
      const [seq, width, pooledWidth] = Array.from(ctx.embeddings.get(`sd3-shape\u0000${length}`)!) as [number, number, number];
      const rowPrompts = guided ? [...items.map(() => params.negativePrompt), ...prompts] : prompts;
      const rows = rowPrompts.length;
      const text = new Float32Array(rows * seq * width);
      const pooled = new Float32Array(rows * pooledWidth);
      rowPrompts.forEach((p, r) => {
        const joint = ctx.embeddings.get(`sd3\u0000${length}\u0000${p}`)!;
        text.set(joint.subarray(0, seq * width), r * seq * width);
        pooled.set(joint.subarray(seq * width), r * pooledWidth);
      });
      return { text, pooled, rows, seq, width, pooledWidth };
    },

    async prepareLatents(ctx, items, params, { scheduler, timesteps }, generators) {
      const spec = ctx.sessions.spec;
      const batch = items.length;
      const shape = latentShapeFor(ctx, params);
      const pixels = shape.height * shape.width;
      const itemSize = shape.channels * pixels;
      const distinct = [...new Set(items.map((i) => i.image))];
      const encoded = await encodeImages(ctx, distinct, params, shape, true);
      const init = ctx.scratch.floats(batch * itemSize);
      // diffusers samples the input's latents before the noise; its 33-channel inpainting skips them
      // at strength 1 (the start is pure noise), and so does this, to draw the same noise.
      const sampled = !maskChannels || params.strength < 1;
      items.forEach((item, b) => {
        const { mean, std } = encoded[distinct.indexOf(item.image)]!;
        const out = init.subarray(b * itemSize, (b + 1) * itemSize);
        if (sampled) sampleLatent(generators[b]!, mean, std, out);
        else out.set(mean);
        for (let k = 0; k < itemSize; k++) out[k] = (out[k]! - spec.shiftFactor) * spec.scalingFactor;
      });
      const noise = drawNoise(generators, itemSize, ctx.scratch.floats(batch * itemSize));
      const latents = scheduler.addNoise(init, noise, timesteps[0]!);
      const blend = maskChannels ? null : maskBlend(scheduler, timesteps, items, params, shape, init, noise);
      // Transformer rows: [negative…, prompt…] when guided; each the latents, then (33 channels) the
      // item's mask and masked-image latents.
      const rows = params.guidanceScale > 1 ? 2 * batch : batch;
      const rowChannels = maskChannels ? 2 * shape.channels + 1 : shape.channels;
      const rowSize = rowChannels * pixels;
      const input = maskChannels || rows > batch ? ctx.scratch.floats(rows * rowSize) : null;
      if (maskChannels) {
        const conditions = await maskConditions(ctx, items, generators, params, shape);
        for (let r = 0; r < rows; r++) input!.set(conditions[r % batch]!, r * rowSize + itemSize);
      }
      return { latents, shape, blend, input, rowChannels };
    },

    predict(ctx, items, params, { text, pooled, rows, seq, width, pooledWidth }, { shape, input, rowChannels }) {
      const batch = items.length;
      const itemSize = shape.channels * shape.height * shape.width;
      const rowSize = rowChannels * shape.height * shape.width;
      const guidedOut = ctx.scratch.floats(batch * itemSize);
      return async (x, t) => {
        if (input) for (let r = 0; r < rows; r++) input.set(x.subarray((r % batch) * itemSize, ((r % batch) + 1) * itemSize), r * rowSize);
        const out = await ctx.sessions.run(
          'transformer',
          {
            hidden_states: { data: input ?? x, dims: [rows, rowChannels, shape.height, shape.width] },
            encoder_hidden_states: { data: text, dims: [rows, seq, width] },
            pooled_projections: { data: pooled, dims: [rows, pooledWidth] },
            timestep: { data: new Float32Array(rows).fill(t), dims: [rows] },
          },
          'out_hidden_states',
        );
        return rows > batch ? classifierFreeGuidance(out, batch * itemSize, params.guidanceScale, guidedOut) : out;
      };
    },

    decode(ctx, final, items, { shape }, hooks) {
      const spec = ctx.sessions.spec;
      // decodeLatents divides by the scaling factor; the shift is added back first.
      for (let k = 0; k < final.length; k++) final[k] = final[k]! + spec.shiftFactor * spec.scalingFactor;
      return decodeLatents(ctx, final, items.length, shape, hooks);
    },
  };
}

/**
 * Per item, the 33-channel transformer's conditioning [mask(1) ‖ masked-image latents(C)]: the mask
 * binarised at 0.5 and resized nearest-neighbour to latent size, the input with the edited region
 * set to 0 in the VAE's range (mid-grey), encoded, sampled with the item's generator after its noise
 * (diffusers' prepare_mask_latents) and scaled as (z − shift)·scale. An item without a mask is a
 * mask of the whole image. One encode per distinct (image, mask).
 */
async function maskConditions(
  ctx: PipelineContext,
  items: readonly PipelineItem[],
  generators: readonly NoiseGenerator[],
  params: PipelineParams,
  shape: LatentShape,
): Promise<Float32Array[]> {
  const spec = ctx.sessions.spec;
  const { pairs, pairOf } = distinctImageMasks(items);
  const encoded = await encodeImages(
    ctx,
    pairs.map((p) => maskedImage(p.image, p.mask)),
    params,
    shape,
    true,
  );
  const pixels = shape.height * shape.width;
  const masks = pairs.map((p) => latentMaskNearest(p.mask, params, shape));
  return items.map((_, b) => {
    const out = new Float32Array((shape.channels + 1) * pixels);
    out.set(masks[pairOf[b]!]!);
    const { mean, std } = encoded[pairOf[b]!]!;
    const latent = sampleLatent(generators[b]!, mean, std, out.subarray(pixels));
    for (let j = 0; j < latent.length; j++) latent[j] = (latent[j]! - spec.shiftFactor) * spec.scalingFactor;
    return out;
  });
}

const SD3_COMPONENTS: PipelineFamilyDef['components'] = ['textEncoder', 'textEncoder2', 'textEncoder3', 'transformer', 'vaeEncoder', 'vaeDecoder'];

function sd3Family(kind: string, describe: string, pipelineClasses: RegExp, maskChannels: boolean): PipelineFamilyDef {
  return {
    kind,
    describe,
    pipelineClasses,
    maskMethod: maskChannels ? 'unet-mask-channels' : 'latent-blend',
    components: SD3_COMPONENTS,
    denoiser: transformerRole(['hidden_states', 'encoder_hidden_states', 'pooled_projections', 'timestep']),
    tokenizers: ['tokenizer', 'tokenizer_2', 'tokenizer_3'],
    denoiserInChannels: (latentChannels) => (maskChannels ? 2 * latentChannels + 1 : latentChannels),
    // diffusers' StableDiffusion3Pipeline: vae_scale_factor × the transformer's patch size (2).
    sizeMultiple: patchSizeMultiple,
    latentSampleCost: IMG2IMG_LATENT_SAMPLE_COST,
    // The folder's own config: a static shift (SD3), or `mu` from the image's token count where it
    // shifts dynamically; no custom σ.
    timestepOptions: (spec, _steps, size) => {
      const config = parseFlowMatchSchedulerConfig(spec.schedulerJson);
      return config.use_dynamic_shifting ? { mu: calculateShift(imageSeqLen(size.height, size.width, spec.vaeScaleFactor), config) } : {};
    },
    defaults: SD3_DEFAULTS,
    scheduler: 'FLOW_MATCH_EULER',
    // SD3 medium's MMDiT: 24 heads over 2×2 patches, joint attention with the 77 + T5 text tokens.
    memoryDefaults: { unetBytesPerLatentPixel: 24 * 1024, attentionHeads: 24, attentionDownscale: 2, vaeBytesPerPixel: 4 * 1024 },
    guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
    startIndex: (edit) => {
      try {
        return flowImg2ImgBeginIndex(edit.steps, edit.strength);
      } catch {
        return edit.steps;
      }
    },
    extraAttentionTokens: (spec, edit) => 77 + (edit.maxSequenceLength ?? spec.defaults.maxSequenceLength ?? MAX_T5),
    stages: sd3Stages(maskChannels),
  };
}

/**
 * SD3 / SD3.5 pipelines with a 16-channel transformer, driven as img2img (text-to-image and
 * inpainting folders are served this way too); masks blend latents.
 */
export const sd3Img2Img = sd3Family('sd3-img2img', 'SD3 img2img', /^(ORT)?StableDiffusion3(Img2Img|Inpaint)?Pipeline$/, false);
/** SD3 inpainting with a 33-channel transformer (mask and masked-image latents as input channels). */
export const sd3Inpaint = sd3Family('sd3-inpaint', 'SD3 inpainting (33-channel transformer)', /^(ORT)?StableDiffusion3InpaintPipeline$/, true);
