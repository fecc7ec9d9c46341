import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import fc from 'fast-check';
import { encodePlanarPng, encodePng, paethFilter, planarToPaethRows } from '../src/inference/pngEncoder.js';
import { byteMapping, planarToRgb8 } from '../src/inference/imageIO.js';

/** The PNG specification's Paeth predictor, written as the spec writes it. */
function paethReference(rgb: Uint8Array, stride: number, height: number): Uint8Array {
  const out = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    out[y * (stride + 1)] = 4;
    for (let x = 0; x < stride; x++) {
      const a = x >= 3 ? rgb[y * stride + x - 3]! : 0;
      const b = y > 0 ? rgb[(y - 1) * stride + x]! : 0;
      const c = x >= 3 && y > 0 ? rgb[(y - 1) * stride + x - 3]! : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a);
      const pb = Math.abs(p - b);
      const pc = Math.abs(p - c);
      const predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      out[y * (stride + 1) + 1 + x] = (rgb[y * stride + x]! - predictor) & 0xff;
    }
  }
  return out;
}

function pattern(width: number, height: number, salt: number): Buffer {
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7919 + (i >> 4) * salt) & 0xff;
  return rgb;
}

describe('PNG encoder', () => {
  it("filters every row exactly as the PNG specification's Paeth predictor", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 6 }),
        fc.infiniteStream(fc.integer({ min: 0, max: 255 })),
        (width, height, bytes) => {
          const stride = width * 3;
          const rgb = Uint8Array.from(bytes.take(stride * height));
          const out = new Uint8Array((stride + 1) * height);
          paethFilter(rgb, stride, height, out);
          assert.deepEqual(out, paethReference(rgb, stride, height));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('filters straight from floats exactly as converting to bytes first, in both ranges', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom('unit' as const, 'signed' as const),
        fc.infiniteStream(fc.double({ min: -1.5, max: 1.5, noNaN: false })),
        (width, height, range, values) => {
          const data = Float32Array.from(values.take(3 * width * height));
          const { scale, offset } = byteMapping(range);
          const fused = new Uint8Array((3 * width + 1) * height);
          planarToPaethRows(data, width, height, scale, offset, fused);
          const twoPass = new Uint8Array(fused.length);
          paethFilter(planarToRgb8(data, width, height, undefined, range), 3 * width, height, twoPass);
          assert.deepEqual(fused, twoPass);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('maps the signed range onto bytes with rounding and clamping', () => {
    const bytes = planarToRgb8(Float32Array.of(-2, -1, 0, 1, 2, NaN, -0.5, 0.5, -0.99), 3, 1, undefined, 'signed');
    // Interleaved: r = [-2, -1, 0], g = [1, 2, NaN], b = [-0.5, 0.5, -0.99].
    assert.deepEqual([...bytes], [0, 255, 64, 0, 255, 191, 128, 0, 1]);
  });

  it('encodes a float image to the same PNG as its bytes', async () => {
    const width = 19;
    const height = 7;
    const data = Float32Array.from({ length: 3 * width * height }, (_, i) => Math.sin(i) * 1.1);
    const direct = await encodePlanarPng(data, width, height, byteMapping('signed'), 1);
    assert.deepEqual(direct, await encodePng(planarToRgb8(data, width, height, undefined, 'signed'), width, height, 1));
    await assert.rejects(encodePlanarPng(data, width, height, byteMapping('signed'), 0), RangeError);
  });

  it('round-trips every pixel through an independent decoder, at every level and odd sizes', async () => {
    for (const [width, height] of [
      [1, 1],
      [2, 3],
      [7, 5],
      [33, 1],
      [1, 17],
      [64, 48],
    ] as const) {
      const rgb = pattern(width, height, width + height);
      for (const level of [0, 1, 3, 4, 9]) {
        const png = await encodePng(rgb, width, height, level);
        const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
        assert.deepEqual([info.width, info.height, info.channels], [width, height, 3], `${width}x${height} level ${level}`);
        assert.ok(data.equals(rgb), `${width}x${height} level ${level}: pixels differ`);
      }
    }
  });

  it('compresses smooth images to almost nothing and stores at level 0', async () => {
    const width = 256;
    const height = 128;
    const rgb = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) rgb.set([x, y * 2, 64], (y * width + x) * 3);
    }
    const filtered = await encodePng(rgb, width, height, 1);
    const stored = await encodePng(rgb, width, height, 0);
    assert.ok(filtered.length < 2000, `${filtered.length} bytes for a gradient`);
    assert.ok(stored.length > rgb.length, `${stored.length} bytes stored for ${rgb.length} bytes of pixels`);
  });

  it('uses a provided filter buffer and refuses bad levels and sizes', async () => {
    const rgb = pattern(4, 4, 3);
    const plain = await encodePng(rgb, 4, 4, 1);
    assert.deepEqual(await encodePng(rgb, 4, 4, 1, Buffer.alloc(13 * 4, 0xaa)), plain);
    await assert.rejects(encodePng(rgb, 4, 4, 10), RangeError);
    await assert.rejects(encodePng(rgb, 4, 4, -1), RangeError);
    await assert.rejects(encodePng(rgb, 5, 4, 1), RangeError);
    await assert.rejects(encodePng(rgb, 4, 4, 1, Buffer.alloc(3)), RangeError);
  });
});
