/**
 * Qwen2-VL's image processor (transformers' Qwen2VLImageProcessor, as the Qwen-Image-Edit
 * pipelines' `processor` runs it): `smart_resize` to multiples of patch·merge (28) within
 * [min_pixels, max_pixels], bicubic resampling, rescale to [0,1], CLIP mean/std, then patches of
 * 14×14 over `temporal_patch_size` (2) copies of the image, ordered by 2×2 merge groups: one row
 * of 3·2·14·14 values (channel, frame, y, x) per patch, and the grid (t, h, w) in patches.
 */
import { resizePlanar } from './resize.js';
import { roundHalfEven } from '../../schedulers/timesteps.js';

export interface VisionProcessorConfig {
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  minPixels: number;
  maxPixels: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** The values of Qwen/Qwen-Image-Edit's preprocessor_config.json. */
export const QWEN2VL_PROCESSOR: VisionProcessorConfig = {
  patchSize: 14,
  temporalPatchSize: 2,
  mergeSize: 2,
  minPixels: 3136,
  maxPixels: 12845056,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

type Json = Record<string, unknown>;

/** preprocessor_config.json as transformers reads it (`size.shortest_edge`/`longest_edge` win over min/max_pixels). */
export function parseVisionProcessorConfig(json: Json, where: string): VisionProcessorConfig {
  const num = (key: string, fallback: number): number => {
    const v = json[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`${where}: ${key} must be a positive number (got ${JSON.stringify(v)})`);
    return v;
  };
  const triple = (key: string, fallback: readonly [number, number, number]): [number, number, number] => {
    const v = json[key];
    if (v === undefined || v === null) return [...fallback];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number')) throw new Error(`${where}: ${key} must be 3 numbers`);
    return v as [number, number, number];
  };
  const size = (typeof json.size === 'object' && json.size !== null ? json.size : {}) as Json;
  const d = QWEN2VL_PROCESSOR;
  const minPixels = typeof size.shortest_edge === 'number' ? size.shortest_edge : num('min_pixels', d.minPixels);
  const maxPixels = typeof size.longest_edge === 'number' ? size.longest_edge : num('max_pixels', d.maxPixels);
  return {
    patchSize: num('patch_size', d.patchSize),
    temporalPatchSize: num('temporal_patch_size', d.temporalPatchSize),
    mergeSize: num('merge_size', d.mergeSize),
    minPixels,
    maxPixels,
    mean: triple('image_mean', d.mean),
    std: triple('image_std', d.std),
  };
}

/** transformers' `smart_resize`: (height, width) at multiples of `factor`, area within [min, max]. */
export function smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): { height: number; width: number } {
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new RangeError(`absolute aspect ratio must be smaller than 200, got ${Math.max(height, width) / Math.min(height, width)}`);
  }
  // Python's round: halves to even.
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

export interface VisionInput {
  /** [patches, 3·T·P·P] */
  pixelValues: Float32Array;
  /** (t, h, w) in patches. */
  grid: [number, number, number];
  /** `<|image_pad|>` tokens the image expands to: t·h·w / merge². */
  tokens: number;
}

/** One image (planar RGB in [0,1], width × height) as the processor gives it to Qwen2.5-VL. */
export function processImage(rgb: Float32Array, width: number, height: number, config: VisionProcessorConfig = QWEN2VL_PROCESSOR): VisionInput {
  const { patchSize: P, temporalPatchSize: T, mergeSize: M } = config;
  const size = smartResize(height, width, P * M, config.minPixels, config.maxPixels);
  const img = size.width === width && size.height === height ? rgb : resizePlanar(rgb, width, height, size.width, size.height, 'bicubic');
  const gh = size.height / P;
  const gw = size.width / P;
  const row = 3 * T * P * P;
  const out = new Float32Array(gh * gw * row);
  const plane = size.width * size.height;
  let o = 0;
  // Patch order: merge groups (gh/M × gw/M) row-major, the M×M patches of a group row-major.
  for (let by = 0; by < gh / M; by++) {
    for (let bx = 0; bx < gw / M; bx++) {
      for (let my = 0; my < M; my++) {
        for (let mx = 0; mx < M; mx++) {
          const y0 = (by * M + my) * P;
          const x0 = (bx * M + mx) * P;
          for (let c = 0; c < 3; c++) {
            const mean = config.mean[c]!;
            const std = config.std[c]!;
            for (let t = 0; t < T; t++) {
              for (let y = 0; y < P; y++) {
                const src = c * plane + (y0 + y) * size.width + x0;
                // transformers rescales uint8 by 1/255 then normalises, in float32.
                for (let x = 0; x < P; x++) out[o++] = Math.fround((Math.fround(img[src + x]!) - mean) / std);
              }
            }
          }
        }
      }
    }
  }
  return { pixelValues: out, grid: [1, gh, gw], tokens: (gh * gw) / (M * M) };
}
