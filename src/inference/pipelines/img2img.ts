/**
 * Stable Diffusion img2img (diffusers' StableDiffusionImg2ImgPipeline): the input's latents are
 * noised to the timestep that `strength` selects and denoised from there, with classifier-free
 * guidance against the negative prompt when the guidance scale is above 1.
 */
import { classifierFreeGuidance, concatBatches } from '../tensor.js';
import type { Conditioner, Conditioning } from './common.js';
import type { FamilyStages, PipelineFamilyDef } from './family.js';
import { IMG2IMG_LATENT_SAMPLE_COST, SD_COMPONENTS, unetRole, unetSizeMultiple } from './family.js';
import { clipConditioning, decodeLatents, drawNoise, encodeImages, latentShapeFor, maskBlend, sampleLatent, timestepFeed } from './common.js';

/** diffusers' get_timesteps: how many of `steps` an img2img run actually denoises. */
export function img2imgDenoiseSteps(steps: number, strength: number): number {
  return Math.min(Math.floor(steps * strength), steps);
}

/** The timesteps img2img skips: the begin index of `strength`. */
export const img2imgStartIndex = (edit: { steps: number; strength: number }): number => edit.steps - img2imgDenoiseSteps(edit.steps, edit.strength);

/** The img2img stages for a family's text conditioning. */
export function img2imgStages(condition: Conditioner): FamilyStages<Conditioning> {
  return {
    encodePrompt: (ctx, items, params) => condition(ctx, items, params, params.guidanceScale > 1),

    async prepareLatents(ctx, items, params, { scheduler, timesteps }, generators) {
      const shape = latentShapeFor(ctx, params);
      const itemSize = shape.channels * shape.height * shape.width;
      const scalingFactor = ctx.sessions.spec.scalingFactor;
      const distinctImages = [...new Set(items.map((i) => i.image))];
      const encoded = await encodeImages(ctx, distinctImages, params, shape, true);
      // Each item samples its own latent from the input's distribution with its own generator, then
      // draws its noise: diffusers' prepare_latents with one generator per output.
      const initLatents = ctx.scratch.floats(items.length * itemSize);
      items.forEach((item, b) => {
        const { mean, std } = encoded[distinctImages.indexOf(item.image)]!;
        const out = sampleLatent(generators[b]!, mean, std, initLatents.subarray(b * itemSize, (b + 1) * itemSize));
        for (let k = 0; k < itemSize; k++) out[k] = out[k]! * scalingFactor;
      });
      const noise = drawNoise(generators, itemSize);
      const latents = scheduler.addNoise(initLatents, noise, timesteps[0]!);
      return { latents, shape, blend: maskBlend(scheduler, timesteps, items, params, shape, initLatents, noise) };
    },

    predict(ctx, items, params, { embeds, extra }, { shape }) {
      const batch = items.length;
      const itemSize = shape.channels * shape.height * shape.width;
      const guided = params.guidanceScale > 1;
      const rows = guided ? 2 * batch : batch;
      const guidedOut = ctx.scratch.floats(batch * itemSize);
      const doubled = guided ? ctx.scratch.floats(2 * batch * itemSize) : null;
      return async (scaled, t) => {
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
    },

    decode: (ctx, final, items, { shape }, hooks) => decodeLatents(ctx, final, items.length, shape, hooks),
  };
}

/** Stable Diffusion pipelines driven as img2img (text-to-image folders are served this way too). */
export const img2img: PipelineFamilyDef = {
  kind: 'img2img',
  describe: 'Stable Diffusion img2img',
  maskMethod: 'latent-blend',
  pipelineClasses: /^(ORT|Onnx)?StableDiffusion(Img2Img)?Pipeline$|^StableDiffusionOnnxPipeline$/,
  components: SD_COMPONENTS,
  denoiser: unetRole(),
  tokenizers: ['tokenizer'],
  denoiserInChannels: (latentChannels) => latentChannels,
  sizeMultiple: unetSizeMultiple,
  latentSampleCost: IMG2IMG_LATENT_SAMPLE_COST,
  defaults: { steps: 25, guidanceScale: 7.5, imageGuidanceScale: null, strength: 0.8, scheduler: 'EULER', size: '512x512' },
  guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
  startIndex: img2imgStartIndex,
  stages: img2imgStages(clipConditioning),
};
