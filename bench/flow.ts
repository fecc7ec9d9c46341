/**
 * The `flow` section of the benchmark: `bench-flux` (FLUX.1-dev img2img layout, joint attention
 * over 2×2-patch image tokens and T5 tokens) at one size per child process, so each size's peak
 * RSS is its own. `flowBench` (used by bench/run.ts) runs the children; run directly,
 * `tsx bench/flow.ts --size 512 --steps 4 --images 4 --reps 3` measures one size and prints one
 * `FLOW_RESULT {json}` line:
 *   speedup            B single-image calls / one call over B images (interleaved, medians)
 *   pipeline_overhead  share of the batched call's wall time outside session.run
 *   peak_rss_mb        the process's peak resident set (getrusage), model load included
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ensureBenchModel } from '../models/bench.js';
import { intArg, median, runSizeChildren } from './child.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';

export interface FlowSizeResult {
  size: string;
  images: number;
  steps: number;
  max_sequence_length: number;
  image_tokens: number;
  /** Pipeline calls the batched job was split into by the memory planner. */
  micro_batches: number;
  sequential_s: number;
  batched_s: number;
  speedup: number;
  pipeline_overhead: number;
  pipeline_overhead_parts: { input_decode: number; output_encode: number };
  peak_rss_mb: number;
}

async function measure(size: number, steps: number, images: number, reps: number): Promise<FlowSizeResult> {
  const dir = await ensureBenchModel({ family: 'flux-img2img' });
  const engine = await InferenceEngine.start({ modelsDir: dirname(dir), modelIds: ['bench-flux'], threading: 'inline' });
  const spec = engine.model('bench-flux');
  const inputs = await Promise.all(
    Array.from({ length: images }, async (_, i) => ({
      bytes: await sharp({ create: { width: size, height: size, channels: 3, background: { r: 40 + 50 * i, g: 120, b: 200 - 40 * i } } })
        .png()
        .toBuffer(),
    })),
  );
  // The family's defaults (guidance 3.5 embedded, T5 512 tokens, no true CFG) at strength 1: every step runs.
  const edit = (count: number) => resolveEditOptions(spec, count, { prompt: 'make it sepia', size: `${size}x${size}`, steps, strength: 1, seed: 1 });
  await engine.edit('bench-flux', edit(1), [inputs[0]!]);
  await engine.edit('bench-flux', edit(images), inputs);
  const seq: number[] = [];
  const bat: number[] = [];
  const ratios: number[] = [];
  const overheads: number[] = [];
  const decode: number[] = [];
  const encode: number[] = [];
  let microBatches = 0;
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    for (const input of inputs) await engine.edit('bench-flux', edit(1), [input]);
    const s = performance.now() - t;
    t = performance.now();
    const out = await engine.edit('bench-flux', edit(images), inputs);
    const b = performance.now() - t;
    seq.push(s);
    bat.push(b);
    ratios.push(s / b);
    overheads.push((out.timings.totalMs - out.timings.sessionRunMs) / out.timings.totalMs);
    decode.push(out.timings.decodeMs / out.timings.totalMs);
    encode.push(out.timings.encodeMs / out.timings.totalMs);
    microBatches = out.usage.batches;
  }
  await engine.close();
  const latent = size / spec.vaeScaleFactor;
  return {
    size: `${size}x${size}`,
    images,
    steps,
    max_sequence_length: spec.defaults.maxSequenceLength!,
    image_tokens: (latent / 2) ** 2,
    micro_batches: microBatches,
    sequential_s: median(seq) / 1000,
    batched_s: median(bat) / 1000,
    speedup: median(ratios),
    pipeline_overhead: median(overheads),
    pipeline_overhead_parts: { input_decode: median(decode), output_encode: median(encode) },
    // ru_maxrss is in KiB on Linux.
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** Runs one child per size (in order) and returns their results. */
export function flowBench(opts: { sizes: number[]; steps: number; images: number; reps: number }): Promise<FlowSizeResult[]> {
  const args = ['--steps', `${opts.steps}`, '--images', `${opts.images}`, '--reps', `${opts.reps}`];
  return runSizeChildren<FlowSizeResult>(fileURLToPath(import.meta.url), opts.sizes, args, 'FLOW_RESULT');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await measure(intArg('--size', 512), intArg('--steps', 4), intArg('--images', 4), intArg('--reps', 3));
  console.log(`FLOW_RESULT ${JSON.stringify(result)}`);
}
