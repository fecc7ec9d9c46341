/**
 * Writes the project's generated models:
 *   tsx models/generate.ts            → models/tiny-edit, models/tiny-flow-edit (FLUX Kontext
 *                                       layout) and models/tiny-qwen-edit (Qwen-Image-Edit layout),
 *                                       committed; a test checks the bytes match
 *   tsx models/generate.ts bench      → .cache/models/bench and bench-img2img (git-ignored, for
 *                                       benchmarks and 8× tests)
 *   tsx models/generate.ts tiny-flow-edit <dir>  → <dir>/tiny-flow-edit and <dir>/tiny-sd3-edit
 *                                       (SD3 layout), analytic flow models
 *   tsx models/generate.ts tiny-qwen-edit-plus <dir>  → <dir>/tiny-qwen-edit-plus (Qwen-Image-Edit
 *                                       2511 layout)
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyEditFiles } from './tinyEdit.js';
import { ensureBenchModel, type BenchFamily } from './bench.js';
import { writeModelFolder } from './modelFiles.js';
import { buildFlowEditFiles } from './flowExports.js';
import { buildSd3EditFiles } from './sd3Exports.js';
import { buildQwenEditFiles } from './qwenExports.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TINY_EDIT_DIR = join(here, 'tiny-edit');
export const TINY_FLOW_EDIT_DIR = join(here, 'tiny-flow-edit');
export const TINY_QWEN_EDIT_DIR = join(here, 'tiny-qwen-edit');
/** The built-in models: folder and generator. */
export const BUILT_IN_MODELS = [
  { dir: TINY_EDIT_DIR, files: buildTinyEditFiles },
  { dir: TINY_FLOW_EDIT_DIR, files: () => buildFlowEditFiles({ layout: 'kontext', guidance: true }) },
  { dir: TINY_QWEN_EDIT_DIR, files: () => buildQwenEditFiles({ layout: 'edit' }) },
] as const;

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const which = process.argv[2] ?? 'tiny-edit';
  if (which === 'tiny-edit') {
    for (const { dir, files } of BUILT_IN_MODELS) {
      writeModelFolder(dir, files());
      console.log(`wrote ${dir}`);
    }
  } else if (which === 'bench') {
    for (const family of ['instruct-pix2pix', 'img2img'] satisfies BenchFamily[]) console.log(`wrote ${await ensureBenchModel({ force: true, family })}`);
  } else if (which === 'tiny-flow-edit') {
    const dir = process.argv[3];
    if (!dir) {
      console.error('tiny-flow-edit needs a models folder: tsx models/generate.ts tiny-flow-edit <dir>');
      process.exit(2);
    }
    for (const [name, files] of [
      ['tiny-flow-edit', BUILT_IN_MODELS[1].files()],
      ['tiny-sd3-edit', buildSd3EditFiles()],
    ] as const) {
      writeModelFolder(join(resolve(dir), name), files);
      console.log(`wrote ${join(resolve(dir), name)}`);
    }
  } else if (which === 'tiny-qwen-edit-plus') {
    const dir = process.argv[3];
    if (!dir) {
      console.error('tiny-qwen-edit-plus needs a models folder: tsx models/generate.ts tiny-qwen-edit-plus <dir>');
      process.exit(2);
    }
    writeModelFolder(join(resolve(dir), 'tiny-qwen-edit-plus'), buildQwenEditFiles({ layout: 'plus-2511' }));
    console.log(`wrote ${join(resolve(dir), 'tiny-qwen-edit-plus')}`);
  } else {
    console.error(`unknown model "${which}" (expected tiny-edit, bench, tiny-flow-edit or tiny-qwen-edit-plus)`);
    process.exit(2);
  }
}
