/**
 * Qwen-Image-Edit's sizes (diffusers' `calculate_dimensions`): the width and height of `area`
 * pixels at aspect ratio `ratio` (w/h), each rounded to a multiple of 32 as Python's `round` does
 * (halves to even).
 */

import { roundHalfEven } from '../../schedulers/timesteps.js';

export interface Dimensions {
  width: number;
  height: number;
}

export function calculateDimensions(area: number, ratio: number): Dimensions {
  const width = Math.sqrt(area * ratio);
  const height = width / ratio;
  return { width: roundHalfEven(width / 32) * 32, height: roundHalfEven(height / 32) * 32 };
}

/** diffusers' VAE image area for the condition latents (Plus: `VAE_IMAGE_SIZE`; Edit: its 1 MP resize). */
export const VAE_IMAGE_AREA = 1024 * 1024;
/** QwenImageEditPlusPipeline's `CONDITION_IMAGE_SIZE`: the vision-language input's area. */
export const CONDITION_IMAGE_AREA = 384 * 384;
