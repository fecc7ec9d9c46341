/**
 * What the per-size bench sections (flow.ts, qwen.ts) share: each size is measured in a child
 * process of its own (so its peak RSS is its own) that prints one `<MARKER> {json}` line.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../src/config.js';

export const RESULTS_PATH = join(PROJECT_ROOT, 'bench', 'results.json');

/** bench/results.json as the runs so far left it ({} before the first). */
export function readResults(): Record<string, unknown> {
  return existsSync(RESULTS_PATH) ? (JSON.parse(readFileSync(RESULTS_PATH, 'utf8')) as Record<string, unknown>) : {};
}

/** Writes these keys into bench/results.json; the keys other runs wrote (sections run alone, `--load`) stay. */
export function writeResults(keys: Record<string, unknown>): string {
  mkdirSync(dirname(RESULTS_PATH), { recursive: true });
  writeFileSync(RESULTS_PATH, `${JSON.stringify({ ...readResults(), ...keys }, null, 2)}\n`);
  return RESULTS_PATH;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** A positive integer flag of this process (`--name N`), or `fallback`. */
export function intArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i > 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} needs a positive integer`);
  return v;
}

/** Runs `script --size S ...args` for each size in turn and returns the JSON each printed after `marker`. */
export async function runSizeChildren<T>(script: string, sizes: number[], args: string[], marker: string): Promise<T[]> {
  const results: T[] = [];
  for (const size of sizes) {
    const argv = ['--import', 'tsx', script, '--size', `${size}`, ...args];
    const { stdout } = await promisify(execFile)(process.execPath, argv, { cwd: join(dirname(script), '..'), maxBuffer: 1 << 24 });
    const line = stdout.split('\n').find((l) => l.startsWith(`${marker} `));
    if (!line) throw new Error(`${script} --size ${size} printed no result:\n${stdout}`);
    results.push(JSON.parse(line.slice(marker.length + 1)) as T);
  }
  return results;
}
