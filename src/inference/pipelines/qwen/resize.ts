/**
 * Planar RGB resampling as Pillow's `Image.resize` does it (the Qwen pipelines resize PIL images:
 * LANCZOS in diffusers' VaeImageProcessor, BICUBIC in the Qwen2-VL processor): separable, each
 * output pixel a normalised kernel sum over the input pixels whose centres lie within the kernel's
 * support, the support widened by the scale when shrinking (antialiasing). Values stay float (Pillow
 * rounds to 8 bits between passes; within ½/255 of it).
 */
export type ResampleFilter = 'bicubic' | 'lanczos';

const SUPPORT: Record<ResampleFilter, number> = { bicubic: 2, lanczos: 3 };

function kernel(filter: ResampleFilter, x: number): number {
  const ax = Math.abs(x);
  if (filter === 'bicubic') {
    // Pillow's bicubic, a = -0.5.
    const a = -0.5;
    if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
    if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
    return 0;
  }
  if (ax >= 3) return 0;
  if (ax === 0) return 1;
  const px = Math.PI * x;
  return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
}

interface Coefficients {
  start: Int32Array;
  count: Int32Array;
  weights: Float64Array;
  taps: number;
}

function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = SUPPORT[filter] * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const w = kernel(filter, (j - center + 0.5) / filterScale);
      weights[x * taps + (j - lo)] = w;
      total += w;
    }
    if (total !== 0) for (let j = 0; j < hi - lo; j++) weights[x * taps + j]! /= total;
    start[x] = lo;
    count[x] = hi - lo;
  }
  return { start, count, weights, taps };
}

/** Resamples planar RGB [3, height, width] to [3, outHeight, outWidth]. */
export function resizePlanar(src: Float32Array, width: number, height: number, outWidth: number, outHeight: number, filter: ResampleFilter): Float32Array {
  const cx = coefficients(width, outWidth, filter);
  const cy = coefficients(height, outHeight, filter);
  const mid = new Float32Array(3 * height * outWidth);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * height + y) * width;
      const outRow = (c * height + y) * outWidth;
      for (let x = 0; x < outWidth; x++) {
        let sum = 0;
        const s = cx.start[x]!;
        for (let k = 0; k < cx.count[x]!; k++) sum += cx.weights[x * cx.taps + k]! * src[row + s + k]!;
        mid[outRow + x] = sum;
      }
    }
  }
  const out = new Float32Array(3 * outHeight * outWidth);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < outHeight; y++) {
      const s = cy.start[y]!;
      const outRow = (c * outHeight + y) * outWidth;
      for (let x = 0; x < outWidth; x++) {
        let sum = 0;
        for (let k = 0; k < cy.count[y]!; k++) sum += cy.weights[y * cy.taps + k]! * mid[(c * height + s + k) * outWidth + x]!;
        out[outRow + x] = Math.min(1, Math.max(0, sum));
      }
    }
  }
  return out;
}
