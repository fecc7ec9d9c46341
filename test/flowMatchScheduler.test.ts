/**
 * FLOW_MATCH_EULER (diffusers' FlowMatchEulerDiscreteScheduler): schedules re-derived here in
 * float64 from diffusers' formulas for the real SD3 medium / FLUX.1-dev / FLUX.1-schnell configs,
 * float32 tables derived separately (see DIFFUSERS_TABLES), and full loops under an exact velocity
 * model, txt2img and img2img.
 *
 * diffusers has no tests/schedulers/test_scheduler_flow_match_euler_discrete.py on main; the ones
 * in open pull requests test index_for_timestep parity (reproduced below) and a fix of the
 * double-shifted σ_min that main does not have (so main's behaviour is what is reproduced here).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  FLOW_MATCH_DEFAULTS,
  FlowMatchEulerDiscreteScheduler,
  calculateShift,
  flowImg2ImgBeginIndex,
  fluxSigmas,
  imageSeqLen,
  parseFlowMatchSchedulerConfig,
} from '../src/inference/schedulers/flowMatchEuler.js';
import type { Scheduler, SetTimestepsOptions } from '../src/inference/schedulers/types.js';

// ---------------------------------------------------------------------------------------------
// Real configs (scheduler/scheduler_config.json of each model repo).
// ---------------------------------------------------------------------------------------------

const SD3_MEDIUM = { _class_name: 'FlowMatchEulerDiscreteScheduler', _diffusers_version: '0.29.0.dev0', num_train_timesteps: 1000, shift: 3.0 };
const FLUX_DEV = {
  _class_name: 'FlowMatchEulerDiscreteScheduler',
  _diffusers_version: '0.30.0.dev0',
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
};
const FLUX_SCHNELL = {
  _class_name: 'FlowMatchEulerDiscreteScheduler',
  _diffusers_version: '0.30.0.dev0',
  base_image_seq_len: 256,
  base_shift: 0.5,
  max_image_seq_len: 4096,
  max_shift: 1.15,
  num_train_timesteps: 1000,
  shift: 1.0,
  use_dynamic_shifting: false,
};

const make = (json: object): FlowMatchEulerDiscreteScheduler => new FlowMatchEulerDiscreteScheduler(parseFlowMatchSchedulerConfig(json));

// ---------------------------------------------------------------------------------------------
// Independent float64 reference math (written from diffusers' formulas, sharing nothing with src/).
// ---------------------------------------------------------------------------------------------

const refLinspace = (a: number, b: number, n: number): number[] => Array.from({ length: n }, (_, i) => (n === 1 ? a : a + ((b - a) * i) / (n - 1)));
const refStaticShift = (shift: number, s: number): number => (shift * s) / (1 + (shift - 1) * s);
const refExpShift = (mu: number, s: number): number => Math.exp(mu) / (Math.exp(mu) + (1 / s - 1));
const refLinearShift = (mu: number, s: number): number => mu / (mu + (1 / s - 1));
const refMu = (seq: number, baseSeq: number, maxSeq: number, baseShift: number, maxShift: number): number =>
  baseShift + ((maxShift - baseShift) * (seq - baseSeq)) / (maxSeq - baseSeq);

/**
 * SD3-style default schedule (no custom sigmas): linspace between σ_max and σ_min as diffusers
 * stores them at construction, i.e. already statically shifted, then shifted again.
 */
function refDefaultSigmas(shift: number, T: number, n: number): number[] {
  const sMax = refStaticShift(shift, 1);
  const sMin = refStaticShift(shift, 1 / T);
  return refLinspace(sMax, sMin, n).map((s) => refStaticShift(shift, s));
}

const sum = (xs: ArrayLike<number>): number => Array.from(xs).reduce((a, b) => a + b, 0);

function assertClose(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected}, got ${actual} (|diff| ${Math.abs(actual - expected)} > ${tol})`);
}

/** Relative tolerance (float32 σ and timesteps against float64 formulas: 2^-24 ≈ 6e-8 each op). */
function assertArrayClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    assertClose(actual[i]!, e, relTol * Math.max(1, Math.abs(e)), `${what}[${i}]`);
  }
}

/**
 * float32 tables derived separately, in Python with NumPy 2.4, by following diffusers' dtype flow
 * (torch float32 tensor ops replayed as np.float32 ops; float64 numpy where diffusers uses numpy
 * on float64 input): a second derivation, independent of src/, that pins the exact float32 values
 * a diffusers run feeds to the transformer. First three, last three, and sums (of the float32
 * values, accumulated in float64).
 */
const DIFFUSERS_TABLES = {
  sd3Medium28: {
    sigmaMin: 0.002994012087583542,
    head: [1000.0, 987.380615234375, 974.1077270507812],
    tail: [199.8269805908203, 110.90573120117188, 8.928571701049805],
    lastSigma: 0.008928571827709675,
    sigmaSum: 18.803925511427224,
    timestepSum: 18803.92565727234,
  },
  fluxDev28At1024: {
    head: [1000.0, 988.4086303710938, 976.2224731445312],
    tail: [274.8279724121094, 195.45458984375, 104.72090148925781],
    lastSigma: 0.10472089797258377,
    sigmaSum: 19.632336027920246,
    timestepSum: 19632.336044311523,
  },
};

// ---------------------------------------------------------------------------------------------

describe('FLOW_MATCH_EULER config', () => {
  it('fills diffusers defaults and reads the real configs', () => {
    assert.deepEqual(parseFlowMatchSchedulerConfig({}), FLOW_MATCH_DEFAULTS);
    const sd3 = parseFlowMatchSchedulerConfig(SD3_MEDIUM);
    assert.equal(sd3.shift, 3);
    assert.equal(sd3.use_dynamic_shifting, false);
    const dev = parseFlowMatchSchedulerConfig(FLUX_DEV);
    assert.equal(dev.use_dynamic_shifting, true);
    assert.equal(dev.max_shift, 1.15);
    assert.equal(parseFlowMatchSchedulerConfig({ shift_terminal: null }).shift_terminal, null);
    assert.equal(parseFlowMatchSchedulerConfig({ shift_terminal: 0 }).shift_terminal, null, '0 is off in diffusers');
  });

  it('refuses what it does not implement and invalid values, naming the key', () => {
    assert.throws(() => parseFlowMatchSchedulerConfig({ use_beta_sigmas: true }), /"use_beta_sigmas" is true; only false is implemented/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ use_karras_sigmas: true, use_exponential_sigmas: true }), /only one of/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ time_shift_type: 'cosine' }), /"time_shift_type" is "cosine"/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ shift: 0 }), /"shift" is 0/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ shift_terminal: 1 }), /"shift_terminal" is 1/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ num_train_timesteps: 10.5 }), /"num_train_timesteps"/);
    assert.throws(() => parseFlowMatchSchedulerConfig({ stochastic_sampling: 'yes' }), /"stochastic_sampling" is "yes"/);
    assert.throws(() => parseFlowMatchSchedulerConfig([]), /expected a JSON object/);
  });

  it('calculateShift and imageSeqLen give FLUX mu per resolution', () => {
    const dev = parseFlowMatchSchedulerConfig(FLUX_DEV);
    assert.equal(imageSeqLen(1024, 1024), 4096);
    assert.equal(imageSeqLen(512, 768), 32 * 48);
    assertClose(calculateShift(4096, dev), 1.15, 1e-15);
    assertClose(calculateShift(256, dev), 0.5, 1e-15);
    assertClose(calculateShift(1024, dev), refMu(1024, 256, 4096, 0.5, 1.15), 1e-15);
    assertClose(calculateShift(8192, dev), refMu(8192, 256, 4096, 0.5, 1.15), 1e-14); // extrapolates
  });
});

describe('FLOW_MATCH_EULER schedules', () => {
  it('SD3 medium, 28 steps (static shift 3, no custom sigmas)', () => {
    const s = make(SD3_MEDIUM);
    s.setTimesteps(28);
    const ref = refDefaultSigmas(3, 1000, 28);
    assertArrayClose(s.sigmas, [...ref, 0], 2e-7, 'sigmas');
    assertArrayClose(
      s.timesteps,
      ref.map((x) => x * 1000),
      2e-7,
      'timesteps',
    );
    assert.equal(s.sigmas[28], 0);
    assertClose(s.sigmaMin, 0.003 / 1.002, 1e-9, 'sigma_min is the shifted 1/T');
    // The last σ is shifted twice (diffusers main): 3·σ_min/(1 + 2·σ_min) with σ_min = 0.003/1.002.
    assertClose(s.sigmas[27]!, 0.00892857142857143, 1e-9);
    assertClose(sum(s.timesteps), sum(ref) * 1000, 1e-3);

    const t = DIFFUSERS_TABLES.sd3Medium28;
    assert.equal(s.sigmaMin, t.sigmaMin);
    assert.deepEqual(Array.from(s.timesteps.subarray(0, 3)), t.head);
    assert.deepEqual(Array.from(s.timesteps.subarray(25)), t.tail);
    assert.equal(s.sigmas[27], t.lastSigma);
    assert.equal(sum(s.sigmas), t.sigmaSum);
    assert.equal(sum(s.timesteps), t.timestepSum);
  });

  it('FLUX.1-dev at 1024² (dynamic exponential shift, mu from 4096 tokens), 28 steps', () => {
    const s = make(FLUX_DEV);
    const mu = calculateShift(imageSeqLen(1024, 1024), s.config);
    const sigmas = fluxSigmas(28);
    assertArrayClose(sigmas, refLinspace(1, 1 / 28, 28), 1e-15, 'pipeline sigmas');
    s.setTimesteps(28, { sigmas, mu });
    const ref = refLinspace(1, 1 / 28, 28).map((x) => refExpShift(1.15, x));
    assertArrayClose(s.sigmas, [...ref, 0], 3e-7, 'sigmas');
    assertArrayClose(
      s.timesteps,
      ref.map((x) => x * 1000),
      3e-7,
      'timesteps',
    );
    assertClose(sum(s.sigmas), sum(ref), 2e-6);

    const t = DIFFUSERS_TABLES.fluxDev28At1024;
    assert.deepEqual(Array.from(s.timesteps.subarray(0, 3)), t.head);
    assert.deepEqual(Array.from(s.timesteps.subarray(25)), t.tail);
    assert.equal(s.sigmas[27], t.lastSigma);
    assert.equal(sum(s.sigmas), t.sigmaSum);
    assert.equal(sum(s.timesteps), t.timestepSum);
  });

  it('FLUX.1-dev needs mu; other resolutions shift less', () => {
    const s = make(FLUX_DEV);
    assert.throws(() => s.setTimesteps(28, { sigmas: fluxSigmas(28) }), /needs mu/);
    const mu = calculateShift(imageSeqLen(512, 512), s.config);
    s.setTimesteps(20, { sigmas: fluxSigmas(20), mu });
    const ref = refLinspace(1, 1 / 20, 20).map((x) => refExpShift(refMu(1024, 256, 4096, 0.5, 1.15), x));
    assertArrayClose(s.sigmas.subarray(0, 20), ref, 3e-7);
  });

  it('FLUX.1-schnell, 4 steps (shift 1, sigmas passed, mu ignored)', () => {
    const s = make(FLUX_SCHNELL);
    s.setTimesteps(4, { sigmas: fluxSigmas(4), mu: 1.15 });
    assert.deepEqual(Array.from(s.timesteps), [1000, 750, 500, 250]);
    assert.deepEqual(Array.from(s.sigmas), [1, 0.75, 0.5, 0.25, 0]);
    // Without custom sigmas (shift 1): linspace(1, 0.001, n), as a plain schedule.
    s.setTimesteps(4);
    assertArrayClose(s.sigmas, [...refLinspace(1, 0.001, 4), 0], 1e-7);
  });

  it('linear time shift, shift_terminal (Qwen-Image style) and custom timesteps', () => {
    const lin = make({ use_dynamic_shifting: true, time_shift_type: 'linear' });
    lin.setTimesteps(10, { sigmas: fluxSigmas(10), mu: 2 });
    assertArrayClose(
      lin.sigmas.subarray(0, 10),
      refLinspace(1, 0.1, 10).map((x) => refLinearShift(2, x)),
      3e-7,
    );

    const qwen = make({ use_dynamic_shifting: true, base_shift: 0.5, max_shift: 0.9, base_image_seq_len: 256, max_image_seq_len: 8192, shift_terminal: 0.02 });
    const mu = calculateShift(4096, qwen.config);
    qwen.setTimesteps(12, { sigmas: fluxSigmas(12), mu });
    const shifted = refLinspace(1, 1 / 12, 12).map((x) => refExpShift(refMu(4096, 256, 8192, 0.5, 0.9), x));
    const scale = (1 - shifted[11]!) / (1 - 0.02);
    const ref = shifted.map((x) => 1 - (1 - x) / scale);
    assertArrayClose(qwen.sigmas.subarray(0, 12), ref, 5e-7, 'stretched');
    assertClose(qwen.sigmas[11]!, 0.02, 1e-7, 'ends at shift_terminal');

    // Custom timesteps are σ·T before shifting; SD3's shift then applies to them.
    const sd3 = make(SD3_MEDIUM);
    sd3.setTimesteps(3, { timesteps: [1000, 500, 100] });
    assertArrayClose(
      sd3.timesteps,
      [1, 0.5, 0.1].map((x) => refStaticShift(3, x) * 1000),
      2e-7,
    );
    assert.throws(() => sd3.setTimesteps(3, { timesteps: [1000, 500] }), /timesteps has 2 values but numInferenceSteps is 3/);
    assert.throws(() => sd3.setTimesteps(2, { sigmas: [1, Number.NaN] }), /finite/);
  });

  it('Karras and exponential respacing between the shifted end points; invert_sigmas', () => {
    const n = 15;
    const shifted = refDefaultSigmas(3, 1000, n);
    const [hi, lo] = [shifted[0]!, shifted[n - 1]!];
    const karras = make({ ...SD3_MEDIUM, use_karras_sigmas: true });
    karras.setTimesteps(n);
    const rho = 7;
    const refK = refLinspace(0, 1, n).map((r) => (hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho);
    assertArrayClose(karras.sigmas, [...refK, 0], 3e-7, 'karras');
    const exp = make({ ...SD3_MEDIUM, use_exponential_sigmas: true });
    exp.setTimesteps(n);
    const refE = refLinspace(Math.log(hi), Math.log(lo), n).map(Math.exp);
    assertArrayClose(exp.sigmas, [...refE, 0], 3e-7, 'exponential');

    const inv = make({ ...SD3_MEDIUM, invert_sigmas: true });
    inv.setTimesteps(n);
    // 1 − σ is taken of the float32 σ, so only its absolute error (≈ 6e-8) carries over.
    assertArrayClose(inv.sigmas, [...shifted.map((x) => 1 - x), 1], 2e-7, 'inverted');
    assertArrayClose(
      inv.timesteps.map((t) => t / 1000),
      shifted.map((x) => 1 - x),
      2e-7,
    );
  });

  it('one step and the default-config contract', () => {
    const s = make({});
    s.setTimesteps(1);
    assert.deepEqual(Array.from(s.timesteps), [1000]);
    assert.deepEqual(Array.from(s.sigmas), [1, 0]);
    assert.equal(s.name, 'FLOW_MATCH_EULER');
    assert.equal(s.initNoiseSigma, 1);
    assert.equal(s.isStochastic, false);
    assert.equal(make({ stochastic_sampling: true }).isStochastic, true);
    assert.throws(() => s.setTimesteps(0), /positive integer/);
  });
});

// ---------------------------------------------------------------------------------------------
// Loops with an exact velocity model.
// ---------------------------------------------------------------------------------------------

const N = 2 * 4 * 8 * 8;

/** Deterministic pseudo-normal data (LCG + Box–Muller); values of either sign, |x| up to ~4. */
function field(seed: number): Float32Array {
  let s = seed >>> 0;
  const u = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(N);
  for (let i = 0; i < N; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

const X0 = field(1);
const NOISE = field(2);
const velocity = (noise: Float32Array): Float32Array => noise.map((e, i) => e - X0[i]!);

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * The pipeline's loop: scale (identity), model, step. With v = ε − x₀ every step stays on the
 * straight path x_σ = (1 − σ)·x₀ + σ·ε, so x̂₀ is x₀ throughout and the loop lands on x₀.
 */
function runLoop(s: Scheduler, start: Float32Array, timesteps: ArrayLike<number>, noiseFor: (step: number) => Float32Array): Float32Array {
  let x = start;
  const v = velocity(NOISE);
  for (let k = 0; k < timesteps.length; k++) {
    const t = timesteps[k]!;
    const input = s.scaleModelInput(x, t);
    assert.deepEqual(input, x, 'scaleModelInput is the identity');
    const fresh = noiseFor(k);
    // With stochastic sampling the sample is re-noised with fresh noise, so the exact velocity is
    // fresh-noise − x₀ from the second step on.
    const out = s.step(s.isStochastic && k > 0 ? velocity(noiseFor(k - 1)) : v, t, x, s.isStochastic ? fresh : undefined);
    assert.ok(maxAbsDiff(out.predOriginalSample, X0) < 1e-5, `x̂₀ at step ${k}: ${maxAbsDiff(out.predOriginalSample, X0)}`);
    x = out.prevSample;
  }
  return x;
}

interface Case {
  name: string;
  json: object;
  steps: number;
  options: () => SetTimestepsOptions;
  /** Float64 reference σ schedule (without the terminal 0), where one is written above. */
  ref?: () => number[];
}

const CASES: Case[] = [
  { name: 'SD3 medium, 28 steps', json: SD3_MEDIUM, steps: 28, options: () => ({}), ref: () => refDefaultSigmas(3, 1000, 28) },
  {
    name: 'FLUX.1-dev 1024², 28 steps',
    json: FLUX_DEV,
    steps: 28,
    options: () => ({ sigmas: fluxSigmas(28), mu: calculateShift(4096, parseFlowMatchSchedulerConfig(FLUX_DEV)) }),
    ref: () => refLinspace(1, 1 / 28, 28).map((x) => refExpShift(1.15, x)),
  },
  { name: 'FLUX.1-schnell, 4 steps', json: FLUX_SCHNELL, steps: 4, options: () => ({ sigmas: fluxSigmas(4), mu: 1.15 }), ref: () => [1, 0.75, 0.5, 0.25] },
  { name: 'defaults, 1 step', json: {}, steps: 1, options: () => ({}) },
  { name: 'linear time shift', json: { use_dynamic_shifting: true, time_shift_type: 'linear' }, steps: 9, options: () => ({ sigmas: fluxSigmas(9), mu: 1.5 }) },
  { name: 'shift_terminal', json: { ...FLUX_DEV, shift_terminal: 0.02 }, steps: 10, options: () => ({ sigmas: fluxSigmas(10), mu: 0.8 }) },
  { name: 'Karras sigmas', json: { ...SD3_MEDIUM, use_karras_sigmas: true }, steps: 12, options: () => ({}) },
  { name: 'exponential sigmas', json: { ...SD3_MEDIUM, use_exponential_sigmas: true }, steps: 12, options: () => ({}) },
  { name: 'stochastic sampling', json: { ...SD3_MEDIUM, stochastic_sampling: true }, steps: 10, options: () => ({}) },
];

describe('FLOW_MATCH_EULER loops with an exact velocity model', () => {
  for (const c of CASES) {
    it(`${c.name}: txt2img ends at x₀`, () => {
      const s = make(c.json);
      s.setTimesteps(c.steps, c.options());
      const start = NOISE.map((e) => e * s.initNoiseSigma);
      const final = runLoop(s, start, s.timesteps, (k) => field(100 + k));
      assert.ok(maxAbsDiff(final, X0) < 1e-5, `|x − x₀| = ${maxAbsDiff(final, X0)}`);
      assert.throws(() => s.step(velocity(NOISE), s.timesteps[0]!, final, field(99)), /already taken/);
    });

    it(`${c.name}: img2img at strength 0.5 starts at σ[tStart] and ends at x₀`, () => {
      const s = make(c.json);
      s.setTimesteps(c.steps, c.options());
      const tStart = flowImg2ImgBeginIndex(c.steps, 0.5);
      assert.equal(tStart, Math.trunc(c.steps - c.steps * 0.5));
      s.setBeginIndex(tStart);
      const timesteps = s.timesteps.subarray(tStart);
      const noised = s.addNoise(X0, NOISE, timesteps[0]!);
      const sigma = s.sigmas[tStart]!;
      if (c.ref) assertClose(sigma, c.ref()[tStart]!, 3e-7, `σ[${tStart}]`);
      for (let i = 0; i < N; i++) assertClose(noised[i]!, sigma * NOISE[i]! + (1 - sigma) * X0[i]!, 1e-6, `noised[${i}]`);
      const final = runLoop(s, noised, timesteps, (k) => field(200 + k));
      assert.ok(maxAbsDiff(final, X0) < 1e-5, `|x − x₀| = ${maxAbsDiff(final, X0)}`);
    });
  }

  it('in-place stepping through `out` matches fresh arrays', () => {
    const s = make(SD3_MEDIUM);
    s.setTimesteps(5);
    const x = NOISE.slice();
    const pred = new Float32Array(N);
    const v = velocity(NOISE);
    const fresh = make(SD3_MEDIUM);
    fresh.setTimesteps(5);
    let y: Float32Array = NOISE.slice();
    for (const t of s.timesteps) {
      s.step(v, t, x, undefined, { prevSample: x, predOriginalSample: pred });
      y = fresh.step(v, t, y).prevSample;
      assert.deepEqual(x, y);
    }
  });

  it('Euler update is x + (σ_next − σ)·v exactly for an arbitrary model output', () => {
    const s = make(FLUX_DEV);
    s.setTimesteps(6, { sigmas: fluxSigmas(6), mu: 0.9 });
    const x = field(7);
    const v = field(8);
    s.setBeginIndex(2);
    const { prevSample, predOriginalSample } = s.step(v, s.timesteps[2]!, x);
    const [sig, next] = [s.sigmas[2]!, s.sigmas[3]!];
    for (let i = 0; i < N; i++) {
      assertClose(prevSample[i]!, x[i]! + (next - sig) * v[i]!, 1e-6);
      assertClose(predOriginalSample[i]!, x[i]! - sig * v[i]!, 1e-6);
    }
  });
});

describe('FLOW_MATCH_EULER indices, noising and img2img start', () => {
  it('index_for_timestep finds each timestep (diffusers PR test parity) and refuses strangers', () => {
    for (const [shift, n] of [
      [1, 10],
      [3, 20],
    ] as const) {
      const s = make({ shift });
      s.setTimesteps(n);
      s.timesteps.forEach((t, i) => assert.equal(s.indexForTimestep(t), i));
    }
    const s = make({});
    s.setTimesteps(4);
    assert.throws(() => s.indexForTimestep(123.4), /not in this run's schedule/);
    assert.throws(() => s.step(velocity(NOISE), 123.4, NOISE), /not in this run's schedule/);
    // A duplicated timestep maps to its second occurrence (so an img2img start does not skip a σ).
    const dup = make({});
    dup.setTimesteps(3, { sigmas: [1, 0.5, 0.5] });
    assert.equal(dup.indexForTimestep(500), 2);
  });

  it('first step without a begin index starts where the timestep is', () => {
    const s = make(SD3_MEDIUM);
    s.setTimesteps(10);
    s.step(velocity(NOISE), s.timesteps[4]!, NOISE);
    assert.equal(s.currentStepIndex, 5);
  });

  it('addNoise: σ from the timestep without a begin index, from the run in progress after a step', () => {
    const s = make(SD3_MEDIUM);
    s.setTimesteps(10);
    const at = (k: number): number => s.sigmas[k]!;
    const check = (out: Float32Array, sigma: number): void => {
      for (let i = 0; i < N; i += 37) assertClose(out[i]!, sigma * NOISE[i]! + (1 - sigma) * X0[i]!, 1e-6);
    };
    check(s.addNoise(X0, NOISE, s.timesteps[6]!), at(6));
    s.setBeginIndex(3);
    check(s.addNoise(X0, NOISE, s.timesteps[6]!), at(3));
    const x = s.addNoise(X0, NOISE, s.timesteps[3]!);
    s.step(velocity(NOISE), s.timesteps[3]!, x);
    // Inpainting re-noises the known region to the next step's level.
    check(s.addNoise(X0, NOISE, s.timesteps[4]!), at(4));
    assert.throws(() => make({}).addNoise(X0, NOISE, 1000), /call setTimesteps/);
  });

  it('begin index from the flow pipelines get_timesteps (unrounded n·strength)', () => {
    assert.equal(flowImg2ImgBeginIndex(28, 0.5), 14);
    assert.equal(flowImg2ImgBeginIndex(28, 1), 0);
    // 28 − 8.4 = 19.6 → 19 (the Stable Diffusion pipelines floor n·strength first and get 20).
    assert.equal(flowImg2ImgBeginIndex(28, 0.3), 19);
    assert.equal(flowImg2ImgBeginIndex(10, 0.75), 2);
    assert.equal(flowImg2ImgBeginIndex(4, 0.6), 1);
    assert.equal(flowImg2ImgBeginIndex(4, 0.2), 3);
    assert.throws(() => flowImg2ImgBeginIndex(4, 0), /leaves 0 of 4 steps/);
    assert.throws(() => flowImg2ImgBeginIndex(4, 1.5), /strength must be in \[0, 1\]/);
    const s = make({});
    s.setTimesteps(4);
    assert.throws(() => s.setBeginIndex(4), /beginIndex must be an integer in \[0, 3\]/);
  });

  it('stochastic sampling needs noise', () => {
    const s = make({ stochastic_sampling: true });
    s.setTimesteps(3);
    assert.throws(() => s.step(velocity(NOISE), s.timesteps[0]!, NOISE), /needs noise/);
  });
});
