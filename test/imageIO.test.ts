import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  ACCEPTED_INPUT_FORMATS,
  ImageDecodeError,
  decodeToTensor,
  encodeFromTensor,
  encodePreview,
  mimeTypeFor,
  planarToRgb8,
  probeImage,
  resolveOutputSize,
  rgb8ToPlanar,
  sniffImageFormat,
  type DecodeOptions,
  type DecodedImage,
  type InputFormat,
} from '../src/inference/imageIO.js';

const LIMITS = { maxInputPixels: 4096 * 4096 };
const OPTS: DecodeOptions = {
  multiple: 8,
  maxPixels: 1024 * 1024,
  defaultSize: { width: 512, height: 512 },
  limits: LIMITS,
};

type RGB = [number, number, number];

function solid(width: number, height: number, rgb: RGB, alpha?: number): sharp.Sharp {
  const [r, g, b] = rgb;
  return sharp({
    create: {
      width,
      height,
      channels: alpha === undefined ? 3 : 4,
      background: alpha === undefined ? { r, g, b } : { r, g, b, alpha },
    },
  });
}

/** Interleaved RGB8 buffer: red = horizontal ramp, green = vertical ramp, blue constant. */
function gradientRaw(width: number, height: number, blue = 64): Buffer {
  const buf = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const j = (y * width + x) * 3;
      buf[j] = Math.round((x * 255) / (width - 1));
      buf[j + 1] = Math.round((y * 255) / (height - 1));
      buf[j + 2] = blue;
    }
  }
  return buf;
}

function gradient(width: number, height: number): sharp.Sharp {
  return sharp(gradientRaw(width, height), { raw: { width, height, channels: 3 } });
}

function encodeAs(img: sharp.Sharp, format: InputFormat): Promise<Buffer> {
  switch (format) {
    case 'png':
      return img.png().toBuffer();
    case 'jpeg':
      return img.jpeg({ quality: 95 }).toBuffer();
    case 'webp':
      return img.webp({ quality: 95 }).toBuffer();
    case 'avif':
      return img.avif({ quality: 90 }).toBuffer();
    case 'tiff':
      return img.tiff({ compression: 'lzw' }).toBuffer(); // default is lossy JPEG-in-TIFF
    case 'gif':
      return img.gif().toBuffer();
  }
}

/** Value of channel c at (x, y) of a planar [3,H,W] tensor. */
function px(img: DecodedImage, c: number, x: number, y: number): number {
  return img.data[c * img.width * img.height + y * img.width + x]!;
}

function meanChannel(img: DecodedImage, c: number): number {
  const n = img.width * img.height;
  let s = 0;
  for (let i = 0; i < n; i++) s += img.data[c * n + i]!;
  return s / n;
}

function assertColour(img: DecodedImage, rgb: RGB, tol: number, what: string): void {
  for (let c = 0; c < 3; c++) {
    const mean = meanChannel(img, c) * 255;
    assert.ok(Math.abs(mean - rgb[c]!) <= tol + 1e-3, `${what}: channel ${c} mean ${mean.toFixed(2)} vs ${rgb[c]} (tol ${tol})`);
  }
}

async function rejectsWith(p: Promise<unknown>, code: 'INVALID_IMAGE' | 'IMAGE_TOO_LARGE', msg?: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ImageDecodeError, `expected ImageDecodeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (msg) assert.match(err.message, msg);
    return true;
  });
}

const avifSupported = sharp.format.heif.output.buffer && sharp.format.heif.input.buffer;
const FORMATS: InputFormat[] = ['png', 'jpeg', 'webp', 'avif', 'tiff', 'gif'];
// Lossy formats get a tolerance (8-bit units) on solid colours; GIF's palette is exact for one colour.
const SOLID_TOL: Record<InputFormat, number> = { png: 0, tiff: 0, gif: 0, jpeg: 3, webp: 4, avif: 6 };

describe('sniffImageFormat', () => {
  it('recognises every accepted format from encoder output', async () => {
    for (const f of FORMATS) {
      if (f === 'avif' && !avifSupported) continue;
      const bytes = await encodeAs(solid(16, 16, [10, 20, 30]), f);
      assert.equal(sniffImageFormat(bytes), f, f);
    }
  });

  it('handles hand-made headers and rejects look-alikes', () => {
    const b = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
    assert.equal(sniffImageFormat(b('MM\x00\x2a\x00\x00\x00\x08')), 'tiff');
    assert.equal(sniffImageFormat(b('II\x2a\x00\x08\x00\x00\x00')), 'tiff');
    assert.equal(sniffImageFormat(b('GIF87a....')), 'gif');
    assert.equal(sniffImageFormat(b('GIF88a....')), null);
    assert.equal(sniffImageFormat(b('RIFF\x00\x00\x00\x00WAVEfmt ')), null);
    // AVIF via a compatible brand, with a different major brand.
    assert.equal(sniffImageFormat(b('\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avis')), 'avif');
    // HEIC (HEVC) is not AVIF.
    assert.equal(sniffImageFormat(b('\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic')), null);
    // Brand outside the declared ftyp box does not count.
    assert.equal(sniffImageFormat(b('\x00\x00\x00\x10ftypmif1\x00\x00\x00\x00avif')), null);
    assert.equal(sniffImageFormat(b('<svg xmlns="http://www.w3.org/2000/svg"/>')), null);
    assert.equal(sniffImageFormat(new Uint8Array(0)), null);
    assert.equal(sniffImageFormat(Uint8Array.of(0x89, 0x50)), null);
    assert.equal(sniffImageFormat(Uint8Array.of(0xff, 0xd8, 0xff)), null); // < 4 bytes
  });
});

describe('resolveOutputSize', () => {
  const o = { multiple: 8, maxPixels: 512 * 512, defaultSize: { width: 512, height: 512 } };

  it('snaps explicit sizes down to the multiple, min one multiple', () => {
    assert.deepEqual(resolveOutputSize({ width: 257, height: 129 }, { width: 300, height: 200 }, o), {
      width: 256,
      height: 128,
    });
    assert.deepEqual(resolveOutputSize({ width: 3, height: 64 }, { width: 300, height: 200 }, { ...o, multiple: 64 }), {
      width: 64,
      height: 64,
    });
    assert.throws(() => resolveOutputSize({ width: 0, height: 64 }, { width: 1, height: 1 }, o), RangeError);
    assert.throws(() => resolveOutputSize({ width: 4096, height: 4096 }, { width: 1, height: 1 }, o), RangeError);
  });

  it("'auto' keeps aspect, downscales only when over budget, and snaps", () => {
    // Smaller than the budget: kept, snapped.
    assert.deepEqual(resolveOutputSize('auto', { width: 300, height: 200 }, o), { width: 296, height: 200 });
    // Larger: scaled to fit maxPixels with the same aspect.
    const big = resolveOutputSize('auto', { width: 4000, height: 2000 }, o);
    assert.ok(big.width * big.height <= o.maxPixels);
    assert.equal(big.width % 8, 0);
    assert.equal(big.height % 8, 0);
    assert.ok(Math.abs(big.width / big.height - 2) < 0.05, JSON.stringify(big));
    assert.ok(big.width * big.height > o.maxPixels * 0.95, 'uses most of the budget');
    // Extreme aspect: one-multiple minimum still respects the budget.
    const thin = resolveOutputSize('auto', { width: 1_000_000, height: 10 }, o);
    assert.equal(thin.height, 8);
    assert.ok(thin.width * thin.height <= o.maxPixels, JSON.stringify(thin));
    // Unusable input dimensions fall back to defaultSize.
    assert.deepEqual(resolveOutputSize('auto', { width: 0, height: NaN }, o), { width: 512, height: 512 });
  });
});

describe('decodeToTensor: formats', () => {
  for (const f of FORMATS) {
    const skip = f === 'avif' && !avifSupported ? 'sharp build has no AVIF (heif) encoder/decoder' : false;

    it(`decodes a solid ${f}`, { skip }, async () => {
      const colour: RGB = [200, 100, 50];
      const bytes = await encodeAs(solid(64, 48, colour), f);
      const probe = await probeImage(bytes, LIMITS);
      assert.deepEqual(probe, { format: f, width: 64, height: 48 });
      const img = await decodeToTensor(bytes, 'auto', OPTS);
      assert.equal(img.width, 64);
      assert.equal(img.height, 48);
      assert.equal(img.data.length, 3 * 64 * 48);
      assertColour(img, colour, SOLID_TOL[f], f);
    });

    it(`decodes a gradient ${f} in planar [3,H,W] layout`, { skip }, async () => {
      const bytes = await encodeAs(gradient(64, 48), f);
      const img = await decodeToTensor(bytes, 'auto', OPTS);
      assert.equal(img.width, 64);
      assert.equal(img.height, 48);
      const tol = f === 'png' || f === 'tiff' ? 1e-6 : f === 'gif' ? 0.1 : 0.06;
      for (const [x, y] of [
        [0, 0],
        [63, 0],
        [0, 47],
        [63, 47],
        [32, 24],
      ] as const) {
        const wantR = Math.round((x * 255) / 63) / 255;
        const wantG = Math.round((y * 255) / 47) / 255;
        assert.ok(Math.abs(px(img, 0, x, y) - wantR) <= tol, `${f} R(${x},${y}) = ${px(img, 0, x, y)} vs ${wantR}`);
        assert.ok(Math.abs(px(img, 1, x, y) - wantG) <= tol, `${f} G(${x},${y}) = ${px(img, 1, x, y)} vs ${wantG}`);
        assert.ok(Math.abs(px(img, 2, x, y) - 64 / 255) <= tol + 0.03, `${f} B(${x},${y})`);
      }
      for (let i = 0; i < img.data.length; i++) {
        const v = img.data[i]!;
        assert.ok(v >= 0 && v <= 1, `value ${v} out of [0,1]`);
      }
    });
  }

  it('decodes 16-bit and greyscale PNGs to 8-bit RGB', async () => {
    const grey = await solid(32, 32, [128, 128, 128]).toColourspace('b-w').png().toBuffer();
    assertColour(await decodeToTensor(grey, 'auto', OPTS), [128, 128, 128], 0, 'grey');
    const deep = await solid(32, 32, [255, 0, 128]).toColourspace('rgb16').png().toBuffer();
    assertColour(await decodeToTensor(deep, 'auto', OPTS), [255, 0, 128], 1, '16-bit');
  });

  it('takes the first frame of an animated GIF', async () => {
    const red = await solid(40, 32, [255, 0, 0]).png().toBuffer();
    const blue = await solid(40, 32, [0, 0, 255]).png().toBuffer();
    const gif = await sharp([red, blue], { join: { animated: true } })
      .gif()
      .toBuffer();
    assert.equal((await sharp(gif).metadata()).pages, 2);
    assert.deepEqual(await probeImage(gif, LIMITS), { format: 'gif', width: 40, height: 32 });
    const img = await decodeToTensor(gif, 'auto', OPTS);
    assert.deepEqual([img.width, img.height], [40, 32]);
    assertColour(img, [255, 0, 0], 0, 'first frame');
  });
});

describe('decodeToTensor: orientation, alpha, resizing', () => {
  it('applies EXIF orientation 6 (dimensions swapped, content rotated clockwise)', async () => {
    // Stored 300x200: left half red, right half blue.
    const left = await solid(150, 200, [255, 0, 0]).png().toBuffer();
    const bytes = await solid(300, 200, [0, 0, 255])
      .composite([{ input: left, left: 0, top: 0 }])
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    assert.equal((await sharp(bytes).metadata()).orientation, 6);
    assert.deepEqual(await probeImage(bytes, LIMITS), { format: 'jpeg', width: 200, height: 300 });
    const img = await decodeToTensor(bytes, 'auto', OPTS);
    assert.deepEqual([img.width, img.height], [200, 296]);
    // Rotating 90° clockwise moves the stored left column to the top row.
    assert.ok(px(img, 0, 100, 10) > 0.9 && px(img, 2, 100, 10) < 0.1, 'top is red');
    assert.ok(px(img, 0, 100, 285) < 0.1 && px(img, 2, 100, 285) > 0.9, 'bottom is blue');
    // Explicit sizes are taken in the displayed orientation.
    const explicit = await decodeToTensor(bytes, { width: 64, height: 96 }, OPTS);
    assert.deepEqual([explicit.width, explicit.height], [64, 96]);
  });

  it('flattens alpha onto white', async () => {
    const clear = await solid(32, 32, [0, 0, 0], 0).png().toBuffer();
    assertColour(await decodeToTensor(clear, 'auto', OPTS), [255, 255, 255], 0, 'transparent');
    const half = await solid(32, 32, [0, 0, 0], 0.5).png().toBuffer();
    assertColour(await decodeToTensor(half, 'auto', OPTS), [127.5, 127.5, 127.5], 1.5, 'half alpha');
    const webp = await solid(32, 32, [255, 0, 0], 0).webp({ lossless: true }).toBuffer();
    assertColour(await decodeToTensor(webp, 'auto', OPTS), [255, 255, 255], 0, 'transparent webp');
  });

  it('resizes to explicit sizes snapped to the multiple', async () => {
    const bytes = await gradient(300, 200).png().toBuffer();
    const img = await decodeToTensor(bytes, { width: 257, height: 129 }, OPTS);
    assert.deepEqual([img.width, img.height], [256, 128]);
    assert.equal(img.data.length, 3 * 256 * 128);
    const img64 = await decodeToTensor(bytes, { width: 100, height: 100 }, { ...OPTS, multiple: 64 });
    assert.deepEqual([img64.width, img64.height], [64, 64]);
  });

  describe('an explicit size of another aspect ratio follows fit', () => {
    // 300x100 with red | green | blue thirds, into a 64x64 square.
    const thirds = async (): Promise<Buffer> => {
      const third = (rgb: RGB) => solid(100, 100, rgb).png().toBuffer();
      return solid(300, 100, [0, 0, 255])
        .composite([
          { input: await third([255, 0, 0]), left: 0, top: 0 },
          { input: await third([0, 255, 0]), left: 100, top: 0 },
        ])
        .png()
        .toBuffer();
    };
    const rgbAt = (img: DecodedImage, x: number, y: number): number[] => [0, 1, 2].map((c) => Math.round(px(img, c, x, y) * 255));

    it('pad (the default) keeps the whole picture, centred between white bars', async () => {
      const img = await decodeToTensor(await thirds(), { width: 64, height: 64 }, OPTS);
      assert.deepEqual([img.width, img.height], [64, 64]);
      assert.deepEqual(rgbAt(img, 32, 0), [255, 255, 255]);
      assert.deepEqual(rgbAt(img, 32, 63), [255, 255, 255]);
      assert.deepEqual(rgbAt(img, 2, 32), [255, 0, 0]);
      assert.deepEqual(rgbAt(img, 32, 32), [0, 255, 0]);
      assert.deepEqual(rgbAt(img, 61, 32), [0, 0, 255]);
    });

    it('crop keeps the centre', async () => {
      const img = await decodeToTensor(await thirds(), { width: 64, height: 64 }, { ...OPTS, fit: 'crop' });
      assertColour(img, [0, 255, 0], 1, 'centre crop');
    });

    it('stretch keeps every third, full height', async () => {
      const img = await decodeToTensor(await thirds(), { width: 64, height: 64 }, { ...OPTS, fit: 'stretch' });
      assert.deepEqual(rgbAt(img, 2, 0), [255, 0, 0]);
      assert.deepEqual(rgbAt(img, 32, 63), [0, 255, 0]);
      assert.deepEqual(rgbAt(img, 61, 0), [0, 0, 255]);
    });
  });

  it("'auto' keeps the aspect ratio within maxPixels", async () => {
    const bytes = await gradient(1000, 500).png().toBuffer();
    const opts = { ...OPTS, maxPixels: 128 * 128 };
    const img = await decodeToTensor(bytes, 'auto', opts);
    assert.ok(img.width * img.height <= opts.maxPixels);
    assert.equal(img.width % 8, 0);
    assert.equal(img.height % 8, 0);
    assert.ok(Math.abs(img.width / img.height - 2) < 0.1, `${img.width}x${img.height}`);
    assert.deepEqual([img.width, img.height], [176, 88]);
    // The horizontal ramp survives the downscale (left dark, right bright).
    assert.ok(px(img, 0, 0, 44) < 0.05 && px(img, 0, 175, 44) > 0.95);
  });
});

describe('decodeToTensor: hostile input', () => {
  let bomb: Buffer;
  before(async () => {
    // 20000x20000 = 400 MP declared (1.2 GB as RGB8) but ~1 MB on disk.
    bomb = await sharp({
      create: { width: 20000, height: 20000, channels: 3, background: { r: 1, g: 2, b: 3 } },
      limitInputPixels: false,
    })
      .png({ compressionLevel: 9 })
      .toBuffer();
  });
  after(() => {
    bomb = Buffer.alloc(0);
  });

  it('refuses a decompression bomb before decoding', async () => {
    assert.ok(bomb.length < 4 * 1024 * 1024, `bomb is ${bomb.length} bytes`);
    const limits = { maxInputPixels: 4096 * 4096 };
    const rssBefore = process.memoryUsage().rss;
    await rejectsWith(probeImage(bomb, limits), 'IMAGE_TOO_LARGE', /16777216/);
    await rejectsWith(decodeToTensor(bomb, 'auto', { ...OPTS, limits }), 'IMAGE_TOO_LARGE', /20000x20000/);
    await rejectsWith(decodeToTensor(bomb, { width: 64, height: 64 }, { ...OPTS, limits }), 'IMAGE_TOO_LARGE');
    const grew = process.memoryUsage().rss - rssBefore;
    assert.ok(grew < 200 * 1024 * 1024, `rss grew by ${(grew / 1048576).toFixed(0)} MiB`);
    // Refused from the header alone: its first KiB (signature, IHDR, the start of IDAT) gets the
    // same answer, where decoding any pixel would have failed on the truncated stream (INVALID_IMAGE).
    const header = bomb.subarray(0, 1024);
    await rejectsWith(probeImage(header, limits), 'IMAGE_TOO_LARGE', /20000x20000/);
    await rejectsWith(decodeToTensor(header, { width: 64, height: 64 }, { ...OPTS, limits }), 'IMAGE_TOO_LARGE', /20000x20000/);
  });

  it("enforces sharp's limitInputPixels too (limit smaller than a real image)", async () => {
    const bytes = await solid(100, 100, [1, 2, 3]).png().toBuffer();
    await rejectsWith(probeImage(bytes, { maxInputPixels: 9999 }), 'IMAGE_TOO_LARGE', /9999/);
    await rejectsWith(decodeToTensor(bytes, 'auto', { ...OPTS, limits: { maxInputPixels: 9999 } }), 'IMAGE_TOO_LARGE');
    assert.deepEqual(await probeImage(bytes, { maxInputPixels: 10000 }), { format: 'png', width: 100, height: 100 });
  });

  it('rejects truncated files', async () => {
    for (const f of ['png', 'jpeg', 'webp', 'gif'] as const) {
      const full = await encodeAs(gradient(64, 64), f);
      const cut = full.subarray(0, Math.floor(full.length / 2));
      await rejectsWith(decodeToTensor(cut, 'auto', OPTS), 'INVALID_IMAGE');
    }
  });

  it('rejects random bytes and a text file named .png, naming the accepted formats', async () => {
    const random = new Uint8Array(4096);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    const names = new RegExp(ACCEPTED_INPUT_FORMATS.map((f) => f.toUpperCase()).join('.*'));
    await rejectsWith(decodeToTensor(random, 'auto', OPTS), 'INVALID_IMAGE', names);
    await rejectsWith(probeImage(random, LIMITS), 'INVALID_IMAGE', names);
    const text = Uint8Array.from(Buffer.from('this is not an image, whatever the file name "photo.png" says\n'));
    await rejectsWith(decodeToTensor(text, 'auto', OPTS), 'INVALID_IMAGE', /PNG, JPEG, WEBP, AVIF, TIFF, GIF/);
    await rejectsWith(decodeToTensor(new Uint8Array(0), 'auto', OPTS), 'INVALID_IMAGE');
    const svg = Uint8Array.from(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'));
    await rejectsWith(decodeToTensor(svg, 'auto', OPTS), 'INVALID_IMAGE');
  });

  it('rejects a valid magic number followed by garbage', async () => {
    const sig = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
    const bytes = new Uint8Array(256);
    bytes.set(sig);
    for (let i = 8; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
    await rejectsWith(decodeToTensor(bytes, 'auto', OPTS), 'INVALID_IMAGE');
    await rejectsWith(probeImage(bytes, LIMITS), 'INVALID_IMAGE');
  });

  it('rejects a non-positive pixel limit (0 would disable sharp’s guard)', async () => {
    const bytes = await solid(8, 8, [1, 2, 3]).png().toBuffer();
    await assert.rejects(probeImage(bytes, { maxInputPixels: 0 }), RangeError);
  });
});

describe('encoding', () => {
  it('PNG round trip is exact for 8-bit values', async () => {
    const w = 40;
    const h = 24;
    const data = new Float32Array(3 * w * h);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 256) / 255;
    const png = await encodeFromTensor(data, w, h, 'png');
    assert.equal(sniffImageFormat(png), 'png');
    const back = await decodeToTensor(png, 'auto', OPTS);
    assert.deepEqual([back.width, back.height], [w, h]);
    assert.deepEqual(back.data, data);
  });

  it('clamps and rounds arbitrary floats (NaN -> 0)', async () => {
    const w = 8;
    const h = 8;
    const n = w * h;
    const data = new Float32Array(3 * n);
    for (let i = 0; i < data.length; i++) data[i] = (i % 17) / 10 - 0.3; // -0.3 .. 1.3
    data[5] = NaN;
    data[6] = Infinity;
    data[7] = -Infinity;
    const rgb = planarToRgb8(data, w, h);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) {
        const v = data[c * n + i]!;
        const want = Number.isNaN(v) ? 0 : Math.round(Math.min(1, Math.max(0, v)) * 255);
        assert.equal(rgb[i * 3 + c], want, `pixel ${i} channel ${c} (${v})`);
      }
    }
    const back = await decodeToTensor(await encodeFromTensor(data, w, h, 'png'), 'auto', OPTS);
    assert.deepEqual(back.data, rgb8ToPlanar(rgb, w, h));
  });

  it('PNG compression level trades time for bytes and never changes the pixels', async () => {
    const w = 96;
    const h = 64;
    const data = rgb8ToPlanar(gradientRaw(w, h), w, h);
    const sizes: number[] = [];
    for (const level of [0, 1, 9]) {
      const png = await encodeFromTensor(data, w, h, 'png', undefined, { pngCompressionLevel: level });
      assert.deepEqual((await decodeToTensor(png, 'auto', OPTS)).data, data, `level ${level}`);
      sizes.push(png.length);
    }
    assert.ok(sizes[0]! > sizes[1]! && sizes[1]! > sizes[2]!, `sizes at levels 0, 1, 9: ${sizes.join(', ')}`);
    await assert.rejects(encodeFromTensor(data, w, h, 'png', undefined, { pngCompressionLevel: 10 }), RangeError);
  });

  it('encodes through reusable buffers without changing the result', async () => {
    const w = 32;
    const h = 16;
    const data = rgb8ToPlanar(gradientRaw(w, h), w, h);
    const plain = await encodeFromTensor(data, w, h, 'png');
    const reused = await encodeFromTensor(data, w, h, 'png', undefined, { allocate: (bytes) => Buffer.alloc(bytes, 7) });
    assert.deepEqual(reused, plain);
  });

  it('validates tensor shape and quality', async () => {
    await assert.rejects(encodeFromTensor(new Float32Array(10), 2, 2, 'png'), RangeError);
    await assert.rejects(encodeFromTensor(new Float32Array(12), 2, 2, 'jpeg', 0), RangeError);
    await assert.rejects(encodeFromTensor(new Float32Array(12), 2, 2, 'webp', 101), RangeError);
  });

  it('jpeg/webp quality changes the output size', async () => {
    const w = 128;
    const h = 96;
    const n = w * h;
    const data = new Float32Array(3 * n);
    let seed = 12345;
    for (let i = 0; i < data.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      data[i] = 0.5 * ((i % w) / w) + 0.5 * (seed / 2 ** 32); // ramp + noise
    }
    for (const format of ['jpeg', 'webp'] as const) {
      const lo = await encodeFromTensor(data, w, h, format, 20);
      const hi = await encodeFromTensor(data, w, h, format, 95);
      assert.equal(sniffImageFormat(lo), format);
      assert.ok(lo.length < hi.length, `${format}: q20 ${lo.length} bytes vs q95 ${hi.length} bytes`);
      const meta = await sharp(hi).metadata();
      assert.deepEqual([meta.width, meta.height], [w, h]);
    }
  });

  it('preview is a small JPEG within maxSide', async () => {
    const w = 512;
    const h = 256;
    const data = rgb8ToPlanar(gradientRaw(w, h), w, h);
    const { bytes, mimeType } = await encodePreview(data, w, h, 128);
    assert.equal(mimeType, 'image/jpeg');
    assert.equal(sniffImageFormat(bytes), 'jpeg');
    const meta = await sharp(bytes).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 64]);
    assert.ok(bytes.length < 16 * 1024, `${bytes.length} bytes`);
    // Never enlarged.
    const tiny = await encodePreview(rgb8ToPlanar(gradientRaw(32, 16), 32, 16), 32, 16, 128);
    const tm = await sharp(tiny.bytes).metadata();
    assert.deepEqual([tm.width, tm.height], [32, 16]);
  });

  it('mimeTypeFor', () => {
    assert.equal(mimeTypeFor('png'), 'image/png');
    assert.equal(mimeTypeFor('jpeg'), 'image/jpeg');
    assert.equal(mimeTypeFor('webp'), 'image/webp');
  });
});
