/**
 * Latent Consistency Model sampling (Luo et al.) in diffusers' LCMScheduler form, for UNets
 * distilled to predict x₀ in a few steps. Each step maps the sample to its consistency-function
 * output c_skip·x + c_out·x̂₀ and, except on the last step, re-noises that to the next timestep
 * with fresh noise, so the sampler is stochastic. Timesteps come from the distillation schedule
 * (every T / original_inference_steps-th train timestep); timestep_spacing and steps_offset are
 * not used, as in diffusers.
 */

import { alphasCumprod, betasForSchedule, noiseToAlphaProd } from './betas.js';
import { assertSameLength } from './euler.js';
import type { Scheduler, SchedulerConfig, SchedulerStepResult } from './types.js';
import { StepIndex } from './stepIndex.js';

/** Boundary-condition scalings at a timestep: c_skip → 1 and c_out → 0 as t → 0 (σ_data = 0.5). */
export function lcmBoundaryScalings(timestep: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const sigmaData2 = 0.25;
  const s = timestep * timestepScaling;
  return { cSkip: sigmaData2 / (s * s + sigmaData2), cOut: s / Math.sqrt(s * s + sigmaData2) };
}

export class LCMScheduler implements Scheduler {
  readonly name = 'LCM' as const;
  readonly isStochastic = true;
  readonly initNoiseSigma = 1;

  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  private _timesteps: Float64Array = new Float64Array(0);
  private readonly index = new StepIndex(this, (t) => this.indexForTimestep(t));

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(betasForSchedule(config));
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const T = this.config.num_train_timesteps;
    const original = this.config.original_inference_steps ?? 50;
    if (original > T) throw new RangeError(`LCM: original_inference_steps (${original}) cannot exceed num_train_timesteps (${T})`);
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > original) {
      throw new RangeError(`LCM: numInferenceSteps must be an integer in [1, ${original}] (original_inference_steps), got ${numInferenceSteps}`);
    }
    // The distillation schedule, descending: original·k − 1, …, 2k − 1, k − 1 with k = T // original;
    // the run takes n of them at evenly spaced (floored) positions.
    const k = Math.floor(T / original);
    const timesteps = new Float64Array(numInferenceSteps);
    for (let i = 0; i < numInferenceSteps; i++) {
      const position = Math.floor(i * (original / numInferenceSteps));
      timesteps[i] = (original - position) * k - 1;
    }
    this._timesteps = timesteps;
    this.index.reset();
  }

  setBeginIndex(beginIndex: number): void {
    this.index.setBegin(beginIndex);
  }

  scaleModelInput(sample: Float32Array, _timestep: number, out?: Float32Array): Float32Array {
    if (!out) return sample.slice();
    assertSameLength('out', out, sample);
    out.set(sample);
    return out;
  }

  /** `predOriginalSample` is the consistency output ("denoised"), which the last step returns as is. */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    const index = this.index.ensure(timestep);
    const last = index === this._timesteps.length - 1;
    if (!last) {
      if (noise === undefined) throw new Error('LCM: step needs a standard-normal `noise` array (isStochastic is true)');
      assertSameLength('noise', noise, sample);
    }
    const a = this.alphaCumprodAt(timestep);
    // The next timestep is never below 0 here, so set_alpha_to_one has no effect (as in diffusers).
    const aPrev = this.alphaCumprodAt(last ? timestep : this._timesteps[index + 1]!);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const [ax, am] = this.config.prediction_type === 'epsilon' ? [1 / sa, -sb / sa] : this.config.prediction_type === 'v_prediction' ? [sa, -sb] : [0, 1];
    const clip = this.config.clip_sample ?? false;
    const range = this.config.clip_sample_range ?? 1;
    const lo = clip ? -range : -Infinity;
    const hi = clip ? range : Infinity;
    const { cSkip, cOut } = lcmBoundaryScalings(timestep, this.config.timestep_scaling ?? 10);
    const noiseScale = last ? 0 : Math.sqrt(1 - aPrev);
    const denoisedScale = last ? 1 : Math.sqrt(aPrev);

    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    for (let i = 0; i < n; i++) {
      const x = sample[i]!;
      let x0 = ax * x + am * modelOutput[i]!;
      x0 = x0 < lo ? lo : x0 > hi ? hi : x0;
      const denoised = cOut * x0 + cSkip * x;
      predOriginalSample[i] = denoised;
      prevSample[i] = denoisedScale * denoised + (last ? 0 : noiseScale * noise![i]!);
    }
    this.index.advance(index);
    return { prevSample, predOriginalSample };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    assertSameLength('noise', noise, originalSamples);
    return noiseToAlphaProd(originalSamples, noise, this.alphaCumprodAt(timestep));
  }

  private indexForTimestep(timestep: number): number {
    const i = this._timesteps.indexOf(timestep);
    if (i < 0) throw new RangeError(`timestep ${timestep} is not in this run's schedule [${Array.from(this._timesteps).join(', ')}]`);
    return i;
  }

  private alphaCumprodAt(timestep: number): number {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new RangeError(`LCM: timestep must be an integer train timestep in [0, ${this.alphasCumprod.length - 1}], got ${timestep}`);
    }
    return this.alphasCumprod[timestep]!;
  }
}
