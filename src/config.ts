/** Paths that depend on where the project is installed. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The repository's `models` folder, holding the built-in tiny-edit model. */
export function defaultModelsDir(): string {
  return join(PROJECT_ROOT, 'models');
}

/**
 * Where the user ran the command from, for resolving the paths they typed: npm runs a script in the
 * project root and keeps the caller's folder in INIT_CWD; run any other way, the working directory.
 */
export function callerDir(script: string): string {
  return (process.env.npm_lifecycle_event === script && process.env.INIT_CWD) || process.cwd();
}
