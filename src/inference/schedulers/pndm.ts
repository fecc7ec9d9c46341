/**
 * PNDM (Liu et al., pseudo numerical methods) in diffusers' PNDMScheduler form. With
 * `skip_prk_steps` (what SD 1.x ships) it is PLMS: a linear multistep method on the ε history,
 * warmed up by one Heun-like step; otherwise 12 Runge–Kutta (PRK) sub-steps come first. Works in
 * the variance-preserving space (the UNet input is the sample itself).
 *
 * diffusers' bookkeeping is reproduced as it is, because it decides which timesteps the UNet sees:
 * the PLMS timestep list visits its second timestep twice; the second visit re-steps from the first
 * timestep's sample with the mean of both ε estimates, and its ε is not kept in the history; steps
 * go back by the integer stride T // n whatever the spacing.
 */

import { alphasCumprod, betasForSchedule, noiseToAlphaProd } from './betas.js';
import { assertSameLength } from './euler.js';
import { inferenceTimesteps, assertBeginIndex } from './timesteps.js';
import type { Scheduler, SchedulerConfig, SchedulerStepResult } from './types.js';

export class PNDMScheduler implements Scheduler {
  readonly name = 'PNDM' as const;
  readonly isStochastic = false;
  readonly initNoiseSigma = 1;

  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;

  private _timesteps: Float64Array = new Float64Array(0);
  private numInferenceSteps = 0;
  /** Number of PRK sub-steps at the start of `timesteps` (0 with skip_prk_steps). */
  private prkCount = 0;
  /** diffusers' state: steps taken, past ε (newest last), the PRK running sum and base sample. */
  private counter = 0;
  private ets: Float32Array[] = [];
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;

  constructor(config: SchedulerConfig) {
    if (config.prediction_type === 'sample') {
      throw new Error('PNDM: prediction_type "sample" is not supported by diffusers\' PNDMScheduler (use epsilon or v_prediction)');
    }
    this.config = config;
    this.alphasCumprod = alphasCumprod(betasForSchedule(config));
    this.finalAlphaCumprod = (config.set_alpha_to_one ?? false) ? 1 : this.alphasCumprod[0]!;
  }

  get timesteps(): Float64Array {
    return this._timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const T = this.config.num_train_timesteps;
    // Descending d_0 > d_1 > … > d_{n−1}, the same selection as DDIM's.
    const d = inferenceTimesteps({
      numTrainTimesteps: T,
      numInferenceSteps,
      spacing: this.config.timestep_spacing,
      stepsOffset: this.config.steps_offset,
      flavor: 'ddim',
    });
    const n = d.length;
    let list: number[];
    if (this.config.skip_prk_steps ?? false) {
      // PLMS: d_0, d_1, d_1, d_2, …, d_{n−1}.
      list = n === 1 ? [d[0]!] : [d[0]!, d[1]!, ...d.subarray(1)];
      this.prkCount = 0;
    } else {
      if (n < 4) throw new RangeError(`PNDM with skip_prk_steps false needs at least 4 steps, got ${n}`);
      // Three RK4 steps d_k → d_{k+1}, evaluated at d_k, twice at d_{k+1} + ⌊(T // n) / 2⌋ and at
      // d_{k+1}; then PLMS from d_3.
      const halfStride = Math.floor(Math.floor(T / n) / 2);
      list = [];
      for (let k = 0; k < 3; k++) list.push(d[k]!, d[k + 1]! + halfStride, d[k + 1]! + halfStride, d[k + 1]!);
      list.push(...d.subarray(3));
      this.prkCount = 12;
    }
    for (const t of list) {
      if (t < 0 || t > T - 1) {
        throw new RangeError(`PNDM: timestep ${t} for ${numInferenceSteps} steps falls outside [0, ${T - 1}]`);
      }
    }
    this._timesteps = Float64Array.from(list);
    this.numInferenceSteps = numInferenceSteps;
    this.resetState();
  }

  /**
   * diffusers' PNDM has no begin index: an img2img run visits timesteps[beginIndex…] and its
   * multistep warm-up starts there. This only checks the index and restarts that state.
   */
  setBeginIndex(beginIndex: number): void {
    assertBeginIndex(beginIndex, this._timesteps.length);
    this.resetState();
  }

  scaleModelInput(sample: Float32Array, _timestep: number, out?: Float32Array): Float32Array {
    if (!out) return sample.slice();
    assertSameLength('out', out, sample);
    out.set(sample);
    return out;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    if (this.numInferenceSteps === 0) throw new Error('PNDM: call setTimesteps before sampling');
    const n = sample.length;
    const { prevSample, predOriginalSample } = out ?? { prevSample: new Float32Array(n), predOriginalSample: new Float32Array(n) };
    assertSameLength('out.prevSample', prevSample, sample);
    assertSameLength('out.predOriginalSample', predOriginalSample, sample);
    this.writePredOriginal(modelOutput, timestep, sample, predOriginalSample);

    // The ε to step with is Σ weights[j]·terms[j], applied to `base` from timestep `from` to `to`.
    let terms: Float32Array[];
    let weights: number[];
    let base = sample;
    let from = timestep;
    let to: number;
    const stride = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    if (this.counter < this.prkCount) {
      const phase = this.counter % 4;
      to = timestep - (this.counter % 2 ? 0 : Math.floor(stride / 2));
      from = this._timesteps[this.counter - phase]!;
      if (phase === 0) {
        this.ets.push(modelOutput.slice());
        this.curSample = sample.slice();
      }
      const acc = (this.curModelOutput ??= new Float32Array(n));
      base = this.curSample!;
      if (phase < 3) {
        const w = phase === 0 ? 1 / 6 : 1 / 3;
        for (let i = 0; i < n; i++) acc[i] = acc[i]! + w * modelOutput[i]!;
        terms = [modelOutput];
        weights = [1];
      } else {
        terms = [acc, modelOutput];
        weights = [1, 1 / 6];
      }
    } else {
      to = timestep - stride;
      if (this.counter !== 1) {
        if (this.ets.length > 3) this.ets.shift();
        this.ets.push(modelOutput.slice());
      } else {
        // The repeated timestep: step again from the first sample, d_0 → d_1.
        to = timestep;
        from = timestep + stride;
      }
      const e = this.ets;
      const k = e.length;
      if (k === 1 && this.counter === 0) {
        this.curSample = sample.slice();
        terms = [modelOutput];
        weights = [1];
      } else if (k === 1 && this.counter === 1) {
        base = this.curSample!;
        this.curSample = null;
        terms = [modelOutput, e[0]!];
        weights = [1 / 2, 1 / 2];
      } else if (k === 2) {
        terms = [e[1]!, e[0]!];
        weights = [3 / 2, -1 / 2];
      } else if (k === 3) {
        terms = [e[2]!, e[1]!, e[0]!];
        weights = [23 / 12, -16 / 12, 5 / 12];
      } else {
        terms = [e[3]!, e[2]!, e[1]!, e[0]!];
        weights = [55 / 24, -59 / 24, 37 / 24, -9 / 24];
      }
    }
    this.prevSampleInto(prevSample, base, from, to, terms, weights);
    if (this.counter < this.prkCount && this.counter % 4 === 3) this.curModelOutput = null;
    this.counter++;
    return { prevSample, predOriginalSample };
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    assertSameLength('noise', noise, originalSamples);
    return noiseToAlphaProd(originalSamples, noise, this.alphaCumprodAt(timestep));
  }

  private resetState(): void {
    this.counter = 0;
    this.ets = [];
    this.curModelOutput = null;
    this.curSample = null;
  }

  /**
   * Formula (9) of the PNDM paper (diffusers' `_get_prev_sample`), from ᾱ_from to ᾱ_to, with the
   * combined model output converted to ε first when it is a v-prediction.
   */
  private prevSampleInto(out: Float32Array, x: Float32Array, from: number, to: number, terms: Float32Array[], weights: number[]): void {
    const a = this.alphaCumprodAt(from);
    const ap = to >= 0 ? this.alphaCumprodAt(to) : this.finalAlphaCumprod;
    const sampleCoeff = Math.sqrt(ap / a);
    const k = (ap - a) / (a * Math.sqrt(1 - ap) + Math.sqrt(a * (1 - a) * ap));
    // prev = cx·x − cm·m̄ with ε = m̄ (epsilon) or ε = √ᾱ·m̄ + √(1−ᾱ)·x (v_prediction).
    const v = this.config.prediction_type === 'v_prediction';
    const cx = v ? sampleCoeff - k * Math.sqrt(1 - a) : sampleCoeff;
    const cm = v ? k * Math.sqrt(a) : k;
    const w = weights.map((wj) => cm * wj);
    const [t0, t1, t2, t3] = terms;
    const n = out.length;
    switch (terms.length) {
      case 1:
        for (let i = 0; i < n; i++) out[i] = cx * x[i]! - w[0]! * t0![i]!;
        break;
      case 2:
        for (let i = 0; i < n; i++) out[i] = cx * x[i]! - (w[0]! * t0![i]! + w[1]! * t1![i]!);
        break;
      case 3:
        for (let i = 0; i < n; i++) out[i] = cx * x[i]! - (w[0]! * t0![i]! + w[1]! * t1![i]! + w[2]! * t2![i]!);
        break;
      default:
        for (let i = 0; i < n; i++) {
          out[i] = cx * x[i]! - (w[0]! * t0![i]! + w[1]! * t1![i]! + w[2]! * t2![i]! + w[3]! * t3![i]!);
        }
    }
  }

  /** x̂₀ from this step's own model output (for previews; diffusers' PNDM returns none). */
  private writePredOriginal(m: Float32Array, timestep: number, x: Float32Array, out: Float32Array): void {
    const a = this.alphaCumprodAt(timestep);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const [cx, cm] = this.config.prediction_type === 'v_prediction' ? [sa, -sb] : [1 / sa, -sb / sa];
    for (let i = 0; i < out.length; i++) out[i] = cx * x[i]! + cm * m[i]!;
  }

  private alphaCumprodAt(timestep: number): number {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new RangeError(`PNDM: timestep must be an integer train timestep in [0, ${this.alphasCumprod.length - 1}], got ${timestep}`);
    }
    return this.alphasCumprod[timestep]!;
  }
}
