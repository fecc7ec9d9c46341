/**
 * Deterministic noise, independent of batch composition.
 *
 * Seeds: output k of input i uses `deriveSeed(seed, i, k)`: the base seed itself for (0, 0), so
 * re-running one image with n=1 and the reported seed reproduces it; otherwise a SplitMix64 hash of
 * (seed, i, k) reduced to 31 bits (so it fits a GraphQL Int).
 * Noise: each output owns a xoshiro128** stream seeded from its derived seed through SplitMix64;
 * standard normals come from the Box–Muller transform using both values of each pair. The stream
 * draws the initial latent noise first, then (for ancestral samplers) each step's noise in order.
 */

const MASK64 = (1n << 64n) - 1n;

function splitMix64(state: bigint): bigint {
  let z = (state + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

export const MAX_SEED = 0x7fffffff;

/** Any integer → a seed in 0..2^31-1 (negative values wrap, as a 32-bit unsigned cast would). */
export function normalizeSeed(seed: number): number {
  return (seed >>> 0) & MAX_SEED;
}

export function deriveSeed(seed: number, inputIndex: number, variant: number): number {
  const base = normalizeSeed(seed);
  if (inputIndex === 0 && variant === 0) return base;
  const h = splitMix64(splitMix64(splitMix64(BigInt(base)) ^ BigInt(inputIndex)) ^ BigInt(variant));
  return Number(h & BigInt(MAX_SEED));
}

export function randomSeed(): number {
  return Math.floor(Math.random() * (MAX_SEED + 1));
}

/** xoshiro128** with Box–Muller normals. */
export class NoiseGenerator {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  constructor(readonly seed: number) {
    const a = splitMix64(BigInt(normalizeSeed(seed)));
    const b = splitMix64(a);
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** Next 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in (0, 1): never 0, so log() is safe. */
  nextUniform(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  nextNormal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.nextUniform()));
    const theta = 2 * Math.PI * this.nextUniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * Fills `out` (or a segment of it) with standard normals: exactly the values `nextNormal` would
   * give, but with the generator state in locals and a whole pair per iteration (this runs once per
   * latent element per step for ancestral samplers, so it is on the denoise loop's hot path).
   */
  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): Float32Array {
    let i = offset;
    const end = offset + length;
    if (i < end && this.spare !== null) {
      out[i++] = this.spare;
      this.spare = null;
    }
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    while (i < end) {
      // Two xoshiro128** outputs, as nextUint32 computes them.
      let m = Math.imul(s1, 5);
      const u1 = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
      let t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      m = Math.imul(s1, 5);
      const u2 = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
      t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      const r = Math.sqrt(-2 * Math.log((u1 + 0.5) / 4294967296));
      const theta = 2 * Math.PI * ((u2 + 0.5) / 4294967296);
      out[i++] = r * Math.cos(theta);
      const second = r * Math.sin(theta);
      if (i < end) out[i++] = second;
      else this.spare = second;
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
