/**
 * PNG encoder for the server's outputs: 8-bit RGB, every row Paeth-filtered, deflated by Node's
 * zlib on the libuv thread pool.
 *
 * Why not sharp's encoder: it offers no filter choice, only none or adaptive (all five per row).
 * Unfiltered, photos barely compress (694 KiB per 512² photo at level 6) and smooth images come
 * out larger than stored; adaptive costs ~1.5× as much. One fixed Paeth filter plus zlib's RLE
 * strategy — the approach of fast encoders such as fpng — gives smaller files than sharp's
 * adaptive level 2 in about half its time (measured: `npx tsx bench/png.ts <photo>`, BENCHMARKS.md).
 */
import zlib from 'node:zlib';
import { promisify } from 'node:util';

const deflate = promisify(zlib.deflate);

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const FILTER_NONE = 0;
const FILTER_PAETH = 4;

/**
 * Levels: 0 stores (no filter, no compression: fastest, largest); 1–3 deflate the Paeth-filtered
 * rows with zlib's RLE strategy (fast, and on photos as small as level 6); 4–9 use zlib's full
 * match search at that level (slower; smaller on graphics with repeated runs, such as text or flat
 * art).
 */
export async function encodePng(rgb: Uint8Array, width: number, height: number, level: number, filtered?: Buffer): Promise<Buffer> {
  checkLevel(level);
  const stride = width * 3;
  if (rgb.length !== stride * height) throw new RangeError(`expected ${stride * height} bytes of RGB, got ${rgb.length}`);
  const rows = rowBuffer(width, height, filtered);
  if (level === 0) copyUnfiltered(rgb, stride, height, rows);
  else paethFilter(rgb, stride, height, rows);
  return deflateToPng(rows, width, height, level);
}

/**
 * The same PNG straight from a planar float image [3, H, W]: each row is converted to bytes
 * (byte = clamp(⌊v·scale + offset⌋, 0, 255)) and Paeth-filtered in one pass, without an RGB8 copy
 * of the whole image. Levels 1–9 (level 0 stores unfiltered rows: use `encodePng`).
 */
export async function encodePlanarPng(
  data: Float32Array,
  width: number,
  height: number,
  mapping: { scale: number; offset: number },
  level: number,
  filtered?: Buffer,
): Promise<Buffer> {
  checkLevel(level);
  if (level === 0) throw new RangeError('level 0 stores unfiltered rows: use encodePng');
  if (data.length !== 3 * width * height) throw new RangeError(`expected ${3 * width * height} floats, got ${data.length}`);
  const rows = rowBuffer(width, height, filtered);
  planarToPaethRows(data, width, height, mapping.scale, mapping.offset, rows);
  return deflateToPng(rows, width, height, level);
}

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError(`PNG compression level must be an integer in 0..9, got ${level}`);
}

function rowBuffer(width: number, height: number, filtered: Buffer | undefined): Buffer {
  const bytes = (width * 3 + 1) * height;
  const rows = filtered ?? Buffer.allocUnsafe(bytes);
  if (rows.length !== bytes) throw new RangeError(`the filter buffer must hold ${bytes} bytes`);
  return rows;
}

async function deflateToPng(rows: Buffer, width: number, height: number, level: number): Promise<Buffer> {
  // One output chunk big enough for incompressible data (zlib's deflateBound), so the deflate is
  // one thread-pool task instead of a round trip to the JS thread per default 16 KiB chunk
  // (measured: ~1.5–2× faster for four 512² images encoded at once).
  const chunkSize = rows.length + (rows.length >> 10) + 1024;
  const strategy = level >= 1 && level <= 3 ? { strategy: zlib.constants.Z_RLE } : {};
  const idat = await deflate(rows, { level, chunkSize, ...strategy });
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: truecolour RGB
  // compression 0 (deflate), filter method 0 (adaptive per-row types), interlace 0: zeros already
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function copyUnfiltered(rgb: Uint8Array, stride: number, height: number, out: Buffer): void {
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    out[o] = FILTER_NONE;
    out.set(rgb.subarray(y * stride, (y + 1) * stride), o + 1);
  }
}

/** Each byte minus the Paeth predictor of its left (a), upper (b) and upper-left (c) neighbours. */
export function paethFilter(rgb: Uint8Array, stride: number, height: number, out: Uint8Array): void {
  // The row above the first is zeros: the predictor is then the left byte, as the spec says.
  const zeros = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const prev = y === 0 ? zeros : rgb.subarray((y - 1) * stride, y * stride);
    paethRow(rgb.subarray(y * stride, (y + 1) * stride), prev, out, y * (stride + 1));
  }
}

/** Writes filter type 4 and the Paeth residuals of `cur` (RGB bytes) over `prev` at `out[offset]`. */
function paethRow(cur: Uint8Array, prev: Uint8Array, out: Uint8Array, offset: number): void {
  const stride = cur.length;
  const o = offset + 1;
  out[offset] = FILTER_PAETH;
  // First pixel: no left neighbours (a = c = 0), so the predictor is the byte above.
  for (let x = 0; x < 3 && x < stride; x++) out[o + x] = cur[x]! - prev[x]!;
  for (let x = 3; x < stride; x++) {
    const a = cur[x - 3]!;
    const b = prev[x]!;
    const c = prev[x - 3]!;
    // Branch-free (3–4× faster than the textbook ifs on photos, which mispredict): signs as
    // 0/−1 masks give |d| = (d ^ m) − m and the predictor choice as bit selects.
    const db = b - c; // p − a
    const da = a - c; // p − b
    const dc = da + db; // p − c
    const mb = db >> 31;
    const ma = da >> 31;
    const mc = dc >> 31;
    const pa = (db ^ mb) - mb;
    const pb = (da ^ ma) - ma;
    const pc = (dc ^ mc) - mc;
    const notA = ((pb - pa) | (pc - pa)) >> 31; // −1 unless pa ≤ pb and pa ≤ pc
    const notB = (pc - pb) >> 31; // −1 unless pb ≤ pc
    const bOrC = (b & ~notB) | (c & notB);
    // Typed-array stores wrap modulo 256, as the filter's byte arithmetic requires.
    out[o + x] = cur[x]! - ((a & ~notA) | (bOrC & notA));
  }
}

/**
 * Converts each row of a planar float image to bytes and Paeth-filters it into `out`, keeping
 * only the previous row's bytes (zeros above the first row, as in `paethFilter`).
 */
export function planarToPaethRows(data: Float32Array, width: number, height: number, scale: number, offset: number, out: Uint8Array): void {
  const stride = width * 3;
  const plane = width * height;
  let prev = new Uint8Array(stride);
  let cur = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const base = y * width;
    for (let x = 0, j = 0; x < width; x++, j += 3) {
      // Clamp, then the Uint8 store truncates: round half up. NaN → 0.
      const r = data[base + x]! * scale + offset;
      const g = data[plane + base + x]! * scale + offset;
      const b = data[2 * plane + base + x]! * scale + offset;
      cur[j] = r >= 1 ? (r < 256 ? r : 255) : 0;
      cur[j + 1] = g >= 1 ? (g < 256 ? g : 255) : 0;
      cur[j + 2] = b >= 1 ? (b < 256 ? b : 255) : 0;
    }
    paethRow(cur, prev, out, y * (stride + 1));
    const t = prev;
    prev = cur;
    cur = t;
  }
}
