/**
 * Writes the project's generated models:
 *   tsx models/generate.ts            → models/tiny-edit (committed; a test checks the bytes match)
 *   tsx models/generate.ts bench      → .cache/models/bench (git-ignored, for benchmarks and 8× tests)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyEditFiles } from './tinyEdit.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TINY_EDIT_DIR = join(here, 'tiny-edit');

export function writeModelFolder(dir: string, files: Map<string, Uint8Array>): void {
  for (const [path, bytes] of files) {
    const target = join(dir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const which = process.argv[2] ?? 'tiny-edit';
  if (which === 'tiny-edit') {
    writeModelFolder(TINY_EDIT_DIR, buildTinyEditFiles());
    console.log(`wrote ${TINY_EDIT_DIR}`);
  } else if (which === 'bench') {
    const { ensureBenchModel } = await import('./bench.js');
    console.log(`wrote ${await ensureBenchModel({ force: true })}`);
  } else {
    console.error(`unknown model "${which}" (expected tiny-edit or bench)`);
    process.exit(2);
  }
}
