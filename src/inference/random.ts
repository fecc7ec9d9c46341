/**
 * Deterministic noise, independent of batch composition.
 *
 * Seeds: output k of input i uses `deriveSeed(seed, i, k)`: the base seed itself for (0, 0), so
 * re-running one image with n=1 and the reported seed reproduces it; otherwise a SplitMix64 hash of
 * (seed, i, k) reduced to 31 bits (so it fits a GraphQL Int).
 *
 * Each output owns one generator seeded with its derived seed, named by `NOISE_GENERATORS`:
 * - TORCH (the default): what `torch.Generator("cpu").manual_seed(seed)` draws with `torch.randn`
 *   on float32 tensors, bit for bit as x86 builds of torch draw it (AVX2/AVX-512 kernels): MT19937,
 *   and for each `fillNormal` call (one `torch.randn` call) either torch's `normal_fill` (16 or more
 *   values: 24-bit float uniforms, Box–Muller in blocks of 16 with the cephes log/sincos that torch's
 *   avx_mathfun.h computes in float32, the last 16 redrawn and recomputed when the size is not a
 *   multiple of 16) or, below 16 values, double-precision Box–Muller with torch's cached second value.
 *   torch's scalar kernel (ATEN_CPU_CAPABILITY=default, builds without AVX2) rounds differently.
 * - XOSHIRO: the generator seeds meant before TORCH became the default: xoshiro128** seeded through
 *   SplitMix64, standard normals from Marsaglia and Tsang's ziggurat (128 layers), one 32-bit draw
 *   per normal in ~99% of cases. The layer index (low 7 bits) and the value (high 25 bits) come
 *   from disjoint bits of the draw, which avoids the correlation Doornik (2005) found.
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

// Ziggurat tables for the standard normal, 128 layers (Marsaglia & Tsang, 2000). Values are
// 25-bit signed integers, so the layer thresholds are scaled by 2^24.
const ZIGGURAT_R = 3.442619855899;
const ZIGGURAT_AREA = 9.91256303526217e-3;
const VALUE_SCALE = 2 ** 24;
const LAYER_K = new Int32Array(128);
const LAYER_W = new Float64Array(128);
const LAYER_F = new Float64Array(128);
{
  let d = ZIGGURAT_R;
  let t = d;
  const q = ZIGGURAT_AREA / Math.exp(-0.5 * d * d);
  LAYER_K[0] = Math.floor((d / q) * VALUE_SCALE);
  LAYER_K[1] = 0;
  LAYER_W[0] = q / VALUE_SCALE;
  LAYER_W[127] = d / VALUE_SCALE;
  LAYER_F[0] = 1;
  LAYER_F[127] = Math.exp(-0.5 * d * d);
  for (let i = 126; i >= 1; i--) {
    d = Math.sqrt(-2 * Math.log(ZIGGURAT_AREA / d + Math.exp(-0.5 * d * d)));
    LAYER_K[i + 1] = Math.floor((d / t) * VALUE_SCALE);
    t = d;
    LAYER_F[i] = Math.exp(-0.5 * d * d);
    LAYER_W[i] = d / VALUE_SCALE;
  }
}

/** One output's noise stream. */
export interface NoiseGenerator {
  readonly seed: number;
  /** Fills `out` (or a segment of it) with standard normals: one `torch.randn` call of that size. */
  fillNormal(out: Float32Array, offset?: number, length?: number): Float32Array;
}

/** The generators a request may name, default first. */
export const NOISE_GENERATORS = ['TORCH', 'XOSHIRO'] as const;
export type NoiseGeneratorName = (typeof NOISE_GENERATORS)[number];
export const DEFAULT_NOISE_GENERATOR: NoiseGeneratorName = NOISE_GENERATORS[0];

export function isNoiseGeneratorName(name: string): name is NoiseGeneratorName {
  return (NOISE_GENERATORS as readonly string[]).includes(name);
}

export function createNoiseGenerator(name: NoiseGeneratorName, seed: number): NoiseGenerator {
  return name === 'TORCH' ? new TorchNoise(seed) : new XoshiroNoise(seed);
}

/** xoshiro128** with ziggurat normals. */
export class XoshiroNoise implements NoiseGenerator {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

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
    const u = this.nextUint32();
    const layer = u & 127;
    const value = (u | 0) >> 7;
    const k = LAYER_K[layer]!;
    return value < k && value > -k ? value * LAYER_W[layer]! : this.normalOutsideCore(value, layer);
  }

  /**
   * Fills `out` (or a segment of it) with standard normals: exactly the values `nextNormal` would
   * give, with the generator state in locals for the common case (this runs once per latent
   * element per step for ancestral samplers, on the denoise loop's hot path).
   */
  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): Float32Array {
    const end = offset + length;
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    for (let i = offset; i < end; i++) {
      // One xoshiro128** output, as nextUint32 computes it.
      const m = Math.imul(s1, 5);
      const u = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      const layer = u & 127;
      const value = u >> 7;
      const k = LAYER_K[layer]!;
      if (value < k && value > -k) {
        out[i] = value * LAYER_W[layer]!;
      } else {
        // Rare (~1%): the slow path draws more numbers through the object's state.
        this.s0 = s0;
        this.s1 = s1;
        this.s2 = s2;
        this.s3 = s3;
        out[i] = this.normalOutsideCore(value, layer);
        s0 = this.s0;
        s1 = this.s1;
        s2 = this.s2;
        s3 = this.s3;
      }
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
    return out;
  }

  /** The ziggurat's slow path: the base strip's tail, or the wedge of a layer, with retries. */
  private normalOutsideCore(value: number, layer: number): number {
    for (;;) {
      if (layer === 0) {
        // Tail beyond R, by Marsaglia's exponential rejection.
        let x: number;
        let y: number;
        do {
          x = -Math.log(this.nextUniform()) / ZIGGURAT_R;
          y = -Math.log(this.nextUniform());
        } while (y + y < x * x);
        return value > 0 ? ZIGGURAT_R + x : -ZIGGURAT_R - x;
      }
      const x = value * LAYER_W[layer]!;
      if (LAYER_F[layer]! + this.nextUniform() * (LAYER_F[layer - 1]! - LAYER_F[layer]!) < Math.exp(-0.5 * x * x)) return x;
      const u = this.nextUint32();
      layer = u & 127;
      value = (u | 0) >> 7;
      if ((value < 0 ? -value : value) < LAYER_K[layer]!) return value * LAYER_W[layer]!;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// ---- TORCH: torch's CPU generator ----

const MT_N = 624;
const MT_M = 397;
const F32_SCALE = 2 ** -24;
const F64_SCALE = 2 ** -53;
const f = Math.fround;

// cephes constants as torch's avx_mathfun.h declares them (float32).
const SQRTHF = f(Math.SQRT1_2);
const LOG_P0 = f(7.0376836292e-2);
const LOG_P1 = f(-1.151461031e-1);
const LOG_P2 = f(1.167699874e-1);
const LOG_P3 = f(-1.2420140846e-1);
const LOG_P4 = f(1.4249322787e-1);
const LOG_P5 = f(-1.6668057665e-1);
const LOG_P6 = f(2.0000714765e-1);
const LOG_P7 = f(-2.4999993993e-1);
const LOG_P8 = f(3.3333331174e-1);
const LOG_Q1 = f(-2.1219444e-4);
const LOG_Q2 = f(0.693359375);
const DP1 = f(-0.78515625);
const DP2 = f(-2.4187564849853516e-4);
const DP3 = f(-3.774894977445941e-8);
const SINCOF_P0 = f(-1.9515295891e-4);
const SINCOF_P1 = f(8.3321608736e-3);
const SINCOF_P2 = f(-1.6666654611e-1);
const COSCOF_P0 = f(2.443315711809948e-5);
const COSCOF_P1 = f(-1.388731625493765e-3);
const COSCOF_P2 = f(4.166664568298827e-2);
const FOPI = f(1.27323954473516);
const TWO_PI = f(2 * Math.PI);

const bitsF32 = new Float32Array(1);
const bitsI32 = new Int32Array(bitsF32.buffer);

/**
 * A float32 fused multiply-add, a·b + c rounded once. torch's AVX2 kernels are compiled with FMA,
 * and the compiler fuses a multiply that feeds an add (only that reproduces torch's draws), so the
 * cephes code below rounds where the hardware does. a·b is exact in a double; the sum rounds twice (to double, then
 * to float) and that differs from one rounding only when the double lands on a float32 midpoint
 * while the exact sum does not, corrected here with the sum's exact error.
 */
function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  const other = 2 * s - r;
  if (other === r || f(other) !== other) return r;
  const bp = s - p;
  const err = p - (s - bp) + (c - bp);
  if (err === 0) return r;
  return err > 0 === other > r ? other : r;
}

/** log256_ps for one lane, x in (0, 1]: float32 operations as the AVX2 build runs them. */
function logCephes(v: number): number {
  bitsF32[0] = v;
  const bits = bitsI32[0]!;
  let e = f((bits >>> 23) - 0x7f + 1);
  bitsI32[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa in [0.5, 1)
  let x = bitsF32[0]!;
  let tmp = 0;
  if (x < SQRTHF) {
    tmp = x;
    e = f(e - 1);
  }
  x = f(f(x - 1) + tmp);
  const z = f(x * x);
  let y = fma32(LOG_P0, x, LOG_P1);
  y = fma32(y, x, LOG_P2);
  y = fma32(y, x, LOG_P3);
  y = fma32(y, x, LOG_P4);
  y = fma32(y, x, LOG_P5);
  y = fma32(y, x, LOG_P6);
  y = fma32(y, x, LOG_P7);
  y = fma32(y, x, LOG_P8);
  y = f(y * x);
  y = fma32(y, z, f(e * LOG_Q1)); // GCC fuses y·z here, not e·q1 (checked against torch's draws)
  y = fma32(z, -0.5, y);
  return fma32(e, LOG_Q2, f(x + y));
}

let sinOut = 0;
let cosOut = 0;

/** sincos256_ps for one lane, x ≥ 0 (Box–Muller's angle); results in sinOut/cosOut. */
function sinCosCephes(v: number): void {
  let j = Math.trunc(f(v * FOPI));
  j = (j + 1) & ~1;
  const y = j; // exact: j is small
  const sinNegative = (j & 4) !== 0;
  const cosNegative = ((j - 2) & 4) === 0;
  const firstPolyIsCos = (j & 2) === 0;
  let x = fma32(y, DP1, v);
  x = fma32(y, DP2, x);
  x = fma32(y, DP3, x);
  const z = f(x * x);
  let c = fma32(COSCOF_P0, z, COSCOF_P1);
  c = fma32(c, z, COSCOF_P2);
  c = f(c * z);
  c = fma32(c, z, -f(z * 0.5));
  c = f(c + 1);
  let s = fma32(SINCOF_P0, z, SINCOF_P1);
  s = fma32(s, z, SINCOF_P2);
  s = f(s * z);
  s = fma32(s, x, x);
  const sv = (firstPolyIsCos ? s : c) + 0;
  const cv = (firstPolyIsCos ? c : s) + 0;
  sinOut = sinNegative ? -sv : sv;
  cosOut = cosNegative ? -cv : cv;
}

/** torch's normal_fill_16_AVX2 on out[at..at+16): uniforms in, normals out. */
function boxMuller16(out: Float32Array, at: number): void {
  for (let j = at; j < at + 8; j++) {
    const radius = f(Math.sqrt(f(-2 * logCephes(f(1 - out[j]!)))));
    sinCosCephes(f(TWO_PI * out[j + 8]!));
    out[j] = f(radius * cosOut) + 0;
    out[j + 8] = f(radius * sinOut) + 0;
  }
}

/** torch.Generator("cpu").manual_seed(seed): MT19937 and torch.randn's float32 paths. */
export class TorchNoise implements NoiseGenerator {
  private readonly state = new Uint32Array(MT_N);
  private index = MT_N;
  /** The second value of the last small (< 16) draw's Box–Muller pair, kept by the generator as torch keeps it. */
  private cachedNormal: number | null = null;

  constructor(readonly seed: number) {
    const mt = this.state;
    mt[0] = normalizeSeed(seed);
    for (let i = 1; i < MT_N; i++) {
      const prev = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      mt[i] = Math.imul(1812433253, prev) + i;
    }
  }

  /** The next 32-bit output of MT19937 (torch's `random()`). */
  nextUint32(): number {
    if (this.index >= MT_N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    return (y ^ (y >>> 18)) >>> 0;
  }

  private twist(): void {
    const mt = this.state;
    for (let i = 0; i < MT_N; i++) {
      const next = i + 1 < MT_N ? i + 1 : 0;
      const far = i + MT_M < MT_N ? i + MT_M : i + MT_M - MT_N;
      const y = (mt[i]! & 0x80000000) | (mt[next]! & 0x7fffffff);
      mt[i] = mt[far]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }

  /** torch's float32 uniform in [0, 1): the low 24 bits of one draw. */
  private uniformFloat(): number {
    return (this.nextUint32() & 0xffffff) * F32_SCALE;
  }

  /** torch's double uniform in [0, 1): 53 bits of two draws (random64: first draw high). */
  private uniformDouble(): number {
    const hi = this.nextUint32() & 0x1fffff;
    return (hi * 2 ** 32 + this.nextUint32()) * F64_SCALE;
  }

  /** at::normal_distribution<double>, as torch.randn draws tensors of fewer than 16 values. */
  private normalDouble(): number {
    if (this.cachedNormal !== null) {
      const cached = this.cachedNormal;
      this.cachedNormal = null;
      return cached;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): Float32Array {
    if (length < 16) {
      for (let i = offset; i < offset + length; i++) out[i] = this.normalDouble();
      return out;
    }
    const end = offset + length;
    for (let i = offset; i < end; i++) out[i] = this.uniformFloat();
    for (let i = offset; i + 16 <= end; i += 16) boxMuller16(out, i);
    if (length % 16 !== 0) {
      for (let i = end - 16; i < end; i++) out[i] = this.uniformFloat();
      boxMuller16(out, end - 16);
    }
    return out;
  }
}
