/**
 * InstructPix2Pix (diffusers' StableDiffusionInstructPix2PixPipeline): the UNet sees the noisy
 * latents concatenated with the input image's latents. With guidance on (text scale > 1 and image
 * scale ≥ 1, as diffusers decides), every item runs three branches in diffusers' batch order —
 * [text+image, image only, neither] — with the negative prompt as the "no text" embedding and zero
 * latents as the "no image" latents, combined by three-branch guidance.
 * Items are ordered image·n + variant throughout; prompts and image latents are paired per item
 * (diffusers' own repeat order mispairs them when several prompts meet n > 1).
 */
import { concatBatches, instructPix2PixGuidance, scaleInPlace, scaleInto, writeChannelHalf } from '../tensor.js';
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams } from './common.js';
import type { PipelineFamilyDef } from './family.js';
import { SD_COMPONENTS, SD_UNET_INPUTS } from './family.js';
import {
  decodeLatents,
  denoiseLatents,
  drawNoise,
  encodeImages,
  encodePrompts,
  generatorsFor,
  latentShapeFor,
  maskBlend,
  stackEmbeddings,
  timestepFeed,
} from './common.js';

function instructPix2PixUsesGuidance(params: Pick<PipelineParams, 'guidanceScale' | 'imageGuidanceScale'>): boolean {
  return params.guidanceScale > 1 && params.imageGuidanceScale >= 1;
}

async function runInstructPix2Pix(ctx: PipelineContext, items: readonly PipelineItem[], params: PipelineParams, hooks: PipelineHooks): Promise<Float32Array[]> {
  const batch = items.length;
  const shape = latentShapeFor(ctx, params);
  const pixels = shape.height * shape.width;
  const itemSize = shape.channels * pixels;
  const guided = instructPix2PixUsesGuidance(params);

  await encodePrompts(ctx, guided ? [...items.map((i) => i.prompt), params.negativePrompt] : items.map((i) => i.prompt));
  const distinctImages = [...new Set(items.map((i) => i.image))];
  const encoded = await encodeImages(ctx, distinctImages, params, shape, false);
  const { scratch } = ctx;
  // InstructPix2Pix conditions on the distribution's mode, unscaled (as diffusers does).
  const imageLatents = concatBatches(
    items.map((i) => encoded[distinctImages.indexOf(i.image)]!.mean),
    scratch.floats(batch * itemSize),
  );

  const textEmbeds = stackEmbeddings(
    ctx,
    items.map((i) => i.prompt),
  );
  const branchEmbeds = guided
    ? (() => {
        const neg = stackEmbeddings(
          ctx,
          items.map(() => params.negativePrompt),
        );
        return { data: concatBatches([textEmbeds.data, neg.data, neg.data]), dims: [3 * batch, ...textEmbeds.dims.slice(1)] };
      })()
    : textEmbeds;
  const branchImages = guided
    ? concatBatches([imageLatents, imageLatents, scratch.floats(imageLatents.length).fill(0)], scratch.floats(3 * imageLatents.length))
    : imageLatents;
  const rows = guided ? 3 * batch : batch;
  const unetInput = scratch.floats(rows * 2 * itemSize);
  const guidedOut = scratch.floats(batch * itemSize);
  // Rows are [noisy latents ‖ image latents]; the image half is the same at every step.
  const branchCount = rows / batch;
  const branchRows = (k: number): Float32Array => unetInput.subarray(k * 2 * batch * itemSize, (k + 1) * 2 * batch * itemSize);
  for (let k = 0; k < branchCount; k++) {
    writeChannelHalf(branchImages.subarray(k * batch * itemSize, (k + 1) * batch * itemSize), branchRows(k), 1, batch, shape.channels, pixels);
  }

  const scheduler = ctx.createScheduler(params.scheduler);
  scheduler.setTimesteps(params.steps);
  const generators = generatorsFor(items);
  const noise = drawNoise(generators, itemSize, scratch.floats(batch * itemSize));
  const blend = items.some((i) => i.mask)
    ? maskBlend(
        scheduler,
        scheduler.timesteps,
        items,
        params,
        shape,
        scaleInto(imageLatents, ctx.sessions.spec.scalingFactor, scratch.floats(imageLatents.length)),
        noise.slice(),
      )
    : null;
  const latents = scaleInPlace(noise, scheduler.initNoiseSigma);

  const predictNoise = async (scaled: Float32Array, t: number): Promise<Float32Array> => {
    // Every guidance branch gets the same noisy latents, written straight into the UNet input.
    for (let k = 0; k < branchCount; k++) writeChannelHalf(scaled, branchRows(k), 0, batch, shape.channels, pixels);
    const pred = await ctx.sessions.run(
      'unet',
      {
        sample: { data: unetInput, dims: [rows, 2 * shape.channels, shape.height, shape.width] },
        timestep: timestepFeed(t, rows),
        encoder_hidden_states: branchEmbeds,
      },
      'out_sample',
    );
    return guided ? instructPix2PixGuidance(pred, batch * itemSize, params.guidanceScale, params.imageGuidanceScale, guidedOut) : pred;
  };

  const final = await denoiseLatents(scheduler, scheduler.timesteps, latents, predictNoise, generators, shape, hooks, scratch, blend);
  return decodeLatents(ctx, final, batch, shape, hooks);
}

export const instructPix2Pix: PipelineFamilyDef = {
  kind: 'instruct-pix2pix',
  describe: 'InstructPix2Pix',
  maskMethod: 'latent-blend',
  pipelineClasses: /InstructPix2Pix/,
  components: SD_COMPONENTS,
  unetInputs: SD_UNET_INPUTS,
  tokenizers: ['tokenizer'],
  unetInChannels: (latentChannels) => 2 * latentChannels,
  defaults: { steps: 20, guidanceScale: 7.5, imageGuidanceScale: 1.5, strength: null, scheduler: 'EULER_ANCESTRAL', size: '512x512' },
  guidanceBranches: (edit) => (instructPix2PixUsesGuidance(edit) ? 3 : 1),
  startIndex: () => 0,
  run: runInstructPix2Pix,
};
