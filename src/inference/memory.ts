/**
 * Batch memory estimate and micro-batch planning.
 *
 * For one UNet call over R rows (items × guidance branches) at a latent of h×w = L pixels:
 *   bytes = weights + R·(L·unetBytesPerLatentPixel + heads·(L/d²)²·4) + B·(H·W·vaeBytesPerPixel)
 * The first per-row term is the convolution/norm activations (ComfyUI's memory_required is this
 * term: area × a per-model factor); the second is the attention score matrix that an unfused ONNX
 * export materialises (B·heads·L² floats at the first attention level, d = its downscale); the last
 * is the VAE decoder's full-resolution activations. Transformers attend over image tokens
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
}

export function perItemBytes(profile: MemoryProfile, g: BatchGeometry): number {
  const latentPixels = (g.width / g.vaeScaleFactor) * (g.height / g.vaeScaleFactor);
  const attentionTokens = latentPixels / (profile.attentionDownscale * profile.attentionDownscale) + (g.extraTokens?.(g.width, g.height) ?? 0);
  const unetRow = latentPixels * profile.unetBytesPerLatentPixel + profile.attentionHeads * attentionTokens * attentionTokens * 4;
  return g.branches * unetRow + g.width * g.height * profile.vaeBytesPerPixel;
}

export function estimateBatchBytes(profile: MemoryProfile, g: BatchGeometry, items: number): number {
  return profile.weightBytes + items * perItemBytes(profile, g);
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

/** Splits `count` items into the fewest balanced micro-batches that fit `budgetBytes`. */
export function planMicroBatches(count: number, profile: MemoryProfile, g: BatchGeometry, budgetBytes: number): number[] {
  const fixed = profile.weightBytes;
  const per = perItemBytes(profile, g);
  const fit = Math.floor((budgetBytes - fixed) / per);
  if (fit < 1) {
    const maxPixels = maxPixelsWithinBudget(profile, g, budgetBytes);
    throw new InferenceError(
      'IMAGE_TOO_LARGE',
      `one ${g.width}x${g.height} output needs about ${Math.ceil((fixed + per) / 2 ** 20)} MiB, over the memory budget of ${Math.floor(budgetBytes / 2 ** 20)} MiB; the largest output that fits is about ${maxPixels} pixels (max pixels ${maxPixels})`,
    );
  }
  const batches = Math.ceil(count / fit);
  const base = Math.floor(count / batches);
  const extra = count % batches;
  return Array.from({ length: batches }, (_, i) => base + (i < extra ? 1 : 0));
}
