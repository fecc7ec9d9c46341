/**
 * DPM-Solver++(2M) (Lu et al.) in diffusers' DPMSolverMultistepScheduler form, algorithm_type
 * "dpmsolver++", solver_order 2: an exponential-integrator step on the x̂₀ predictions of the
 * current and the previous step, first order on the run's first step and (per lower_order_final /
 * final_sigmas_type) on its last. DPMPP_2M_KARRAS is the same with Karras et al.'s σ spacing
 * (`use_karras_sigmas`). Deterministic; the UNet input is the (variance-preserving) sample itself.
 */

import { alphasCumprod, betasForSchedule, linspace, sigmasFromAlphasCumprod } from './betas.js';
import { assertSameLength } from './euler.js';
import { inferenceTimesteps, interpOnIndexGrid, roundHalfEven } from './timesteps.js';
import { StepIndex } from './stepIndex.js';
import type { Scheduler, SchedulerConfig, SchedulerStepResult, TimestepSpacing } from './types.js';

/**
 * diffusers' DPM timesteps: linspace and leading select n + 1 points and drop the last (0), so the
 * run ends above t = 0; trailing is the same as the other schedulers'.
 */
export function dpmTimesteps(T: number, n: number, spacing: TimestepSpacing, stepsOffset: number): Float64Array {
  if (!Number.isInteger(n) || n < 1 || n > T) throw new RangeError(`numInferenceSteps must be an integer in [1, ${T}], got ${n}`);
  if (spacing === 'trailing') {
    return inferenceTimesteps({ numTrainTimesteps: T, numInferenceSteps: n, spacing, stepsOffset, flavor: 'ddim' });
  }
  const out = new Float64Array(n);
  const leadingStride = Math.floor(T / (n + 1));
  for (let i = 0; i < n; i++) {
    const k = n - i; // position on the (n + 1)-point grid 0..n
    out[i] = spacing === 'linspace' ? roundHalfEven(k === n ? T - 1 : k * ((T - 1) / n)) : k * leadingStride + stepsOffset;
  }
  return out;
}

/** Karras et al.'s ρ = 7 spacing of n noise levels from σ_max down to σ_min. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  const lo = sigmaMin ** (1 / 7);
  const hi = sigmaMax ** (1 / 7);
  return linspace(0, 1, n).map((r) => (hi + r * (lo - hi)) ** 7);
}

/** The (fractional) train timestep of σ: linear interpolation of log σ over the train schedule. */
export function sigmaToTimestep(sigma: number, trainSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const last = trainSigmas.length - 1;
  // The last index whose log σ ≤ log sigma (0 when there is none), at most T − 2.
  let low = 0;
  for (let i = 0; i <= last; i++) if (Math.log(trainSigmas[i]!) <= logSigma) low = i;
  low = Math.min(low, last - 1);
  const lo = Math.log(trainSigmas[low]!);
  const hi = Math.log(trainSigmas[low + 1]!);
  const w = Math.min(1, Math.max(0, (lo - logSigma) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name: 'DPMPP_2M' | 'DPMPP_2M_KARRAS';
  readonly isStochastic = false;
  readonly initNoiseSigma = 1;

  readonly config: SchedulerConfig;
  readonly trainSigmas: Float64Array;
  private _timesteps: Float64Array = new Float64Array(0);
  private _sigmas: Float64Array = new Float64Array(0);
  private readonly index = new StepIndex(this, (t) => this.indexForTimestep(t));
  /** Steps taken this run, capped at 2: the second-order update needs one earlier x̂₀. */
  private lowerOrderNums = 0;
  /** x̂₀ of the previous step. */
  private prevX0: Float32Array | null = null;

  constructor(config: SchedulerConfig, karras: boolean) {
    this.name = karras ? 'DPMPP_2M_KARRAS' : 'DPMPP_2M';
    this.config = config;
    this.trainSigmas = sigmasFromAlphasCumprod(alphasCumprod(betasForSchedule(config)));
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  /** σ (variance-exploding) at each timestep plus the final one (0, or σ at t = 0 for final_sigmas_type "sigma_min"). */
  get sigmas(): Float64Array {
    return this._sigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const T = this.config.num_train_timesteps;
    let timesteps: Float64Array;
    let sigmas: Float64Array;
    if (this.name === 'DPMPP_2M_KARRAS') {
      if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
        throw new RangeError(`numInferenceSteps must be a positive integer, got ${numInferenceSteps}`);
      }
      sigmas = karrasSigmas(this.trainSigmas[0]!, this.trainSigmas[T - 1]!, numInferenceSteps);
      // diffusers rounds these timesteps except for the cosine schedule, and then stores them as integers.
      const cosine = this.config.beta_schedule === 'squaredcos_cap_v2';
      timesteps = sigmas.map((s) => {
        const t = sigmaToTimestep(s, this.trainSigmas);
        return cosine ? Math.trunc(t) : roundHalfEven(t);
      });
    } else {
      timesteps = dpmTimesteps(T, numInferenceSteps, this.config.timestep_spacing, this.config.steps_offset);
      sigmas = timesteps.map((t) => interpOnIndexGrid(t, this.trainSigmas));
    }
    for (const t of timesteps) {
      if (t < 0 || t > T - 1) throw new RangeError(`${this.name}: timestep ${t} for ${numInferenceSteps} steps falls outside [0, ${T - 1}]`);
    }
    const withFinal = new Float64Array(sigmas.length + 1);
    withFinal.set(sigmas);
    withFinal[sigmas.length] = this.config.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0]! : 0;
    this._timesteps = timesteps;
    this._sigmas = withFinal;
    this.index.reset();
    this.lowerOrderNums = 0;
    this.prevX0 = null;
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

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    const index = this.index.ensure(timestep);
    const last = index === this._timesteps.length - 1;
    const firstOrder =
      this.lowerOrderNums < 1 ||
      (last &&
        ((this.config.euler_at_final ?? false) ||
          ((this.config.lower_order_final ?? true) && this._timesteps.length < 15) ||
          this.config.final_sigmas_type !== 'sigma_min'));

    // VP coefficients: α = 1/√(σ²+1), σ_vp = σ·α; λ = log(α/σ_vp) = −log σ.
    const s0 = this._sigmas[index]!;
    const st = this._sigmas[index + 1]!;
    const alpha0 = 1 / Math.sqrt(s0 * s0 + 1);
    const alphaT = 1 / Math.sqrt(st * st + 1);
    // x̂₀ = ax·x + am·m for each prediction type.
    const [ax, am] =
      this.config.prediction_type === 'epsilon' ? [1 / alpha0, -s0] : this.config.prediction_type === 'v_prediction' ? [alpha0, -s0 * alpha0] : [0, 1];
    // e^{−h} = σ_t / σ_s, so the final σ_t = 0 needs no infinities.
    const expMinusH = st / s0;
    const phi = alphaT * (expMinusH - 1);
    const cx = (st * alphaT) / (s0 * alpha0);
    // prev = cx·x − φ·D0 (+ D1 terms), with D0 = x̂₀ and D1 = (x̂₀ − x̂₀_prev) / r0.
    let c0 = -phi;
    let c1 = 0;
    if (!firstOrder) {
      const s1 = this._sigmas[index - 1]!;
      const h = Math.log(s0 / st);
      const r0 = Math.log(s1 / s0) / h;
      const d1 = this.config.solver_type === 'heun' ? alphaT * ((expMinusH - 1) / h + 1) : -0.5 * phi;
      c0 += d1 / r0;
      c1 = -d1 / r0;
    }

    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    const prev = this.prevX0 ?? new Float32Array(n);
    assertSameLength("the previous step's x̂₀", prev, sample);
    for (let i = 0; i < n; i++) {
      const x = sample[i]!;
      const x0 = ax * x + am * modelOutput[i]!;
      predOriginalSample[i] = x0;
      prevSample[i] = cx * x + c0 * x0 + c1 * prev[i]!;
      prev[i] = x0;
    }
    this.prevX0 = prev;
    if (this.lowerOrderNums < 2) this.lowerOrderNums++;
    this.index.advance(index);
    return { prevSample, predOriginalSample };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    this.index.requireTimesteps();
    assertSameLength('noise', noise, originalSamples);
    // diffusers' precedence: without a begin index the timestep decides.
    const index = this.index.forNoiseBeginFirst(timestep);
    const sigma = this._sigmas[index]!;
    const a = 1 / Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(originalSamples.length);
    for (let i = 0; i < out.length; i++) out[i] = a * originalSamples[i]! + sigma * a * noise[i]!;
    return out;
  }

  /** Position of `timestep` in the schedule; of two occurrences the second (diffusers' rule). */
  indexForTimestep(timestep: number): number {
    let first = -1;
    for (let i = 0; i < this._timesteps.length; i++) {
      if (this._timesteps[i] === timestep) {
        if (first >= 0) return i;
        first = i;
      }
    }
    if (first < 0) {
      throw new RangeError(`timestep ${timestep} is not in this run's schedule [${Array.from(this._timesteps).join(', ')}]`);
    }
    return first;
  }
}
