/** Paths that depend on where the project is installed. */
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The repository's `models` folder, holding the built-in tiny-edit model. */
export function defaultModelsDir(): string {
  return join(PROJECT_ROOT, 'models');
}

/** The model folders this repository ships in models/, and the file that writes each. */
export const BUILT_IN_MODELS: Readonly<Record<string, string>> = {
  'tiny-edit': 'models/tinyEdit.ts',
  'tiny-flow-edit': 'models/flowExports.ts',
  'tiny-qwen-edit': 'models/qwenExports.ts',
};

/** The generator of `dir` when it is (or links to) one of the built-in model folders; else null. */
export function builtInGenerator(dir: string): string | null {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return null;
  }
  const name = basename(real);
  return Object.hasOwn(BUILT_IN_MODELS, name) && real === join(realpathSync(defaultModelsDir()), name) ? BUILT_IN_MODELS[name]! : null;
}

/**
 * Where the user ran the command from, for resolving the paths they typed: npm runs a script in the
 * project root and keeps the caller's folder in INIT_CWD; run any other way, the working directory.
 */
export function callerDir(script: string): string {
  return (process.env.npm_lifecycle_event === script && process.env.INIT_CWD) || process.cwd();
}

/** The optimized-model cache's default folder (ORT_OPTIMIZED_CACHE unset or on). */
export function defaultOptimizedCacheDir(): string {
  return join(PROJECT_ROOT, '.cache', 'ort-optimized');
}

/**
 * ORT_OPTIMIZED_CACHE: unset, empty, `1`/`on`/`true`/`yes` → the default folder; `0`/`off`/`false`/`no`
 * → null (off); anything else is the folder (relative to the working directory).
 */
export function optimizedCacheDir(env: NodeJS.ProcessEnv): string | null {
  const raw = (env.ORT_OPTIMIZED_CACHE ?? '').trim();
  if (raw === '' || /^(1|on|true|yes)$/i.test(raw)) return defaultOptimizedCacheDir();
  if (/^(0|off|false|no)$/i.test(raw)) return null;
  return resolve(raw);
}
