/** Seeds and noise: per-output seed derivation, torch's CPU generator (checked against torch's own draws), the older xoshiro stream. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createNoiseGenerator, deriveSeed, MAX_SEED, NOISE_GENERATORS, normalizeSeed, randomSeed, TorchNoise, XoshiroNoise } from '../src/inference/random.js';

describe('normalizeSeed', () => {
  it('keeps seeds in 0..2^31-1 and wraps others like a 32-bit cast', () => {
    assert.equal(normalizeSeed(0), 0);
    assert.equal(normalizeSeed(42), 42);
    assert.equal(normalizeSeed(MAX_SEED), MAX_SEED);
    assert.equal(normalizeSeed(2 ** 31), 0);
    assert.equal(normalizeSeed(-1), MAX_SEED);
    assert.equal(normalizeSeed(2 ** 32 + 5), 5);
  });

  it('randomSeed is a valid seed', () => {
    for (let i = 0; i < 100; i++) {
      const s = randomSeed();
      assert.ok(Number.isInteger(s) && s >= 0 && s <= MAX_SEED, String(s));
    }
  });
});

describe('deriveSeed', () => {
  it('is the normalized seed itself for input 0, variant 0', () => {
    for (const seed of [0, 1, 7, 123456789, MAX_SEED, -1, 2 ** 31 + 3]) assert.equal(deriveSeed(seed, 0, 0), normalizeSeed(seed));
  });

  it('gives other (input, variant) pairs distinct 31-bit seeds, deterministically', () => {
    for (const seed of [0, 7, 987654321]) {
      const seen = new Set<number>([deriveSeed(seed, 0, 0)]);
      for (let i = 0; i < 8; i++) {
        for (let k = 0; k < 8; k++) {
          if (i === 0 && k === 0) continue;
          const s = deriveSeed(seed, i, k);
          assert.ok(Number.isInteger(s) && s >= 0 && s <= MAX_SEED, `deriveSeed(${seed}, ${i}, ${k}) = ${s}`);
          assert.equal(deriveSeed(seed, i, k), s, 'deterministic');
          assert.ok(!seen.has(s), `deriveSeed(${seed}, ${i}, ${k}) repeats ${s}`);
          seen.add(s);
        }
      }
    }
  });

  it('does not swap input and variant', () => {
    assert.notEqual(deriveSeed(7, 1, 2), deriveSeed(7, 2, 1));
    assert.notEqual(deriveSeed(7, 0, 1), deriveSeed(7, 1, 0));
  });

  it('depends on the base seed', () => {
    assert.notEqual(deriveSeed(1, 1, 0), deriveSeed(2, 1, 0));
    // Seeds that normalize alike derive alike.
    assert.equal(deriveSeed(-1, 3, 2), deriveSeed(MAX_SEED, 3, 2));
  });
});

describe('XoshiroNoise (XOSHIRO, seeds from before TORCH)', () => {
  it('reproduces its stream for a seed, and differs across seeds', () => {
    const a = new XoshiroNoise(1234);
    const b = new XoshiroNoise(1234);
    const c = new XoshiroNoise(1235);
    const xs = Array.from({ length: 64 }, () => a.nextNormal());
    const ys = Array.from({ length: 64 }, () => b.nextNormal());
    const zs = Array.from({ length: 64 }, () => c.nextNormal());
    assert.deepEqual(xs, ys);
    assert.notDeepEqual(xs, zs);
    assert.deepEqual(
      Array.from({ length: 8 }, () => new XoshiroNoise(99).nextUint32()),
      Array.from({ length: 8 }, () => new XoshiroNoise(99).nextUint32()),
    );
  });

  it('treats seeds that normalize alike the same', () => {
    const a = new XoshiroNoise(-1);
    const b = new XoshiroNoise(MAX_SEED);
    for (let i = 0; i < 16; i++) assert.equal(a.nextUint32(), b.nextUint32());
  });

  it('draws uniforms strictly inside (0, 1) and uint32s in range', () => {
    const g = new XoshiroNoise(5);
    for (let i = 0; i < 10_000; i++) {
      const u = g.nextUniform();
      assert.ok(u > 0 && u < 1, String(u));
      const x = g.nextUint32();
      assert.ok(Number.isInteger(x) && x >= 0 && x < 2 ** 32, String(x));
    }
  });

  it('draws standard normals (mean ≈ 0, std ≈ 1 over 100k draws)', () => {
    const g = new XoshiroNoise(2024);
    const n = 100_000;
    const data = g.fillNormal(new Float32Array(n));
    let sum = 0;
    let sumSq = 0;
    let beyond3 = 0;
    for (const v of data) {
      assert.ok(Number.isFinite(v));
      sum += v;
      sumSq += v * v;
      if (Math.abs(v) > 3) beyond3 += 1;
    }
    const mean = sum / n;
    const std = Math.sqrt(sumSq / n - mean * mean);
    // Standard error of the mean is 1/√n ≈ 0.003; of the std ≈ 0.0022.
    assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(std - 1) < 0.02, `std ${std}`);
    // P(|z| > 3) ≈ 0.27%.
    assert.ok(beyond3 > 0.001 * n && beyond3 < 0.005 * n, `${beyond3} draws beyond 3σ`);
  });

  it('matches the normal CDF everywhere, tails included (400k draws)', () => {
    const n = 400_000;
    const data = new XoshiroNoise(31337).fillNormal(new Float32Array(n));
    // Φ at a few points (Abramowitz–Stegun accurate values).
    const phi: [number, number][] = [
      [-3, 0.0013499],
      [-2, 0.0227501],
      [-1, 0.1586553],
      [-0.5, 0.3085375],
      [0, 0.5],
      [0.5, 0.6914625],
      [1, 0.8413447],
      [2, 0.9772499],
      [3, 0.9986501],
    ];
    for (const [x, want] of phi) {
      let below = 0;
      for (const v of data) if (v < x) below += 1;
      // Binomial standard error ≤ 0.0008 at n = 400k; allow 4 of them.
      assert.ok(Math.abs(below / n - want) < 0.0032, `P(z < ${x}) = ${below / n}, expected ${want}`);
    }
    // Beyond the ziggurat's base (|z| > 3.5, drawn by the tail algorithm): P ≈ 0.000465 → ~186.
    let tail = 0;
    for (const v of data) if (Math.abs(v) > 3.5) tail += 1;
    assert.ok(tail > 120 && tail < 260, `${tail} draws beyond 3.5σ`);
  });

  it('gives fillNormal and nextNormal one stream, through the rare slow paths too', () => {
    const sequential = new XoshiroNoise(4242);
    const expected = Float32Array.from({ length: 50_000 }, () => sequential.nextNormal());
    const filled = new XoshiroNoise(4242).fillNormal(new Float32Array(50_000));
    assert.deepEqual(filled, expected);
  });

  it('fills segments with the same values as sequential draws', () => {
    const sequential = new XoshiroNoise(77);
    const expected = Float32Array.from({ length: 37 }, () => sequential.nextNormal());

    const segmented = new XoshiroNoise(77);
    const out = new Float32Array(37);
    // Odd segment lengths: the stream continues across calls.
    segmented.fillNormal(out, 0, 5);
    segmented.fillNormal(out, 5, 13);
    segmented.fillNormal(out, 18);
    assert.deepEqual(out, expected);
    // The stream continues where sequential draws would be.
    assert.equal(segmented.nextNormal(), sequential.nextNormal());
    assert.equal(segmented.nextUint32(), sequential.nextUint32());

    const whole = new XoshiroNoise(77).fillNormal(new Float32Array(37));
    assert.deepEqual(whole, expected);
  });

  it('fillNormal leaves the rest of the array alone', () => {
    const out = new Float32Array(10).fill(9);
    new XoshiroNoise(3).fillNormal(out, 2, 4);
    assert.deepEqual([...out.subarray(0, 2)], [9, 9]);
    assert.deepEqual([...out.subarray(6)], [9, 9, 9, 9]);
    assert.ok(out.subarray(2, 6).every((v) => v !== 9));
  });
});

interface Draw {
  size: number;
  values?: number[];
  sha256?: string;
  head?: number[];
  tail?: number[];
}
interface TorchVectors {
  torch: string;
  fresh: (Draw & { seed: number })[];
  sequences: { seed: number; draws: Draw[] }[];
}

// Written by scripts/parity/torch_vectors.py from torch itself.
const vectors = JSON.parse(readFileSync(new URL('./vectors/torch-randn.json', import.meta.url), 'utf8')) as TorchVectors;

function assertDraw(got: Float32Array, want: Draw, label: string): void {
  assert.equal(got.length, want.size, label);
  if (want.values) {
    assert.deepEqual([...got], want.values, label);
    return;
  }
  assert.deepEqual([...got.subarray(0, 8)], want.head, `${label}: first values`);
  assert.deepEqual([...got.subarray(got.length - 8)], want.tail, `${label}: last values`);
  const sha = createHash('sha256')
    .update(new Uint8Array(got.buffer, got.byteOffset, got.byteLength))
    .digest('hex');
  assert.equal(sha, want.sha256, `${label}: SHA-256 of all ${want.size} float32 values`);
}

describe(`TorchNoise (TORCH): torch.randn with torch.Generator("cpu").manual_seed, bit for bit (vectors of torch ${vectors.torch})`, () => {
  it('draws what a fresh generator draws, below 16 values, at 16, 17 and large sizes', () => {
    assert.ok(vectors.fresh.length >= 50);
    for (const want of vectors.fresh) {
      const got = new TorchNoise(want.seed).fillNormal(new Float32Array(want.size));
      assertDraw(got, want, `seed ${want.seed}, ${want.size} values`);
    }
  });

  it('continues one stream across calls, the small draws’ cached second value included', () => {
    for (const { seed, draws } of vectors.sequences) {
      const g = new TorchNoise(seed);
      for (const [i, want] of draws.entries()) assertDraw(g.fillNormal(new Float32Array(want.size)), want, `seed ${seed}, call ${i} (${want.size} values)`);
    }
  });

  it('fills a segment of a batch with one call’s values and leaves the rest alone', () => {
    const want = vectors.fresh.find((d) => d.seed === 42 && d.size === 17)!;
    const out = new Float32Array(21).fill(9);
    new TorchNoise(42).fillNormal(out, 2, 17);
    assertDraw(out.slice(2, 19), want, 'segment');
    assert.deepEqual([...out.subarray(0, 2), ...out.subarray(19)], [9, 9, 9, 9]);
  });
});

describe('createNoiseGenerator', () => {
  it('names TORCH first (the default) and makes each generator by name', () => {
    assert.deepEqual(NOISE_GENERATORS, ['TORCH', 'XOSHIRO']);
    assert.ok(createNoiseGenerator('TORCH', 5) instanceof TorchNoise);
    assert.ok(createNoiseGenerator('XOSHIRO', 5) instanceof XoshiroNoise);
  });
});

interface FamilyDraws {
  family: string;
  pipeline: string;
  strength: number | null;
  draws: (Draw & { shape: number[] })[];
}
// Written by scripts/parity/draw_sequences.py: every torch.randn call with the caller's generator in
// one edit of each family by diffusers itself (tiny random pipelines, EULER_ANCESTRAL on UNets).
const draws = JSON.parse(readFileSync(new URL('./vectors/torch-draws.json', import.meta.url), 'utf8')) as {
  diffusers: string;
  seed: number;
  families: FamilyDraws[];
};

describe(`TorchNoise through diffusers ${draws.diffusers}' draw sequence of each family`, () => {
  for (const f of draws.families) {
    it(`${f.pipeline}${f.strength === null ? '' : ` at strength ${f.strength}`}: ${f.draws.length} draws of ${f.draws[0]!.shape.join('×')}`, () => {
      const g = new TorchNoise(draws.seed);
      for (const [i, want] of f.draws.entries()) {
        const size = want.shape.reduce((a, b) => a * b, 1);
        assertDraw(g.fillNormal(new Float32Array(size)), want, `${f.family} draw ${i}`);
      }
    });
  }
});
