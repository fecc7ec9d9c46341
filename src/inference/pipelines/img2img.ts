/**
 * Stable Diffusion img2img (diffusers' StableDiffusionImg2ImgPipeline): the input's latents are
 * noised to the timestep that `strength` selects and denoised from there, with classifier-free
 * guidance against the negative prompt when the guidance scale is above 1.
 */
import { classifierFreeGuidance, concatBatches } from '../tensor.js';
import type { Conditioner } from './common.js';
import type { PipelineFamilyDef } from './family.js';
import { SD_COMPONENTS, SD_UNET_INPUTS } from './family.js';
import {
  clipConditioning,
  decodeLatents,
  denoiseLatents,
  drawNoise,
  encodeImages,
  generatorsFor,
  latentShapeFor,
  maskBlend,
  sampleLatent,
  timestepFeed,
} from './common.js';

/** diffusers' get_timesteps: how many of `steps` an img2img run actually denoises. */
export function img2imgDenoiseSteps(steps: number, strength: number): number {
  return Math.min(Math.floor(steps * strength), steps);
}

/** The img2img run for a family's text conditioning. */
export function img2imgRun(condition: Conditioner): PipelineFamilyDef['run'] {
  return async (ctx, items, params, hooks) => {
    const batch = items.length;
    const shape = latentShapeFor(ctx, params);
    const itemSize = shape.channels * shape.height * shape.width;
    const guided = params.guidanceScale > 1;
    const scalingFactor = ctx.sessions.spec.scalingFactor;
    const { embeds, extra } = await condition(ctx, items, params, guided);

    const generators = generatorsFor(items);
    const distinctImages = [...new Set(items.map((i) => i.image))];
    const encoded = await encodeImages(ctx, distinctImages, params, shape, true);
    // Each item samples its own latent from the input's distribution with its own generator, then
    // draws its noise: diffusers' prepare_latents with one generator per output.
    const initLatents = ctx.scratch.floats(batch * itemSize);
    items.forEach((item, b) => {
      const { mean, std } = encoded[distinctImages.indexOf(item.image)]!;
      const out = sampleLatent(generators[b]!, mean, std, initLatents.subarray(b * itemSize, (b + 1) * itemSize));
      for (let k = 0; k < itemSize; k++) out[k] = out[k]! * scalingFactor;
    });

    const scheduler = ctx.createScheduler(params.scheduler);
    scheduler.setTimesteps(params.steps);
    const denoiseSteps = img2imgDenoiseSteps(params.steps, params.strength);
    const tStart = params.steps - denoiseSteps;
    scheduler.setBeginIndex(tStart);
    const timesteps = scheduler.timesteps.subarray(tStart);
    const noise = drawNoise(generators, itemSize);
    const latents = scheduler.addNoise(initLatents, noise, timesteps[0]!);
    const blend = maskBlend(scheduler, timesteps, items, params, shape, initLatents, noise);

    const rows = guided ? 2 * batch : batch;
    const guidedOut = ctx.scratch.floats(batch * itemSize);
    const doubled = guided ? ctx.scratch.floats(2 * batch * itemSize) : null;
    const predictNoise = async (scaled: Float32Array, t: number): Promise<Float32Array> => {
      const sample = doubled ? concatBatches([scaled, scaled], doubled) : scaled;
      const pred = await ctx.sessions.run(
        'unet',
        {
          sample: { data: sample, dims: [rows, shape.channels, shape.height, shape.width] },
          timestep: timestepFeed(t, rows),
          encoder_hidden_states: embeds,
          ...extra,
        },
        'out_sample',
      );
      return guided ? classifierFreeGuidance(pred, batch * itemSize, params.guidanceScale, guidedOut) : pred;
    };

    const final = await denoiseLatents(scheduler, timesteps, latents, predictNoise, generators, shape, hooks, ctx.scratch, blend);
    return decodeLatents(ctx, final, batch, shape, hooks);
  };
}

/** Stable Diffusion pipelines driven as img2img (text-to-image folders are served this way too). */
export const img2img: PipelineFamilyDef = {
  kind: 'img2img',
  describe: 'Stable Diffusion img2img',
  maskMethod: 'latent-blend',
  pipelineClasses: /^(ORT|Onnx)?StableDiffusion(Img2Img)?Pipeline$|^StableDiffusionOnnxPipeline$/,
  components: SD_COMPONENTS,
  unetInputs: SD_UNET_INPUTS,
  tokenizers: ['tokenizer'],
  unetInChannels: (latentChannels) => latentChannels,
  defaults: { steps: 25, guidanceScale: 7.5, imageGuidanceScale: null, strength: 0.8, scheduler: 'EULER', size: '512x512' },
  guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
  startIndex: (edit) => edit.steps - img2imgDenoiseSteps(edit.steps, edit.strength),
  run: img2imgRun(clipConditioning),
};
