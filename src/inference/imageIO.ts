/**
 * Image decoding/encoding for the diffusion pipelines: untrusted bytes in, planar float tensors
 * out, and back. Pure library (no GraphQL/HTTP); every job goes through here, so the hot loops
 * (interleaved <-> planar) are single passes with no per-pixel allocation.
 *
 * Safety model for untrusted input:
 *  - the container format is decided from magic bytes only (never file names / content types),
 *    and only the formats in ACCEPTED_INPUT_FORMATS are handed to sharp/libvips at all;
 *  - the declared pixel count is checked from the header (sharp metadata, no pixel decode) and
 *    sharp's own `limitInputPixels` is set as a second guard, so decompression bombs are refused
 *    before any pixel buffer is allocated;
 *  - `failOn: 'error'` makes truncated/corrupt pixel data an error rather than a grey-filled image.
 */
import sharp from 'sharp';
import { encodePlanarPng, encodePng } from './pngEncoder.js';

// [issue 16 item 5] libvips' operation cache keeps decoded pixel buffers of recent inputs (up to
// 50 MB and 100 operations by default) after a job: every input is decoded once, so it only holds
// memory. Off (process-wide; sharp is shared by every thread).
sharp.cache(false);

/** Longest side over shortest side an input may have (10 000 000 × 4 PNGs fit the pixel bound). */
export const DEFAULT_MAX_INPUT_ASPECT_RATIO = 64;

/** Output encodings: the one list (GraphQL's ImageFormat enum, REST and the CLI derive from it). */
export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** "png, jpeg or webp", for messages. */
export function outputFormatList(): string {
  return `${OUTPUT_FORMATS.slice(0, -1).join(', ')} or ${OUTPUT_FORMATS[OUTPUT_FORMATS.length - 1]}`;
}

export function isOutputFormat(value: string): value is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(value);
}
export type InputFormat = 'png' | 'jpeg' | 'webp' | 'avif' | 'tiff' | 'gif';

/** Formats decodeToTensor/probeImage accept, in the order they are named in error messages. */
export const ACCEPTED_INPUT_FORMATS: readonly InputFormat[] = ['png', 'jpeg', 'webp', 'avif', 'tiff', 'gif'];

export interface DecodeLimits {
  /** Upper bound on the declared width*height of the input (sharp limitInputPixels). Positive integer. */
  maxInputPixels: number;
  /** Upper bound on longest side / shortest side (default DEFAULT_MAX_INPUT_ASPECT_RATIO). */
  maxAspectRatio?: number;
}

export interface DecodedImage {
  width: number;
  height: number;
  /** The input's own (orientation-corrected) size, before resizing. */
  source: { width: number; height: number };
  /** RGB planar float in [0,1], layout [3, H, W] */
  data: Float32Array;
}

export type ImageDecodeErrorCode = 'INVALID_IMAGE' | 'IMAGE_TOO_LARGE';

export class ImageDecodeError extends Error {
  readonly code: ImageDecodeErrorCode;
  constructor(code: ImageDecodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageDecodeError';
    this.code = code;
  }
}

export interface TargetSize {
  width: number;
  height: number;
}

/**
 * How an input meets an explicit output size of another aspect ratio: `pad` scales it to fit
 * inside and fills the rest with white (the whole picture is kept), `crop` scales it to cover and
 * trims the centre, `stretch` scales each axis on its own (diffusers' way).
 */
export const SIZE_FITS = ['pad', 'crop', 'stretch'] as const;
export type SizeFit = (typeof SIZE_FITS)[number];
export const DEFAULT_SIZE_FIT: SizeFit = 'pad';

/** sharp's resize for a fit; `auto` sizes keep the input's aspect ratio up to the snapping remainder (below one multiple), which is stretched. */
function sharpFit(size: 'auto' | TargetSize, fit: SizeFit): 'contain' | 'cover' | 'fill' {
  if (size === 'auto' || fit === 'stretch') return 'fill';
  return fit === 'pad' ? 'contain' : 'cover';
}

export interface SizeOptions {
  /** Model's spatial multiple (e.g. 8 for a VAE with factor 8, 64 for some UNets). */
  multiple: number;
  /** Max width*height for 'auto' sizes (and the cap for explicit sizes). */
  maxPixels: number;
  /** Used by 'auto' when the input dimensions are unusable (0/NaN). */
  defaultSize: TargetSize;
}

export interface DecodeOptions extends SizeOptions {
  limits: DecodeLimits;
  /** For explicit sizes (DEFAULT_SIZE_FIT when absent). */
  fit?: SizeFit;
  /** Where the planar floats go (e.g. reused scratch memory); a new array by default. */
  allocate?: (length: number) => Float32Array;
}

export interface ProbeResult {
  format: InputFormat;
  /** Orientation-corrected (EXIF) width. */
  width: number;
  /** Orientation-corrected (EXIF) height. */
  height: number;
}

// ---------------------------------------------------------------------------------------------
// Format sniffing
// ---------------------------------------------------------------------------------------------

function ascii(bytes: Uint8Array, offset: number, text: string): boolean {
  if (offset + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[offset + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/** Is this ISO-BMFF `ftyp` box one of AVIF's (major or compatible brand `avif` / `avis`)? */
function isAvifFtyp(bytes: Uint8Array): boolean {
  if (bytes.length < 16 || !ascii(bytes, 4, 'ftyp')) return false;
  const declared = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
  // size 0 = "to end of file", size 1 = 64-bit largesize (never used for ftyp in practice).
  const boxEnd = declared === 0 ? bytes.length : Math.min(declared, bytes.length);
  if (declared !== 0 && declared < 16) return false;
  const isAvifBrand = (off: number) => ascii(bytes, off, 'avif') || ascii(bytes, off, 'avis');
  if (isAvifBrand(8)) return true; // major brand; 12..16 is minor_version
  for (let off = 16; off + 4 <= boxEnd; off += 4) {
    if (isAvifBrand(off)) return true;
  }
  return false;
}

/** Detects the container format from magic bytes only. Returns null for anything else. */
export function sniffImageFormat(bytes: Uint8Array): InputFormat | null {
  if (bytes.length < 4) return null;
  if (
    bytes.length >= 8 &&
    bytes[0] === 0x89 &&
    bytes[1] === 0x50 &&
    bytes[2] === 0x4e &&
    bytes[3] === 0x47 &&
    bytes[4] === 0x0d &&
    bytes[5] === 0x0a &&
    bytes[6] === 0x1a &&
    bytes[7] === 0x0a
  ) {
    return 'png';
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 12 && ascii(bytes, 0, 'RIFF') && ascii(bytes, 8, 'WEBP')) return 'webp';
  if (ascii(bytes, 0, 'GIF87a') || ascii(bytes, 0, 'GIF89a')) return 'gif';
  if (
    (bytes[0] === 0x49 && bytes[1] === 0x49 && bytes[2] === 0x2a && bytes[3] === 0x00) ||
    (bytes[0] === 0x4d && bytes[1] === 0x4d && bytes[2] === 0x00 && bytes[3] === 0x2a)
  ) {
    return 'tiff';
  }
  if (isAvifFtyp(bytes)) return 'avif';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

function assertPositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

/**
 * Output size for a job.
 *  - explicit: each side snapped DOWN to `multiple` (min one multiple). A snapped size above
 *    `maxPixels` is a RangeError (caller bug / unvalidated request), never a huge allocation.
 *  - 'auto': keep the aspect ratio of the (orientation-corrected) input; if it has more than
 *    `maxPixels` pixels scale it down so width*height <= maxPixels (never upscale), then snap
 *    each side down to `multiple` (min one multiple). For extreme aspect ratios where the
 *    one-multiple minimum on the short side would break the budget, the long side is reduced
 *    further; if even multiple x multiple exceeds maxPixels, multiple x multiple is returned.
 */
export function resolveOutputSize(request: 'auto' | TargetSize, input: { width: number; height: number }, opts: SizeOptions): TargetSize {
  const m = opts.multiple;
  assertPositiveInt('multiple', m);
  if (!(opts.maxPixels > 0)) throw new RangeError(`maxPixels must be positive, got ${opts.maxPixels}`);
  const snap = (v: number) => Math.max(m, Math.floor(v / m) * m);

  if (request !== 'auto') {
    const { width, height } = request;
    if (!Number.isFinite(width) || !Number.isFinite(height) || width < 1 || height < 1) {
      throw new RangeError(`target size must be at least 1x1, got ${width}x${height}`);
    }
    const out = { width: snap(width), height: snap(height) };
    if (out.width * out.height > opts.maxPixels) {
      throw new RangeError(`target size ${out.width}x${out.height} exceeds the maximum of ${opts.maxPixels} pixels`);
    }
    return out;
  }

  let w = input.width;
  let h = input.height;
  if (!(Number.isFinite(w) && Number.isFinite(h) && w > 0 && h > 0)) {
    ({ width: w, height: h } = opts.defaultSize);
  }
  const pixels = w * h;
  if (pixels > opts.maxPixels) {
    const s = Math.sqrt(opts.maxPixels / pixels);
    w *= s;
    h *= s;
  }
  let sw = snap(w);
  let sh = snap(h);
  // Guard the budget when the minimum-one-multiple clamp (or float error) pushed it over.
  if (sw * sh > opts.maxPixels) {
    if (sw >= sh) sw = snap(opts.maxPixels / sh);
    else sh = snap(opts.maxPixels / sw);
  }
  return { width: sw, height: sh };
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

function acceptedList(): string {
  return ACCEPTED_INPUT_FORMATS.map((f) => f.toUpperCase()).join(', ');
}

function limitPixels(limits: DecodeLimits): number {
  const n = Math.floor(limits.maxInputPixels);
  // 0 would mean "unlimited" to sharp: never let that through.
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`limits.maxInputPixels must be a positive integer, got ${limits.maxInputPixels}`);
  }
  return n;
}

function tooLarge(width: number, height: number, limit: number, cause?: unknown): ImageDecodeError {
  const dims = width > 0 && height > 0 ? `${width}x${height} (${width * height} pixels)` : 'the image';
  return new ImageDecodeError(
    'IMAGE_TOO_LARGE',
    `image is too large: ${dims} exceeds the limit of ${limit} pixels`,
    cause === undefined ? undefined : { cause },
  );
}

/** Maps a sharp/libvips failure to an ImageDecodeError. */
function mapSharpError(err: unknown, limit: number): ImageDecodeError {
  if (err instanceof ImageDecodeError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(msg)) return tooLarge(0, 0, limit, err);
  const detail = msg.split('\n')[0]!.trim();
  return new ImageDecodeError('INVALID_IMAGE', `image could not be decoded (corrupt or truncated): ${detail}`, {
    cause: err,
  });
}

function sniffOrThrow(bytes: Uint8Array): InputFormat {
  const format = sniffImageFormat(bytes);
  if (format === null) {
    throw new ImageDecodeError('INVALID_IMAGE', `unsupported or unrecognised image format; accepted formats: ${acceptedList()}`);
  }
  return format;
}

/** `limit: false` is only for header reads (metadata), which never allocate pixel buffers. */
function sharpInput(bytes: Uint8Array, limit: number | false): sharp.Sharp {
  return sharp(bytes, { limitInputPixels: limit, failOn: 'error', animated: false, pages: 1 });
}

/**
 * Validates without decoding pixels: magic bytes, header parse, declared pixel count.
 * Width/height are orientation-corrected (EXIF orientations 5-8 swap them).
 */
export async function probeImage(bytes: Uint8Array, limits: DecodeLimits): Promise<ProbeResult> {
  const limit = limitPixels(limits);
  const format = sniffOrThrow(bytes);
  let meta: sharp.Metadata;
  try {
    // Header only: sharp's own limit check is off here so that we can report the declared
    // dimensions; the limit is enforced just below, and again by sharp when decoding.
    meta = await sharpInput(bytes, false).metadata();
  } catch (err) {
    throw mapSharpError(err, limit);
  }
  // `height` of a multi-page image (GIF/TIFF) can be the whole strip; pageHeight is one frame.
  const rawW = meta.width ?? 0;
  const rawH = meta.pageHeight ?? meta.height ?? 0;
  if (!(rawW > 0 && rawH > 0)) {
    throw new ImageDecodeError('INVALID_IMAGE', 'image has no valid dimensions');
  }
  if (rawW * rawH > limit) throw tooLarge(rawW, rawH, limit);
  // [issue 16 item 5] An extreme aspect ratio within the pixel bound (10 000 000 × 4) would be
  // scaled up to cover the output size (a 1.28-gigapixel intermediate for 512×512) and then fail
  // as "corrupt": it is refused here, from the header, naming the limit.
  const maxRatio = limits.maxAspectRatio ?? DEFAULT_MAX_INPUT_ASPECT_RATIO;
  if (Math.max(rawW, rawH) / Math.min(rawW, rawH) > maxRatio) {
    throw new ImageDecodeError(
      'IMAGE_TOO_LARGE',
      `image is too large along one side: ${rawW}x${rawH} has an aspect ratio of ${Math.round(Math.max(rawW, rawH) / Math.min(rawW, rawH))}:1, over the limit of ${maxRatio}:1`,
    );
  }
  const swap = (meta.orientation ?? 1) >= 5;
  return { format, width: swap ? rawH : rawW, height: swap ? rawW : rawH };
}

/**
 * Interleaved RGB8 (HWC) -> planar float [3,H,W] in [0,1]; one pass. `v / 255` rounds to the same
 * float32 as a lookup table would, and (measured) a plain indexed loop beats both a LUT and
 * per-channel subarrays here.
 */
export function rgb8ToPlanar(src: Uint8Array, width: number, height: number, out?: Float32Array): Float32Array {
  const n = width * height;
  if (src.length < n * 3) throw new RangeError(`expected ${n * 3} bytes of RGB, got ${src.length}`);
  const dst = out ?? new Float32Array(n * 3);
  if (dst.length !== n * 3) throw new RangeError(`output must hold ${n * 3} floats, got ${dst.length}`);
  const g0 = n;
  const b0 = 2 * n;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    dst[i] = src[j]! / 255;
    dst[g0 + i] = src[j + 1]! / 255;
    dst[b0 + i] = src[j + 2]! / 255;
  }
  return dst;
}

/**
 * Decodes untrusted bytes to a planar RGB float tensor of the resolved output size.
 *
 * Pipeline: sniff -> header probe (pixel limit) -> sharp with limitInputPixels/failOn 'error'/
 * first frame only -> EXIF rotate -> flatten alpha onto white -> sRGB -> resize -> raw RGB8.
 *
 * Resize: an explicit size of another aspect ratio follows `opts.fit` (pad by default, so the
 * whole picture is kept; diffusers' VaeImageProcessor stretches). For 'auto' the target keeps the
 * input's aspect ratio, and the remainder below one multiple left by snapping is stretched, so
 * nothing is cut off.
 */
export async function decodeToTensor(bytes: Uint8Array, size: 'auto' | TargetSize, opts: DecodeOptions): Promise<DecodedImage> {
  const limit = limitPixels(opts.limits);
  const probe = await probeImage(bytes, opts.limits);
  const target = resolveOutputSize(size, probe, opts);

  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharpInput(bytes, limit)
      .rotate() // no-arg rotate = apply EXIF orientation (and drop the tag)
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .resize(target.width, target.height, {
        fit: sharpFit(size, opts.fit ?? DEFAULT_SIZE_FIT),
        position: 'centre',
        kernel: 'lanczos3',
        background: { r: 255, g: 255, b: 255 },
      })
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw mapSharpError(err, limit);
  }
  const { info, data } = raw;
  if (info.width !== target.width || info.height !== target.height || info.channels !== 3) {
    throw new ImageDecodeError(
      'INVALID_IMAGE',
      `unexpected decode result ${info.width}x${info.height}x${info.channels}, wanted ${target.width}x${target.height}x3`,
    );
  }
  const planar = opts.allocate?.(3 * target.width * target.height);
  return {
    width: target.width,
    height: target.height,
    source: { width: probe.width, height: probe.height },
    data: rgb8ToPlanar(data, target.width, target.height, planar),
  };
}

/**
 * Decodes every pixel once and discards them, so a truncated or corrupt body is refused when it
 * is uploaded rather than when its job runs. Returns the probe.
 */
export async function verifyImage(bytes: Uint8Array, limits: DecodeLimits): Promise<ProbeResult> {
  const probe = await probeImage(bytes, limits);
  const limit = limitPixels(limits);
  try {
    await sharpInput(bytes, limit).raw({ depth: 'uchar' }).toBuffer();
  } catch (err) {
    throw mapSharpError(err, limit);
  }
  return probe;
}

/**
 * An edit mask at `target` size (resized as its image is), one float per pixel, 1 = edit, 0 = keep.
 * A mask with an alpha channel edits where alpha is 0 (OpenAI's rule); without alpha, white edits
 * and black keeps (diffusers' and A1111's rule); grey is partial. The mask must have its image's
 * size (`imageSize`, orientation-corrected). `blur` > 0 feathers it: a Gaussian of that standard
 * deviation in output pixels.
 */
export async function decodeMask(
  bytes: Uint8Array,
  imageSize: { width: number; height: number },
  target: TargetSize,
  opts: { limits: DecodeLimits; blur?: number; size?: 'auto' | TargetSize; fit?: SizeFit },
): Promise<Float32Array> {
  const limit = limitPixels(opts.limits);
  const probe = await probeImage(bytes, opts.limits);
  if (probe.width !== imageSize.width || probe.height !== imageSize.height) {
    throw new ImageDecodeError(
      'INVALID_IMAGE',
      `the mask is ${probe.width}x${probe.height} but its image is ${imageSize.width}x${imageSize.height}; a mask must have its image's size`,
    );
  }
  let data: Buffer;
  let fromAlpha: boolean;
  try {
    fromAlpha = (await sharpInput(bytes, limit).metadata()).hasAlpha === true;
    let pipeline = sharpInput(bytes, limit).rotate();
    pipeline = fromAlpha ? pipeline.ensureAlpha().extractChannel(3) : pipeline.flatten({ background: { r: 0, g: 0, b: 0 } }).toColourspace('b-w');
    // Resized as its image is (`size` and `fit` as the image's), with a kernel that cannot ring (no
    // overshoot past the mask's edge); padding keeps (alpha 255, or black).
    const keep = fromAlpha ? 255 : 0;
    pipeline = pipeline.resize(target.width, target.height, {
      fit: sharpFit(opts.size ?? target, opts.fit ?? DEFAULT_SIZE_FIT),
      position: 'centre',
      kernel: 'linear',
      background: { r: keep, g: keep, b: keep },
    });
    // sharp's blur needs σ ≥ 0.3; it runs after the resize, so σ is in output pixels.
    if (opts.blur && opts.blur >= 0.3) pipeline = pipeline.blur(opts.blur);
    data = (await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true })).data;
  } catch (err) {
    throw mapSharpError(err, limit);
  }
  const n = target.width * target.height;
  if (data.length !== n) throw new ImageDecodeError('INVALID_IMAGE', `unexpected mask decode result of ${data.length} values, wanted ${n}`);
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) mask[i] = fromAlpha ? 1 - data[i]! / 255 : data[i]! / 255;
  return mask;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/**
 * The value range of a float image: `unit` is [0,1]; `signed` is [-1,1], as a VAE decodes (mapping
 * it to bytes directly saves a full-resolution pass).
 */
export type PixelRange = 'unit' | 'signed';

/** byte = clamp(⌊v·scale + offset⌋, 0, 255): round half up of v mapped onto 0..255. */
export function byteMapping(range: PixelRange): { scale: number; offset: number } {
  return range === 'signed' ? { scale: 127.5, offset: 128 } : { scale: 255, offset: 0.5 };
}

/** Planar float [3,H,W] in `range` -> interleaved RGB8, clamped (NaN -> 0) and rounded half up. One pass. */
export function planarToRgb8(data: Float32Array, width: number, height: number, out?: Buffer, range: PixelRange = 'unit'): Buffer {
  assertPositiveInt('width', width);
  assertPositiveInt('height', height);
  const n = width * height;
  if (data.length !== n * 3) {
    throw new RangeError(`tensor has ${data.length} values, expected 3x${height}x${width} = ${n * 3}`);
  }
  const dst = out ?? Buffer.allocUnsafe(n * 3);
  if (dst.length !== n * 3) throw new RangeError(`output must hold ${n * 3} bytes, got ${dst.length}`);
  const g0 = n;
  const b0 = 2 * n;
  const { scale, offset } = byteMapping(range);
  // Clamp, then the Uint8 store truncates: round half up. `x >= 1` is false for NaN, so NaN → 0.
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const r = data[i]! * scale + offset;
    const g = data[g0 + i]! * scale + offset;
    const b = data[b0 + i]! * scale + offset;
    dst[j] = r >= 1 ? (r < 256 ? r : 255) : 0;
    dst[j + 1] = g >= 1 ? (g < 256 ? g : 255) : 0;
    dst[j + 2] = b >= 1 ? (b < 256 ? b : 255) : 0;
  }
  return dst;
}

function checkQuality(quality: number | undefined): void {
  if (quality === undefined) return;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new RangeError(`quality must be an integer in 1..100, got ${quality}`);
  }
}

const DEFAULT_QUALITY: Record<Exclude<OutputFormat, 'png'>, number> = { jpeg: 90, webp: 90 };

/** PNG level of outputs (see pngEncoder.ts: 1 = Paeth + RLE, the fast default that also compresses photos best). */
export const DEFAULT_PNG_COMPRESSION_LEVEL = 1;

export interface EncodeOptions {
  /** 0 (stored) … 9; default DEFAULT_PNG_COMPRESSION_LEVEL. */
  pngCompressionLevel?: number;
  /** Reusable memory for intermediate pixel buffers; they are read until the promise settles. */
  allocate?: (bytes: number) => Buffer;
  /** The range of `data` (default `unit`). */
  range?: PixelRange;
}

/** Encodes a planar [3,H,W] float tensor (in `options.range`, clamped) to PNG/JPEG/WebP bytes. */
export async function encodeFromTensor(
  data: Float32Array,
  width: number,
  height: number,
  format: OutputFormat,
  quality?: number,
  options: EncodeOptions = {},
): Promise<Uint8Array> {
  checkQuality(quality);
  const range = options.range ?? 'unit';
  if (format === 'png') {
    const level = options.pngCompressionLevel ?? DEFAULT_PNG_COMPRESSION_LEVEL;
    const rows = options.allocate?.((3 * width + 1) * height);
    // Level 0 stores unfiltered rows; the others filter straight from the floats (one pass).
    if (level === 0) return encodePng(planarToRgb8(data, width, height, options.allocate?.(3 * width * height), range), width, height, 0, rows);
    assertPositiveInt('width', width);
    assertPositiveInt('height', height);
    return encodePlanarPng(data, width, height, byteMapping(range), level, rows);
  }
  const rgb = planarToRgb8(data, width, height, options.allocate?.(3 * width * height), range);
  const img = sharp(rgb, { raw: { width, height, channels: 3 } });
  switch (format) {
    case 'jpeg':
      return img.jpeg({ quality: quality ?? DEFAULT_QUALITY.jpeg, chromaSubsampling: '4:4:4' }).toBuffer();
    case 'webp':
      return img.webp({ quality: quality ?? DEFAULT_QUALITY.webp }).toBuffer();
    default: {
      const never: never = format;
      throw new RangeError(`unsupported output format ${String(never)}`);
    }
  }
}

export const PREVIEW_QUALITY = 70;

/** Small JPEG preview (quality 70), downscaled (never enlarged) so max(w,h) <= maxSide. */
export async function encodePreview(data: Float32Array, width: number, height: number, maxSide: number): Promise<{ bytes: Uint8Array; mimeType: string }> {
  assertPositiveInt('maxSide', maxSide);
  const rgb = planarToRgb8(data, width, height);
  const bytes = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true })
    .jpeg({ quality: PREVIEW_QUALITY })
    .toBuffer();
  return { bytes, mimeType: mimeTypeFor('jpeg') };
}

export function mimeTypeFor(format: OutputFormat): string {
  switch (format) {
    case 'png':
      return 'image/png';
    case 'jpeg':
      return 'image/jpeg';
    case 'webp':
      return 'image/webp';
    default: {
      const never: never = format;
      throw new RangeError(`unsupported output format ${String(never)}`);
    }
  }
}
