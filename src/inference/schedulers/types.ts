/**
 * The scheduler contract shared by every sampler, modelled on diffusers' SchedulerMixin:
 * `setTimesteps` once per run, then for each timestep `scaleModelInput` before the UNet
 * and `step` after it. Tensors are flat Float32Arrays holding a whole batch [B, C, H, W];
 * every sample of a batch shares the timestep, so the math is element-wise.
 */

export type SchedulerName = 'EULER_ANCESTRAL' | 'EULER' | 'DDIM';

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** The subset of diffusers' `scheduler_config.json` the schedulers read (snake_case as on disk). */
export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  /** DDIM only. */
  set_alpha_to_one?: boolean;
  clip_sample?: boolean;
  clip_sample_range?: number;
  /** Cosine (`squaredcos_cap_v2`) etc. may ship explicit betas; optional. */
  trained_betas?: number[] | null;
}

export interface SchedulerStepResult {
  /** x_{t-1}: the sample to feed to the next step. */
  prevSample: Float32Array;
  /** The model's estimate of the clean sample x₀ at this step (used for previews). */
  predOriginalSample: Float32Array;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /** Timesteps of the current run, in the order they are visited (descending). Fractional for Euler with linspace. */
  readonly timesteps: Float64Array;
  /** Std of the initial noise: σ_max-based for Euler samplers, 1 for DDIM. */
  readonly initNoiseSigma: number;
  /** True when `step` consumes fresh noise (ancestral sampling). */
  readonly isStochastic: boolean;
  setTimesteps(numInferenceSteps: number): void;
  /**
   * img2img starts part-way through the schedule (diffusers' `set_begin_index`): the first
   * `step` then uses timesteps[beginIndex], and `addNoise` noises to that timestep's level.
   * Defaults to 0 after `setTimesteps`.
   */
  setBeginIndex(beginIndex: number): void;
  /**
   * Returns the UNet input for `sample` at `timestep`: a new array, or `out` when given (the
   * denoise loop reuses one buffer for every step). `sample` is not changed unless it is `out`.
   */
  scaleModelInput(sample: Float32Array, timestep: number, out?: Float32Array): Float32Array;
  /**
   * One denoise step. `noise` (same length as `sample`, standard normal) is required when
   * `isStochastic`; the caller draws it per batch item so each item's noise stream is its own.
   * With `out`, the results are written into its arrays (elementwise, so `out.prevSample` may be
   * `sample` itself) instead of new ones.
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult;
  /** Noises a clean sample to `timestep` (img2img start): √ᾱ·x₀ + √(1-ᾱ)·ε, or x₀ + σ·ε for Euler. */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}

export const SCHEDULER_NAMES: readonly SchedulerName[] = ['EULER_ANCESTRAL', 'EULER', 'DDIM'];
