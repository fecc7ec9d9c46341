/** Writing a generated model folder (path inside the folder → bytes). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export function writeModelFolder(dir: string, files: Map<string, Uint8Array>): void {
  for (const [path, bytes] of files) {
    const target = join(dir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}
