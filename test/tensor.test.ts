/** Pure tensor math (guidance, layouts, float16, previews) and the batch memory model. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  classifierFreeGuidance,
  concatBatches,
  writeChannelHalf,
  fromFloat16,
  instructPix2PixGuidance,
  projectLatentToRgb,
  toFloat16,
  toSignedUnit,
  toUnitClamped,
} from '../src/inference/tensor.js';
import { estimateBatchBytes, maxPixelsWithinBudget, perItemBytes, planMicroBatches } from '../src/inference/memory.js';
import type { BatchGeometry } from '../src/inference/memory.js';
import type { MemoryProfile } from '../src/inference/modelFolder.js';
import { SD15_MEMORY } from '../src/inference/modelFolder.js';
import { InferenceError } from '../src/inference/errors.js';
import { toOrtTensor } from '../src/inference/sessions.js';

function assertClose(actual: ArrayLike<number>, expected: readonly number[], tolerance = 1e-6, label = ''): void {
  assert.equal(actual.length, expected.length, `${label} length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance, `${label}[${i}] is ${actual[i]}, expected ${expected[i]}`);
  }
}

const f16 = (v: number): number => toFloat16(Float32Array.of(v))[0]!;
const fromF16 = (h: number): number => fromFloat16(Uint16Array.of(h))[0]!;

describe('guidance', () => {
  // Two elements per branch; InstructPix2Pix branches in diffusers' order: text+image, image, neither.
  const ip2p = Float32Array.of(1, 2, /* image */ 0.5, 1, /* uncond */ 0, -1);

  it('InstructPix2Pix: ε_u + s_T(ε_T − ε_I) + s_I(ε_I − ε_u)', () => {
    const out = new Float32Array(2);
    const returned = instructPix2PixGuidance(ip2p, 2, 7.5, 1.5, out);
    assert.equal(returned, out);
    // 0 + 7.5·0.5 + 1.5·0.5 = 4.5;  −1 + 7.5·1 + 1.5·2 = 9.5
    assertClose(out, [4.5, 9.5]);
  });

  it('InstructPix2Pix with scales (1, 1) is the text branch', () => {
    const pred = Float32Array.from({ length: 3 * 5 }, (_, i) => Math.sin(i * 1.7) * 3);
    const out = instructPix2PixGuidance(pred, 5, 1, 1, new Float32Array(5));
    assertClose(out, [...pred.subarray(0, 5)], 1e-6);
  });

  it('InstructPix2Pix with text scale 0 and image scale 1 is the image branch', () => {
    assertClose(instructPix2PixGuidance(ip2p, 2, 0, 1, new Float32Array(2)), [0.5, 1]);
    assertClose(instructPix2PixGuidance(ip2p, 2, 0, 0, new Float32Array(2)), [0, -1]);
  });

  it('classifier-free: ε_u + s(ε_T − ε_u) over [uncond, text]', () => {
    const pred = Float32Array.of(1, -2, /* text */ 3, 2);
    // 1 + 7.5·2 = 16;  −2 + 7.5·4 = 28
    assertClose(classifierFreeGuidance(pred, 2, 7.5, new Float32Array(2)), [16, 28]);
    assertClose(classifierFreeGuidance(pred, 2, 1, new Float32Array(2)), [3, 2]);
    assertClose(classifierFreeGuidance(pred, 2, 0, new Float32Array(2)), [1, -2]);
  });
});

describe('layouts and value ranges', () => {
  it("writeChannelHalf lays each item's noisy channels before its image channels", () => {
    // batch 2, channels 2, pixels 3
    const noisy = Float32Array.from({ length: 12 }, (_, i) => i);
    const image = Float32Array.from({ length: 12 }, (_, i) => 100 + i);
    const out = new Float32Array(24);
    assert.equal(writeChannelHalf(noisy, out, 0, 2, 2, 3), out);
    writeChannelHalf(image, out, 1, 2, 2, 3);
    assert.deepEqual([...out], [0, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105, 6, 7, 8, 9, 10, 11, 106, 107, 108, 109, 110, 111]);
    writeChannelHalf(new Float32Array(12).fill(7), out, 0, 2, 2, 3);
    assert.deepEqual([...out], [7, 7, 7, 7, 7, 7, 100, 101, 102, 103, 104, 105, 7, 7, 7, 7, 7, 7, 106, 107, 108, 109, 110, 111]);
  });

  it('concatBatches appends whole arrays', () => {
    assert.deepEqual([...concatBatches([Float32Array.of(1, 2), Float32Array.of(), Float32Array.of(3)])], [1, 2, 3]);
  });

  it('toSignedUnit and toUnitClamped map between [0,1] and [-1,1]', () => {
    assertClose(toSignedUnit(Float32Array.of(0, 0.25, 1)), [-1, -0.5, 1]);
    assertClose(toUnitClamped(Float32Array.of(-1, 0, 1, -3, 2)), [0, 0.5, 1, 0, 1]);
  });
});

describe('float16 conversion', () => {
  it('converts representative values exactly', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [0.1, 0x2e66],
      [65504, 0x7bff], // largest finite half
      [65519, 0x7bff], // below the halfway point to 65536: rounds down
      [65520, 0x7c00], // halfway, ties to even: overflows to Infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1e-5, 0x00a8],
      [-2.5e-5, 0x81a3],
      [1.5 * 2 ** -24, 0x0002], // subnormal halfway, ties to even (up)
      [2.5 * 2 ** -24, 0x0002], // subnormal halfway, ties to even (down)
      [2 ** -25, 0x0000], // halfway to the smallest subnormal: ties to even (zero)
      [1.0001 * 2 ** -25, 0x0001], // just above: rounds up
      [1e-8, 0x0000], // underflows to zero
      [-1e-8, 0x8000],
      [2 ** -14 * (1 - 2 ** -12), 0x0400], // subnormal rounding into the smallest normal
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and the next half: ties to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway: ties to even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above halfway: up
      [2 - 2 ** -11, 0x4000], // rounding carries into the exponent
      [3.14, 0x4248],
    ];
    for (const [value, bits] of cases) {
      assert.equal(f16(value), bits, `toFloat16(${value}) is 0x${f16(value).toString(16)}, expected 0x${bits.toString(16)}`);
    }
  });

  it('converts NaN to a quiet NaN and back', () => {
    const h = f16(NaN);
    assert.equal(h & 0x7c00, 0x7c00);
    assert.notEqual(h & 0x03ff, 0);
    assert.ok(Number.isNaN(fromF16(h)));
    assert.ok(Number.isNaN(fromF16(0xfe00)));
  });

  it('decodes special and representative halves', () => {
    assert.ok(Object.is(fromF16(0x0000), 0));
    assert.ok(Object.is(fromF16(0x8000), -0));
    assert.equal(fromF16(0x3c00), 1);
    assert.equal(fromF16(0x7bff), 65504);
    assert.equal(fromF16(0x7c00), Infinity);
    assert.equal(fromF16(0xfc00), -Infinity);
    assert.equal(fromF16(0x0001), 2 ** -24);
    assert.equal(fromF16(0x0400), 2 ** -14);
    assert.equal(fromF16(0xc000), -2);
  });

  it('round-trips every non-NaN half exactly', () => {
    const all = Uint16Array.from({ length: 0x10000 }, (_, i) => i);
    const back = toFloat16(fromFloat16(all));
    for (let h = 0; h < 0x10000; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;
      if (!nan) assert.equal(back[h], h, `0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
    }
  });

  it('round-trips float32 values within half precision', () => {
    const values = Float32Array.of(0, 1, -1, 0.333, 123.456, -7777, 6e-5, 1e-3);
    const back = fromFloat16(toFloat16(values));
    for (let i = 0; i < values.length; i++) {
      // Relative error ≤ 2^-11 for normals; absolute ≤ 2^-25 for subnormals.
      assert.ok(Math.abs(back[i]! - values[i]!) <= Math.max(Math.abs(values[i]!) * 2 ** -11, 2 ** -25), `${values[i]} → ${back[i]}`);
    }
  });
});

describe('projectLatentToRgb', () => {
  it('computes latent·factors + bias per pixel, mapped from [-1,1] to [0,1] and clamped', () => {
    // 2 channels, 2 pixels: c0 = [0.5, −0.5], c1 = [1, 0]
    const latent = Float32Array.of(0.5, -0.5, 1, 0);
    const factors = [
      [1, 0, 0.5],
      [0, 0.5, 0.5],
    ];
    const bias = [0, 0.1, -2];
    const rgb = projectLatentToRgb(latent, 2, 2, factors, bias);
    // r = c0 → [0.5, −0.5] → [0.75, 0.25]
    // g = 0.1 + 0.5·c1 → [0.6, 0.1] → [0.8, 0.55]
    // b = −2 + 0.5·c0 + 0.5·c1 → [−1.25, −2.25] → clamped to 0
    assertClose(rgb, [0.75, 0.25, 0.8, 0.55, 0, 0], 1e-6);
  });

  it("with tiny-edit's factors recovers the image from its scaled latents", () => {
    const s = 0.18215;
    const pixel = [0.2, 0.6, 0.9]; // RGB in [0,1]
    const latent = Float32Array.of(...pixel.map((v) => (v * 2 - 1) * s), 0);
    const factors = [
      [1 / s, 0, 0],
      [0, 1 / s, 0],
      [0, 0, 1 / s],
      [0, 0, 0],
    ];
    assertClose(projectLatentToRgb(latent, 4, 1, factors, [0, 0, 0]), pixel, 1e-6);
  });
});

describe('memory model', () => {
  const sd15: MemoryProfile = {
    weightBytes: 2 * 2 ** 30,
    runtimeBytes: 0,
    unetBytesPerLatentPixel: 320 * 1024,
    attentionHeads: 8,
    attentionDownscale: 1,
    attentionBytesPerScore: 4,
    vaeBytesPerPixel: 4 * 1024,
  };
  const geometry: BatchGeometry = { width: 512, height: 512, vaeScaleFactor: 8, branches: 3 };

  it('follows the documented formula', () => {
    // L = 64·64 = 4096 latent pixels; UNet row = L·320 KiB + 8·L²·4; 3 rows; VAE 512²·4 KiB.
    const L = 4096;
    const row = L * 320 * 1024 + 8 * L * L * 4;
    const expected = 3 * row + 512 * 512 * 4096;
    assert.equal(perItemBytes(sd15, geometry), expected);
    assert.equal(expected, 6_710_886_400);
    assert.equal(estimateBatchBytes(sd15, geometry, 5), sd15.weightBytes + 5 * expected);
    // Attention at a downscaled level: tokens = L/d².
    const d2 = perItemBytes({ ...sd15, attentionDownscale: 2 }, geometry);
    assert.equal(d2, 3 * (L * 320 * 1024 + 8 * (L / 4) ** 2 * 4) + 512 * 512 * 4096);
    // Several score matrices held at once, and a fixed runtime term paid once per call.
    assert.equal(perItemBytes({ ...sd15, attentionBytesPerScore: 10 }, geometry), 3 * (L * 320 * 1024 + 8 * L * L * 10) + 512 * 512 * 4096);
    assert.equal(estimateBatchBytes({ ...sd15, runtimeBytes: 2 ** 20 }, geometry, 5), sd15.weightBytes + 2 ** 20 + 5 * expected);
  });

  // The VAE term counts per output (the encoder runs the call's inputs as one batch), so two
  // variants of one input plan about 20% over their peak.
  it('plans at or above the measured SD 1.5-size peaks, and at most 25% above (default profile, BENCHMARKS.md "Real-size model")', () => {
    const real = { ...SD15_MEMORY, weightBytes: 4_265_128_346 };
    const mib = (g: Partial<BatchGeometry>, items: number) => estimateBatchBytes(real, { ...geometry, branches: 2, ...g }, items) / 2 ** 20;
    for (const [plan, measured] of [
      [mib({}, 1), 7_896],
      [mib({}, 2), 10_156],
      [mib({ width: 768, height: 768 }, 1), 18_882],
    ] as const) {
      assert.ok(plan >= measured && plan <= measured * 1.25, `plan ${plan.toFixed(0)} MiB for a measured peak of ${measured} MiB`);
    }
  });

  it('grows quadratically in latent pixels through the attention term', () => {
    const attentionOnly: MemoryProfile = { ...sd15, weightBytes: 0, unetBytesPerLatentPixel: 0, vaeBytesPerPixel: 0 };
    const at = (side: number, p: MemoryProfile): number => perItemBytes(p, { ...geometry, width: side, height: side });
    // Doubling the side quadruples the pixels: 16× the attention scores, 4× everything else.
    assert.equal(at(1024, attentionOnly) / at(512, attentionOnly), 16);
    const linearOnly = { ...sd15, attentionHeads: 0 };
    assert.equal(at(1024, linearOnly) / at(512, linearOnly), 4);
    const ratio = at(1024, sd15) / at(512, sd15);
    assert.ok(ratio > 4 && ratio < 16, String(ratio));
    // Guidance branches multiply the UNet rows only.
    const oneBranch = perItemBytes(sd15, { ...geometry, branches: 1 });
    assert.equal(perItemBytes(sd15, geometry) - oneBranch, 2 * (oneBranch - 512 * 512 * 4096));
  });

  describe('planMicroBatches', () => {
    const per = perItemBytes(sd15, geometry);
    const budgetFor = (items: number): number => sd15.weightBytes + items * per;

    it('splits into the fewest balanced micro-batches', () => {
      assert.deepEqual(planMicroBatches(10, sd15, geometry, budgetFor(4)), [4, 3, 3]);
      assert.deepEqual(planMicroBatches(10, sd15, geometry, budgetFor(4) + per - 1), [4, 3, 3]);
      assert.deepEqual(planMicroBatches(9, sd15, geometry, budgetFor(4)), [3, 3, 3]);
      assert.deepEqual(planMicroBatches(8, sd15, geometry, budgetFor(4)), [4, 4]);
      assert.deepEqual(planMicroBatches(7, sd15, geometry, budgetFor(3)), [3, 2, 2]);
      assert.deepEqual(planMicroBatches(5, sd15, geometry, budgetFor(1)), [1, 1, 1, 1, 1]);
    });

    it('keeps everything in one batch when it fits', () => {
      assert.deepEqual(planMicroBatches(6, sd15, geometry, budgetFor(6)), [6]);
      assert.deepEqual(planMicroBatches(3, sd15, geometry, 2 ** 50), [3]);
    });

    it('refuses a single item that cannot fit with IMAGE_TOO_LARGE and the largest size that would', () => {
      const budget = budgetFor(1) - 1;
      assert.throws(
        () => planMicroBatches(2, sd15, geometry, budget),
        (err: unknown) => {
          assert.ok(err instanceof InferenceError, String(err));
          assert.equal(err.code, 'IMAGE_TOO_LARGE');
          const match = /max pixels (\d+)/.exec(err.message);
          assert.ok(match, err.message);
          const maxPixels = Number(match[1]);
          assert.equal(maxPixels, maxPixelsWithinBudget(sd15, { vaeScaleFactor: 8, branches: 3 }, budget));
          assert.ok(maxPixels > 0 && maxPixels < 512 * 512, String(maxPixels));
          // That many pixels fit in one item; a little more (beyond the search's resolution) does not.
          const fits = (pixels: number): boolean => estimateBatchBytes(sd15, { ...geometry, width: Math.sqrt(pixels), height: Math.sqrt(pixels) }, 1) <= budget;
          assert.ok(fits(maxPixels));
          assert.ok(!fits(maxPixels + 64));
          // It names the largest size of the request's aspect ratio that fits, on the 8-pixel grid.
          const named = /the largest square that fits is (\d+)x(\d+)/.exec(err.message);
          assert.ok(named, err.message);
          const side = Number(named[1]);
          assert.equal(Number(named[2]), side);
          assert.equal(side % 8, 0);
          const fitsSide = (n: number): boolean => estimateBatchBytes(sd15, { ...geometry, width: n, height: n }, 1) <= budget;
          assert.ok(fitsSide(side) && !fitsSide(side + 8), `${side} fits, ${side + 8} does not`);
          return true;
        },
      );
    });

    it('reports IMAGE_TOO_LARGE when even the weights exceed the budget', () => {
      assert.throws(
        () => planMicroBatches(1, sd15, geometry, sd15.weightBytes / 2),
        (err: unknown) => {
          assert.ok(err instanceof InferenceError);
          assert.equal(err.code, 'IMAGE_TOO_LARGE');
          assert.match(err.message, /max pixels 0\b/);
          return true;
        },
      );
    });
  });
});

describe('feeds as exporters declare them', () => {
  const port = (type: string, shape: (number | string)[]) => ({ name: 'timestep', type, shape });
  it('a rank-0 port gets a scalar for one row as for many', () => {
    for (const rows of [1, 3]) {
      const t = toOrtTensor({ data: new Float32Array(rows).fill(999), dims: [rows] }, port('float32', []));
      assert.deepEqual(t.dims, []);
      assert.deepEqual([...(t.data as Float32Array)], [999]);
    }
  });
  it('refuses different values for a scalar port', () => {
    assert.throws(() => toOrtTensor({ data: Float32Array.of(1, 2), dims: [2] }, port('float32', [])), /scalar input "timestep"/);
  });
  it('a rank-1 port keeps one value per row', () => {
    const t = toOrtTensor({ data: Float32Array.of(5, 5), dims: [2] }, port('float32', ['steps']));
    assert.deepEqual(t.dims, [2]);
  });
  it('integer ports truncate as numpy astype does (not round)', () => {
    const t = toOrtTensor({ data: Float32Array.of(999.9, 0.5, -0.5, 1.5), dims: [4] }, port('int64', ['steps']));
    assert.deepEqual([...(t.data as BigInt64Array)], [999n, 0n, 0n, 1n]);
    const t32 = toOrtTensor({ data: Float32Array.of(980.75), dims: [1] }, port('int32', [1]));
    assert.deepEqual([...(t32.data as Int32Array)], [980]);
  });
  it('float16 ports get float16', () => {
    const t = toOrtTensor({ data: Float32Array.of(0.5, 0.5), dims: [2] }, port('float16', []));
    assert.equal(t.type, 'float16');
    assert.deepEqual([...fromFloat16(t.data as Uint16Array)], [0.5]);
  });
});
