/**
 * Stable Diffusion inpainting with a 9-channel UNet (diffusers' StableDiffusionInpaintPipeline):
 * every UNet row is [noisy latents ‖ mask at latent size ‖ masked-image latents]. The mask is
 * binarised at 0.5 as diffusers' mask processor does and downsampled nearest-neighbour; the masked
 * image is the input with the edited region set to 0 (mid-grey), VAE-encoded and scaled. Strength
 * below 1 starts from the input's noised latents as img2img does. An item without a mask is a mask
 * of the whole image. Outside the mask the runner composites the input back.
 */
import { classifierFreeGuidance, scaleInPlace } from '../tensor.js';
import type { Conditioner, Conditioning, LatentShape, PipelineItem, PipelineParams } from './common.js';
import { clipConditioning, decodeLatents, drawNoise, encodeImages, latentShapeFor, sampleLatent, timestepFeed } from './common.js';
import type { FamilyStages, PipelineFamilyDef, PreparedLatents } from './family.js';
import { IMG2IMG_LATENT_SAMPLE_COST, SD_COMPONENTS, unetRole, unetSizeMultiple } from './family.js';
import { img2imgStartIndex } from './img2img.js';

/** The binarised mask at latent size, nearest-neighbour (pixel at each cell's top-left + half). */
export function latentMaskNearest(mask: Float32Array | null, params: PipelineParams, shape: LatentShape): Float32Array {
  const out = new Float32Array(shape.height * shape.width);
  if (!mask) return out.fill(1);
  const fx = params.width / shape.width;
  const fy = params.height / shape.height;
  for (let y = 0; y < shape.height; y++) {
    for (let x = 0; x < shape.width; x++) out[y * shape.width + x] = mask[Math.floor(y * fy) * params.width + Math.floor(x * fx)]! >= 0.5 ? 1 : 0;
  }
  return out;
}

/** The input with the edited region (mask ≥ 0.5; all of it without a mask) set to mid-grey, 0 in the VAE's range. */
export function maskedImage(image: Float32Array, mask: Float32Array | null): Float32Array {
  const n = image.length / 3;
  const masked = Float32Array.from(image);
  for (let k = 0; k < n; k++) if (!mask || mask[k]! >= 0.5) masked[k] = masked[n + k] = masked[2 * n + k] = 0.5;
  return masked;
}

/** The distinct (image, mask) pairs of `items`, and each item's pair index. */
export function distinctImageMasks(items: readonly PipelineItem[]): { pairs: PipelineItem[]; pairOf: number[] } {
  const pairs: PipelineItem[] = [];
  const pairOf = items.map((i) => {
    let k = pairs.findIndex((p) => p.image === i.image && p.mask === i.mask);
    if (k < 0) k = pairs.push(i) - 1;
    return k;
  });
  return { pairs, pairOf };
}

/** The UNet input, [rows, 2C + 1, h, w]: each row's mask and masked-image latents are written once. */
interface InpaintLatents extends PreparedLatents {
  unetInput: Float32Array;
  rows: number;
}

/** The inpainting stages for a family's text conditioning. */
export function inpaintStages(condition: Conditioner): FamilyStages<Conditioning, InpaintLatents> {
  return {
    encodePrompt: (ctx, items, params) => condition(ctx, items, params, params.guidanceScale > 1),

    async prepareLatents(ctx, items, params, { scheduler, timesteps }, generators) {
      const batch = items.length;
      const shape = latentShapeFor(ctx, params);
      const pixels = shape.height * shape.width;
      const itemSize = shape.channels * pixels;
      const rowChannels = 2 * shape.channels + 1;
      const { scratch } = ctx;
      const scalingFactor = ctx.sessions.spec.scalingFactor;
      // One masked image per distinct (image, mask): the edited region set to mid-grey (0 in the VAE's range).
      const { pairs, pairOf } = distinctImageMasks(items);
      const maskedImages = pairs.map((p) => maskedImage(p.image, p.mask));
      const maskedEncoded = await encodeImages(ctx, maskedImages, params, shape, true);
      const latentMasks = pairs.map((p) => latentMaskNearest(p.mask, params, shape));
      let latents: Float32Array;
      if (params.strength >= 1) {
        latents = scaleInPlace(drawNoise(generators, itemSize, scratch.floats(batch * itemSize)), scheduler.initNoiseSigma);
      } else {
        const distinct = [...new Set(items.map((i) => i.image))];
        const encoded = await encodeImages(ctx, distinct, params, shape, true);
        const init = scratch.floats(batch * itemSize);
        items.forEach((item, b) => {
          const { mean, std } = encoded[distinct.indexOf(item.image)]!;
          sampleLatent(generators[b]!, mean, std, init.subarray(b * itemSize, (b + 1) * itemSize));
        });
        latents = scheduler.addNoise(scaleInPlace(init, scalingFactor), drawNoise(generators, itemSize), timesteps[0]!);
      }
      // diffusers draws the masked image's latent sample after the noise (prepare_mask_latents), one per output here.
      const maskedLatents = items.map((_, b) => {
        const { mean, std } = maskedEncoded[pairOf[b]!]!;
        return scaleInPlace(sampleLatent(generators[b]!, mean, std, new Float32Array(itemSize)), scalingFactor);
      });
      // UNet rows: [uncond…, text…] when guided, each [latents(C) ‖ mask(1) ‖ masked latents(C)].
      const rows = params.guidanceScale > 1 ? 2 * batch : batch;
      const unetInput = scratch.floats(rows * rowChannels * pixels);
      for (let r = 0; r < rows; r++) {
        const base = r * rowChannels * pixels;
        unetInput.set(latentMasks[pairOf[r % batch]!]!, base + shape.channels * pixels);
        unetInput.set(maskedLatents[r % batch]!, base + (shape.channels + 1) * pixels);
      }
      return { latents, shape, blend: null, unetInput, rows };
    },

    predict(ctx, items, params, { embeds, extra }, { shape, unetInput, rows }) {
      const batch = items.length;
      const pixels = shape.height * shape.width;
      const itemSize = shape.channels * pixels;
      const rowChannels = 2 * shape.channels + 1;
      const guidedOut = ctx.scratch.floats(batch * itemSize);
      return async (scaled, t) => {
        for (let r = 0; r < rows; r++) unetInput.set(scaled.subarray((r % batch) * itemSize, ((r % batch) + 1) * itemSize), r * rowChannels * pixels);
        const pred = await ctx.sessions.run(
          'unet',
          {
            sample: { data: unetInput, dims: [rows, rowChannels, shape.height, shape.width] },
            timestep: timestepFeed(t, rows),
            encoder_hidden_states: embeds,
            ...extra,
          },
          'out_sample',
        );
        return rows > batch ? classifierFreeGuidance(pred, batch * itemSize, params.guidanceScale, guidedOut) : pred;
      };
    },

    decode: (ctx, final, items, { shape }, hooks) => decodeLatents(ctx, final, items.length, shape, hooks),
  };
}

export const inpaint: PipelineFamilyDef = {
  kind: 'inpaint',
  describe: 'Stable Diffusion inpainting (9-channel UNet)',
  pipelineClasses: /^(ORT|Onnx)?StableDiffusionInpaintPipeline$/,
  maskMethod: 'unet-mask-channels',
  components: SD_COMPONENTS,
  denoiser: unetRole(),
  tokenizers: ['tokenizer'],
  denoiserInChannels: (latentChannels) => 2 * latentChannels + 1,
  sizeMultiple: unetSizeMultiple,
  latentSampleCost: IMG2IMG_LATENT_SAMPLE_COST,
  defaults: { steps: 25, guidanceScale: 7.5, imageGuidanceScale: null, strength: 1, scheduler: 'EULER', size: '512x512' },
  guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
  startIndex: img2imgStartIndex,
  stages: inpaintStages(clipConditioning),
};
