/**
 * Noise-schedule math shared by every scheduler. Everything here runs once per scheduler
 * construction, so it is done in float64: diffusers keeps these in float32, and float64 keeps
 * ᾱ (and σ derived from it, which is very sensitive near ᾱ→0) at least as accurate as theirs.
 */

import type { SchedulerConfig } from './types.js';

export type BetaScheduleConfig = Pick<SchedulerConfig, 'num_train_timesteps' | 'beta_start' | 'beta_end' | 'beta_schedule' | 'trained_betas'>;

/** numpy/torch `linspace(start, end, n)` (endpoint included) in float64. */
export function linspace(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = (end - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  // Pin the endpoint exactly, as numpy does, instead of accumulating rounding into it.
  out[n - 1] = end;
  return out;
}

/**
 * The cosine schedule of Nichol & Dhariwal discretised like diffusers' `betas_for_alpha_bar`:
 * β_i = min(1 − ᾱ(t_{i+1}) / ᾱ(t_i), maxBeta), t_i = i / N.
 */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    // The cap keeps the last β < 1 so ᾱ never reaches exactly 0 (σ would be infinite).
    betas[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return betas;
}

/** β_0..β_{T−1} for a scheduler config. Throws on a schedule that would give ᾱ ≤ 0 or > 1. */
export function betasForSchedule(config: BetaScheduleConfig): Float64Array {
  const T = config.num_train_timesteps;
  let betas: Float64Array;
  if (config.trained_betas != null) {
    betas = Float64Array.from(config.trained_betas);
  } else {
    switch (config.beta_schedule) {
      case 'linear':
        betas = linspace(config.beta_start, config.beta_end, T);
        break;
      case 'scaled_linear': {
        // Linear in √β (the schedule Stable Diffusion was trained with).
        betas = linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), T);
        for (let i = 0; i < T; i++) betas[i] = betas[i]! * betas[i]!;
        break;
      }
      case 'squaredcos_cap_v2':
        betas = betasForAlphaBar(T);
        break;
      default: {
        const unknown: never = config.beta_schedule;
        throw new Error(`Unsupported beta_schedule ${JSON.stringify(unknown)}`);
      }
    }
  }
  for (let i = 0; i < betas.length; i++) {
    const b = betas[i]!;
    if (!Number.isFinite(b) || b < 0 || b >= 1) {
      throw new Error(`beta[${i}] = ${b} is outside [0, 1); check beta_start / beta_end / trained_betas`);
    }
  }
  return betas;
}

/** ᾱ_t = ∏_{s ≤ t} (1 − β_s). */
export function alphasCumprod(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= 1 - betas[i]!;
    out[i] = acc;
  }
  return out;
}

/** Training-time noise levels of the variance-exploding view: σ_t = √((1 − ᾱ_t) / ᾱ_t). */
export function sigmasFromAlphasCumprod(alphasCumprod: Float64Array): Float64Array {
  const out = new Float64Array(alphasCumprod.length);
  for (let i = 0; i < alphasCumprod.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = Math.sqrt((1 - a) / a);
  }
  return out;
}

/** diffusers' DDPM-style `add_noise`: √ᾱ·x₀ + √(1−ᾱ)·ε, a new array. */
export function noiseToAlphaProd(originalSamples: Float32Array, noise: Float32Array, alphaProd: number): Float32Array {
  const sa = Math.sqrt(alphaProd);
  const sb = Math.sqrt(1 - alphaProd);
  const out = new Float32Array(originalSamples.length);
  for (let i = 0; i < out.length; i++) out[i] = sa * originalSamples[i]! + sb * noise[i]!;
  return out;
}
