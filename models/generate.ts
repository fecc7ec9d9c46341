/**
 * Writes the project's generated models:
 *   tsx models/generate.ts            → models/tiny-edit (committed; a test checks the bytes match)
 *   tsx models/generate.ts bench      → .cache/models/bench and bench-img2img (git-ignored, for
 *                                       benchmarks and 8× tests)
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyEditFiles } from './tinyEdit.js';
import { ensureBenchModel, type BenchFamily } from './bench.js';
import { writeModelFolder } from './modelFiles.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TINY_EDIT_DIR = join(here, 'tiny-edit');

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const which = process.argv[2] ?? 'tiny-edit';
  if (which === 'tiny-edit') {
    writeModelFolder(TINY_EDIT_DIR, buildTinyEditFiles());
    console.log(`wrote ${TINY_EDIT_DIR}`);
  } else if (which === 'bench') {
    for (const family of ['instruct-pix2pix', 'img2img'] satisfies BenchFamily[]) console.log(`wrote ${await ensureBenchModel({ force: true, family })}`);
  } else {
    console.error(`unknown model "${which}" (expected tiny-edit or bench)`);
    process.exit(2);
  }
}
