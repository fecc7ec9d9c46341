/**
 * DDIM (Song et al.) with eta = 0, i.e. the deterministic sampler, in diffusers' DDIMScheduler
 * form. Works directly in the variance-preserving space, so the UNet input is the sample itself.
 */

import { alphasCumprod, betasForSchedule, noiseToAlphaProd } from './betas.js';
import { assertSameLength } from './euler.js';
import { inferenceTimesteps, assertBeginIndex } from './timesteps.js';
import type { Scheduler, SchedulerConfig, SchedulerStepResult } from './types.js';

export class DDIMScheduler implements Scheduler {
  readonly name = 'DDIM' as const;
  readonly isStochastic = false;
  readonly initNoiseSigma = 1;

  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  /** ᾱ used past the last timestep: 1 (fully denoised) or ᾱ_0 (SD's set_alpha_to_one = false). */
  readonly finalAlphaCumprod: number;

  private _timesteps: Float64Array = new Float64Array(0);
  private numInferenceSteps = 0;
  /** Only bookkeeping: DDIM, like diffusers', derives everything from the timestep it is given. */
  private stepIndex = 0;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(betasForSchedule(config));
    this.finalAlphaCumprod = (config.set_alpha_to_one ?? true) ? 1 : this.alphasCumprod[0]!;
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  /** Index of the step that the next `step` call is expected to take. */
  get currentStepIndex(): number {
    return this.stepIndex;
  }

  setTimesteps(numInferenceSteps: number): void {
    const T = this.config.num_train_timesteps;
    const timesteps = inferenceTimesteps({
      numTrainTimesteps: T,
      numInferenceSteps,
      spacing: this.config.timestep_spacing,
      stepsOffset: this.config.steps_offset,
      flavor: 'ddim',
    });
    for (const t of timesteps) {
      // 'leading' with steps_offset can reach T when n = T; diffusers would index past ᾱ.
      if (t < 0 || t > T - 1) {
        throw new RangeError(`DDIM: timestep ${t} for ${numInferenceSteps} steps falls outside [0, ${T - 1}]`);
      }
    }
    this._timesteps = timesteps;
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndex = 0;
  }

  setBeginIndex(beginIndex: number): void {
    assertBeginIndex(beginIndex, this._timesteps.length);
    this.stepIndex = beginIndex;
  }

  scaleModelInput(sample: Float32Array, _timestep: number, out?: Float32Array): Float32Array {
    if (!out) return sample.slice();
    assertSameLength('out', out, sample);
    out.set(sample);
    return out;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    const alphaProd = this.alphaCumprodAt(timestep);
    // diffusers steps back by the integer stride T // n whatever the spacing.
    const prevTimestep = timestep - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const alphaProdPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep]! : this.finalAlphaCumprod;
    const sqrtA = Math.sqrt(alphaProd);
    const sqrtB = Math.sqrt(1 - alphaProd);
    const sqrtAPrev = Math.sqrt(alphaProdPrev);
    const sqrtBPrev = Math.sqrt(1 - alphaProdPrev);

    // x̂₀ = ax·x + am·m and ε̂ = ex·x + em·m: every prediction type is linear in (x, m).
    let ax: number, am: number, ex: number, em: number;
    switch (this.config.prediction_type) {
      case 'epsilon':
        [ax, am, ex, em] = [1 / sqrtA, -sqrtB / sqrtA, 0, 1];
        break;
      case 'sample':
        [ax, am, ex, em] = [0, 1, 1 / sqrtB, -sqrtA / sqrtB];
        break;
      case 'v_prediction':
        [ax, am, ex, em] = [sqrtA, -sqrtB, sqrtB, sqrtA];
        break;
      default: {
        const unknown: never = this.config.prediction_type;
        throw new Error(`Unsupported prediction_type ${JSON.stringify(unknown)}`);
      }
    }
    const clip = this.config.clip_sample ?? true;
    const range = this.config.clip_sample_range ?? 1;
    const lo = clip ? -range : -Infinity;
    const hi = clip ? range : Infinity;

    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    for (let i = 0; i < n; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      let x0 = ax * x + am * m;
      x0 = x0 < lo ? lo : x0 > hi ? hi : x0;
      predOriginalSample[i] = x0;
      // ε̂ deliberately comes from the unclipped prediction (diffusers' use_clipped_model_output = false).
      prevSample[i] = sqrtAPrev * x0 + sqrtBPrev * (ex * x + em * m);
    }
    this.stepIndex++;
    return { prevSample, predOriginalSample };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    assertSameLength('noise', noise, originalSamples);
    return noiseToAlphaProd(originalSamples, noise, this.alphaCumprodAt(timestep));
  }

  private alphaCumprodAt(timestep: number): number {
    if (this.numInferenceSteps === 0) throw new Error('DDIM: call setTimesteps before sampling');
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new RangeError(`DDIM: timestep must be an integer train timestep in [0, ${this.alphasCumprod.length - 1}], got ${timestep}`);
    }
    return this.alphasCumprod[timestep]!;
  }
}
