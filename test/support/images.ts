/** Test images made with sharp, and exact expected colour edits. */
import sharp from 'sharp';

export type Rgb = [number, number, number];

/** A PNG whose left half is `left` and right half `right` (0..255 RGB). */
export async function twoColourPng(width: number, height: number, left: Rgb, right: Rgb): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const c = x < width / 2 ? left : right;
      raw.set(c, (y * width + x) * 3);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

export async function solidPng(width: number, height: number, colour: Rgb): Promise<Buffer> {
  return twoColourPng(width, height, colour, colour);
}

export async function rawPixels(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

export async function pixelAt(bytes: Uint8Array, x: number, y: number): Promise<Rgb> {
  const { data, width } = await rawPixels(bytes);
  const i = (y * width + x) * 3;
  return [data[i]!, data[i + 1]!, data[i + 2]!];
}

const clamp01 = (v: number): number => Math.min(1, Math.max(0, v));

/** The reference colour transforms of tiny-edit, on RGB in [0,1], written independently of the model. */
export const reference = {
  grayscale: ([r, g, b]: number[]) => {
    const y = 0.299 * r! + 0.587 * g! + 0.114 * b!;
    return [y, y, y];
  },
  invert: (c: number[]) => c.map((v) => 1 - v),
  sepia: ([r, g, b]: number[]) => [0.393 * r! + 0.769 * g! + 0.189 * b!, 0.349 * r! + 0.686 * g! + 0.168 * b!, 0.272 * r! + 0.534 * g! + 0.131 * b!],
  brighter: (c: number[]) => c.map((v) => 1.25 * v),
  darker: (c: number[]) => c.map((v) => 0.75 * v),
  warmer: ([r, g, b]: number[]) => [r! + 0.1, g!, b! - 0.1],
  cooler: ([r, g, b]: number[]) => [r! - 0.1, g!, b! + 0.1],
} satisfies Record<string, (c: number[]) => number[]>;

/** Applies reference transforms in order to a 0..255 colour; returns the clamped 0..255 result. */
export function expectedColour(colour: Rgb, ...edits: (keyof typeof reference)[]): Rgb {
  let c = colour.map((v) => v / 255);
  for (const e of edits) c = reference[e](c);
  return c.map((v) => Math.round(clamp01(v) * 255)) as Rgb;
}

export function maxChannelDiff(a: readonly number[], b: readonly number[]): number {
  return Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
}

/** A greyscale mask: `value` (255 = edit) on the left half, black (keep) on the right. */
export async function leftHalfMask(width: number, height: number, value = 255): Promise<Buffer> {
  const raw = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width / 2; x++) raw[y * width + x] = value;
  return sharp(raw, { raw: { width, height, channels: 1 } })
    .png()
    .toBuffer();
}

/** The mean RGB of an encoded image. */
export async function meanColour(bytes: Uint8Array): Promise<Rgb> {
  const { data } = await rawPixels(bytes);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i++) sum[i % 3]! += data[i]!;
  return sum.map((s) => s / (data.length / 3)) as Rgb;
}

/** A width × height PNG of 8×8 squares, each one colour (exact under an 8× average-pool VAE). */
export async function squaresPng(seed: number, width = 64, height = 64): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sq = ((y >> 3) * 8 + (x >> 3)) * seed;
      const o = (y * width + x) * 3;
      raw[o] = (sq * 37) % 256;
      raw[o + 1] = (sq * 91 + 40) % 256;
      raw[o + 2] = (sq * 53 + 100) % 256;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}
