// Makes docs/images/mask-*.png with the built-in tiny-edit model: npx tsx docs/images/make.ts
import sharp from 'sharp';
import { writeFileSync } from 'node:fs';
import { InferenceEngine } from '../../src/inference/engine.js';
import { resolveEditOptions } from '../../src/inference/request.js';
import { defaultModelsDir } from '../../src/config.js';
const W = 192,
  H = 128;
// input: a warm gradient with a blue disc
const raw = Buffer.alloc(W * H * 3);
for (let y = 0; y < H; y++)
  for (let x = 0; x < W; x++) {
    const i = (y * W + x) * 3;
    const d = Math.hypot(x - 130, y - 64) < 40;
    raw[i] = d ? 40 : 200 - x / 2;
    raw[i + 1] = d ? 110 : 80 + y / 2;
    raw[i + 2] = d ? 220 : 40;
  }
const input = await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
  .png()
  .toBuffer();
// mask: white ellipse (edit) on black (keep)
const m = Buffer.alloc(W * H);
for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) m[y * W + x] = ((x - 130) / 56) ** 2 + ((y - 64) / 50) ** 2 < 1 ? 255 : 0;
const mask = await sharp(m, { raw: { width: W, height: H, channels: 1 } })
  .png()
  .toBuffer();
const e = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'inline' });
const spec = e.model('tiny-edit');
const run = async (maskBlur: number) =>
  (await e.edit('tiny-edit', resolveEditOptions(spec, 1, { prompt: 'grayscale', size: `${W}x${H}`, seed: 1, maskBlur }), [{ bytes: input, mask }])).images[0]!
    .bytes;
writeFileSync('docs/images/mask-input.png', input);
writeFileSync('docs/images/mask-mask.png', mask);
writeFileSync('docs/images/mask-output.png', await run(0));
writeFileSync('docs/images/mask-output-blur8.png', await run(8));
await e.close();
