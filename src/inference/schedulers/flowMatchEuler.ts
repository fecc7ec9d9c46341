/**
 * Flow-matching Euler sampler in the form of diffusers' FlowMatchEulerDiscreteScheduler (SD3,
 * FLUX and the other rectified-flow transformer families).
 *
 * Rectified flow interpolates x_σ = (1 − σ)·x₀ + σ·ε for σ ∈ [0, 1]; the transformer predicts the
 * velocity v = dx/dσ = ε − x₀. Sampling integrates that ODE with Euler steps from σ = 1 (pure
 * noise, so the initial noise has std 1 and the model input needs no scaling) down to σ = 0:
 * x ← x + (σ_next − σ)·v, and x̂₀ = x − σ·v is the clean-sample estimate for previews.
 *
 * The σ schedule reproduces diffusers value for value, its float32 steps included (the timesteps
 * the transformer is told are float32): a float64 linspace between the σ bounds stored at
 * construction (or the pipeline's own float32 `sigmas`, as FLUX passes), a static `shift` or a
 * resolution-dependent one from `mu`, then the optional terminal stretch and Karras/exponential
 * respacing, and finally the terminal σ = 0. One diffusers quirk is kept on purpose: with a static
 * shift the stored lower bound σ_min is already shifted, so the last σ of the default schedule is
 * shifted twice (SD3 medium at 28 steps ends at σ ≈ 0.0089, not 0.0030). Sampling with the
 * corrected schedule would diverge from what diffusers produces for the same seed.
 */

import { assertSameLength } from './euler.js';
import type { FlowSchedulerName, Scheduler, SchedulerStepResult, SetTimestepsOptions } from './types.js';
import { StepIndex } from './stepIndex.js';

export type TimeShiftType = 'exponential' | 'linear';

/** diffusers' FlowMatchEulerDiscreteScheduler config (snake_case as in `scheduler_config.json`). */
export interface FlowMatchSchedulerConfig {
  num_train_timesteps: number;
  /** Static shift σ' = shift·σ / (1 + (shift − 1)·σ); unused with use_dynamic_shifting. */
  shift: number;
  /** Shift per run from `mu` (see `calculateShift`) instead of the static `shift`. */
  use_dynamic_shifting: boolean;
  base_shift: number;
  max_shift: number;
  base_image_seq_len: number;
  max_image_seq_len: number;
  /** Mochi: σ → 1 − σ after shifting, terminal σ 1. */
  invert_sigmas: boolean;
  /** Stretch the shifted schedule so that its last σ is this value (LTX-Video, Qwen-Image); null: off. */
  shift_terminal: number | null;
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  time_shift_type: TimeShiftType;
  /** Re-noise to σ_next from x̂₀ with fresh noise at each step instead of the ODE step. */
  stochastic_sampling: boolean;
}

/** diffusers' defaults for every key (the class's `__init__` defaults). */
export const FLOW_MATCH_DEFAULTS: Readonly<FlowMatchSchedulerConfig> = Object.freeze({
  num_train_timesteps: 1000,
  shift: 1.0,
  use_dynamic_shifting: false,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  invert_sigmas: false,
  shift_terminal: null,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  time_shift_type: 'exponential',
  stochastic_sampling: false,
});

function invalid(key: string, value: unknown, expected: string): never {
  throw new Error(`Invalid scheduler config: "${key}" is ${JSON.stringify(value)}, expected ${expected}`);
}

/**
 * Validates a parsed FlowMatchEulerDiscreteScheduler `scheduler_config.json`, filling diffusers'
 * defaults for missing (or null) keys. Unknown keys (`_class_name`, keys of other schedulers) are
 * ignored as diffusers does. `use_beta_sigmas` (which needs the inverse regularised incomplete beta
 * function) is refused rather than silently sampled differently.
 */
export function parseFlowMatchSchedulerConfig(json: unknown): FlowMatchSchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Invalid scheduler config: expected a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const get = (key: string): unknown => (raw[key] === null ? undefined : raw[key]);
  const d = FLOW_MATCH_DEFAULTS;
  const int = (key: keyof FlowMatchSchedulerConfig, min: number): number => {
    const v = get(key) ?? d[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) invalid(key, v, `an integer >= ${min}`);
    return v;
  };
  const num = (key: keyof FlowMatchSchedulerConfig, ok: (v: number) => boolean, expected: string): number => {
    const v = get(key) ?? d[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) invalid(key, v, expected);
    return v;
  };
  const bool = (key: keyof FlowMatchSchedulerConfig | 'use_beta_sigmas'): boolean => {
    const v = get(key) ?? (key === 'use_beta_sigmas' ? false : d[key]);
    if (typeof v !== 'boolean') invalid(key, v, 'true or false');
    return v;
  };

  if (bool('use_beta_sigmas')) {
    throw new Error('Unsupported scheduler config: "use_beta_sigmas" is true; only false is implemented');
  }
  const karras = bool('use_karras_sigmas');
  const exponential = bool('use_exponential_sigmas');
  if (karras && exponential) {
    throw new Error('Invalid scheduler config: only one of "use_karras_sigmas", "use_exponential_sigmas" can be true');
  }
  const timeShiftType = get('time_shift_type') ?? d.time_shift_type;
  if (timeShiftType !== 'exponential' && timeShiftType !== 'linear') {
    invalid('time_shift_type', timeShiftType, '"exponential" or "linear"');
  }
  let shiftTerminal: number | null = null;
  if (get('shift_terminal') !== undefined) {
    // diffusers tests it for truthiness, so 0 means off; 1 would divide by zero.
    const v = num('shift_terminal', (x) => x >= 0 && x < 1, 'null or a number in [0, 1)');
    shiftTerminal = v === 0 ? null : v;
  }
  const baseSeq = int('base_image_seq_len', 0);
  const maxSeq = int('max_image_seq_len', 0);
  if (maxSeq === baseSeq) {
    throw new Error(`Invalid scheduler config: "max_image_seq_len" equals "base_image_seq_len" (${baseSeq})`);
  }
  return {
    num_train_timesteps: int('num_train_timesteps', 1),
    shift: num('shift', (x) => x > 0, 'a positive number'),
    use_dynamic_shifting: bool('use_dynamic_shifting'),
    base_shift: num('base_shift', () => true, 'a number'),
    max_shift: num('max_shift', () => true, 'a number'),
    base_image_seq_len: baseSeq,
    max_image_seq_len: maxSeq,
    invert_sigmas: bool('invert_sigmas'),
    shift_terminal: shiftTerminal,
    use_karras_sigmas: karras,
    use_exponential_sigmas: exponential,
    time_shift_type: timeShiftType,
    stochastic_sampling: bool('stochastic_sampling'),
  };
}

/**
 * diffusers' `calculate_shift` as the FLUX/SD3 pipelines call it: mu linear in the transformer's
 * image token count, base_shift at base_image_seq_len and max_shift at max_image_seq_len (and
 * extrapolated beyond).
 */
export function calculateShift(
  imageSeqLen: number,
  config: Pick<FlowMatchSchedulerConfig, 'base_image_seq_len' | 'max_image_seq_len' | 'base_shift' | 'max_shift'>,
): number {
  const m = (config.max_shift - config.base_shift) / (config.max_image_seq_len - config.base_image_seq_len);
  const b = config.base_shift - m * config.base_image_seq_len;
  return imageSeqLen * m + b;
}

/**
 * Image tokens of a latent transformer: (H // vaeScale // patch) · (W // vaeScale // patch), e.g.
 * 4096 for FLUX (vae scale 8, 2×2 patches) at 1024².
 */
export function imageSeqLen(height: number, width: number, vaeScaleFactor = 8, patchSize = 2): number {
  return Math.floor(Math.floor(height / vaeScaleFactor) / patchSize) * Math.floor(Math.floor(width / vaeScaleFactor) / patchSize);
}

/** numpy's linspace(start, stop, n) (float64): start + i·step, with the end pinned to stop. */
function linspace(start: number, stop: number, n: number): number[] {
  if (n === 1) return [start];
  const step = (stop - start) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i === n - 1 ? stop : i * step + start);
  return out;
}

/** The σ list the FLUX pipelines pass to `setTimesteps`: linspace(1, 1/n, n) in float64. */
export function fluxSigmas(numInferenceSteps: number): number[] {
  assertStepCount(numInferenceSteps);
  return linspace(1, 1 / numInferenceSteps, numInferenceSteps);
}

/**
 * The flow pipelines' `get_timesteps` for img2img: the index of the first step taken at `strength`
 * (diffusers' t_start = int(max(n − min(n·strength, n), 0)), unrounded n·strength unlike the
 * Stable Diffusion pipelines). Throws when no step would be left, as diffusers does.
 */
export function flowImg2ImgBeginIndex(numInferenceSteps: number, strength: number): number {
  assertStepCount(numInferenceSteps);
  if (!(strength >= 0 && strength <= 1)) throw new RangeError(`strength must be in [0, 1], got ${strength}`);
  const n = numInferenceSteps;
  const tStart = Math.trunc(Math.max(n - Math.min(n * strength, n), 0));
  if (n - tStart < 1) {
    throw new RangeError(`strength ${strength} leaves ${n - tStart} of ${n} steps; it must leave at least one`);
  }
  return tStart;
}

function assertStepCount(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`numInferenceSteps must be a positive integer, got ${n}`);
}

const f32 = Math.fround;
const identity = (x: number): number => x;

export class FlowMatchEulerDiscreteScheduler implements Scheduler {
  readonly name: FlowSchedulerName = 'FLOW_MATCH_EULER';
  readonly initNoiseSigma = 1;
  readonly isStochastic: boolean;
  readonly config: FlowMatchSchedulerConfig;
  /** Bounds of the default schedule, as diffusers stores them at construction (float32 values). */
  readonly sigmaMax: number;
  readonly sigmaMin: number;

  private _timesteps: Float64Array = new Float64Array(0);
  private _sigmas: Float64Array = new Float64Array(0);
  private readonly index = new StepIndex(this, (t) => this.indexForTimestep(t));

  constructor(config: FlowMatchSchedulerConfig) {
    this.config = config;
    this.isStochastic = config.stochastic_sampling;
    // diffusers' training schedule σ_k = k/T (float32), shifted statically unless shifting is dynamic.
    const T = config.num_train_timesteps;
    const bound = (k: number): number => {
      const s = f32(k / T);
      return config.use_dynamic_shifting ? s : staticShift(config.shift, s, f32);
    };
    this.sigmaMax = bound(T);
    this.sigmaMin = bound(1);
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  /** σ at each timestep plus the terminal σ (0, or 1 with invert_sigmas): length timesteps.length + 1. */
  get sigmas(): Float64Array {
    return this._sigmas;
  }

  /** Index of the step that the next `step` call will take, or null before the run starts. */
  get currentStepIndex(): number | null {
    return this.index.current;
  }

  setTimesteps(numInferenceSteps: number, options: SetTimestepsOptions = {}): void {
    const c = this.config;
    const T = c.num_train_timesteps;
    assertStepCount(numInferenceSteps);
    const n = numInferenceSteps;
    const { mu, sigmas: customSigmas, timesteps: customTimesteps } = options;
    if (c.use_dynamic_shifting) {
      if (mu === undefined) throw new Error('FLOW_MATCH_EULER: use_dynamic_shifting needs mu (see calculateShift)');
      if (!Number.isFinite(mu)) throw new RangeError(`mu must be a finite number, got ${mu}`);
    }
    for (const [what, list] of [
      ['sigmas', customSigmas],
      ['timesteps', customTimesteps],
    ] as const) {
      if (list === undefined) continue;
      if (list.length !== n) throw new RangeError(`${what} has ${list.length} values but numInferenceSteps is ${n}`);
      if (list.some((v) => typeof v !== 'number' || !Number.isFinite(v))) throw new RangeError(`${what} must be finite numbers`);
    }

    // 1. Unshifted σ: custom values arrive as float32 arrays (so the math below runs in float32,
    //    as numpy does for them); the default is a float64 linspace between the stored bounds.
    let sigmas: number[];
    let round: (x: number) => number;
    if (customSigmas !== undefined) {
      sigmas = customSigmas.map(f32);
      round = f32;
    } else if (customTimesteps !== undefined) {
      sigmas = customTimesteps.map((t) => f32(f32(t) / T));
      round = f32;
    } else {
      sigmas = linspace(this.sigmaMax * T, this.sigmaMin * T, n).map((t) => t / T);
      round = identity;
    }

    // 2. Shift: resolution-dependent from mu, or the static shift.
    if (c.use_dynamic_shifting) {
      const m = round(c.time_shift_type === 'exponential' ? Math.exp(mu!) : mu!);
      sigmas = sigmas.map((s) => round(m / round(m + round(round(1 / s) - 1))));
    } else {
      sigmas = sigmas.map((s) => staticShift(c.shift, s, round));
    }

    // 3. Stretch so the schedule ends at shift_terminal.
    if (c.shift_terminal !== null) {
      const oneMinus = sigmas.map((s) => round(1 - s));
      const scale = round(oneMinus[n - 1]! / round(1 - c.shift_terminal));
      sigmas = oneMinus.map((z) => round(1 - round(z / scale)));
    }

    // 4. Respacing between the shifted end points (float64 from here on).
    if (c.use_karras_sigmas) {
      const rho = 7;
      const minInv = sigmas[n - 1]! ** (1 / rho);
      const maxInv = sigmas[0]! ** (1 / rho);
      sigmas = linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
    } else if (c.use_exponential_sigmas) {
      sigmas = linspace(Math.log(sigmas[0]!), Math.log(sigmas[n - 1]!), n).map(Math.exp);
    }

    // 5. float32 σ and timesteps = σ·T, then the terminal σ.
    const sig = new Float64Array(n + 1);
    const ts = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = f32(c.invert_sigmas ? 1 - f32(sigmas[i]!) : sigmas[i]!);
      sig[i] = s;
      ts[i] = f32(s * T);
    }
    sig[n] = c.invert_sigmas ? 1 : 0;
    this._timesteps = ts;
    this._sigmas = sig;
    this.index.reset();
  }

  setBeginIndex(beginIndex: number): void {
    this.index.setBegin(beginIndex);
  }

  /**
   * Position of `timestep` (compared as float32, exactly, as diffusers compares tensors). When it
   * occurs twice the second occurrence wins, so an img2img start never skips a σ.
   */
  indexForTimestep(timestep: number): number {
    const t = f32(timestep);
    let first = -1;
    for (let i = 0; i < this.timesteps.length; i++) {
      if (this.timesteps[i] === t) {
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

  /** The transformer takes the sample as it is: a copy (or `out`). */
  scaleModelInput(sample: Float32Array, timestep: number, out?: Float32Array): Float32Array {
    this.index.ensure(timestep);
    const result = out ?? new Float32Array(sample.length);
    assertSameLength('out', result, sample);
    if (result !== sample) result.set(sample);
    return result;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    if (this.isStochastic) {
      if (!noise) throw new Error('FLOW_MATCH_EULER with stochastic_sampling needs noise for every step');
      assertSameLength('noise', noise, sample);
    }
    const index = this.index.ensure(timestep);
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const dt = f32(sigmaNext - sigma);
    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    if (this.isStochastic) {
      const keep = 1 - sigmaNext;
      for (let i = 0; i < n; i++) {
        const x0 = sample[i]! - sigma * modelOutput[i]!;
        predOriginalSample[i] = x0;
        prevSample[i] = keep * x0 + sigmaNext * noise![i]!;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const x = sample[i]!;
        const v = modelOutput[i]!;
        predOriginalSample[i] = x - sigma * v;
        prevSample[i] = x + dt * v;
      }
    }
    this.index.advance(index);
    return { prevSample, predOriginalSample };
  }

  /**
   * diffusers' `scale_noise`, the flow forward process: σ·ε + (1 − σ)·x₀. σ is taken, as there,
   * from the timestep when no begin index is set, else from the run in progress (inpainting
   * re-noising), else from the begin index (img2img start).
   */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    this.index.requireTimesteps();
    assertSameLength('noise', noise, originalSamples);
    const index = this.index.forNoiseBeginFirst(timestep);
    const sigma = this.sigmas[index]!;
    const keep = 1 - sigma;
    const out = new Float32Array(originalSamples.length);
    for (let i = 0; i < out.length; i++) out[i] = sigma * noise[i]! + keep * originalSamples[i]!;
    return out;
  }
}

/** shift·σ / (1 + (shift − 1)·σ), each operation rounded by `round` (float32 or not at all). */
function staticShift(shift: number, s: number, round: (x: number) => number): number {
  return round(round(round(shift) * s) / round(1 + round(round(shift - 1) * s)));
}
