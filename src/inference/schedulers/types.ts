/**
 * The scheduler contract shared by every sampler, modelled on diffusers' SchedulerMixin:
 * `setTimesteps` once per run, then for each timestep `scaleModelInput` before the UNet
 * and `step` after it. Tensors are flat Float32Arrays holding a whole batch [B, C, H, W];
 * every sample of a batch shares the timestep, so the math is element-wise.
 */

/** Every scheduler the server offers, in the order the API lists them: the one source for every list of names. */
export const SCHEDULER_NAMES = ['EULER_ANCESTRAL', 'EULER', 'DDIM', 'PNDM', 'DPMPP_2M', 'DPMPP_2M_KARRAS', 'LCM'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type FinalSigmasType = 'zero' | 'sigma_min';
export type SolverType = 'midpoint' | 'heun';

/**
 * The subset of diffusers' `scheduler_config.json` the schedulers read (snake_case as on disk).
 * The optional keys belong to some classes only; `parseSchedulerConfig` fills those of the chosen one.
 */
export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  /** DDIM, PNDM, LCM: ᾱ past the last step is 1 (true) or ᾱ₀. */
  set_alpha_to_one?: boolean;
  /** DDIM, LCM. */
  clip_sample?: boolean;
  clip_sample_range?: number;
  /** PNDM: false runs the Runge–Kutta warm-up steps, true is PLMS (SD 1.x ships true). */
  skip_prk_steps?: boolean;
  /** DPM-Solver++ (DPMSolverMultistepScheduler). */
  solver_type?: SolverType;
  lower_order_final?: boolean;
  euler_at_final?: boolean;
  final_sigmas_type?: FinalSigmasType;
  /** LCM: the distillation schedule's step count, and the boundary-condition time scale. */
  original_inference_steps?: number;
  timestep_scaling?: number;
  /** Cosine (`squaredcos_cap_v2`) etc. may ship explicit betas; optional. */
  trained_betas?: number[] | null;
}

export interface SchedulerStepResult {
  /** x_{t-1}: the sample to feed to the next step. */
  prevSample: Float32Array;
  /** The model's estimate of the clean sample x₀ at this step (used for previews). */
  predOriginalSample: Float32Array;
}

/**
 * Flow-matching schedulers, chosen by the pipeline family rather than by the request (so not in
 * SCHEDULER_NAMES or the GraphQL enum).
 */
export type FlowSchedulerName = 'FLOW_MATCH_EULER';

/**
 * Every name a request, a model's defaults or the GraphQL enum may carry: SCHEDULER_NAMES (UNet
 * families choose among them) and FLOW_MATCH_EULER (the flow families' own scheduler, refused on
 * UNet models).
 */
export const EDIT_SCHEDULER_NAMES = [...SCHEDULER_NAMES, 'FLOW_MATCH_EULER'] as const;
export type EditSchedulerName = SchedulerName | FlowSchedulerName;

/**
 * Per-run inputs that diffusers' pipelines pass to `set_timesteps` besides the step count. Only
 * flow-matching schedulers read them: a family's `timestepOptions` may pass `sigmas` and `mu` (the
 * resolution-dependent shift).
 */
export interface SetTimestepsOptions {
  /** Resolution-dependent shift; required when the config has use_dynamic_shifting. */
  mu?: number;
  /** Custom σ schedule (before shifting), one per step. */
  sigmas?: readonly number[];
  /** Custom timesteps (before shifting), one per step; ignored for values when `sigmas` is given. */
  timesteps?: readonly number[];
}

export interface Scheduler {
  readonly name: SchedulerName | FlowSchedulerName;
  /**
   * Timesteps of the current run, in the order they are visited (descending; PNDM repeats some).
   * Fractional for Euler with linspace. One `step` per entry.
   */
  readonly timesteps: Float64Array;
  /** Std of the initial noise: σ_max-based for Euler samplers, 1 for the others. */
  readonly initNoiseSigma: number;
  /** True when `step` consumes fresh noise (ancestral sampling). */
  readonly isStochastic: boolean;
  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void;
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
