/**
 * Batch memory estimate and micro-batch planning.
 *
 * For one UNet call over R rows (items × guidance branches) at a latent of h×w = L pixels:
 *   bytes = weights + runtime + R·(L·unetBytesPerLatentPixel + heads·(L/d²)²·bytesPerScore) + B·(H·W·vaeBytesPerPixel)
 * The first per-row term is the convolution/norm activations (ComfyUI's memory_required is this
 * term: area × a per-model factor); the second is the attention score matrices that an unfused
 * ONNX export materialises (heads·L² scores per row at the first attention level, d = its
 * downscale); the last is the VAE's full-resolution activations. Transformers attend over image tokens
 * (2×2 patches: downscale 2) plus text and reference tokens (`extraTokens`), so the L² term uses
 * the whole joint sequence. Work over the budget is split into balanced
 * micro-batches; only a single item that can never fit is refused.
 */
import type { MemoryProfile } from './modelFolder.js';
import { InferenceError } from './errors.js';

export interface BatchGeometry {
  width: number;
  height: number;
  /** Pixels per latent pixel along each axis. */
  vaeScaleFactor: number;
  /** UNet rows per item: 1, or 2/3 with guidance. */
  branches: number;
  /**
   * Attention tokens per row besides the image's own at an output size (a transformer's text
   * tokens, a reference image's tokens, which grow with the size); absent for UNets.
   */
  extraTokens?: (width: number, height: number) => number;
  /** Pixel multiple output sizes snap to (the model's), for naming the largest size that fits; default the VAE factor. */
  sizeMultiple?: number;
}

export function perItemBytes(profile: MemoryProfile, g: BatchGeometry): number {
  const latentPixels = (g.width / g.vaeScaleFactor) * (g.height / g.vaeScaleFactor);
  const attentionTokens = latentPixels / (profile.attentionDownscale * profile.attentionDownscale) + (g.extraTokens?.(g.width, g.height) ?? 0);
  const unetRow = latentPixels * profile.unetBytesPerLatentPixel + profile.attentionHeads * attentionTokens * attentionTokens * profile.attentionBytesPerScore;
  return g.branches * unetRow + g.width * g.height * profile.vaeBytesPerPixel;
}

export function estimateBatchBytes(profile: MemoryProfile, g: BatchGeometry, items: number): number {
  return profile.weightBytes + profile.runtimeBytes + items * perItemBytes(profile, g);
}

/** Largest square-ish pixel count (width·height) whose single item fits the budget. */
export function maxPixelsWithinBudget(profile: MemoryProfile, g: Omit<BatchGeometry, 'width' | 'height'>, budgetBytes: number): number {
  let lo = 0;
  let hi = 1 << 30;
  while (hi - lo > 64) {
    const mid = Math.floor((lo + hi) / 2);
    const side = Math.sqrt(mid);
    const fits = estimateBatchBytes(profile, { ...g, width: side, height: side }, 1) <= budgetBytes;
    if (fits) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The largest output of the geometry's aspect ratio, snapped down to its size multiple, whose
 * single item fits the budget; null when not even the smallest does.
 */
export function largestFittingSize(profile: MemoryProfile, g: BatchGeometry, budgetBytes: number): { width: number; height: number } | null {
  const multiple = g.sizeMultiple ?? g.vaeScaleFactor;
  const at = (scale: number): { width: number; height: number } => ({
    width: Math.max(multiple, Math.floor((g.width * scale) / multiple) * multiple),
    height: Math.max(multiple, Math.floor((g.height * scale) / multiple) * multiple),
  });
  const fits = (size: { width: number; height: number }): boolean => estimateBatchBytes(profile, { ...g, ...size }, 1) <= budgetBytes;
  if (!fits(at(0))) return null;
  let lo = 0;
  let hi = 1;
  while (fits(at(hi)) && hi < 1 << 16) hi *= 2;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (fits(at(mid))) lo = mid;
    else hi = mid;
  }
  return at(lo);
}

/** Splits `count` items into the fewest balanced micro-batches that fit `budgetBytes`. */
export function planMicroBatches(count: number, profile: MemoryProfile, g: BatchGeometry, budgetBytes: number): number[] {
  const fixed = profile.weightBytes + profile.runtimeBytes;
  const per = perItemBytes(profile, g);
  const fit = Math.floor((budgetBytes - fixed) / per);
  if (fit < 1) {
    const maxPixels = maxPixelsWithinBudget(profile, g, budgetBytes);
    const largest = largestFittingSize(profile, g, budgetBytes);
    const fitting = largest
      ? `the largest ${g.width === g.height ? 'square ' : 'of this aspect ratio '}that fits is ${largest.width}x${largest.height}`
      : 'not even the smallest output fits (the weights alone are over it)';
    throw new InferenceError(
      'IMAGE_TOO_LARGE',
      `one ${g.width}x${g.height} output needs about ${Math.ceil((fixed + per) / 2 ** 20)} MiB, over the memory budget of ${Math.floor(budgetBytes / 2 ** 20)} MiB; ${fitting} (max pixels ${maxPixels})`,
    );
  }
  const batches = Math.ceil(count / fit);
  const base = Math.floor(count / batches);
  const extra = count % batches;
  return Array.from({ length: batches }, (_, i) => base + (i < extra ? 1 : 0));
}
