/**
 * sha256 of the outputs of every pipeline family and scheduler: the bench models
 * (models/bench.ts), the built-ins (tiny-edit, tiny-flow-edit) and the exporter fixtures
 * (models/exports.ts, flowExports.ts, sd3Exports.ts), each run guided, unguided, with n = 2 and,
 * where the family takes them, with a mask. A restructuring of the pipelines must leave every
 * hash as it was:
 *
 *   npx tsx scripts/family-hashes.ts > before.json   # on the old code
 *   npx tsx scripts/family-hashes.ts --check before.json
 *
 * The baseline (family-hashes.baseline.json) is main at 19ce135, after TORCH noise became the
 * default (188 of the 627 outputs changed: those that depend on the noise drawn).
 * Not a test: ~600 small edits.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ensureBenchModel } from '../models/bench.js';
import { buildExportFixture } from '../models/exports.js';
import { buildFlowEditFiles } from '../models/flowExports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { buildSd3EditFiles } from '../models/sd3Exports.js';
import { PROJECT_ROOT } from '../src/config.js';
import { InferenceEngine } from '../src/inference/engine.js';
import type { EditOptions } from '../src/inference/request.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';

const args = process.argv.slice(2);
const check = args[0] === '--check' ? args[1] : undefined;
if (args.length > 0 && (check === undefined || args.length !== 2)) {
  process.stderr.write('usage: tsx scripts/family-hashes.ts [--check HASHES.json]\n');
  process.exit(2);
}

const root = mkdtempSync(join(tmpdir(), 'family-hashes-'));
const SIZE = 64;

/** Each folder, and whether its family takes masks and the UNet schedulers. */
const MODELS: { id: string; write: () => Promise<void> | void; masks: boolean; schedulers: readonly string[] }[] = [];
const unet = SCHEDULER_NAMES;
const flow = ['FLOW_MATCH_EULER'] as const;
for (const family of ['instruct-pix2pix', 'img2img', 'sdxl-img2img', 'flux-img2img'] as const) {
  const id = `bench-${family}`;
  MODELS.push({
    id,
    write: async () => void (await ensureBenchModel({ family, dir: join(root, id) })),
    masks: true,
    schedulers: family.startsWith('flux') ? flow : unet,
  });
}
for (const builtIn of ['tiny-edit', 'tiny-flow-edit']) {
  MODELS.push({
    id: builtIn,
    write: () => cpSync(join(PROJECT_ROOT, 'models', builtIn), join(root, builtIn), { recursive: true }),
    masks: builtIn === 'tiny-edit',
    schedulers: builtIn === 'tiny-edit' ? unet : flow,
  });
}
for (const family of ['instruct-pix2pix', 'img2img', 'inpaint', 'sdxl-img2img', 'sdxl-inpaint'] as const) {
  // Not optimum-1.22 or diffusers-onnx: their VAE encoders sample inside the graph, unseeded.
  for (const generation of ['optimum-1.23', 'optimum-1.24'] as const) {
    const id = `export-${generation}-${family}`;
    MODELS.push({ id, write: () => writeModelFolder(join(root, id), buildExportFixture({ generation, family })), masks: true, schedulers: unet });
  }
}
MODELS.push({
  id: 'flow-img2img',
  write: () => writeModelFolder(join(root, 'flow-img2img'), buildFlowEditFiles({ layout: 'img2img' })),
  masks: true,
  schedulers: flow,
});
MODELS.push({
  id: 'flow-img2img-guidance-batched',
  write: () => writeModelFolder(join(root, 'flow-img2img-guidance-batched'), buildFlowEditFiles({ layout: 'img2img', guidance: true, batchedIds: true })),
  masks: false,
  schedulers: flow,
});
MODELS.push({
  id: 'flow-kontext',
  write: () => writeModelFolder(join(root, 'flow-kontext'), buildFlowEditFiles({ layout: 'kontext' })),
  masks: false,
  schedulers: flow,
});
MODELS.push({ id: 'sd3-img2img', write: () => writeModelFolder(join(root, 'sd3-img2img'), buildSd3EditFiles()), masks: true, schedulers: flow });
MODELS.push({ id: 'sd3-inpaint', write: () => writeModelFolder(join(root, 'sd3-inpaint'), buildSd3EditFiles({ inpaint: 33 })), masks: true, schedulers: flow });

function twoColourPng(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(x < width / 2 ? [200, 60, 30] : [40, 120, 220], (y * width + x) * 3);
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

function topHalfMask(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height);
  raw.fill(255, 0, (width * height) / 2);
  return sharp(raw, { raw: { width, height, channels: 1 } })
    .png()
    .toBuffer();
}

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

const hashes: Record<string, string> = {};
try {
  for (const m of MODELS) await m.write();
  const engine = await InferenceEngine.start({
    modelsDir: root,
    modelIds: MODELS.map((m) => m.id),
    threading: 'inline',
    intraOpThreads: 1,
    stageThread: false,
  });
  const square = await twoColourPng(SIZE, SIZE);
  const wide = await twoColourPng(2 * SIZE, SIZE);
  const mask = await topHalfMask(SIZE, SIZE);
  try {
    for (const m of MODELS) {
      const spec = engine.model(m.id);
      const cases: { name: string; options: Partial<EditOptions>; masked?: boolean; image?: Buffer }[] = [
        { name: 'default', options: {} },
        { name: 'wide', options: { size: `${2 * SIZE}x${SIZE}` }, image: wide },
        { name: 'unguided', options: { guidanceScale: 1, imageGuidanceScale: 1 } },
        { name: 'n2-negative', options: { n: 2, negativePrompt: 'blurry', trueCfgScale: spec.defaults.trueCfgScale == null ? null : 2 } },
      ];
      if (m.masks) cases.push({ name: 'masked', options: { maskBlur: 2 }, masked: true });
      for (const scheduler of m.schedulers) {
        for (const c of cases) {
          const edit = resolveEditOptions(spec, 1, {
            prompt: 'make it sepia',
            size: `${SIZE}x${SIZE}`,
            seed: 7,
            steps: 4,
            strength: 0.75,
            scheduler: scheduler as EditOptions['scheduler'],
            ...c.options,
          });
          const out = await engine.edit(m.id, edit, [{ bytes: c.image ?? square, mask: c.masked ? mask : null }]);
          out.images.forEach((img, i) => {
            hashes[`${m.id} ${scheduler} ${c.name} #${i} ${img.width}x${img.height}`] = sha(img.bytes);
          });
        }
      }
    }
  } finally {
    await engine.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

if (!check) {
  process.stdout.write(`${JSON.stringify(hashes, null, 2)}\n`);
} else {
  const expected = JSON.parse(readFileSync(check, 'utf8')) as Record<string, string>;
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(hashes)])];
  const differ = keys.filter((k) => expected[k] !== hashes[k]);
  for (const k of differ) process.stdout.write(`differs: ${k} (${expected[k] ?? 'absent'} → ${hashes[k] ?? 'absent'})\n`);
  const all = sha(new TextEncoder().encode(JSON.stringify(keys.sort().map((k) => [k, hashes[k]]))));
  process.stdout.write(`${keys.length - differ.length}/${keys.length} outputs identical; sha256 of all: ${all}\n`);
  process.exitCode = differ.length ? 1 : 0;
}
