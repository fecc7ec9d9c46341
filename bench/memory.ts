/**
 * Memory per job size (the `memory` key of bench/results.json): each job of B × 512² images on the
 * bench model runs in a fresh process (bench/memoryChild.ts), once with ONNX Runtime's CPU arena
 * on (the default) and once off. Figures in MB; the job's own RSS is peak − the RSS before any
 * model was loaded (`runtime`). Parts of the peak with the arena on:
 *   weights         RSS added by opening the sessions (measured)
 *   ort_arenas      settled RSS with the arena on − settled RSS with it off (measured: what the
 *                   arenas keep after the job)
 *   decoded_inputs  float32 RGB of each input at the output size (accounted)
 *   outputs         encoded outputs + their float32 RGB (accounted)
 *   scratch_and_other  the rest of the peak: the scratch pool (at most 256 MiB between runs),
 *                   ORT's allocations outside the arena, JavaScript heap and allocator slack
 * `plan_mb` is the memory plan's figure for the same job (weights + per-item + decoded inputs).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import type { MemoryChildArgs, MemoryChildResult } from './memoryChild.js';

const MB = 2 ** 20;
const mb = (bytes: number): number => Math.round(bytes / MB);

/** Runs one measurement in a fresh process (`node --import tsx --expose-gc bench/memoryChild.ts`). */
export function measureJobMemory(args: MemoryChildArgs): MemoryChildResult {
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', join(PROJECT_ROOT, 'bench', 'memoryChild.ts'), JSON.stringify(args)], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    maxBuffer: 16 * MB,
  });
  const line = child.stdout.trim().split('\n').at(-1) ?? '';
  if (child.status !== 0 || !line.startsWith('{')) throw new Error(`memory child failed (${child.status}): ${child.stderr.slice(-2000)}`);
  return JSON.parse(line) as MemoryChildResult;
}

export interface JobMemory {
  images: number;
  size: string;
  peak_rss_mb: number;
  settled_rss_mb: number;
  /** Peak − RSS before any model was loaded: what the job needs. */
  job_mb: number;
  plan_mb: number;
  arena_off: { peak_rss_mb: number; settled_rss_mb: number; job_mb: number };
  parts: { runtime: number; weights: number; ort_arenas: number; decoded_inputs: number; outputs: number; scratch_and_other: number };
}

export function measureMemory(modelsDir: string, jobSizes: readonly number[], size = 512, steps = 2): JobMemory[] {
  return jobSizes.map((images) => {
    const base = { modelsDir, model: 'bench', images, size, steps };
    const on = measureJobMemory({ ...base, arena: true });
    const off = measureJobMemory({ ...base, arena: false });
    const weights = on.loaded_rss - on.runtime_rss;
    const arenas = Math.max(0, on.settled_rss - on.runtime_rss - (off.settled_rss - off.runtime_rss));
    const rest = on.peak_rss - on.loaded_rss - arenas - on.decoded_input_bytes - on.output_bytes;
    return {
      images,
      size: `${size}x${size}`,
      peak_rss_mb: mb(on.peak_rss),
      settled_rss_mb: mb(on.settled_rss),
      job_mb: mb(on.peak_rss - on.runtime_rss),
      plan_mb: mb(on.plan_bytes),
      arena_off: { peak_rss_mb: mb(off.peak_rss), settled_rss_mb: mb(off.settled_rss), job_mb: mb(off.peak_rss - off.runtime_rss) },
      parts: {
        runtime: mb(on.runtime_rss),
        weights: mb(weights),
        ort_arenas: mb(arenas),
        decoded_inputs: mb(on.decoded_input_bytes),
        outputs: mb(on.output_bytes),
        scratch_and_other: mb(rest),
      },
    };
  });
}
