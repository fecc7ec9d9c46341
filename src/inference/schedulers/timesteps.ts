/**
 * Inference timestep selection, reproducing diffusers' `set_timesteps` of EulerDiscreteScheduler
 * (flavor 'euler') and DDIMScheduler (flavor 'ddim') value for value, numpy quirks included
 * (round-half-to-even, numpy's linspace/arange arithmetic), because a timestep that is off by one
 * changes which noise level the UNet is told it sees.
 */

import type { TimestepSpacing } from './types.js';

/** Euler keeps linspace timesteps fractional (as float32); DDIM rounds them to train indices. */
export type TimestepFlavor = 'euler' | 'ddim';

export interface InferenceTimestepOptions {
  numTrainTimesteps: number;
  numInferenceSteps: number;
  spacing: TimestepSpacing;
  /** Added to 'leading' timesteps only (diffusers ignores it for linspace / trailing). */
  stepsOffset: number;
  flavor: TimestepFlavor;
}

/** numpy's `round`: ties go to the even neighbour (so 812.5 → 812, not 813 as Math.round gives). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `np.interp(x, arange(fp.length), fp)`: linear interpolation on the integer grid, clamped to
 * the end values outside it.
 */
export function interpOnIndexGrid(x: number, fp: Float64Array): number {
  const last = fp.length - 1;
  if (!(x > 0)) return fp[0]!;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  const lo = fp[j]!;
  return lo + (fp[j + 1]! - lo) * (x - j);
}

/** Timesteps in visiting order (descending), `numInferenceSteps` of them. */
export function inferenceTimesteps(opts: InferenceTimestepOptions): Float64Array {
  const { numTrainTimesteps: T, numInferenceSteps: n, spacing, stepsOffset, flavor } = opts;
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`num_train_timesteps must be a positive integer, got ${T}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`numInferenceSteps must be a positive integer, got ${n}`);
  if (n > T) {
    throw new RangeError(`numInferenceSteps (${n}) cannot exceed num_train_timesteps (${T})`);
  }
  const out = new Float64Array(n);
  switch (spacing) {
    case 'linspace': {
      // numpy linspace: i·((stop − start)/(n − 1)) + start with the end pinned; a single step is 0.
      const step = n > 1 ? (T - 1) / (n - 1) : 0;
      for (let i = 0; i < n; i++) {
        const v = i === n - 1 && n > 1 ? T - 1 : i * step;
        // Euler stores float32 timesteps; rounding here makes σ interpolation see the same t.
        out[n - 1 - i] = flavor === 'euler' ? Math.fround(v) : roundHalfEven(v);
      }
      break;
    }
    case 'leading': {
      const ratio = Math.floor(T / n);
      for (let i = 0; i < n; i++) out[i] = (n - 1 - i) * ratio + stepsOffset;
      break;
    }
    case 'trailing': {
      // np.arange(T, 0, −T/n) fills start + i·δ with δ re-derived as (start − step) − start.
      const delta = T - T / n - T;
      // numpy's length ceil(T / (T/n)) can round up to n + 1 (e.g. T=1000, n=61), which yields a
      // bogus timestep −1 in diffusers; taking exactly n values drops only that artefact.
      for (let i = 0; i < n; i++) out[i] = roundHalfEven(T + i * delta) - 1;
      break;
    }
    default: {
      const unknown: never = spacing;
      throw new Error(`Unsupported timestep_spacing ${JSON.stringify(unknown)}`);
    }
  }
  return out;
}

/** Refuses a begin index outside a schedule of `length` timesteps (every scheduler's setBeginIndex). */
export function assertBeginIndex(beginIndex: number, length: number): void {
  if (!Number.isInteger(beginIndex) || beginIndex < 0 || beginIndex >= length) {
    throw new RangeError(`beginIndex must be an integer in [0, ${length - 1}], got ${beginIndex}`);
  }
}
