/**
 * Latent previews for models without known latent→RGB factors (16-channel VAEs): a linear map fitted to the model's own VAE encoder when the model loads. Solid images of
 * `PREVIEW_FIT_COLOURS` are encoded in one batch; each gives a latent (the distribution's mean,
 * averaged over its cells) in model scale, (z − shift_factor)·scaling_factor, which is what the
 * denoise loop's x₀ estimate is. RGB in [-1, 1] = latent·factors + bias is then fitted by least
 * squares with a small ridge on the factors (the colours span few latent directions; the ridge
 * keeps the others near zero instead of arbitrary).
 */
import type { PreviewProjection } from './modelFolder.js';
import type { ModelSessions } from './sessions.js';

/** The fit's colours, RGB in [0, 1]: the 3×3×3 grid {0, ½, 1}³ and the 2×2×2 grid {¼, ¾}³. */
const PREVIEW_FIT_COLOURS: readonly (readonly [number, number, number])[] = [
  ...[0, 0.5, 1].flatMap((r) => [0, 0.5, 1].flatMap((g) => [0, 0.5, 1].map((b) => [r, g, b] as const))),
  ...[0.25, 0.75].flatMap((r) => [0.25, 0.75].flatMap((g) => [0.25, 0.75].map((b) => [r, g, b] as const))),
];
/** Ridge weight relative to the mean diagonal of LᵀL. */
const RIDGE = 1e-4;

/** Encodes the fit colours (side × side pixels each) and returns the fitted projection. */
export async function fitPreviewProjection(sessions: ModelSessions): Promise<PreviewProjection> {
  const spec = sessions.spec;
  const f = spec.vaeScaleFactor;
  const side = 4 * f;
  const pixels = side * side;
  const k = PREVIEW_FIT_COLOURS.length;
  const images = new Float32Array(k * 3 * pixels);
  PREVIEW_FIT_COLOURS.forEach((rgb, i) => {
    for (let c = 0; c < 3; c++) images.fill(2 * rgb[c]! - 1, (i * 3 + c) * pixels, (i * 3 + c + 1) * pixels);
  });
  const out = await sessions.run('vaeEncoder', { sample: { data: images, dims: [k, 3, side, side] } }, sessions.vaeEncoderOutput);
  const C = spec.latentChannels;
  const cells = (side / f) ** 2;
  // latent_parameters is mean ‖ logvar per image; latent_sample is the latent itself.
  const stride = (sessions.vaeEncoderOutput === 'latent_parameters' ? 2 : 1) * C * cells;
  const latents = PREVIEW_FIT_COLOURS.map((_, i) =>
    Array.from({ length: C }, (_, c) => {
      let sum = 0;
      for (let p = 0; p < cells; p++) sum += out[i * stride + c * cells + p]!;
      return (sum / cells - spec.shiftFactor) * spec.scalingFactor;
    }),
  );
  return fitLinear(
    latents,
    PREVIEW_FIT_COLOURS.map((rgb) => rgb.map((v) => 2 * v - 1)),
  );
}

/** Least squares y ≈ x·W + b (ridge on W), for rows x of length C and y of length 3. */
function fitLinear(xs: readonly (readonly number[])[], ys: readonly (readonly number[])[]): PreviewProjection {
  const C = xs[0]!.length;
  const n = C + 1; // the bias is the last unknown
  const ata = Array.from({ length: n }, () => new Float64Array(n));
  const aty = Array.from({ length: n }, () => new Float64Array(3));
  xs.forEach((x, r) => {
    const row = [...x, 1];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) ata[i]![j]! += row[i]! * row[j]!;
      for (let o = 0; o < 3; o++) aty[i]![o]! += row[i]! * ys[r]![o]!;
    }
  });
  let trace = 0;
  for (let i = 0; i < C; i++) trace += ata[i]![i]!;
  const lambda = RIDGE * Math.max(trace / C, 1e-12);
  for (let i = 0; i < C; i++) ata[i]![i]! += lambda;
  const w = solve(ata, aty);
  return { factors: w.slice(0, C).map((row) => [...row]), bias: [...w[C]!] };
}

/** Solves A·X = B (A n×n symmetric positive definite, B n×3) by Gaussian elimination with pivoting. */
function solve(a: Float64Array[], b: Float64Array[]): Float64Array[] {
  const n = a.length;
  const m = a.map((row) => Float64Array.from(row));
  const r = b.map((row) => Float64Array.from(row));
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let i = col + 1; i < n; i++) if (Math.abs(m[i]![col]!) > Math.abs(m[pivot]![col]!)) pivot = i;
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    [r[col], r[pivot]] = [r[pivot]!, r[col]!];
    const d = m[col]![col]!;
    for (let i = 0; i < n; i++) {
      if (i === col) continue;
      const q = m[i]![col]! / d;
      if (q === 0) continue;
      for (let j = col; j < n; j++) m[i]![j]! -= q * m[col]![j]!;
      for (let o = 0; o < 3; o++) r[i]![o]! -= q * r[col]![o]!;
    }
  }
  return r.map((row, i) => row.map((v) => v / m[i]![i]!));
}
