/**
 * Scheduler tests: schedule values re-derived independently in float64 here, diffusers' own
 * expected full-loop numbers (tests/schedulers/test_scheduler_{euler,euler_ancestral,ddim,pndm,
 * dpm_multi,lcm}.py), and convergence under a perfect noise predictor.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { PROJECT_ROOT } from '../src/config.js';

import {
  DDIMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  PNDMScheduler,
  SCHEDULER_NAMES,
  ancestralSigmas,
  alphasCumprod,
  betasForSchedule,
  createScheduler,
  inferenceTimesteps,
  lcmBoundaryScalings,
  parseSchedulerConfig,
  roundHalfEven,
  schedulerForClassName,
} from '../src/inference/schedulers/index.js';
import type { Scheduler, SchedulerConfig, SchedulerName } from '../src/inference/schedulers/index.js';

// ---------------------------------------------------------------------------------------------
// Independent reference math (float64, closed form; deliberately not sharing code with src/).
// ---------------------------------------------------------------------------------------------

const SD15_JSON = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

function refBetas(T: number, start: number, end: number, schedule: 'linear' | 'scaled_linear'): number[] {
  const out: number[] = [];
  for (let i = 0; i < T; i++) {
    const f = T === 1 ? 0 : i / (T - 1);
    if (schedule === 'linear') out.push(start + f * (end - start));
    else {
      const r = Math.sqrt(start) + f * (Math.sqrt(end) - Math.sqrt(start));
      out.push(r * r);
    }
  }
  return out;
}

function refAlphasCumprod(betas: number[]): number[] {
  const out: number[] = [];
  let p = 1;
  for (const b of betas) {
    p *= 1 - b;
    out.push(p);
  }
  return out;
}

const refSigmas = (ac: number[]): number[] => ac.map((a) => Math.sqrt((1 - a) / a));

/** Linear interpolation of `values` (defined on 0..len−1) at x, clamped at the ends. */
function refInterp(values: number[], x: number): number {
  if (x <= 0) return values[0]!;
  if (x >= values.length - 1) return values[values.length - 1]!;
  const lo = Math.floor(x);
  const w = x - lo;
  return values[lo]! * (1 - w) + values[lo + 1]! * w;
}

/** numpy round-half-to-even, written independently of src/. */
function refRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

function refTimesteps(T: number, n: number, spacing: 'linspace' | 'leading' | 'trailing', offset: number, euler: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (spacing === 'linspace') {
      const v = n === 1 ? 0 : ((T - 1) * (n - 1 - i)) / (n - 1);
      out.push(euler ? v : refRound(v));
    } else if (spacing === 'leading') {
      out.push((n - 1 - i) * Math.floor(T / n) + offset);
    } else {
      out.push(refRound(T - (i * T) / n) - 1);
    }
  }
  return out;
}

function assertClose(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected}, got ${actual} (|diff| ${Math.abs(actual - expected)} > ${tol})`);
}

function assertArrayClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    assertClose(actual[i]!, e, relTol * Math.max(1, Math.abs(e)), `${what}[${i}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// diffusers' SchedulerCommonTest fixtures.
// ---------------------------------------------------------------------------------------------

const B = 4;
const C = 3;
const H = 8;
const W = 8;
const NUM = B * C * H * W;

/**
 * `dummy_sample_deter` (flip = false) and `dummy_noise_deter` (flip = true): arange(N) (flipped for
 * the noise) reshaped to (C, H, W, B), divided by N and permuted to (B, C, H, W). Laid out
 * row-major in (B, C, H, W) so that torch's noise (filled in that order) lines up element-wise.
 */
function dummyDeter(flip: boolean): Float32Array {
  const out = new Float32Array(NUM);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const k = ((c * H + h) * W + w) * B + b;
          out[((b * C + c) * H + h) * W + w] = (flip ? NUM - 1 - k : k) / NUM;
        }
  return out;
}

/** `dummy_model`: sample · t / (t + 1), with t cast to float32 as torch does. */
function dummyModel(sample: Float32Array, t: number): Float32Array {
  const tf = Math.fround(t);
  const out = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) out[i] = (sample[i]! * tf) / (tf + 1);
  return out;
}

function absSumMean(x: Float32Array): { sum: number; mean: number } {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.abs(x[i]!);
  return { sum, mean: sum / x.length };
}

function scaled(x: Float32Array, k: number): Float32Array {
  return x.map((v) => v * k);
}

/**
 * torch's CPU generator (mt19937) and its `randn` for float32 tensors of ≥ 16 elements
 * (`normal_fill`: uniforms from 24-bit draws, then Box–Muller on pairs (j, j + 8) of each block
 * of 16). Lets the Euler-ancestral tests consume the same noise as `torch.manual_seed(0)`.
 */
class TorchCpuGenerator {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1]!;
      this.mt[i] = (Math.imul(1812433253, (prev ^ (prev >>> 30)) >>> 0) + i) >>> 0;
    }
  }

  private nextUint32(): number {
    const mt = this.mt;
    if (this.index >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (mt[i]! & 0x80000000) | (mt[(i + 1) % 624]! & 0x7fffffff);
        let v = mt[(i + 397) % 624]! ^ (y >>> 1);
        if (y & 1) v ^= 0x9908b0df;
        mt[i] = v >>> 0;
      }
      this.index = 0;
    }
    let y = mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  randn(n: number): Float32Array {
    assert.equal(n % 16, 0, 'only whole blocks of 16 are emulated');
    const f = Math.fround;
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = (this.nextUint32() & 0xffffff) / 16777216;
    for (let i = 0; i < n; i += 16) {
      for (let j = 0; j < 8; j++) {
        const u1 = f(1 - d[i + j]!);
        const u2 = d[i + j + 8]!;
        const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
        const theta = f(2 * Math.PI * u2);
        d[i + j] = radius * f(Math.cos(theta));
        d[i + j + 8] = radius * f(Math.sin(theta));
      }
    }
    return d;
  }
}

/**
 * diffusers keeps β and ᾱ in float32 (torch.linspace in float32, cumprod accumulated in double
 * and stored as float32). Expressed as trained betas so our float64 cumprod lands on those same
 * ᾱ values; only needed where a diffusers expectation is sensitive to that rounding.
 */
function diffusersFloat32Betas(T: number, start: number, end: number): number[] {
  const f = Math.fround;
  const step = f(f(f(end) - f(start)) / (T - 1));
  const alphaCum: number[] = [];
  let acc = 1;
  for (let i = 0; i < T; i++) {
    // torch's CPU linspace fills the first half from the start and the second half from the end.
    const beta = i < T >> 1 ? f(f(start) + f(step * i)) : f(f(end) - f(step * (T - 1 - i)));
    acc *= f(1 - beta);
    alphaCum.push(f(acc));
  }
  return alphaCum.map((a, i) => 1 - a / (i === 0 ? 1 : alphaCum[i - 1]!));
}

interface LoopOptions {
  /** Mirrors the diffusers Euler tests, which overwrite `sample` with the scaled model input. */
  stepOnScaledSample: boolean;
  startIndex?: number;
  useBeginIndex?: boolean;
  generator?: TorchCpuGenerator;
}

/** diffusers' full_loop / test_full_loop_with_noise, step for step. */
function fullLoop(scheduler: Scheduler, steps: number, opts: LoopOptions): Float32Array {
  scheduler.setTimesteps(steps);
  let sample = scaled(dummyDeter(false), scheduler.initNoiseSigma);
  let timesteps: Float64Array = scheduler.timesteps;
  if (opts.startIndex !== undefined) {
    timesteps = scheduler.timesteps.subarray(opts.startIndex);
    if (opts.useBeginIndex) scheduler.setBeginIndex(opts.startIndex);
    sample = scheduler.addNoise(sample, dummyDeter(true), timesteps[0]!);
  }
  for (const t of timesteps) {
    const input = scheduler.scaleModelInput(sample, t);
    if (opts.stepOnScaledSample) sample = input;
    const noise = scheduler.isStochastic ? opts.generator!.randn(NUM) : undefined;
    sample = scheduler.step(dummyModel(input, t), t, sample, noise).prevSample;
  }
  return sample;
}

// diffusers' get_scheduler_config of each test file.
const EULER_TEST_CONFIG = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' };
const DDIM_TEST_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  clip_sample: true,
};
const PNDM_TEST_CONFIG = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' };
// The DPM test config departs from the class defaults here (and sets solver_order 2, dpmsolver++, midpoint).
const DPM_TEST_CONFIG = { ...PNDM_TEST_CONFIG, lower_order_final: false, final_sigmas_type: 'sigma_min' };
const LCM_TEST_CONFIG = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' };

function expectDiffusers(x: Float32Array, sum: number, mean: number): void {
  const r = absSumMean(x);
  assertClose(r.sum, sum, 1e-2, 'result_sum');
  assertClose(r.mean, mean, 1e-3, 'result_mean');
}

// ---------------------------------------------------------------------------------------------

describe('beta schedules', () => {
  it('linear and scaled_linear match the closed form', () => {
    for (const schedule of ['linear', 'scaled_linear'] as const) {
      const cfg = parseSchedulerConfig({ ...SD15_JSON, beta_schedule: schedule });
      const betas = betasForSchedule(cfg);
      assertArrayClose(betas, refBetas(1000, 0.00085, 0.012, schedule), 1e-14, schedule);
      assertArrayClose(alphasCumprod(betas), refAlphasCumprod(refBetas(1000, 0.00085, 0.012, schedule)), 1e-12);
    }
    const sd = betasForSchedule(parseSchedulerConfig(SD15_JSON));
    assertClose(sd[0]!, 0.00085, 1e-15);
    assertClose(sd[999]!, 0.012, 1e-15);
  });

  it('squaredcos_cap_v2 follows ᾱ(t) = cos²((t + 0.008)/1.008 · π/2) with β capped at 0.999', () => {
    const T = 1000;
    const betas = betasForSchedule(parseSchedulerConfig({ num_train_timesteps: T, beta_schedule: 'squaredcos_cap_v2' }));
    const abar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const i of [0, 1, 500, 998]) assertClose(betas[i]!, 1 - abar((i + 1) / T) / abar(i / T), 1e-15, `beta[${i}]`);
    assert.equal(betas[T - 1], 0.999);
    // ᾱ telescopes back to the continuous curve.
    assertClose(alphasCumprod(betas)[499]!, abar(0.5) / abar(0), 1e-12);
  });

  it('trained_betas are used verbatim', () => {
    const trained = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const cfg = parseSchedulerConfig({ num_train_timesteps: 10, trained_betas: trained });
    assert.deepEqual(Array.from(betasForSchedule(cfg)), trained);
  });
});

describe('timesteps and sigmas for Stable Diffusion 1.5', () => {
  const T = 1000;
  const sdSigmas = refSigmas(refAlphasCumprod(refBetas(T, 0.00085, 0.012, 'scaled_linear')));

  for (const spacing of ['linspace', 'leading'] as const) {
    it(`Euler / Euler ancestral with ${spacing} spacing match the re-derived schedule`, () => {
      const cfg = parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: spacing });
      for (const name of ['EULER', 'EULER_ANCESTRAL'] as const) {
        for (const n of [1, 5, 10, 25, 30, 50, 1000]) {
          const s = createScheduler(name, cfg) as EulerDiscreteScheduler;
          s.setTimesteps(n);
          const ts = refTimesteps(T, n, spacing, 1, true);
          // Euler keeps fractional timesteps in float32, as diffusers does.
          assertArrayClose(s.timesteps, ts, 1e-7, `${name} ${spacing} n=${n} timesteps`);
          const sigmas = [...ts.map((t) => refInterp(sdSigmas, t)), 0];
          assertArrayClose(s.sigmas, sigmas, 1e-6, `${name} ${spacing} n=${n} sigmas`);
          const max = Math.max(...sigmas);
          assertClose(s.initNoiseSigma, spacing === 'linspace' ? max : Math.sqrt(max * max + 1), 1e-9);
        }
      }
    });

    it(`DDIM with ${spacing} spacing matches the re-derived timesteps`, () => {
      const cfg = parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: spacing }, 'DDIM');
      for (const n of [1, 5, 10, 25, 30, 50, 999]) {
        const s = createScheduler('DDIM', cfg);
        s.setTimesteps(n);
        assert.deepEqual(Array.from(s.timesteps), refTimesteps(T, n, spacing, 1, false), `n=${n}`);
        assert.equal(s.initNoiseSigma, 1);
      }
    });
  }

  it('hand-known values', () => {
    // DDIM leading, 50 steps, steps_offset 1: 981, 961, ..., 21, 1.
    const ddim = createScheduler('DDIM', parseSchedulerConfig(SD15_JSON, 'DDIM'));
    ddim.setTimesteps(50);
    assert.deepEqual(
      Array.from(ddim.timesteps),
      Array.from({ length: 50 }, (_, i) => 981 - 20 * i),
    );

    // Euler (linspace by default for an SD 1.5 config): starts at 999 with σ_max ≈ 14.6146.
    const euler = createScheduler('EULER', parseSchedulerConfig(SD15_JSON)) as EulerDiscreteScheduler;
    euler.setTimesteps(10);
    assert.equal(euler.timesteps[0], 999);
    assert.equal(euler.timesteps[9], 0);
    assertClose(euler.sigmas[0]!, 14.6146, 1e-4);
    assertClose(euler.initNoiseSigma, 14.614641229333639, 1e-9);
    assertClose(euler.sigmas[9]!, 0.029167158151720367, 1e-12);
    assert.equal(euler.sigmas[10], 0);

    // Fractional linspace timesteps, n = 7 (np.linspace(0, 999, 7)[::-1]).
    euler.setTimesteps(7);
    assert.deepEqual(Array.from(euler.timesteps), [999, 832.5, 666, 499.5, 333, 166.5, 0]);
    assertArrayClose(
      euler.sigmas,
      [14.614641229333639, 5.948916172611938, 2.9183071154268285, 1.6155825101612464, 0.9323579668348474, 0.49355304576156867, 0.029167158151720367, 0],
      1e-10,
    );

    // Euler leading, 10 steps: 901, 801, ..., 1 and init σ = √(σ(901)² + 1).
    const eulerLeading = createScheduler('EULER', parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: 'leading' }));
    eulerLeading.setTimesteps(10);
    assert.deepEqual(Array.from(eulerLeading.timesteps), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assertClose(eulerLeading.initNoiseSigma, 8.450064550829065, 1e-9);
  });

  it('numpy rounding quirks (values from numpy)', () => {
    // np.linspace(0, 999, 25).round(): 832.5 → 832, 499.5 → 500, 166.5 → 166 (ties to even).
    const ddim = createScheduler('DDIM', parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: 'linspace' }, 'DDIM'));
    ddim.setTimesteps(25);
    assert.deepEqual(
      Array.from(ddim.timesteps),
      [999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333, 291, 250, 208, 166, 125, 83, 42, 0],
    );
    // np.round(np.arange(1000, 0, -62.5)) - 1.
    const trailing = inferenceTimesteps({
      numTrainTimesteps: 1000,
      numInferenceSteps: 16,
      spacing: 'trailing',
      stepsOffset: 1,
      flavor: 'ddim',
    });
    assert.deepEqual(Array.from(trailing), [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]);
    // numpy's arange yields 62 values here (the last one −1); we keep exactly n.
    const t61 = inferenceTimesteps({
      numTrainTimesteps: 1000,
      numInferenceSteps: 61,
      spacing: 'trailing',
      stepsOffset: 0,
      flavor: 'euler',
    });
    assert.equal(t61.length, 61);
    assert.deepEqual(Array.from(t61.subarray(59)), [32, 15]);
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
  });

  it('DDIM steps_offset example from diffusers (5 steps → 801, 601, 401, 201, 1)', () => {
    const s = createScheduler('DDIM', parseSchedulerConfig({ ...DDIM_TEST_CONFIG, steps_offset: 1 }, 'DDIM'));
    s.setTimesteps(5);
    assert.deepEqual(Array.from(s.timesteps), [801, 601, 401, 201, 1]);
  });
});

describe("diffusers' scheduler tests", () => {
  it('EulerDiscreteScheduler test_full_loop_no_noise: 10.0807 / 0.0131', () => {
    const s = createScheduler('EULER', parseSchedulerConfig(EULER_TEST_CONFIG));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: true }), 10.0807, 0.0131);
  });

  it('EulerDiscreteScheduler test_full_loop_with_v_prediction: 0.0002 / 2.2676e-06', () => {
    // diffusers' value is float32 round-off of an exact 0; ours is closer to 0 and within tolerance.
    const s = createScheduler('EULER', parseSchedulerConfig({ ...EULER_TEST_CONFIG, prediction_type: 'v_prediction' }));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: true }), 0.0002, 2.2676e-6);
  });

  it('EulerAncestralDiscreteScheduler test_full_loop_no_noise: 152.3192 / 0.1983 (torch.manual_seed(0) noise)', () => {
    const s = createScheduler('EULER_ANCESTRAL', parseSchedulerConfig(EULER_TEST_CONFIG));
    const out = fullLoop(s, 10, { stepOnScaledSample: true, generator: new TorchCpuGenerator(0) });
    expectDiffusers(out, 152.3192, 0.1983);
  });

  it('EulerAncestralDiscreteScheduler test_full_loop_with_v_prediction: 108.4439 / 0.1412', () => {
    const s = createScheduler('EULER_ANCESTRAL', parseSchedulerConfig({ ...EULER_TEST_CONFIG, prediction_type: 'v_prediction' }));
    const out = fullLoop(s, 10, { stepOnScaledSample: true, generator: new TorchCpuGenerator(0) });
    expectDiffusers(out, 108.4439, 0.1412);
  });

  it('the emulated torch generator reproduces torch.manual_seed(0); torch.randn(16)', () => {
    const r = new TorchCpuGenerator(0).randn(16);
    assertArrayClose(r.subarray(0, 4), [-1.1258398, -1.1523602, -0.2505786, -0.4338788], 1e-6);
  });

  it('DDIMScheduler test_full_loop_no_noise: 172.0067 / 0.223967', () => {
    const s = createScheduler('DDIM', parseSchedulerConfig(DDIM_TEST_CONFIG, 'DDIM'));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false }), 172.0067, 0.223967);
  });

  it('DDIMScheduler test_full_loop_with_v_prediction: 52.5302 / 0.0684', () => {
    const s = createScheduler('DDIM', parseSchedulerConfig({ ...DDIM_TEST_CONFIG, prediction_type: 'v_prediction' }, 'DDIM'));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false }), 52.5302, 0.0684);
  });

  it('DDIMScheduler set_alpha_to_one true / false: 149.8295 / 0.1951 and 149.0784 / 0.1941', () => {
    const yes = createScheduler('DDIM', parseSchedulerConfig({ ...DDIM_TEST_CONFIG, set_alpha_to_one: true, beta_start: 0.01 }, 'DDIM'));
    expectDiffusers(fullLoop(yes, 10, { stepOnScaledSample: false }), 149.8295, 0.1951);
    const no = createScheduler('DDIM', parseSchedulerConfig({ ...DDIM_TEST_CONFIG, set_alpha_to_one: false, beta_start: 0.01 }, 'DDIM'));
    expectDiffusers(fullLoop(no, 10, { stepOnScaledSample: false }), 149.0784, 0.1941);
  });

  it('DDIMScheduler test_full_loop_with_noise (t_start 8): 354.5418 / 0.4616', () => {
    for (const useBeginIndex of [false, true]) {
      const s = createScheduler('DDIM', parseSchedulerConfig(DDIM_TEST_CONFIG, 'DDIM'));
      expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false, startIndex: 8, useBeginIndex }), 354.5418, 0.4616);
    }
  });

  it('EulerDiscreteScheduler test_full_loop_with_noise (t_start 8): 57062.9297 / 74.3007', () => {
    // This one moves by 0.07 with float32 vs float64 ᾱ: it steps to σ(t=0) = √(β₀/(1−β₀)) ≈ 0.01,
    // and float32 1 − ᾱ₀ carries a 8e-5 relative error there. With diffusers' float32 ᾱ it matches.
    const f32 = diffusersFloat32Betas(1100, 0.0001, 0.02);
    for (const useBeginIndex of [false, true]) {
      const s = createScheduler('EULER', parseSchedulerConfig({ ...EULER_TEST_CONFIG, trained_betas: f32 }));
      const out = fullLoop(s, 10, { stepOnScaledSample: true, startIndex: 8, useBeginIndex });
      expectDiffusers(out, 57062.9297, 74.3007);
    }
    const exact = createScheduler('EULER', parseSchedulerConfig(EULER_TEST_CONFIG));
    const r = absSumMean(fullLoop(exact, 10, { stepOnScaledSample: true, startIndex: 8 }));
    assertClose(r.sum, 57062.9297, 0.1, 'float64 schedule sum');
    assertClose(r.mean, 74.3007, 1e-3, 'float64 schedule mean');
  });

  it('EulerAncestralDiscreteScheduler test_full_loop_with_noise (t_start 8): 56163.0508 / 73.1290', () => {
    const f32 = diffusersFloat32Betas(1100, 0.0001, 0.02);
    const s = createScheduler('EULER_ANCESTRAL', parseSchedulerConfig({ ...EULER_TEST_CONFIG, trained_betas: f32 }));
    const out = fullLoop(s, 10, { stepOnScaledSample: true, startIndex: 8, generator: new TorchCpuGenerator(0) });
    expectDiffusers(out, 56163.0508, 73.129);
  });
});

describe("diffusers' PNDM, DPM-Solver multistep and LCM tests", () => {
  // diffusers' PNDM full_loop runs prk_timesteps with step_prk, then plms_timesteps with step_plms:
  // with skip_prk_steps false (the class default) that is what `step` does along `timesteps`.
  it('PNDMScheduler test_steps_offset: the PRK + PLMS timesteps', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig({ ...PNDM_TEST_CONFIG, steps_offset: 1 }, 'PNDM'));
    s.setTimesteps(10);
    assert.deepEqual(Array.from(s.timesteps), [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('PNDMScheduler test_full_loop_no_noise: 198.1318 / 0.2580', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig(PNDM_TEST_CONFIG, 'PNDM'));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false }), 198.1318, 0.258);
  });

  it('PNDMScheduler test_full_loop_with_v_prediction: 67.3986 / 0.0878', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig({ ...PNDM_TEST_CONFIG, prediction_type: 'v_prediction' }, 'PNDM'));
    expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false }), 67.3986, 0.0878);
  });

  it('PNDMScheduler set_alpha_to_one true / false: 230.0399 / 0.2995 and 186.9482 / 0.2434', () => {
    for (const [set_alpha_to_one, sum, mean] of [
      [true, 230.0399, 0.2995],
      [false, 186.9482, 0.2434],
    ] as const) {
      const cfg = parseSchedulerConfig({ ...PNDM_TEST_CONFIG, set_alpha_to_one, beta_start: 0.01 }, 'PNDM');
      expectDiffusers(fullLoop(createScheduler('PNDM', cfg), 10, { stepOnScaledSample: false }), sum, mean);
    }
  });

  it('DPMSolverMultistepScheduler test_full_loop_no_noise: mean 0.3301', () => {
    const s = createScheduler('DPMPP_2M', parseSchedulerConfig(DPM_TEST_CONFIG, 'DPMPP_2M'));
    assertClose(absSumMean(fullLoop(s, 10, { stepOnScaledSample: false })).mean, 0.3301, 1e-3, 'result_mean');
  });

  it('DPMSolverMultistepScheduler test_full_loop_with_noise (t_start 5): 318.4111 / 0.4146', () => {
    for (const useBeginIndex of [false, true]) {
      const s = createScheduler('DPMPP_2M', parseSchedulerConfig(DPM_TEST_CONFIG, 'DPMPP_2M'));
      expectDiffusers(fullLoop(s, 10, { stepOnScaledSample: false, startIndex: 5, useBeginIndex }), 318.4111, 0.4146);
    }
  });

  it('DPMSolverMultistepScheduler test_full_loop_with_v_prediction: mean 0.2251', () => {
    const s = createScheduler('DPMPP_2M', parseSchedulerConfig({ ...DPM_TEST_CONFIG, prediction_type: 'v_prediction' }, 'DPMPP_2M'));
    assertClose(absSumMean(fullLoop(s, 10, { stepOnScaledSample: false })).mean, 0.2251, 1e-3, 'result_mean');
  });

  it('DPMSolverMultistepScheduler test_full_loop_with_karras_and_v_prediction: mean 0.2096', () => {
    // use_karras_sigmas is what the name DPMPP_2M_KARRAS means. We get 0.2092 (float32 ᾱ too), as
    // diffusers' current code, which steps with the Karras σ themselves; stepping with σ interpolated
    // at the rounded timesteps instead gives 0.2096. The test's tolerance admits both.
    const cfg = parseSchedulerConfig({ ...DPM_TEST_CONFIG, prediction_type: 'v_prediction', use_karras_sigmas: true }, 'DPMPP_2M_KARRAS');
    const s = createScheduler('DPMPP_2M_KARRAS', cfg);
    assertClose(absSumMean(fullLoop(s, 10, { stepOnScaledSample: false })).mean, 0.2096, 1e-3, 'result_mean');
  });

  it('DPMSolverMultistepScheduler test_duplicated_timesteps: n = T gives T timesteps', () => {
    for (const name of ['DPMPP_2M', 'DPMPP_2M_KARRAS'] as const) {
      const s = createScheduler(name, parseSchedulerConfig(DPM_TEST_CONFIG, name));
      s.setTimesteps(1000);
      assert.equal(s.timesteps.length, 1000);
    }
  });

  it('LCMScheduler test_full_loop_onestep: 18.7097 / 0.0244', () => {
    const s = createScheduler('LCM', parseSchedulerConfig(LCM_TEST_CONFIG, 'LCM'));
    // One step is the last step, which adds no noise: deterministic.
    const r = absSumMean(fullLoop(s, 1, { stepOnScaledSample: false, generator: new TorchCpuGenerator(0) }));
    assertClose(r.sum, 18.7097, 1e-3, 'result_sum');
    assertClose(r.mean, 0.0244, 1e-3, 'result_mean');
  });

  // The multistep loop draws torch.manual_seed(0) noise between steps; the emulated torch generator
  // reproduces it, so this is checked too. diffusers' custom-timesteps LCM tests have no counterpart
  // here (setTimesteps takes a step count only).
  it('LCMScheduler test_full_loop_multistep (torch.manual_seed(0) noise): 197.7616 / 0.2575', () => {
    const s = createScheduler('LCM', parseSchedulerConfig(LCM_TEST_CONFIG, 'LCM'));
    const r = absSumMean(fullLoop(s, 10, { stepOnScaledSample: false, generator: new TorchCpuGenerator(0) }));
    assertClose(r.sum, 197.7616, 1e-3, 'result_sum');
    assertClose(r.mean, 0.2575, 1e-3, 'result_mean');
  });
});

describe('Euler ancestral', () => {
  it('σ_up² + σ_down² = σ_to² with σ_down ≤ σ_to, and σ_up = 0 on the last step', () => {
    const s = createScheduler('EULER_ANCESTRAL', parseSchedulerConfig(SD15_JSON)) as EulerAncestralDiscreteScheduler;
    s.setTimesteps(20);
    for (let i = 0; i < 20; i++) {
      const from = s.sigmas[i]!;
      const to = s.sigmas[i + 1]!;
      const { sigmaUp, sigmaDown } = ancestralSigmas(from, to);
      assertClose(sigmaUp ** 2 + sigmaDown ** 2, to ** 2, 1e-12 * Math.max(1, to ** 2), `step ${i}`);
      assert.ok(sigmaDown <= to + 1e-15 && sigmaUp >= 0);
      // Closed form: σ_down = σ_to² / σ_from.
      assertClose(sigmaDown, (to * to) / from, 1e-12);
    }
    assert.deepEqual(ancestralSigmas(s.sigmas[19]!, 0), { sigmaUp: 0, sigmaDown: 0 });
  });

  it('with zero noise, each step is an Euler step to σ_down (checked over the dummy-model loop)', () => {
    // For the dummy model and epsilon prediction, x ← x/√(σ²+1) then x ← x + m·(σ_down − σ) with
    // m = x·t/(t+1), so the loop multiplies every element by ∏ (1 + t/(t+1)·(σ_down − σ)) / √(σ²+1).
    const cfg = parseSchedulerConfig(EULER_TEST_CONFIG);
    const s = createScheduler('EULER_ANCESTRAL', cfg);
    s.setTimesteps(10);
    const sig = refSigmas(refAlphasCumprod(refBetas(1100, 0.0001, 0.02, 'linear')));
    const ts = refTimesteps(1100, 10, 'linspace', 0, true);
    const sigmas = [...ts.map((t) => refInterp(sig, t)), 0];
    let factor = sigmas[0]!; // init_noise_sigma (linspace)
    for (let i = 0; i < 10; i++) {
      const from = sigmas[i]!;
      const to = sigmas[i + 1]!;
      const down = (to * to) / from;
      factor *= (1 + (ts[i]! / (ts[i]! + 1)) * (down - from)) / Math.sqrt(from * from + 1);
    }
    let x = scaled(dummyDeter(false), s.initNoiseSigma);
    const zeros = new Float32Array(NUM);
    for (const t of s.timesteps) {
      x = s.scaleModelInput(x, t);
      x = s.step(dummyModel(x, t), t, x, zeros).prevSample;
    }
    const x0 = dummyDeter(false);
    for (let i = 0; i < NUM; i++) assertClose(x[i]!, x0[i]! * factor, 1e-5 * Math.max(1, Math.abs(x0[i]! * factor)));
  });

  it('adds noise · σ_up on top of the deterministic part', () => {
    const cfg = parseSchedulerConfig(SD15_JSON);
    const a = createScheduler('EULER_ANCESTRAL', cfg) as EulerAncestralDiscreteScheduler;
    const b = createScheduler('EULER_ANCESTRAL', cfg) as EulerAncestralDiscreteScheduler;
    a.setTimesteps(10);
    b.setTimesteps(10);
    const x = scaled(dummyDeter(false), a.initNoiseSigma);
    const m = dummyDeter(true);
    const noise = new TorchCpuGenerator(3).randn(NUM);
    const t = a.timesteps[0]!;
    const withNoise = a.step(m, t, x, noise).prevSample;
    const without = b.step(m, t, x, new Float32Array(NUM)).prevSample;
    const { sigmaUp } = ancestralSigmas(a.sigmas[0]!, a.sigmas[1]!);
    for (let i = 0; i < NUM; i++) assertClose(withNoise[i]! - without[i]!, noise[i]! * sigmaUp, 1e-4);
  });

  it('requires noise', () => {
    const s = createScheduler('EULER_ANCESTRAL', parseSchedulerConfig(SD15_JSON));
    s.setTimesteps(4);
    assert.throws(() => s.step(new Float32Array(8), s.timesteps[0]!, new Float32Array(8)), /noise/);
  });
});

/** DDIM's update from ᾱ to ᾱ_prev for ε (the form PNDM's formula (9) rewrites). */
function refDdimStep(x: number, eps: number, a: number, aPrev: number): number {
  return Math.sqrt(aPrev) * ((x - Math.sqrt(1 - a) * eps) / Math.sqrt(a)) + Math.sqrt(1 - aPrev) * eps;
}

describe('PNDM (PLMS)', () => {
  const sdAc = refAlphasCumprod(refBetas(1000, 0.00085, 0.012, 'scaled_linear'));

  it('SD 1.5 (skip_prk_steps, leading, steps_offset 1): the second timestep is visited twice', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig(SD15_JSON, 'PNDM'));
    s.setTimesteps(10);
    assert.deepEqual(Array.from(s.timesteps), [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    s.setTimesteps(1);
    assert.deepEqual(Array.from(s.timesteps), [1]);
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(s.isStochastic, false);
  });

  it('steps like diffusers: ε₀ alone, then a re-step from the first sample with (ε₀ + ε₁)/2, then Adams–Bashforth', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig(SD15_JSON, 'PNDM'));
    s.setTimesteps(10);
    const [e0, e1, e2, e3, e4] = [0.3, -0.2, 0.5, 0.1, -0.4];
    const x0 = 0.7;
    const a = (t: number): number => sdAc[t]!;
    const final = 1 - 0.00085; // set_alpha_to_one false: ᾱ₀
    let x: Float32Array = new Float32Array([x0]);
    const outs: number[] = [];
    for (const [i, e] of [e0, e1, e2, e3, e4].entries()) {
      x = s.step(new Float32Array([e]), s.timesteps[i]!, x).prevSample;
      outs.push(x[0]!);
    }
    // 901 → 801 with ε₀.
    const x1 = refDdimStep(x0, e0, a(901), a(801));
    assertClose(outs[0]!, x1, 1e-6);
    // Second visit of 801: again from x(901), 901 → 801, with the mean ε; ε₁ is not kept.
    const x1b = refDdimStep(x0, (e0 + e1) / 2, a(901), a(801));
    assertClose(outs[1]!, x1b, 1e-6);
    // 801 → 701 with (3ε₂ − ε₀)/2, then 701 → 601 with (23ε₃ − 16ε₂ + 5ε₀)/12, then the 4-term formula.
    const x2 = refDdimStep(x1b, (3 * e2 - e0) / 2, a(801), a(701));
    assertClose(outs[2]!, x2, 1e-6);
    const x3 = refDdimStep(x2, (23 * e3 - 16 * e2 + 5 * e0) / 12, a(701), a(601));
    assertClose(outs[3]!, x3, 1e-6);
    const x4 = refDdimStep(x3, (55 * e4 - 59 * e3 + 37 * e2 - 9 * e0) / 24, a(601), a(501));
    assertClose(outs[4]!, x4, 1e-6);
    // The last step goes to ᾱ₀ (set_alpha_to_one false) from t = 1.
    const t = createScheduler('PNDM', parseSchedulerConfig(SD15_JSON, 'PNDM'));
    t.setTimesteps(1);
    assertClose(t.step(new Float32Array([e0]), 1, new Float32Array([x0])).prevSample[0]!, refDdimStep(x0, e0, a(1), final), 1e-6);
  });

  it("img2img from a begin index restarts the warm-up there, so its re-step repeats the first step's level (diffusers' behaviour)", () => {
    const s = createScheduler('PNDM', parseSchedulerConfig(SD15_JSON, 'PNDM'));
    s.setTimesteps(10);
    s.setBeginIndex(4);
    const x = s.addNoise(new Float32Array([0.5]), new Float32Array([1]), s.timesteps[4]!);
    assertClose(x[0]!, Math.sqrt(sdAc[601]!) * 0.5 + Math.sqrt(1 - sdAc[601]!), 1e-6);
    const eps = new Float32Array([0.25]);
    const first = s.step(eps, 601, x).prevSample;
    // At 501 the scheduler steps 601 → 501 again from x (not 501 → 401), as diffusers' counter does.
    const second = s.step(eps, 501, first).prevSample;
    assertClose(second[0]!, first[0]!, 1e-7);
    assertClose(first[0]!, refDdimStep(x[0]!, 0.25, sdAc[601]!, sdAc[501]!), 1e-6);
  });

  it('without skip_prk_steps runs the Runge–Kutta warm-up, which needs at least 4 steps', () => {
    const s = createScheduler('PNDM', parseSchedulerConfig({ ...SD15_JSON, skip_prk_steps: false }, 'PNDM'));
    s.setTimesteps(4);
    assert.deepEqual(Array.from(s.timesteps), [751, 626, 626, 501, 501, 376, 376, 251, 251, 126, 126, 1, 1]);
    assert.throws(() => s.setTimesteps(3), /skip_prk_steps false needs at least 4 steps/);
  });
});

describe('DPM-Solver++ 2M', () => {
  it("timesteps: n + 1 points without the last, as diffusers' linspace / leading", () => {
    const lin = createScheduler('DPMPP_2M', parseSchedulerConfig(SD15_JSON, 'DPMPP_2M'));
    lin.setTimesteps(10);
    // np.linspace(0, 999, 11).round()[::-1][:-1]: 499.5 rounds to 500.
    assert.deepEqual(Array.from(lin.timesteps), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    const lead = createScheduler('DPMPP_2M', parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: 'leading' }, 'DPMPP_2M'));
    lead.setTimesteps(10);
    assert.deepEqual(Array.from(lead.timesteps), [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
    const trail = createScheduler('DPMPP_2M', parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: 'trailing' }, 'DPMPP_2M'));
    trail.setTimesteps(4);
    assert.deepEqual(Array.from(trail.timesteps), [999, 749, 499, 249]);
  });

  it('Karras σ: ρ = 7 spacing from σ_max to σ_min, timesteps the rounded log-σ positions', () => {
    const s = createScheduler('DPMPP_2M_KARRAS', parseSchedulerConfig(SD15_JSON, 'DPMPP_2M_KARRAS')) as DPMSolverMultistepScheduler;
    s.setTimesteps(10);
    const sig = refSigmas(refAlphasCumprod(refBetas(1000, 0.00085, 0.012, 'scaled_linear')));
    const [lo, hi] = [sig[0]! ** (1 / 7), sig[999]! ** (1 / 7)];
    const want = Array.from({ length: 10 }, (_, i) => (hi + (i / 9) * (lo - hi)) ** 7);
    assertArrayClose(s.sigmas, [...want, 0], 1e-12);
    assert.equal(s.timesteps[0], 999);
    assert.equal(s.timesteps[9], 0);
    for (let i = 0; i < 10; i++) {
      // Each timestep is where σ sits between two train σ's in log space, rounded.
      const t = s.timesteps[i]!;
      const logS = Math.log(want[i]!);
      assert.ok(Math.log(sig[Math.max(0, t - 1)]!) <= logS + 1e-12 && logS <= Math.log(sig[Math.min(999, t + 1)]!) + 1e-12, `t ${t}`);
    }
  });

  it('first step is first order, later ones use the previous x̂₀; the last returns x̂₀ (final σ 0)', () => {
    const s = createScheduler('DPMPP_2M', parseSchedulerConfig(SD15_JSON, 'DPMPP_2M')) as DPMSolverMultistepScheduler;
    s.setTimesteps(3);
    const sg = s.sigmas;
    const alpha = (k: number): number => 1 / Math.sqrt(sg[k]! ** 2 + 1);
    // epsilon: x̂₀ = x − σ·ε in σ space, i.e. (x − σ_vp·ε)/α with σ_vp = σ·α.
    const x = 2.5;
    const eps = 0.5;
    const out1 = s.step(new Float32Array([eps]), s.timesteps[0]!, new Float32Array([x]));
    const x0a = x / alpha(0) - sg[0]! * eps;
    assertClose(out1.predOriginalSample[0]!, x0a, 1e-5);
    // First order: x_t = (σ_t α_t / σ_s α_s)·x − α_t(σ_t/σ_s − 1)·x̂₀.
    const x1 = ((sg[1]! * alpha(1)) / (sg[0]! * alpha(0))) * x - alpha(1) * (sg[1]! / sg[0]! - 1) * x0a;
    assertClose(out1.prevSample[0]!, x1, 1e-5);
    // Second order (midpoint): D1 = (x̂₀ − x̂₀_prev)/r0, r0 = log(σ_{s1}/σ_s)/log(σ_s/σ_t).
    const out2 = s.step(new Float32Array([eps]), s.timesteps[1]!, new Float32Array([x1]));
    const x0b = x1 / alpha(1) - sg[1]! * eps;
    const r0 = Math.log(sg[0]! / sg[1]!) / Math.log(sg[1]! / sg[2]!);
    const phi = alpha(2) * (sg[2]! / sg[1]! - 1);
    const x2 = ((sg[2]! * alpha(2)) / (sg[1]! * alpha(1))) * x1 - phi * x0b - 0.5 * phi * ((x0b - x0a) / r0);
    assertClose(out2.prevSample[0]!, x2, 1e-5);
    const out3 = s.step(new Float32Array([eps]), s.timesteps[2]!, new Float32Array([x2]));
    assert.equal(out3.prevSample[0], out3.predOriginalSample[0]);

    // solver_type heun: x_t = ratio·x − φ·D0 + α_t((e^{−h} − 1)/h + 1)·D1.
    const heun = createScheduler('DPMPP_2M', parseSchedulerConfig({ ...SD15_JSON, solver_type: 'heun' }, 'DPMPP_2M'));
    heun.setTimesteps(3);
    heun.step(new Float32Array([eps]), heun.timesteps[0]!, new Float32Array([x]));
    const h = Math.log(sg[1]! / sg[2]!);
    const x2h = ((sg[2]! * alpha(2)) / (sg[1]! * alpha(1))) * x1 - phi * x0b + alpha(2) * ((sg[2]! / sg[1]! - 1) / h + 1) * ((x0b - x0a) / r0);
    assertClose(heun.step(new Float32Array([eps]), heun.timesteps[1]!, new Float32Array([x1])).prevSample[0]!, x2h, 1e-5);
  });

  it('the last step is second order only with final_sigmas_type sigma_min, and not with euler_at_final', () => {
    // With 3 steps a second-order last step differs from a first-order one.
    const last = (json: Record<string, unknown>): number => {
      const s = createScheduler('DPMPP_2M', parseSchedulerConfig({ ...SD15_JSON, ...json }, 'DPMPP_2M'));
      s.setTimesteps(3);
      let x: Float32Array = new Float32Array([2.5]);
      for (const [i, t] of Array.from(s.timesteps).entries()) x = s.step(new Float32Array([0.5 + 0.1 * i]), t, x).prevSample;
      return x[0]!;
    };
    const firstOrder = last({ final_sigmas_type: 'sigma_min', lower_order_final: true });
    assert.notEqual(last({ final_sigmas_type: 'sigma_min', lower_order_final: false }), firstOrder);
    assert.equal(last({ final_sigmas_type: 'sigma_min', lower_order_final: false, euler_at_final: true }), firstOrder);
  });
});

describe('LCM', () => {
  it('timesteps from the distillation schedule (the well-known 4-step 999, 759, 499, 259)', () => {
    const s = createScheduler('LCM', parseSchedulerConfig(SD15_JSON, 'LCM'));
    const cases: Array<[number, number[]]> = [
      [1, [999]],
      [2, [999, 499]],
      [4, [999, 759, 499, 259]],
      [8, [999, 879, 759, 639, 499, 379, 259, 139]],
    ];
    for (const [n, want] of cases) {
      s.setTimesteps(n);
      assert.deepEqual(Array.from(s.timesteps), want, `n=${n}`);
    }
    const short = createScheduler('LCM', parseSchedulerConfig({ original_inference_steps: 4 }, 'LCM'));
    short.setTimesteps(4);
    assert.deepEqual(Array.from(short.timesteps), [999, 749, 499, 249]);
    assert.throws(() => short.setTimesteps(5), /original_inference_steps/);
  });

  it('boundary scalings: c_skip = 0.25 / ((10t)² + 0.25), c_out = 10t / √((10t)² + 0.25)', () => {
    assert.deepEqual(lcmBoundaryScalings(0, 10), { cSkip: 1, cOut: 0 });
    const { cSkip, cOut } = lcmBoundaryScalings(259, 10);
    assertClose(cSkip, 0.25 / (2590 ** 2 + 0.25), 1e-18);
    assertClose(cOut, 2590 / Math.sqrt(2590 ** 2 + 0.25), 1e-15);
  });

  it("re-noises the consistency output to the next timestep with the caller's noise, except on the last step", () => {
    const s = createScheduler('LCM', parseSchedulerConfig(SD15_JSON, 'LCM'));
    s.setTimesteps(2);
    const ac = refAlphasCumprod(refBetas(1000, 0.00085, 0.012, 'scaled_linear'));
    const x = new Float32Array([1.5]);
    const eps = new Float32Array([0.3]);
    assert.throws(() => s.step(eps, 999, x), /noise/);
    const out = s.step(eps, 999, x, new Float32Array([2]));
    const x0 = (1.5 - Math.sqrt(1 - ac[999]!) * 0.3) / Math.sqrt(ac[999]!);
    const { cSkip, cOut } = lcmBoundaryScalings(999, 10);
    const denoised = cOut * x0 + cSkip * 1.5;
    assertClose(out.predOriginalSample[0]!, denoised, 1e-5);
    assertClose(out.prevSample[0]!, Math.sqrt(ac[499]!) * denoised + Math.sqrt(1 - ac[499]!) * 2, 1e-5);
    // The last step needs no noise and returns the consistency output.
    const last = s.step(eps, 499, out.prevSample);
    assert.equal(last.prevSample[0], last.predOriginalSample[0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Convergence with a perfect predictor.
// ---------------------------------------------------------------------------------------------

/**
 * ᾱ of the sample at step `index` (timestep t) of a run of `steps`, from the test's own schedule:
 * the noise level the scheduler actually brought the sample to, which a perfect network knows.
 */
function refAlphaBarAt(name: SchedulerName, cfg: SchedulerConfig, t: number, index: number, steps: number): number {
  const betas =
    cfg.beta_schedule === 'squaredcos_cap_v2'
      ? Array.from(betasForSchedule(cfg))
      : refBetas(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule);
  const ac = refAlphasCumprod(betas);
  const sig = refSigmas(ac);
  if (name === 'DPMPP_2M_KARRAS') {
    // Karras et al. (ρ = 7) from σ_max to σ_min; the timestep is only the nearest label for it.
    const [lo, hi] = [sig[0]! ** (1 / 7), sig[sig.length - 1]! ** (1 / 7)];
    const sigma = (hi + (steps === 1 ? 0 : index / (steps - 1)) * (lo - hi)) ** 7;
    return 1 / (1 + sigma * sigma);
  }
  if (name !== 'EULER' && name !== 'EULER_ANCESTRAL') return ac[t]!;
  // Euler samplers interpolate σ, so the VP noise level they present to the model is 1/(1+σ²).
  const sigma = refInterp(sig, t);
  return 1 / (1 + sigma * sigma);
}

/** The model output a perfect network gives for `input` (the scaled model input) at ᾱ. */
function perfectOutput(cfg: SchedulerConfig, input: Float32Array, x0: Float32Array, abar: number): Float32Array {
  const sa = Math.sqrt(abar);
  const sb = Math.sqrt(1 - abar);
  const out = new Float32Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const eps = (input[i]! - sa * x0[i]!) / sb;
    out[i] = cfg.prediction_type === 'epsilon' ? eps : cfg.prediction_type === 'v_prediction' ? sa * eps - sb * x0[i]! : x0[i]!;
  }
  return out;
}

function runPerfect(name: SchedulerName, cfg: SchedulerConfig, steps: number, x0: Float32Array, beginIndex = 0): Float32Array {
  const s = createScheduler(name, cfg);
  s.setTimesteps(steps);
  const gen = new TorchCpuGenerator(42);
  let x: Float32Array;
  if (beginIndex > 0) {
    s.setBeginIndex(beginIndex);
    x = s.addNoise(
      x0.map((v) => -v),
      gen.randn(x0.length),
      s.timesteps[beginIndex]!,
    );
  } else {
    x = scaled(gen.randn(x0.length), s.initNoiseSigma);
  }
  for (let i = beginIndex; i < s.timesteps.length; i++) {
    const t = s.timesteps[i]!;
    const input = s.scaleModelInput(x, t);
    const out = perfectOutput(cfg, input, x0, refAlphaBarAt(name, cfg, t, i, steps));
    x = s.step(out, t, x, s.isStochastic ? gen.randn(x0.length) : undefined).prevSample;
  }
  return x;
}

describe('convergence with a perfect predictor', () => {
  const x0 = new TorchCpuGenerator(7).randn(NUM).map((v) => Math.tanh(v)); // inside DDIM's clip range

  for (const name of SCHEDULER_NAMES) {
    for (const prediction_type of ['epsilon', 'v_prediction', 'sample'] as const) {
      for (const timestep_spacing of ['linspace', 'leading', 'trailing'] as const) {
        // PNDM is exact here only where diffusers' PLMS is: it steps back by T // n, which is not the
        // gap between linspace timesteps, and it mixes v-predictions made at different noise levels
        // (and refuses prediction_type "sample", tested below).
        if (name === 'PNDM' && (prediction_type !== 'epsilon' || timestep_spacing === 'linspace')) continue;
        it(`${name} ${prediction_type} ${timestep_spacing} ends at x₀ for 5, 10 and 20 steps`, () => {
          // set_alpha_to_one: SD's false makes DDIM stop at noise level ᾱ₀ instead of at x₀.
          const json = { ...SD15_JSON, prediction_type, timestep_spacing, set_alpha_to_one: true };
          const cfg = parseSchedulerConfig(json, name);
          for (const steps of [5, 10, 20]) {
            const x = runPerfect(name, cfg, steps, x0);
            for (let i = 0; i < NUM; i++) assertClose(x[i]!, x0[i]!, 1e-4, `${steps} steps [${i}]`);
          }
        });
      }
    }
    // PNDM's img2img restart is diffusers' quirk, not exact: tested in 'PNDM' below.
    if (name === 'PNDM') continue;
    it(`${name} img2img from a begin index ends at x₀`, () => {
      const json = { ...SD15_JSON, beta_schedule: 'squaredcos_cap_v2', set_alpha_to_one: true };
      const cfg = parseSchedulerConfig(json, name);
      for (const [steps, begin] of [
        [10, 4],
        [20, 15],
      ] as const) {
        const x = runPerfect(name, cfg, steps, x0, begin);
        for (let i = 0; i < NUM; i++) assertClose(x[i]!, x0[i]!, 1e-4, `${steps}/${begin} [${i}]`);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('img2img noising and step bookkeeping', () => {
  it('addNoise uses the σ / ᾱ of the begin index', () => {
    const x0 = dummyDeter(false);
    const noise = dummyDeter(true);
    const euler = createScheduler('EULER', parseSchedulerConfig(SD15_JSON)) as EulerDiscreteScheduler;
    euler.setTimesteps(10);
    euler.setBeginIndex(3);
    const noisy = euler.addNoise(x0, noise, euler.timesteps[3]!);
    const sigma = euler.sigmas[3]!;
    for (let i = 0; i < NUM; i++) assertClose(noisy[i]!, x0[i]! + sigma * noise[i]!, 1e-6);

    const ddim = createScheduler('DDIM', parseSchedulerConfig(SD15_JSON, 'DDIM')) as DDIMScheduler;
    ddim.setTimesteps(10);
    ddim.setBeginIndex(3);
    const t = ddim.timesteps[3]!;
    const abar = refAlphasCumprod(refBetas(1000, 0.00085, 0.012, 'scaled_linear'))[t]!;
    const noisyD = ddim.addNoise(x0, noise, t);
    for (let i = 0; i < NUM; i++) {
      assertClose(noisyD[i]!, Math.sqrt(abar) * x0[i]! + Math.sqrt(1 - abar) * noise[i]!, 1e-6);
    }
  });

  it('Euler finds its start from the timestep when no begin index is set, and refuses unknown ones', () => {
    const s = createScheduler('EULER', parseSchedulerConfig(SD15_JSON)) as EulerDiscreteScheduler;
    s.setTimesteps(10);
    const x = new Float32Array([1, 2]);
    const k = 1 / Math.sqrt(s.sigmas[6]! ** 2 + 1);
    assertArrayClose(s.scaleModelInput(x, s.timesteps[6]!), [k, 2 * k], 1e-7);
    assert.equal(s.currentStepIndex, 6);
    s.setTimesteps(10);
    assert.throws(() => s.scaleModelInput(x, 123.25), /not in this run's schedule/);
  });

  it('scaleModelInput returns a new array and leaves the sample alone', () => {
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, parseSchedulerConfig(SD15_JSON, name));
      s.setTimesteps(5);
      const x = new Float32Array([1, -2, 3]);
      const y = s.scaleModelInput(x, s.timesteps[0]!);
      assert.notEqual(y, x);
      assert.deepEqual(Array.from(x), [1, -2, 3]);
    }
  });

  it('refuses to step past the end, before setTimesteps, or on mismatched lengths', () => {
    const s = createScheduler('EULER', parseSchedulerConfig(SD15_JSON));
    const x = new Float32Array(4);
    assert.throws(() => s.step(x, 999, x), /setTimesteps/);
    s.setTimesteps(2);
    for (const t of s.timesteps) s.step(x, t, x);
    assert.throws(() => s.step(x, 0, x), /already taken/);
    s.setTimesteps(2);
    assert.throws(() => s.step(new Float32Array(3), s.timesteps[0]!, x), /modelOutput has 3 elements/);
    const d = createScheduler('DDIM', parseSchedulerConfig(SD15_JSON, 'DDIM'));
    d.setTimesteps(2);
    assert.throws(() => d.step(x, 10.5, x), /integer train timestep/);
    assert.throws(() => d.setBeginIndex(2), /beginIndex/);
    assert.throws(() => d.setTimesteps(1001), /cannot exceed/);
  });
});

describe('parseSchedulerConfig / createScheduler', () => {
  it("fills diffusers' defaults per scheduler class", () => {
    const euler = parseSchedulerConfig({});
    assert.deepEqual(euler, {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: 'linear',
      prediction_type: 'epsilon',
      timestep_spacing: 'linspace',
      steps_offset: 0,
      trained_betas: null,
    });
    const ddim = parseSchedulerConfig({}, 'DDIM');
    assert.deepEqual([ddim.timestep_spacing, ddim.set_alpha_to_one, ddim.clip_sample, ddim.clip_sample_range], ['leading', true, true, 1]);
    const pndm = parseSchedulerConfig({}, 'PNDM');
    assert.deepEqual([pndm.timestep_spacing, pndm.set_alpha_to_one, pndm.skip_prk_steps], ['leading', false, false]);
    const dpm = parseSchedulerConfig({}, 'DPMPP_2M');
    assert.deepEqual(
      [dpm.timestep_spacing, dpm.solver_type, dpm.lower_order_final, dpm.euler_at_final, dpm.final_sigmas_type],
      ['linspace', 'midpoint', true, false, 'zero'],
    );
    const lcm = parseSchedulerConfig({}, 'LCM');
    assert.deepEqual(
      [lcm.beta_start, lcm.beta_end, lcm.beta_schedule, lcm.original_inference_steps, lcm.timestep_scaling, lcm.clip_sample],
      [0.00085, 0.012, 'scaled_linear', 50, 10, false],
    );
    const sd = parseSchedulerConfig(SD15_JSON, 'DDIM');
    assert.equal(sd.steps_offset, 1);
    assert.equal(sd.set_alpha_to_one, false);
    assert.equal(sd.clip_sample, false);
    assert.equal(parseSchedulerConfig({ timestep_spacing: 'trailing' }, 'DDIM').timestep_spacing, 'trailing');
  });

  it('SD 1.5 DDIM uses ᾱ₀ as the final ᾱ (set_alpha_to_one false)', () => {
    const d = createScheduler('DDIM', parseSchedulerConfig(SD15_JSON, 'DDIM')) as DDIMScheduler;
    assertClose(d.finalAlphaCumprod, 1 - 0.00085, 1e-15);
  });

  it('rejects invalid values with a message naming the key', () => {
    const bad: Array<[unknown, RegExp, SchedulerName?]> = [
      [null, /JSON object/],
      [[1, 2], /JSON object/],
      [{ num_train_timesteps: 0 }, /"num_train_timesteps" is 0/],
      [{ num_train_timesteps: 10.5 }, /num_train_timesteps/],
      [{ beta_start: 'x' }, /"beta_start" is "x"/],
      [{ beta_end: 1.5 }, /beta_end/],
      [{ beta_schedule: 'cosine' }, /"beta_schedule" is "cosine", expected one of "linear"/],
      [{ prediction_type: 'flow' }, /prediction_type/],
      [{ timestep_spacing: 'karras' }, /timestep_spacing/],
      [{ steps_offset: -1 }, /steps_offset/],
      [{ clip_sample: 'yes' }, /clip_sample/, 'DDIM'],
      [{ clip_sample_range: 0 }, /clip_sample_range/, 'LCM'],
      [{ trained_betas: [0.1, 2] }, /trained_betas/],
      [{ num_train_timesteps: 3, trained_betas: [0.1, 0.2] }, /has 2 entries/],
      [{ use_karras_sigmas: true }, /"use_karras_sigmas" is true; only false is implemented/],
      [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr/],
      [{ thresholding: true }, /Unsupported scheduler config for DDIM \(DDIMScheduler\): "thresholding" is true/, 'DDIM'],
      [{ interpolation_type: 'log_linear' }, /interpolation_type/],
      [{ prediction_type: 'sample' }, /"prediction_type" is "sample", expected one of "epsilon", "v_prediction"/, 'PNDM'],
      [{ skip_prk_steps: 1 }, /skip_prk_steps/, 'PNDM'],
      [{ use_exponential_sigmas: true }, /use_exponential_sigmas/, 'DPMPP_2M'],
      [{ thresholding: true }, /thresholding/, 'DPMPP_2M_KARRAS'],
      [{ final_sigmas_type: 'sigma_max' }, /final_sigmas_type/, 'DPMPP_2M'],
      [{ solver_type: 'bh2' }, /solver_type/, 'DPMPP_2M'],
      [{ variance_type: 'learned_range' }, /"variance_type" is "learned_range"; only null is implemented/, 'DPMPP_2M'],
      [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr/, 'LCM'],
      [{ original_inference_steps: 2000 }, /original_inference_steps/, 'LCM'],
    ];
    for (const [json, re, name] of bad) assert.throws(() => parseSchedulerConfig(json, name), re, `${name} ${JSON.stringify(json)}`);
    // Supported-but-spelled-out options are fine.
    parseSchedulerConfig({ use_karras_sigmas: false, interpolation_type: 'linear', timestep_type: 'discrete' });
  });

  it('creates each scheduler and rejects unknown names', () => {
    const cfg = parseSchedulerConfig(SD15_JSON);
    assert.ok(createScheduler('EULER', cfg) instanceof EulerDiscreteScheduler);
    assert.ok(createScheduler('EULER_ANCESTRAL', cfg) instanceof EulerAncestralDiscreteScheduler);
    assert.ok(createScheduler('DDIM', cfg) instanceof DDIMScheduler);
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, cfg);
      assert.equal(s.name, name);
      assert.equal(s.isStochastic, name === 'EULER_ANCESTRAL' || name === 'LCM');
    }
    assert.ok(createScheduler('PNDM', cfg) instanceof PNDMScheduler);
    assert.ok(createScheduler('DPMPP_2M_KARRAS', cfg) instanceof DPMSolverMultistepScheduler);
    assert.ok(createScheduler('LCM', cfg) instanceof LCMScheduler);
    assert.throws(() => createScheduler('UNIPC' as SchedulerName, cfg), /Unknown scheduler "UNIPC"; expected one of EULER_ANCESTRAL, EULER, DDIM, PNDM, /);
  });

  it("ignores keys of other classes, as diffusers' from_config does (an SDXL Euler config, an SD 1.5 PNDM one)", () => {
    const sdxl = {
      _class_name: 'EulerDiscreteScheduler',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      interpolation_type: 'linear',
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      sample_max_value: 1.0,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      timestep_spacing: 'leading',
      trained_betas: null,
      use_karras_sigmas: false,
    };
    for (const name of SCHEDULER_NAMES) {
      for (const json of [sdxl, SD15_JSON]) createScheduler(name, parseSchedulerConfig(json, name)).setTimesteps(4);
    }
    // Options of one class do not stop the others: DDIM's thresholding means nothing to Euler, and
    // DPM-Solver's solver_order / algorithm_type / use_karras_sigmas are what its names choose.
    const dpm = { _class_name: 'DPMSolverMultistepScheduler', solver_order: 3, algorithm_type: 'sde-dpmsolver++', use_karras_sigmas: true, thresholding: true };
    parseSchedulerConfig(dpm, 'EULER_ANCESTRAL');
    parseSchedulerConfig(dpm, 'PNDM');
    assert.throws(() => parseSchedulerConfig(dpm, 'EULER'), /"use_karras_sigmas" is true/);
    assert.throws(() => parseSchedulerConfig(dpm, 'DPMPP_2M'), /"thresholding" is true/);
    parseSchedulerConfig({ ...dpm, thresholding: false }, 'DPMPP_2M');
  });

  it('schedulerForClassName maps diffusers classes, with a warning for the ones not implemented', () => {
    const cases: Array<[string, Record<string, unknown>, SchedulerName, RegExp | null]> = [
      ['PNDMScheduler', {}, 'PNDM', null],
      ['EulerDiscreteScheduler', {}, 'EULER', null],
      ['EulerAncestralDiscreteScheduler', {}, 'EULER_ANCESTRAL', null],
      ['DDIMScheduler', {}, 'DDIM', null],
      ['DPMSolverMultistepScheduler', {}, 'DPMPP_2M', null],
      ['DPMSolverMultistepScheduler', { use_karras_sigmas: false, solver_order: 2, algorithm_type: 'dpmsolver++' }, 'DPMPP_2M', null],
      ['DPMSolverMultistepScheduler', { use_karras_sigmas: true }, 'DPMPP_2M_KARRAS', null],
      ['DPMSolverMultistepScheduler', { solver_order: 3 }, 'DPMPP_2M', /solver_order 3 is not implemented; using DPMPP_2M/],
      ['DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++', use_karras_sigmas: true }, 'DPMPP_2M_KARRAS', /algorithm_type "sde-dpmsolver\+\+"/],
      ['LCMScheduler', {}, 'LCM', null],
      ['UniPCMultistepScheduler', {}, 'DPMPP_2M', /UniPCMultistepScheduler is not implemented; using DPMPP_2M \(DPMSolverMultistepScheduler\)/],
      ['LMSDiscreteScheduler', {}, 'EULER', /LMSDiscreteScheduler is not implemented; using EULER \(EulerDiscreteScheduler\)/],
      ['DDPMScheduler', {}, 'DDIM', /DDPMScheduler/],
      ['', {}, 'EULER', /without _class_name/],
    ];
    for (const [className, config, name, warning] of cases) {
      const got = schedulerForClassName(className, config);
      assert.equal(got.name, name, className);
      if (warning) assert.match(got.warning ?? '', warning, className);
      else assert.equal(got.warning, null, className);
    }
  });
});

describe('documentation', () => {
  it('lists every scheduler, beside the diffusers class that schedulerForClassName maps to it', () => {
    const models = readFileSync(join(PROJECT_ROOT, 'docs/models.md'), 'utf8');
    for (const name of SCHEDULER_NAMES) {
      const row = new RegExp(`^\\| \`${name}\` \\| \`(\\w+)\``, 'm').exec(models);
      assert.ok(row, `docs/models.md has no row for ${name}`);
      const config = name === 'DPMPP_2M_KARRAS' ? { use_karras_sigmas: true } : {};
      assert.deepEqual(schedulerForClassName(row[1]!, config), { name, warning: null }, `docs/models.md: ${name}`);
      for (const doc of ['docs/api.md', 'docs/rest.md']) {
        assert.ok(readFileSync(join(PROJECT_ROOT, doc), 'utf8').includes(`\`${name}\``), `${doc}: ${name}`);
      }
    }
  });
});
