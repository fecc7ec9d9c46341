/**
 * Scheduler tests: schedule values re-derived independently in float64 here, diffusers' own
 * expected full-loop numbers (tests/schedulers/test_scheduler_{euler,euler_ancestral,ddim}.py),
 * and convergence under a perfect noise predictor.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DDIMScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  SCHEDULER_NAMES,
  ancestralSigmas,
  alphasCumprod,
  betasForSchedule,
  createScheduler,
  inferenceTimesteps,
  parseSchedulerConfig,
  roundHalfEven,
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

function refTimesteps(
  T: number,
  n: number,
  spacing: 'linspace' | 'leading' | 'trailing',
  offset: number,
  euler: boolean,
): number[] {
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
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what} expected ${expected}, got ${actual} (|diff| ${Math.abs(actual - expected)} > ${tol})`,
  );
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
      [14.614641229333639, 5.948916172611938, 2.9183071154268285, 1.6155825101612464, 0.9323579668348474,
        0.49355304576156867, 0.029167158151720367, 0],
      1e-10,
    );

    // Euler leading, 10 steps: 901, 801, ..., 1 and init σ = √(σ(901)² + 1).
    const eulerLeading = createScheduler(
      'EULER',
      parseSchedulerConfig({ ...SD15_JSON, timestep_spacing: 'leading' }),
    );
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
      [999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333, 291, 250, 208, 166, 125, 83,
        42, 0],
    );
    // np.round(np.arange(1000, 0, -62.5)) - 1.
    const trailing = inferenceTimesteps({
      numTrainTimesteps: 1000,
      numInferenceSteps: 16,
      spacing: 'trailing',
      stepsOffset: 1,
      flavor: 'ddim',
    });
    assert.deepEqual(
      Array.from(trailing),
      [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61],
    );
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
    const s = createScheduler(
      'EULER_ANCESTRAL',
      parseSchedulerConfig({ ...EULER_TEST_CONFIG, prediction_type: 'v_prediction' }),
    );
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
    const yes = createScheduler(
      'DDIM',
      parseSchedulerConfig({ ...DDIM_TEST_CONFIG, set_alpha_to_one: true, beta_start: 0.01 }, 'DDIM'),
    );
    expectDiffusers(fullLoop(yes, 10, { stepOnScaledSample: false }), 149.8295, 0.1951);
    const no = createScheduler(
      'DDIM',
      parseSchedulerConfig({ ...DDIM_TEST_CONFIG, set_alpha_to_one: false, beta_start: 0.01 }, 'DDIM'),
    );
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

// ---------------------------------------------------------------------------------------------
// Convergence with a perfect predictor.
// ---------------------------------------------------------------------------------------------

/** ᾱ at a (possibly fractional) timestep, from the test's own schedule. */
function refAlphaBarAt(name: SchedulerName, cfg: SchedulerConfig, t: number): number {
  const betas =
    cfg.beta_schedule === 'squaredcos_cap_v2'
      ? Array.from(betasForSchedule(cfg))
      : refBetas(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule);
  const ac = refAlphasCumprod(betas);
  if (name === 'DDIM') return ac[t]!;
  // Euler samplers interpolate σ, so the VP noise level they present to the model is 1/(1+σ²).
  const sigma = refInterp(refSigmas(ac), t);
  return 1 / (1 + sigma * sigma);
}

/** The model output a perfect network gives for `input` (the scaled model input) at ᾱ. */
function perfectOutput(cfg: SchedulerConfig, input: Float32Array, x0: Float32Array, abar: number): Float32Array {
  const sa = Math.sqrt(abar);
  const sb = Math.sqrt(1 - abar);
  const out = new Float32Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const eps = (input[i]! - sa * x0[i]!) / sb;
    out[i] =
      cfg.prediction_type === 'epsilon' ? eps : cfg.prediction_type === 'v_prediction' ? sa * eps - sb * x0[i]! : x0[i]!;
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
    x = s.addNoise(x0.map((v) => -v), gen.randn(x0.length), s.timesteps[beginIndex]!);
  } else {
    x = scaled(gen.randn(x0.length), s.initNoiseSigma);
  }
  for (const t of s.timesteps.subarray(beginIndex)) {
    const input = s.scaleModelInput(x, t);
    const out = perfectOutput(cfg, input, x0, refAlphaBarAt(name, cfg, t));
    x = s.step(out, t, x, s.isStochastic ? gen.randn(x0.length) : undefined).prevSample;
  }
  return x;
}

describe('convergence with a perfect predictor', () => {
  const x0 = new TorchCpuGenerator(7).randn(NUM).map((v) => Math.tanh(v)); // inside DDIM's clip range

  for (const name of SCHEDULER_NAMES) {
    for (const prediction_type of ['epsilon', 'v_prediction', 'sample'] as const) {
      for (const timestep_spacing of ['linspace', 'leading', 'trailing'] as const) {
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
    it(`${name} img2img from a begin index ends at x₀`, () => {
      const json = { ...SD15_JSON, beta_schedule: 'squaredcos_cap_v2', set_alpha_to_one: true };
      const cfg = parseSchedulerConfig(json, name);
      for (const [steps, begin] of [[10, 4], [20, 15]] as const) {
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
      set_alpha_to_one: true,
      clip_sample: true,
      clip_sample_range: 1,
      trained_betas: null,
    });
    assert.equal(parseSchedulerConfig({}, 'DDIM').timestep_spacing, 'leading');
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
    const bad: Array<[unknown, RegExp]> = [
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
      [{ clip_sample: 'yes' }, /clip_sample/],
      [{ clip_sample_range: 0 }, /clip_sample_range/],
      [{ trained_betas: [0.1, 2] }, /trained_betas/],
      [{ num_train_timesteps: 3, trained_betas: [0.1, 0.2] }, /has 2 entries/],
      [{ use_karras_sigmas: true }, /"use_karras_sigmas" is true; only false is implemented/],
      [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr/],
      [{ thresholding: true }, /thresholding/],
      [{ interpolation_type: 'log_linear' }, /interpolation_type/],
    ];
    for (const [json, re] of bad) assert.throws(() => parseSchedulerConfig(json), re, JSON.stringify(json));
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
      assert.equal(s.isStochastic, name === 'EULER_ANCESTRAL');
    }
    assert.throws(() => createScheduler('PNDM' as SchedulerName, cfg), /Unknown scheduler "PNDM"/);
  });
});
