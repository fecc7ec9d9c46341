/**
 * What the per-size bench sections (flow.ts, qwen.ts) share: each size is measured in a child
 * process of its own (so its peak RSS is its own) that prints one `<MARKER> {json}` line.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

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
