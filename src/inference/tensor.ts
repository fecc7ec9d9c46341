/**
 * Pure tensor math on flat Float32Arrays in NCHW layout. Everything here runs once per denoise
 * step over whole batches, so loops are plain and write into preallocated outputs.
 */

/** Copies the sources one after another (a batch concat), into `out` when given. */
export function concatBatches(parts: readonly Float32Array[], into?: Float32Array): Float32Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = into ?? new Float32Array(total);
  if (out.length !== total) throw new RangeError(`concat needs ${total} elements, the output has ${out.length}`);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * Writes `src` ([B, C, h, w]) into half `half` (0 = first C channels, 1 = last C) of each item of
 * `out` ([B, 2C, h, w]): InstructPix2Pix's UNet input is noisy latents (half 0) then image latents
 * (half 1) per item; each side is written when it changes.
 */
export function writeChannelHalf(src: Float32Array, out: Float32Array, half: 0 | 1, batch: number, channels: number, pixels: number): Float32Array {
  const item = channels * pixels;
  for (let b = 0; b < batch; b++) out.set(src.subarray(b * item, (b + 1) * item), (2 * b + half) * item);
  return out;
}

/**
 * InstructPix2Pix's three-branch guidance (diffusers' order: text+image, image only, neither):
 * ε = ε_u + s_T·(ε_T − ε_I) + s_I·(ε_I − ε_u), written into `out` (length B·item).
 */
export function instructPix2PixGuidance(pred: Float32Array, itemsTimesSize: number, textScale: number, imageScale: number, out: Float32Array): Float32Array {
  const n = itemsTimesSize;
  for (let i = 0; i < n; i++) {
    const text = pred[i]!;
    const image = pred[n + i]!;
    const uncond = pred[2 * n + i]!;
    out[i] = uncond + textScale * (text - image) + imageScale * (image - uncond);
  }
  return out;
}

/** Classifier-free guidance over diffusers' [uncond, text] batch halves: ε = ε_u + s·(ε_T − ε_u). */
export function classifierFreeGuidance(pred: Float32Array, itemsTimesSize: number, scale: number, out: Float32Array): Float32Array {
  const n = itemsTimesSize;
  for (let i = 0; i < n; i++) {
    const uncond = pred[i]!;
    out[i] = uncond + scale * (pred[n + i]! - uncond);
  }
  return out;
}

export function scaleInPlace(data: Float32Array, factor: number): Float32Array {
  return scaleInto(data, factor, data);
}

/** `out` = `data`·`factor` (same length). */
export function scaleInto(data: Float32Array, factor: number, out: Float32Array): Float32Array {
  if (out.length !== data.length) throw new RangeError(`output has ${out.length} elements, input ${data.length}`);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! * factor;
  return out;
}

/** Writes the [0,1] image `src` as [-1,1] model input into `out` at `offset` (copy and map in one pass). */
export function writeSignedUnit(src: Float32Array, out: Float32Array, offset: number): Float32Array {
  if (offset + src.length > out.length) throw new RangeError(`${src.length} values at ${offset} do not fit in ${out.length}`);
  for (let i = 0; i < src.length; i++) out[offset + i] = src[i]! * 2 - 1;
  return out;
}

/** [0,1] image → [-1,1] model input, in place. */
export function toSignedUnit(data: Float32Array): Float32Array {
  return writeSignedUnit(data, data, 0);
}

/** [-1,1] decoder output → [0,1], clamped, in place. */
export function toUnitClamped(data: Float32Array): Float32Array {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]! * 0.5 + 0.5;
    data[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return data;
}

/**
 * Cheap latent preview (ComfyUI's approach): RGB = latent·factors + bias per pixel, giving [-1,1],
 * mapped to [0,1]. `latent` is one item [C, h, w]; returns planar [3, h, w].
 */
export function projectLatentToRgb(
  latent: Float32Array,
  channels: number,
  pixels: number,
  factors: readonly (readonly number[])[],
  bias: readonly number[],
): Float32Array {
  const out = new Float32Array(3 * pixels);
  for (let rgb = 0; rgb < 3; rgb++) {
    const o = out.subarray(rgb * pixels, (rgb + 1) * pixels);
    o.fill(bias[rgb] ?? 0);
    for (let c = 0; c < channels; c++) {
      const f = factors[c]![rgb]!;
      if (f === 0) continue;
      const src = latent.subarray(c * pixels, (c + 1) * pixels);
      for (let p = 0; p < pixels; p++) o[p] = o[p]! + f * src[p]!;
    }
  }
  return toUnitClamped(out);
}

// IEEE 754 half precision conversion for fp16 exports (ORT takes float16 data as Uint16Array).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toFloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
      } else {
        mant |= 0x800000;
        const shift = 14 - e;
        let half = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && half & 1)) half += 1;
        out[i] = sign | half;
      }
    } else {
      let half = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half += 1;
      out[i] = sign | half;
    }
  }
  return out;
}

export function fromFloat16(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    out[i] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant ? NaN : sign * Infinity) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
