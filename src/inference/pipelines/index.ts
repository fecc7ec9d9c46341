/** The pipeline families this server runs: the one list everything else derives from. */
import type { PipelineFamilyDef } from './family.js';
import { instructPix2Pix } from './instructPix2Pix.js';
import { img2img } from './img2img.js';
import { inpaint } from './inpaint.js';
import { sdxlImg2Img, sdxlInpaint } from './sdxl.js';
import { fluxImg2Img, fluxKontext } from './flux.js';
import { sd3Img2Img, sd3Inpaint } from './sd3.js';
import { qwenImageEdit, qwenImageEditPlus } from './qwen/index.js';

export const PIPELINE_FAMILIES: readonly PipelineFamilyDef[] = [
  instructPix2Pix,
  img2img,
  inpaint,
  sdxlImg2Img,
  sdxlInpaint,
  fluxImg2Img,
  fluxKontext,
  sd3Img2Img,
  sd3Inpaint,
  qwenImageEdit,
  qwenImageEditPlus,
];

export type { PipelineFamilyDef } from './family.js';

/** The first family serving a model_index.json `_class_name`, or null. */
export function familyForPipelineClass(className: string): PipelineFamilyDef | null {
  return PIPELINE_FAMILIES.find((f) => f.pipelineClasses.test(className)) ?? null;
}

/**
 * The family serving `className` whose denoiser takes `inChannels` for a VAE with
 * `latentChannels` (diffusers' StableDiffusion3InpaintPipeline runs 16- and 33-channel
 * transformers differently); null when none does.
 */
export function familyForPipelineClassAndChannels(className: string, inChannels: number, latentChannels: number): PipelineFamilyDef | null {
  return PIPELINE_FAMILIES.find((f) => f.pipelineClasses.test(className) && f.denoiserInChannels(latentChannels) === inChannels) ?? null;
}
