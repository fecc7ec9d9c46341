/**
 * QwenImageTransformer2DModel's RoPE (diffusers' QwenEmbedRope, θ = 10000, axes (16, 56, 56),
 * `scale_rope`), fed to the ONNX transformer as cos/sin tables because complex ops do not export:
 *
 * - image j of `shapes` (0 = the generated latents, then each condition image), (F, H, W) in packed
 *   tokens: frame positions j … j+F−1; heights centred, −(H − ⌊H/2⌋) … ⌊H/2⌋ − 1 (widths likewise);
 *   each token gets [frame | height | width] frequencies, row-major over (F, H, W);
 * - text token t: position offset + t on all three axes, offset = the largest ⌊H/2⌋ or ⌊W/2⌋.
 *
 * Per axis of d dims the frequencies are θ^(−2k/d), k < d/2: with the real (16, 56, 56), 8 + 28 + 28
 * = 64 per token, applied to adjacent (even, odd) pairs of each head's 128 values.
 */
export const ROPE_THETA = 10000;
/** Qwen-Image's `axes_dims_rope` (diffusers' tiny test transformer: (8, 4, 4)). */
export const ROPE_AXES: readonly [number, number, number] = [16, 56, 56];

export type ImageShape = readonly [frames: number, height: number, width: number];

export interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  /** Rows (tokens). */
  rows: number;
}

function axisFrequencies(dim: number, theta: number): Float64Array {
  const half = dim / 2;
  const out = new Float64Array(half);
  // torch: 1 / theta^(arange(0, dim, 2) / dim), in float64 before the polar form.
  for (let k = 0; k < half; k++) out[k] = 1 / theta ** ((2 * k) / dim);
  return out;
}

/** Frequencies per axis and the table width (Σ d/2) for `axes`. */
function frequencies(axes: readonly number[]): { freqs: Float64Array[]; width: number } {
  return { freqs: axes.map((d) => axisFrequencies(d, ROPE_THETA)), width: axes.reduce((n, d) => n + d / 2, 0) };
}

function writeRow(cos: Float32Array, sin: Float32Array, row: number, positions: readonly [number, number, number], f: ReturnType<typeof frequencies>): void {
  let o = row * f.width;
  for (let a = 0; a < 3; a++) {
    const axis = f.freqs[a]!;
    for (let k = 0; k < axis.length; k++) {
      // torch.polar on float32 angles (the tables are float32 products index · freq).
      const angle = Math.fround(Math.fround(positions[a]!) * Math.fround(axis[k]!));
      cos[o] = Math.cos(angle);
      sin[o] = Math.sin(angle);
      o++;
    }
  }
}

/** Centred positions of an axis of n tokens. */
function centred(n: number): number[] {
  const neg = n - Math.floor(n / 2);
  return Array.from({ length: n }, (_, i) => i - neg);
}

/** The image tokens' tables, images in order. */
export function imageRope(shapes: readonly ImageShape[], axes: readonly number[] = ROPE_AXES): RopeTables {
  const f = frequencies(axes);
  const rows = shapes.reduce((n, [frames, h, w]) => n + frames * h * w, 0);
  const cos = new Float32Array(rows * f.width);
  const sin = new Float32Array(rows * f.width);
  let row = 0;
  shapes.forEach(([frames, height, width], j) => {
    const hs = centred(height);
    const ws = centred(width);
    for (let t = 0; t < frames; t++) for (const y of hs) for (const x of ws) writeRow(cos, sin, row++, [j + t, y, x], f);
  });
  return { cos, sin, rows };
}

/** The text tokens' tables: `length` rows after the images' largest half-extent. */
export function textRope(shapes: readonly ImageShape[], length: number, axes: readonly number[] = ROPE_AXES): RopeTables {
  const f = frequencies(axes);
  const offset = Math.max(0, ...shapes.map(([, h, w]) => Math.max(Math.floor(h / 2), Math.floor(w / 2))));
  const cos = new Float32Array(length * f.width);
  const sin = new Float32Array(length * f.width);
  for (let t = 0; t < length; t++) writeRow(cos, sin, t, [offset + t, offset + t, offset + t], f);
  return { cos, sin, rows: length };
}
