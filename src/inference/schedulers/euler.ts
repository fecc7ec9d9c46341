/**
 * Euler sampler of Karras et al. in diffusers' EulerDiscreteScheduler form (s_churn = 0, so
 * deterministic), plus the σ-schedule base that EulerAncestral shares.
 *
 * These samplers work in the variance-exploding parametrisation x = x₀ + σ·ε, σ = √((1−ᾱ)/ᾱ);
 * the UNet was trained on the variance-preserving x_vp = x / √(σ² + 1), hence `scaleModelInput`.
 */

import { alphasCumprod, betasForSchedule, sigmasFromAlphasCumprod } from './betas.js';
import { inferenceTimesteps, interpOnIndexGrid } from './timesteps.js';
import { StepIndex } from './stepIndex.js';
import type { PredictionType, Scheduler, SchedulerConfig, SchedulerName, SchedulerStepResult } from './types.js';

export function assertSameLength(what: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) {
    throw new RangeError(`${what} has ${a.length} elements but the sample has ${b.length}`);
  }
}

/**
 * Coefficients (a, b) with x̂₀ = a·x + b·m for model output m at noise level σ (x is the
 * unscaled sample). Every supported parametrisation is linear in (x, m), which lets the
 * per-element loops stay branch-free.
 */
export function x0Coefficients(predictionType: PredictionType, sigma: number): [number, number] {
  switch (predictionType) {
    case 'epsilon':
      return [1, -sigma];
    case 'v_prediction': {
      // v = √ᾱ·ε − √(1−ᾱ)·x₀ expressed in σ terms: √ᾱ = 1/√(σ²+1), √(1−ᾱ) = σ/√(σ²+1).
      const s2 = sigma * sigma + 1;
      return [1 / s2, -sigma / Math.sqrt(s2)];
    }
    case 'sample':
      return [0, 1];
    default: {
      const unknown: never = predictionType;
      throw new Error(`Unsupported prediction_type ${JSON.stringify(unknown)}`);
    }
  }
}

/** State shared by σ-space samplers: schedule, step-index tracking, input scaling, noising. */
export abstract class SigmaScheduler implements Scheduler {
  abstract readonly name: SchedulerName;
  abstract readonly isStochastic: boolean;

  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  /** σ at every train timestep 0..T−1 (ascending). */
  readonly trainSigmas: Float64Array;
  private _timesteps: Float64Array = new Float64Array(0);
  private _sigmas: Float64Array = new Float64Array(0);

  protected readonly index = new StepIndex(this, (t) => this.indexForTimestep(t));

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(betasForSchedule(config));
    this.trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  /** σ at each inference timestep plus a final 0: length timesteps.length + 1. */
  get sigmas(): Float64Array {
    return this._sigmas;
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (let i = 0; i < this.sigmas.length; i++) max = Math.max(max, this.sigmas[i]!);
    // diffusers' convention: linspace/trailing start from pure σ_max noise, leading adds the unit
    // variance of x₀'s scale on top.
    const spacing = this.config.timestep_spacing;
    return spacing === 'linspace' || spacing === 'trailing' ? max : Math.sqrt(max * max + 1);
  }

  /** Index of the step that the next `step` call will take, or null before the run starts. */
  get currentStepIndex(): number | null {
    return this.index.current;
  }

  setTimesteps(numInferenceSteps: number): void {
    const timesteps = inferenceTimesteps({
      numTrainTimesteps: this.config.num_train_timesteps,
      numInferenceSteps,
      spacing: this.config.timestep_spacing,
      stepsOffset: this.config.steps_offset,
      flavor: 'euler',
    });
    const sigmas = new Float64Array(timesteps.length + 1);
    for (let i = 0; i < timesteps.length; i++) sigmas[i] = interpOnIndexGrid(timesteps[i]!, this.trainSigmas);
    sigmas[timesteps.length] = 0;
    this._timesteps = timesteps;
    this._sigmas = sigmas;
    this.index.reset();
  }

  setBeginIndex(beginIndex: number): void {
    this.index.setBegin(beginIndex);
  }

  /**
   * Position of `timestep` in the schedule. When it occurs twice, the second occurrence wins
   * (diffusers' rule, so an img2img start never skips a σ).
   */
  indexForTimestep(timestep: number): number {
    const tol = 1e-3;
    let first = -1;
    for (let i = 0; i < this.timesteps.length; i++) {
      if (Math.abs(this.timesteps[i]! - timestep) <= tol) {
        if (first >= 0) return i;
        first = i;
      }
    }
    if (first < 0) {
      throw new RangeError(
        `timestep ${timestep} is not in this run's schedule [${Array.from(this.timesteps).join(', ')}]; ` +
          'pass a value from scheduler.timesteps or call setBeginIndex',
      );
    }
    return first;
  }

  scaleModelInput(sample: Float32Array, timestep: number, into?: Float32Array): Float32Array {
    const sigma = this.sigmas[this.index.ensure(timestep)]!;
    const k = 1 / Math.sqrt(sigma * sigma + 1);
    const out = into ?? new Float32Array(sample.length);
    assertSameLength('out', out, sample);
    for (let i = 0; i < sample.length; i++) out[i] = sample[i]! * k;
    return out;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    this.index.requireTimesteps();
    assertSameLength('noise', noise, originalSamples);
    // diffusers' precedence: a run in progress (inpainting re-noising) uses the current step,
    // otherwise the begin index, otherwise wherever `timestep` sits in the schedule.
    const index = this.index.forNoiseRunFirst(timestep);
    const sigma = this.sigmas[index]!;
    const out = new Float32Array(originalSamples.length);
    for (let i = 0; i < out.length; i++) out[i] = originalSamples[i]! + noise[i]! * sigma;
    return out;
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult;

  /**
   * The Euler update shared by the Euler samplers: x̂₀ from the model output, then
   * x ← x + (x − x̂₀)/σ · (σ_target − σ) [+ noise·noiseScale], advancing the step index.
   */
  protected eulerUpdate(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    target: (sigma: number, sigmaNext: number) => { sigmaTarget: number; noiseScale: number },
    noise?: Float32Array,
    out?: SchedulerStepResult,
  ): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    const index = this.index.ensure(timestep);
    const sigma = this.sigmas[index]!;
    const { sigmaTarget, noiseScale } = target(sigma, this.sigmas[index + 1]!);
    const [a, b] = x0Coefficients(this.config.prediction_type, sigma);
    const r = (sigmaTarget - sigma) / sigma;
    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    for (let i = 0; i < n; i++) {
      const x = sample[i]!;
      const x0 = a * x + b * modelOutput[i]!;
      predOriginalSample[i] = x0;
      prevSample[i] = x + (x - x0) * r + (noise ? noise[i]! * noiseScale : 0);
    }
    this.index.advance(index);
    return { prevSample, predOriginalSample };
  }
}

export class EulerDiscreteScheduler extends SigmaScheduler {
  readonly name = 'EULER' as const;
  readonly isStochastic = false;

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    // Deterministic: straight to the next noise level.
    return this.eulerUpdate(modelOutput, timestep, sample, (_sigma, sigmaNext) => ({ sigmaTarget: sigmaNext, noiseScale: 0 }), undefined, out);
  }
}
