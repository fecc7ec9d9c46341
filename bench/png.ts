/**
 * `npx tsx bench/png.ts <image>…`: what PNG encoding costs and saves on real pictures. Each image
 * is resized to 512×512 and encoded four at a time (as a 4-image job's outputs are) by this
 * server's encoder at each level and, for reference, by sharp (libvips) unfiltered at level 6
 * (this server's encoder before) and with adaptive filtering at level 2, interleaved; prints time
 * and size relative to the default. Use photographs: the bench model's outputs are noise.
 */
import sharp from 'sharp';
import { DEFAULT_PNG_COMPRESSION_LEVEL, planarToRgb8, rgb8ToPlanar } from '../src/inference/imageIO.js';
import { encodePng } from '../src/inference/pngEncoder.js';

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error('usage: npx tsx bench/png.ts <image> [image …]');
  process.exit(2);
}
const SIZE = 512;
const REPS = 7;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

type Encoder = (rgb: Buffer) => Promise<Buffer>;
const viaSharp =
  (compressionLevel: number, adaptiveFiltering: boolean): Encoder =>
  (rgb) =>
    sharp(rgb, { raw: { width: SIZE, height: SIZE, channels: 3 } })
      .png({ compressionLevel, adaptiveFiltering })
      .toBuffer();
const encoders: [string, Encoder][] = [
  ...[0, 1, 2, 3, 4, 6, 9].map((level): [string, Encoder] => [`server level ${level}`, (rgb) => encodePng(rgb, SIZE, SIZE, level)]),
  ['sharp level 6 unfiltered', viaSharp(6, false)],
  ['sharp level 2 adaptive', viaSharp(2, true)],
];
const baseline = `server level ${DEFAULT_PNG_COMPRESSION_LEVEL}`;

const rows: Record<string, Record<string, string>> = {};
for (const path of paths) {
  const decoded = await sharp(path).resize(SIZE, SIZE, { fit: 'cover' }).removeAlpha().raw().toBuffer();
  // The pixels a pipeline output would have after the float round trip.
  const rgb = planarToRgb8(rgb8ToPlanar(decoded, SIZE, SIZE), SIZE, SIZE);
  const times = new Map<string, number[]>(encoders.map(([name]) => [name, []]));
  const sizes = new Map<string, number>();
  for (let r = 0; r < REPS; r++) {
    for (const [name, encode] of encoders) {
      const t = performance.now();
      const outs = await Promise.all([0, 1, 2, 3].map(() => encode(rgb)));
      times.get(name)!.push(performance.now() - t);
      sizes.set(name, outs[0]!.length);
    }
  }
  for (const [name] of encoders) {
    rows[`${path}: ${name}`] = {
      'time vs default': (median(times.get(name)!) / median(times.get(baseline)!)).toFixed(2),
      'size vs default': (sizes.get(name)! / sizes.get(baseline)!).toFixed(3),
      'KiB per image': (sizes.get(name)! / 1024).toFixed(0),
    };
  }
}
console.table(rows);
