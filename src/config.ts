/** Paths that depend on where the project is installed. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The repository's `models` folder, holding the built-in tiny-edit model. */
export function defaultModelsDir(): string {
  return join(PROJECT_ROOT, 'models');
}
