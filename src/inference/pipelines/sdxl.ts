/**
 * SDXL (diffusers' StableDiffusionXLImg2ImgPipeline / StableDiffusionXLInpaintPipeline): two CLIP
 * text encoders whose penultimate hidden states (`hidden_states.{N-1}`, as optimum exports them for
 * SDXL) are concatenated per token, the second encoder's projected `text_embeds` as the pooled
 * conditioning, and `time_ids` = original size ‖ crop top-left ‖ target size (refiner-style folders,
 * `requires_aesthetics_score`, put an aesthetic score in place of the target size). An empty
 * negative prompt is all zeros when the folder sets `force_zeros_for_empty_prompt`. The denoising
 * itself is img2img's or inpainting's. SDXL-Turbo folders (trailing timestep spacing) default to
 * 2 steps without guidance.
 */
import { InferenceError } from '../errors.js';
import type { Component } from '../components.js';
import { componentFile } from '../components.js';
import { concatBatches } from '../tensor.js';
import type { Conditioner, PipelineContext, TensorFeed } from './common.js';
import type { PipelineFamilyDef } from './family.js';
import { IMG2IMG_LATENT_SAMPLE_COST, SD_COMPONENTS, unetRole, unetSizeMultiple } from './family.js';
import { img2imgStages, img2imgStartIndex } from './img2img.js';
import { inpaintStages } from './inpaint.js';

/** diffusers' defaults for `_get_add_time_ids` with a refiner. */
const AESTHETIC_SCORE = 6;
const NEGATIVE_AESTHETIC_SCORE = 2.5;
const POOLED_KEY = '\u0000pooled\u0000';

/** `hidden_states.{N-1}`: the penultimate layer, diffusers' `hidden_states[-2]`. */
function penultimate(ctx: PipelineContext, component: Component): string {
  const layers = ctx.sessions
    .outputNames(component)
    .map((n) => /^hidden_states\.(\d+)$/.exec(n)?.[1])
    .filter((n) => n !== undefined)
    .map(Number);
  if (layers.length < 2) {
    throw new InferenceError(
      'MODEL_ERROR',
      `model ${ctx.sessions.spec.id}: ${componentFile(component)} has no hidden_states.N outputs; SDXL reads the penultimate layer (optimum exports SDXL's encoders with them)`,
    );
  }
  return `hidden_states.${Math.max(...layers) - 1}`;
}

/** Encodes prompts not yet cached: per token [encoder 1 ‖ encoder 2] penultimate states, and the pooled embedding. */
async function encodeSdxlPrompts(ctx: PipelineContext, prompts: readonly string[]): Promise<void> {
  const missing = [...new Set(prompts)].filter((p) => !ctx.embeddings.has(p));
  if (missing.length === 0) return;
  const [tok1, tok2] = ctx.tokenizers;
  if (!tok1 || !tok2) throw new InferenceError('MODEL_ERROR', `model ${ctx.sessions.spec.id} has no second tokenizer`);
  const ids = (tok: typeof tok1): { data: Int32Array; dims: number[] } => {
    const data = new Int32Array(missing.length * tok.maxLength);
    missing.forEach((p, i) => data.set(tok.encode(p), i * tok.maxLength));
    return { data, dims: [missing.length, tok.maxLength] };
  };
  const [h1] = await ctx.sessions.runMany('textEncoder', { input_ids: ids(tok1) }, [penultimate(ctx, 'textEncoder')]);
  const [h2, pooled] = await ctx.sessions.runMany('textEncoder2', { input_ids: ids(tok2) }, [penultimate(ctx, 'textEncoder2'), 'text_embeds']);
  const tokens = tok1.maxLength;
  if (tok2.maxLength !== tokens)
    throw new InferenceError('MODEL_ERROR', `model ${ctx.sessions.spec.id}: the tokenizers' lengths differ (${tokens}, ${tok2.maxLength})`);
  const d1 = h1!.length / missing.length / tokens;
  const d2 = h2!.length / missing.length / tokens;
  const p = pooled!.length / missing.length;
  missing.forEach((prompt, i) => {
    const hidden = new Float32Array(tokens * (d1 + d2));
    for (let t = 0; t < tokens; t++) {
      hidden.set(h1!.subarray((i * tokens + t) * d1, (i * tokens + t + 1) * d1), t * (d1 + d2));
      hidden.set(h2!.subarray((i * tokens + t) * d2, (i * tokens + t + 1) * d2), t * (d1 + d2) + d1);
    }
    ctx.embeddings.set(prompt, hidden);
    ctx.embeddings.set(POOLED_KEY + prompt, pooled!.slice(i * p, (i + 1) * p));
  });
}

function stack(parts: readonly Float32Array[]): Float32Array {
  return concatBatches([...parts]);
}

export const sdxlConditioning: Conditioner = async (ctx, items, params, guided) => {
  const spec = ctx.sessions.spec;
  const prompts = items.map((i) => i.prompt);
  const zeroNegative = guided && params.negativePrompt === '' && spec.modelIndex.force_zeros_for_empty_prompt === true;
  await encodeSdxlPrompts(ctx, guided && !zeroNegative ? [...prompts, params.negativePrompt] : prompts);
  const hidden = stack(prompts.map((p) => ctx.embeddings.get(p)!));
  const pooled = stack(prompts.map((p) => ctx.embeddings.get(POOLED_KEY + p)!));
  const tokens = ctx.tokenizers[0]!.maxLength;
  const width = hidden.length / items.length / tokens;
  const pooledWidth = pooled.length / items.length;
  const refiner = spec.modelIndex.requires_aesthetics_score === true;
  const timeIds = (negative: boolean): number[] => [
    params.height,
    params.width,
    0,
    0,
    ...(refiner ? [negative ? NEGATIVE_AESTHETIC_SCORE : AESTHETIC_SCORE] : [params.height, params.width]),
  ];
  const rowsOf = (ids: number[], n: number): Float32Array => Float32Array.from({ length: n * ids.length }, (_, k) => ids[k % ids.length]!);
  const feed = (data: Float32Array, rows: number, ...inner: number[]): TensorFeed => ({ data, dims: [rows, ...inner] });
  const b = items.length;
  if (!guided) {
    return {
      embeds: feed(hidden, b, tokens, width),
      extra: { text_embeds: feed(pooled, b, pooledWidth), time_ids: feed(rowsOf(timeIds(false), b), b, timeIds(false).length) },
    };
  }
  const negHidden = zeroNegative ? new Float32Array(hidden.length) : stack(items.map(() => ctx.embeddings.get(params.negativePrompt)!));
  const negPooled = zeroNegative ? new Float32Array(pooled.length) : stack(items.map(() => ctx.embeddings.get(POOLED_KEY + params.negativePrompt)!));
  return {
    embeds: feed(stack([negHidden, hidden]), 2 * b, tokens, width),
    extra: {
      text_embeds: feed(stack([negPooled, pooled]), 2 * b, pooledWidth),
      time_ids: feed(stack([rowsOf(timeIds(true), b), rowsOf(timeIds(false), b)]), 2 * b, timeIds(false).length),
    },
  };
};

const SDXL_COMPONENTS: readonly Component[] = [...SD_COMPONENTS, 'textEncoder2'];
const SDXL_UNET = unetRole(['sample', 'timestep', 'encoder_hidden_states', 'text_embeds', 'time_ids']);
// SDXL base at 1024² (fp16 export, unfused attention): the first attention level is at 2×
// downsampling with 10 heads (attention_head_dim [5, 10, 20]).
const SDXL_MEMORY = { unetBytesPerLatentPixel: 400 * 1024, attentionHeads: 10, attentionDownscale: 2, vaeBytesPerPixel: 4 * 1024 };

/** SDXL-Turbo is distilled for 1–4 steps without guidance and ships trailing timestep spacing. */
function turboDefaults(base: PipelineFamilyDef['defaults']): NonNullable<PipelineFamilyDef['defaultsFor']> {
  return ({ schedulerJson }) =>
    schedulerJson.timestep_spacing === 'trailing' ? { ...base, steps: 2, guidanceScale: 0, strength: 0.5, size: '512x512' } : base;
}

const IMG2IMG_DEFAULTS = { steps: 30, guidanceScale: 5, imageGuidanceScale: null, strength: 0.3, scheduler: 'EULER', size: '1024x1024' } as const;
const INPAINT_DEFAULTS = { ...IMG2IMG_DEFAULTS, strength: 1 } as const;

export const sdxlImg2Img: PipelineFamilyDef = {
  kind: 'sdxl-img2img',
  describe: 'SDXL img2img',
  pipelineClasses: /^(ORT)?StableDiffusionXL(Img2Img)?Pipeline$/,
  maskMethod: 'latent-blend',
  components: SDXL_COMPONENTS,
  denoiser: SDXL_UNET,
  requiredOutputs: { textEncoder2: ['text_embeds'] },
  tokenizers: ['tokenizer', 'tokenizer_2'],
  denoiserInChannels: (latentChannels) => latentChannels,
  sizeMultiple: unetSizeMultiple,
  latentSampleCost: IMG2IMG_LATENT_SAMPLE_COST,
  defaults: IMG2IMG_DEFAULTS,
  defaultsFor: turboDefaults(IMG2IMG_DEFAULTS),
  limits: { maxPixels: 1536 * 1536 },
  memoryDefaults: SDXL_MEMORY,
  guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
  startIndex: img2imgStartIndex,
  stages: img2imgStages(sdxlConditioning),
};

export const sdxlInpaint: PipelineFamilyDef = {
  ...sdxlImg2Img,
  kind: 'sdxl-inpaint',
  describe: 'SDXL inpainting (9-channel UNet)',
  pipelineClasses: /^(ORT)?StableDiffusionXLInpaintPipeline$/,
  maskMethod: 'unet-mask-channels',
  denoiserInChannels: (latentChannels) => 2 * latentChannels + 1,
  defaults: INPAINT_DEFAULTS,
  defaultsFor: turboDefaults(INPAINT_DEFAULTS),
  stages: inpaintStages(sdxlConditioning),
};
