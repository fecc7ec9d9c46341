/**
 * By hand (not a test: the folders are written outside the repository by
 * scripts/export/qwen_image_edit.py --tiny): runs this server's Qwen-Image-Edit family on a tiny
 * export and compares its output with diffusers' own pipeline on the same weights, as recorded by
 * scripts/parity/qwen_parity.py (reference-*.json: inputs, σ, the first transformer call, the image).
 *
 *   node --import tsx scripts/parity/qwen_server.ts /work/qwen-tiny/edit /work/qwen-tiny/reference-edit.json
 *
 * Same prompt, negative prompt, true CFG scale, steps, size and seed (torch's generator, as
 * diffusers draws the reference's latents), and the reference image where the reference json has
 * one (qwen_reference.py --reference); prints the largest difference in 0..255 units.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import sharp from 'sharp';
import { InferenceEngine } from '../../src/inference/engine.js';
import { resolveEditOptions, resolveReferences } from '../../src/inference/request.js';

const [folder, referencePath] = process.argv.slice(2);
if (!folder || !referencePath) {
  console.error('usage: node --import tsx scripts/parity/qwen_server.ts <tiny export folder> <reference json>');
  process.exit(2);
}
type Reference = {
  inputs: {
    prompt: string;
    negative_prompt: string;
    true_cfg_scale: number;
    num_inference_steps: number;
    height: number;
    width: number;
    reference?: { width: number; height: number };
  };
  image: { shape: number[]; values: number[] };
};
const ref = JSON.parse(readFileSync(referencePath, 'utf8')) as Reference;
const { width, height } = ref.inputs;
// The reference input: 8×8 squares, square (i, j), k = 4i + j: (16k, 255 − 16k, 48i + 16j + 32).
const raw = Buffer.alloc(width * height * 3);
for (let y = 0; y < height; y++) {
  for (let x = 0; x < width; x++) {
    const i = y >> 3;
    const j = x >> 3;
    const k = 4 * i + j;
    raw.set([16 * k, 255 - 16 * k, 48 * i + 16 * j + 32], (y * width + x) * 3);
  }
}
const png = await sharp(raw, { raw: { width, height, channels: 3 } })
  .png()
  .toBuffer();
/** qwen_reference.py's reference image: 8×8 squares, square (i, j): (255 − 20i − 9j, 30 + 40j, 60 + 25i + 7j) mod 256. */
async function referencePng(w: number, h: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y >> 3;
      const j = x >> 3;
      px.set([(255 - 20 * i - 9 * j + 512) % 256, (30 + 40 * j) % 256, (60 + 25 * i + 7 * j) % 256], (y * w + x) * 3);
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}
const refSize = ref.inputs.reference;
const references = refSize ? [new Uint8Array(await referencePng(refSize.width, refSize.height))] : [];
const id = basename(folder);
// The folder has no memory profile of its own: the family's (sized for the 20 B model) would refuse 1 MP conditions.
const engine = await InferenceEngine.start({ modelsDir: dirname(folder), modelIds: [id], threading: 'inline', memoryBudgetBytes: 2 ** 50 });
const spec = engine.model(id);
const options = {
  prompt: ref.inputs.prompt,
  negativePrompt: ref.inputs.negative_prompt,
  trueCfgScale: ref.inputs.true_cfg_scale,
  steps: ref.inputs.num_inference_steps,
  size: `${width}x${height}`,
  seed: 0,
};
const edit = resolveReferences(spec, resolveEditOptions(spec, 1, options), refSize ? [refSize] : []);
const out = await engine.edit(id, edit, [{ bytes: png, ...(references.length ? { references } : {}) }]);
await engine.close();
const pixels = await sharp(out.images[0]!.bytes).removeAlpha().raw().toBuffer();
let max = 0;
let sum = 0;
for (let c = 0; c < 3; c++) {
  for (let p = 0; p < width * height; p++) {
    const want = ref.image.values[c * width * height + p]! * 255;
    const d = Math.abs(pixels[p * 3 + c]! - want);
    max = Math.max(max, d);
    sum += d;
  }
}
console.log(
  `${id}: server vs diffusers, ${width}x${height}${refSize ? ` with a ${refSize.width}x${refSize.height} reference` : ''}, ${ref.inputs.num_inference_steps} steps: max |diff| ${max.toFixed(2)}/255, mean ${(sum / (3 * width * height)).toFixed(3)}/255`,
);
