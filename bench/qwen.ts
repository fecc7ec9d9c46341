/**
 * The `qwen` section of the benchmark: `bench-qwen` (Qwen-Image-Edit layout: joint attention over
 * text, noise and the 1 MP condition's tokens) at one output size per child process. `qwenBench`
 * (used by bench/run.ts) runs the children; run directly,
 * `tsx bench/qwen.ts --size 512 --steps 2 --reps 1 --max-images 4` measures one size and prints one
 * `QWEN_RESULT {json}` line:
 *   batching[N]   N single-image jobs / one job over N images (pipeline), and the raw ONNX Runtime
 *                 transformer at batch N against N calls at batch 1, same feeds (N = 1, 2, 4)
 *   cfg           raw transformer: the negative and positive rows in one batch-2 call against two
 *                 batch-1 calls (what diffusers does); pipeline: a job with true CFG against one without
 *   lightning     an 8-step job without true CFG (timed) against 50 steps with it (derived from
 *                 2- and 10-step CFG jobs: a 50-step run is not made)
 *   pipeline_overhead  share of the batched job's wall time outside session.run
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { ensureBenchModel } from '../models/bench.js';
import { intArg, median, runSizeChildren } from './child.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { calculateDimensions } from '../src/inference/pipelines/qwen/sizing.js';
import { imageRope, textRope } from '../src/inference/pipelines/qwen/rope.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { sessionOptions } from '../src/inference/sessions.js';

export interface QwenSizeResult {
  size: string;
  steps: number;
  noise_tokens: number;
  condition_tokens: number;
  batching: { images: number; sequential_s: number; batched_s: number; speedup: number; raw_transformer_speedup: number }[];
  cfg: { raw_one_call_s: number; raw_two_calls_s: number; raw_speedup: number; job_with_cfg_s: number; job_without_s: number };
  lightning: { eight_steps_s: number; per_step_cfg_s: number; fixed_cfg_s: number; fifty_steps_cfg_s: number; speedup: number };
  pipeline_overhead: number;
  peak_rss_mb: number;
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; s: number }> {
  const t = performance.now();
  const value = await f();
  return { value, s: (performance.now() - t) / 1000 };
}

async function measure(size: number, steps: number, reps: number, maxImages: number): Promise<QwenSizeResult> {
  const dir = await ensureBenchModel({ family: 'qwen-image-edit' });
  const engine = await InferenceEngine.start({ modelsDir: dirname(dir), modelIds: ['bench-qwen'], threading: 'inline' });
  const spec = engine.model('bench-qwen');
  const inputs = await Promise.all(
    Array.from({ length: maxImages }, async (_, i) => ({
      bytes: await sharp({ create: { width: size, height: size, channels: 3, background: { r: 40 + 50 * i, g: 120, b: 200 - 40 * i } } })
        .png()
        .toBuffer(),
    })),
  );
  const job = (count: number, options: { steps?: number; negativePrompt?: string } = {}) =>
    resolveEditOptions(spec, count, { prompt: 'make it sepia', size: `${size}x${size}`, steps, seed: 1, ...options });
  const run = (count: number, options: { steps?: number; negativePrompt?: string } = {}) =>
    engine.edit('bench-qwen', job(count, options), inputs.slice(0, count));
  // Raw transformer feeds of this size: noise + condition tokens, text as the pipeline pads it.
  const f = spec.vaeScaleFactor * 2;
  const cond = calculateDimensions(1024 * 1024, 1);
  const shapes = [
    [1, size / f, size / f],
    [1, cond.height / f, cond.width / f],
  ] as const;
  const noiseTokens = (size / f) ** 2;
  const seq = noiseTokens + (cond.height / f) * (cond.width / f);
  const textLength = 1369 + 16;
  const session = await ort.InferenceSession.create(join(dir, 'transformer', 'model.onnx'), sessionOptions({ provider: 'cpu' }, 'cpu'));
  const img = imageRope(shapes);
  const txt = textRope(shapes, textLength);
  const feeds = (rows: number): Record<string, ort.Tensor> => ({
    hidden_states: new ort.Tensor(
      'float32',
      Float32Array.from({ length: rows * seq * 64 }, (_, k) => Math.sin(k)),
      [rows, seq, 64],
    ),
    encoder_hidden_states: new ort.Tensor(
      'float32',
      Float32Array.from({ length: rows * textLength * 128 }, (_, k) => Math.cos(k)),
      [rows, textLength, 128],
    ),
    encoder_hidden_states_mask: new ort.Tensor('int64', new BigInt64Array(rows * textLength).fill(1n), [rows, textLength]),
    timestep: new ort.Tensor('float32', new Float32Array(rows).fill(0.5), [rows]),
    img_rope_cos: new ort.Tensor('float32', img.cos, [img.rows, 64]),
    img_rope_sin: new ort.Tensor('float32', img.sin, [img.rows, 64]),
    txt_rope_cos: new ort.Tensor('float32', txt.cos, [txt.rows, 64]),
    txt_rope_sin: new ort.Tensor('float32', txt.sin, [txt.rows, 64]),
  });
  const rawBatch = async (rows: number): Promise<number> => (await timed(() => session.run(feeds(rows)))).s;
  const rawSingles = async (rows: number): Promise<number> => {
    const one = feeds(1);
    let s = 0;
    for (let r = 0; r < rows; r++) s += (await timed(() => session.run(one))).s;
    return s;
  };
  const batching: QwenSizeResult['batching'] = [];
  const overheads: number[] = [];
  for (const images of [1, 2, 4].filter((n) => n <= maxImages)) {
    // ONNX Runtime's memory pattern makes the first two runs of a new shape cold (BENCHMARKS.md,
    // "Real-size model"): two of each shape before anything is timed.
    for (let w = 0; w < 2; w++) {
      await run(images);
      await rawBatch(images);
    }
    const seqs: number[] = [];
    const bats: number[] = [];
    const raw: number[] = [];
    for (let r = 0; r < reps; r++) {
      let s = 0;
      for (let i = 0; i < images; i++) s += (await timed(() => engine.edit('bench-qwen', job(1), [inputs[i]!]))).s;
      const batched = await timed(() => run(images));
      seqs.push(s);
      bats.push(batched.s);
      if (images === maxImages) overheads.push((batched.value.timings.totalMs - batched.value.timings.sessionRunMs) / batched.value.timings.totalMs);
      raw.push((await rawSingles(images)) / (await rawBatch(images)));
    }
    batching.push({ images, sequential_s: median(seqs), batched_s: median(bats), speedup: median(seqs) / median(bats), raw_transformer_speedup: median(raw) });
  }

  const one: number[] = [];
  const two: number[] = [];
  const withCfg: number[] = [];
  const without: number[] = [];
  for (let r = 0; r < reps; r++) {
    one.push(await rawBatch(2));
    two.push(await rawSingles(2));
    withCfg.push((await timed(() => run(1, { negativePrompt: 'blurry' }))).s);
    without.push((await timed(() => run(1))).s);
  }

  // Lightning's 8 steps without true CFG, timed; 50 steps with it from the per-step cost between a
  // 2- and a 10-step CFG job (a 50-step run would take minutes on CPU).
  const at = async (n: number, cfg: boolean): Promise<number> => {
    const xs: number[] = [];
    for (let r = 0; r < reps; r++) xs.push((await timed(() => run(1, { steps: n, ...(cfg ? { negativePrompt: 'blurry' } : {}) }))).s);
    return median(xs);
  };
  const eight = await at(8, false);
  const [c2, c10] = [await at(2, true), await at(10, true)];
  const perStepCfg = (c10 - c2) / 8;
  const fixed = c2 - 2 * perStepCfg;
  const fifty = fixed + 50 * perStepCfg;
  await engine.close();
  await session.release();
  return {
    size: `${size}x${size}`,
    steps,
    noise_tokens: noiseTokens,
    condition_tokens: seq - noiseTokens,
    batching,
    cfg: {
      raw_one_call_s: median(one),
      raw_two_calls_s: median(two),
      raw_speedup: median(two) / median(one),
      job_with_cfg_s: median(withCfg),
      job_without_s: median(without),
    },
    lightning: { eight_steps_s: eight, per_step_cfg_s: perStepCfg, fixed_cfg_s: fixed, fifty_steps_cfg_s: fifty, speedup: fifty / eight },
    pipeline_overhead: median(overheads),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** Runs one child per size (in order) and returns their results. */
export function qwenBench(opts: { sizes: number[]; steps: number; reps: number; maxImages: number }): Promise<QwenSizeResult[]> {
  const args = ['--steps', `${opts.steps}`, '--reps', `${opts.reps}`, '--max-images', `${opts.maxImages}`];
  return runSizeChildren<QwenSizeResult>(fileURLToPath(import.meta.url), opts.sizes, args, 'QWEN_RESULT');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await measure(intArg('--size', 512), intArg('--steps', 2), intArg('--reps', 1), intArg('--max-images', 4));
  console.log(`QWEN_RESULT ${JSON.stringify(result)}`);
}
