/**
 * One memory measurement in a fresh process (spawned by bench/memory.ts and test/memoryPlan.test.ts):
 * an inline engine runs one job, and /proc/self/status gives the RSS before any model is loaded,
 * after the model's sessions are open, the peak during the job (VmHWM, reset before it, and 10 ms
 * samples) and the settled RSS after a full collection. Prints one JSON line (`MemoryChildResult`).
 * Argument: a JSON `MemoryChildArgs`. Needs --expose-gc.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { estimateBatchBytes } from '../src/inference/memory.js';
import { STAGE_THREAD_BYTES } from '../src/inference/stageThread.js';

export interface MemoryChildArgs {
  modelsDir: string;
  model: string;
  images: number;
  size: number;
  steps: number;
  arena: boolean;
  /** MEMORY_BUDGET_MB of the engine; absent: the default (half the RAM). */
  budgetMb?: number;
  /** The engine's stage thread (text encoders and VAE on a thread of their own); absent: its default. */
  stageThread?: boolean;
}

export interface MemoryChildResult {
  /** Node and the loaded modules, before any session exists. */
  runtime_rss: number;
  /** After the model's sessions are open. */
  loaded_rss: number;
  peak_rss: number;
  settled_rss: number;
  /** Decoded inputs (float32 RGB at the output size, as the runner holds them). */
  decoded_input_bytes: number;
  /** Encoded outputs returned, plus the float32 RGB each output passes through. */
  output_bytes: number;
  /** The plan's estimate for the job as one call (weights + items × per-item bytes) + decoded inputs + the stage thread. */
  plan_bytes: number;
  batches: number;
  error?: { code: string; message: string };
}

function status(): { rss: number; hwm: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

const gc = (): void => (globalThis as { gc?: () => void }).gc!();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]!) as MemoryChildArgs;
  const { size } = args;
  const inputs = await Promise.all(
    Array.from({ length: args.images }, async (_, i) => ({
      bytes: await sharp({ create: { width: size, height: size, channels: 3, background: { r: 30 + 40 * i, g: 120, b: 200 - 10 * i } } })
        .png()
        .toBuffer(),
    })),
  );
  gc();
  await sleep(200);
  const runtime = status().rss;
  const engine = await InferenceEngine.start({
    modelsDir: args.modelsDir,
    modelIds: [args.model],
    threading: 'inline',
    cpuMemArena: args.arena,
    stageThread: args.stageThread,
    memoryBudgetBytes: args.budgetMb === undefined ? undefined : args.budgetMb * 2 ** 20,
  });
  const spec = engine.model(args.model);
  gc();
  await sleep(200);
  const loaded = status().rss;
  const edit = resolveEditOptions(spec, args.images, { prompt: 'make it sepia', size: `${size}x${size}`, steps: args.steps, seed: 1 });
  const pixels = size * size;
  const decoded = args.images * pixels * 3 * 4;
  const plan =
    estimateBatchBytes(
      spec.memory,
      { width: size, height: size, vaeScaleFactor: spec.vaeScaleFactor, branches: spec.family.guidanceBranches(edit) },
      args.images,
    ) +
    decoded +
    (args.stageThread === false ? 0 : STAGE_THREAD_BYTES);
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // not permitted: VmHWM then covers start-up too, which is below the job's peak
  }
  let peak = status().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, status().rss)), 10);
  const result: MemoryChildResult = {
    runtime_rss: runtime,
    loaded_rss: loaded,
    peak_rss: 0,
    settled_rss: 0,
    decoded_input_bytes: decoded,
    output_bytes: 0,
    plan_bytes: plan,
    batches: 0,
  };
  try {
    const out = await engine.edit(args.model, edit, inputs);
    result.output_bytes = out.images.reduce((n, img) => n + img.bytes.byteLength + img.width * img.height * 3 * 4, 0);
    result.batches = out.usage.batches;
  } catch (err) {
    const e = err as { code?: string; message: string };
    result.error = { code: e.code ?? 'UNKNOWN', message: e.message };
  }
  clearInterval(sampler);
  result.peak_rss = Math.max(peak, status().hwm);
  await sleep(500);
  gc();
  await sleep(1500);
  result.settled_rss = status().rss;
  await engine.close();
  console.log(JSON.stringify(result));
}

await main();
