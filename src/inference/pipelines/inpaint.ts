/**
 * Stable Diffusion inpainting with a 9-channel UNet (diffusers' StableDiffusionInpaintPipeline):
 * every UNet row is [noisy latents ‖ mask at latent size ‖ masked-image latents]. The mask is
 * binarised at 0.5 as diffusers' mask processor does and downsampled nearest-neighbour; the masked
 * image is the input with the edited region set to 0 (mid-grey), VAE-encoded and scaled. Strength
 * below 1 starts from the input's noised latents as img2img does. An item without a mask is a mask
 * of the whole image. Outside the mask the runner composites the input back.
 */
import { classifierFreeGuidance, scaleInPlace } from '../tensor.js';
import type { Conditioner, LatentShape, PipelineItem, PipelineParams } from './common.js';
import {
  clipConditioning,
  decodeLatents,
  denoiseLatents,
  drawNoise,
  encodeImages,
  generatorsFor,
  latentShapeFor,
  sampleLatent,
  timestepFeed,
} from './common.js';
import type { PipelineFamilyDef } from './family.js';
import { SD_COMPONENTS, SD_UNET_INPUTS } from './family.js';
import { img2imgDenoiseSteps } from './img2img.js';

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

/** The inpainting run for a family's text conditioning. */
export function inpaintRun(condition: Conditioner): PipelineFamilyDef['run'] {
  return async (ctx, items, params, hooks) => {
    const batch = items.length;
    const shape = latentShapeFor(ctx, params);
    const pixels = shape.height * shape.width;
    const itemSize = shape.channels * pixels;
    const rowChannels = 2 * shape.channels + 1;
    const guided = params.guidanceScale > 1;
    const { scratch } = ctx;
    const scalingFactor = ctx.sessions.spec.scalingFactor;
    const { embeds, extra } = await condition(ctx, items, params, guided);

    // One masked image per distinct (image, mask): the edited region set to mid-grey (0 in the VAE's range).
    const { pairs, pairOf } = distinctImageMasks(items);
    const maskedImages = pairs.map((p) => maskedImage(p.image, p.mask));
    const maskedEncoded = await encodeImages(ctx, maskedImages, params, shape, true);
    const latentMasks = pairs.map((p) => latentMaskNearest(p.mask, params, shape));

    const generators = generatorsFor(items);
    const scheduler = ctx.createScheduler(params.scheduler);
    scheduler.setTimesteps(params.steps);
    const tStart = params.steps - img2imgDenoiseSteps(params.steps, params.strength);
    scheduler.setBeginIndex(tStart);
    const timesteps = scheduler.timesteps.subarray(tStart);
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
    const rows = guided ? 2 * batch : batch;
    const unetInput = scratch.floats(rows * rowChannels * pixels);
    for (let r = 0; r < rows; r++) {
      const base = r * rowChannels * pixels;
      unetInput.set(latentMasks[pairOf[r % batch]!]!, base + shape.channels * pixels);
      unetInput.set(maskedLatents[r % batch]!, base + (shape.channels + 1) * pixels);
    }
    const guidedOut = scratch.floats(batch * itemSize);
    const predictNoise = async (scaled: Float32Array, t: number): Promise<Float32Array> => {
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
      return guided ? classifierFreeGuidance(pred, batch * itemSize, params.guidanceScale, guidedOut) : pred;
    };
    const final = await denoiseLatents(scheduler, timesteps, latents, predictNoise, generators, shape, hooks, scratch);
    return decodeLatents(ctx, final, batch, shape, hooks);
  };
}

export const inpaint: PipelineFamilyDef = {
  kind: 'inpaint',
  describe: 'Stable Diffusion inpainting (9-channel UNet)',
  pipelineClasses: /^(ORT|Onnx)?StableDiffusionInpaintPipeline$/,
  maskMethod: 'unet-mask-channels',
  components: SD_COMPONENTS,
  unetInputs: SD_UNET_INPUTS,
  tokenizers: ['tokenizer'],
  unetInChannels: (latentChannels) => 2 * latentChannels + 1,
  defaults: { steps: 25, guidanceScale: 7.5, imageGuidanceScale: null, strength: 1, scheduler: 'EULER', size: '512x512' },
  guidanceBranches: (edit) => (edit.guidanceScale > 1 ? 2 : 1),
  startIndex: (edit) => edit.steps - img2imgDenoiseSteps(edit.steps, edit.strength),
  run: inpaintRun(clipConditioning),
};
