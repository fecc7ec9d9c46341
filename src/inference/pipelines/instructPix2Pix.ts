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
import type { PipelineParams, TensorFeed } from './common.js';
import type { FamilyStages, PipelineFamilyDef, PreparedLatents } from './family.js';
import { SD_COMPONENTS, unetRole, unetSizeMultiple } from './family.js';
import { decodeLatents, drawNoise, encodeImages, encodePrompts, latentShapeFor, maskBlend, stackEmbeddings, timestepFeed } from './common.js';

function instructPix2PixUsesGuidance(params: Pick<PipelineParams, 'guidanceScale' | 'imageGuidanceScale'>): boolean {
  return params.guidanceScale > 1 && params.imageGuidanceScale >= 1;
}

/** The UNet input, [rows, 2C, h, w]: every row's image half is written once, its noisy half at each step. */
interface Ip2pLatents extends PreparedLatents {
  unetInput: Float32Array;
  rows: number;
}

const stages: FamilyStages<TensorFeed, Ip2pLatents> = {
  /** Rows: [text, negative, negative] per item when guided (diffusers' branch order), else the prompts. */
  async encodePrompt(ctx, items, params): Promise<TensorFeed> {
    const guided = instructPix2PixUsesGuidance(params);
    await encodePrompts(ctx, guided ? [...items.map((i) => i.prompt), params.negativePrompt] : items.map((i) => i.prompt));
    const textEmbeds = stackEmbeddings(
      ctx,
      items.map((i) => i.prompt),
    );
    if (!guided) return textEmbeds;
    const neg = stackEmbeddings(
      ctx,
      items.map(() => params.negativePrompt),
    );
    return { data: concatBatches([textEmbeds.data, neg.data, neg.data]), dims: [3 * items.length, ...textEmbeds.dims.slice(1)] };
  },

  async prepareLatents(ctx, items, params, { scheduler, timesteps }, generators): Promise<Ip2pLatents> {
    const batch = items.length;
    const shape = latentShapeFor(ctx, params);
    const pixels = shape.height * shape.width;
    const itemSize = shape.channels * pixels;
    const guided = instructPix2PixUsesGuidance(params);
    const distinctImages = [...new Set(items.map((i) => i.image))];
    const encoded = await encodeImages(ctx, distinctImages, params, shape, false);
    const { scratch } = ctx;
    // InstructPix2Pix conditions on the distribution's mode, unscaled (as diffusers does).
    const imageLatents = concatBatches(
      items.map((i) => encoded[distinctImages.indexOf(i.image)]!.mean),
      scratch.floats(batch * itemSize),
    );
    const branchImages = guided
      ? concatBatches([imageLatents, imageLatents, scratch.floats(imageLatents.length).fill(0)], scratch.floats(3 * imageLatents.length))
      : imageLatents;
    const rows = guided ? 3 * batch : batch;
    const unetInput = scratch.floats(rows * 2 * itemSize);
    for (let k = 0; k < rows / batch; k++) {
      writeChannelHalf(
        branchImages.subarray(k * batch * itemSize, (k + 1) * batch * itemSize),
        unetInput.subarray(k * 2 * batch * itemSize, (k + 1) * 2 * batch * itemSize),
        1,
        batch,
        shape.channels,
        pixels,
      );
    }
    const noise = drawNoise(generators, itemSize, scratch.floats(batch * itemSize));
    const blend = items.some((i) => i.mask)
      ? maskBlend(
          scheduler,
          timesteps,
          items,
          params,
          shape,
          scaleInto(imageLatents, ctx.sessions.spec.scalingFactor, scratch.floats(imageLatents.length)),
          noise.slice(),
        )
      : null;
    return { latents: scaleInPlace(noise, scheduler.initNoiseSigma), shape, blend, unetInput, rows };
  },

  predict(ctx, items, params, embeds, { shape, unetInput, rows }) {
    const batch = items.length;
    const pixels = shape.height * shape.width;
    const itemSize = shape.channels * pixels;
    const guidedOut = ctx.scratch.floats(batch * itemSize);
    return async (scaled, t) => {
      // Every guidance branch gets the same noisy latents, written straight into the UNet input.
      for (let k = 0; k < rows / batch; k++) {
        writeChannelHalf(scaled, unetInput.subarray(k * 2 * batch * itemSize, (k + 1) * 2 * batch * itemSize), 0, batch, shape.channels, pixels);
      }
      const pred = await ctx.sessions.run(
        'unet',
        {
          sample: { data: unetInput, dims: [rows, 2 * shape.channels, shape.height, shape.width] },
          timestep: timestepFeed(t, rows),
          encoder_hidden_states: embeds,
        },
        'out_sample',
      );
      return rows > batch ? instructPix2PixGuidance(pred, batch * itemSize, params.guidanceScale, params.imageGuidanceScale, guidedOut) : pred;
    };
  },

  decode: (ctx, final, items, { shape }, hooks) => decodeLatents(ctx, final, items.length, shape, hooks),
};

export const instructPix2Pix: PipelineFamilyDef = {
  kind: 'instruct-pix2pix',
  describe: 'InstructPix2Pix',
  maskMethod: 'latent-blend',
  pipelineClasses: /InstructPix2Pix/,
  components: SD_COMPONENTS,
  denoiser: unetRole(),
  tokenizers: ['tokenizer'],
  denoiserInChannels: (latentChannels) => 2 * latentChannels,
  sizeMultiple: unetSizeMultiple,
  latentSampleCost: 'InstructPix2Pix conditions on a randomly perturbed image latent instead of its mean, and results are not reproducible from a seed',
  defaults: { steps: 20, guidanceScale: 7.5, imageGuidanceScale: 1.5, strength: null, scheduler: 'EULER_ANCESTRAL', size: '512x512' },
  guidanceBranches: (edit) => (instructPix2PixUsesGuidance(edit) ? 3 : 1),
  // Generates from noise: no begin index.
  startIndex: () => null,
  stages,
};
