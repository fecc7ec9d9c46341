/**
 * The GPU check, bundled by bench/device/pack.ts and run by bench/device/run.sh on a machine with
 * no Node of its own: the bench model on ONNX Runtime's WebGPU execution provider (Dawn over
 * Vulkan on Linux) against the CPU provider.
 *   1. Which providers this onnxruntime-node build carries, and whether a WebGPU session opens.
 *   2. Outputs: one UNet call (max |gpu − cpu| relative to max |cpu|) and one 512² pipeline edit
 *      (pixel differences of the decoded PNGs), with the thresholds printed beside them.
 *   3. Batching at 512²: one pipeline call over B images for each B of --batches (default 1,4,16),
 *      at the model's default steps, on WebGPU (on CPU, labelled so, when WebGPU cannot open).
 *   4. `bench-qwen` (when the pack carries it) at 512², 2 steps: one call over 1, 2 and 4 images.
 * Flags: --models DIR (a folder holding `bench`), --batches 1,4,16, --steps N, --check-steps N,
 * --reps N, --out FILE (JSON of every figure). Exit status 1 when the output check fails, 2 when
 * WebGPU could not be used (figures are then CPU figures).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { InferenceEngine } from '../../src/inference/engine.js';
import { resolveEditOptions } from '../../src/inference/request.js';
import { readModelFolder } from '../../src/inference/modelFolder.js';
import { sessionOptions, type ExecutionProviderName } from '../../src/inference/sessions.js';

const argv = process.argv.slice(2);
function flag(name: string, fallback: string): string {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
function positive(name: string, raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name} must be a positive integer (got "${raw}")`);
  return Number(raw);
}
const modelsDir = flag('--models', 'models');
const batches = flag('--batches', '1,4,16')
  .split(',')
  .map((b) => positive('--batches', b));
const SIZE = 512;
const spec0 = readModelFolder(join(modelsDir, 'bench'), 'bench');
const steps = positive('--steps', flag('--steps', String(spec0.defaults.steps)));
const checkSteps = positive('--check-steps', flag('--check-steps', '4'));
const reps = positive('--reps', flag('--reps', '3'));
const outFile = flag('--out', '');
/** UNet outputs: largest |gpu − cpu| over largest |cpu| (float32 kernels differ in summation order). */
const UNET_REL_TOLERANCE = 1e-3;
/** Decoded output pixels (0–255) after `checkSteps` steps: mean and largest difference. */
const PIXEL_MEAN_TOLERANCE = 1;
const PIXEL_MAX_TOLERANCE = 24;

const now = (): number => performance.now();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = (line: string): void => console.log(line);

async function testImage(i: number): Promise<Buffer> {
  // A gradient, so that the check covers more than a flat colour.
  const data = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const o = (y * SIZE + x) * 3;
      data[o] = (x + 37 * i) & 255;
      data[o + 1] = (y + 11 * i) & 255;
      data[o + 2] = ((x ^ y) + 5 * i) & 255;
    }
  return sharp(data, { raw: { width: SIZE, height: SIZE, channels: 3 } })
    .png()
    .toBuffer();
}

function unetFeeds(rows: number, latent: number, channels: number, hidden: number): Record<string, ort.Tensor> {
  const sample = new Float32Array(rows * channels * latent * latent);
  for (let k = 0; k < sample.length; k++) sample[k] = Math.sin(k * 0.37) * 0.8;
  const states = new Float32Array(rows * 77 * hidden);
  for (let k = 0; k < states.length; k++) states[k] = Math.cos(k * 0.11) * 0.5;
  return {
    sample: new ort.Tensor('float32', sample, [rows, channels, latent, latent]),
    timestep: new ort.Tensor('float32', new Float32Array(rows).fill(500), [rows]),
    encoder_hidden_states: new ort.Tensor('float32', states, [rows, 77, hidden]),
  };
}

async function unetOutput(provider: ExecutionProviderName, path: string, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(path, sessionOptions({ provider }, provider));
  try {
    const out = await session.run(feeds);
    return out[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

async function rawPixels(png: Uint8Array): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

async function main(): Promise<number> {
  const results: Record<string, unknown> = {
    node: process.version,
    onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    backends: ort.listSupportedBackends?.() ?? null,
  };
  log(`node ${process.version}, onnxruntime-node ${String(results.onnxruntime)}`);
  log(`backends in this build: ${JSON.stringify(results.backends)}`);
  const unetPath = spec0.paths.unet!;
  const latent = SIZE / spec0.vaeScaleFactor;
  const channels = spec0.denoiserInChannels;
  const hidden = 64;
  const feeds = unetFeeds(3, latent, channels, hidden);

  // 1. Does a WebGPU session open and run? (No fallback here: the error is the finding.)
  let webgpuError: string | null = null;
  let gpuUnet: Float32Array | null = null;
  try {
    gpuUnet = await unetOutput('webgpu', unetPath, feeds);
  } catch (err) {
    webgpuError = (err as Error).message.split('\n').slice(0, 3).join(' | ');
  }
  results.webgpu = webgpuError ? { available: false, error: webgpuError } : { available: true };
  log(webgpuError ? `WebGPU: NOT AVAILABLE (${webgpuError}); the figures below are CPU figures` : 'WebGPU: session opened and ran');

  // 2. Outputs against the CPU provider.
  let checkPassed = true;
  if (gpuUnet) {
    const cpuUnet = await unetOutput('cpu', unetPath, feeds);
    let maxDiff = 0;
    let maxAbs = 0;
    for (let k = 0; k < cpuUnet.length; k++) {
      maxDiff = Math.max(maxDiff, Math.abs(gpuUnet[k]! - cpuUnet[k]!));
      maxAbs = Math.max(maxAbs, Math.abs(cpuUnet[k]!));
    }
    const rel = maxDiff / (maxAbs || 1);
    const ok = rel <= UNET_REL_TOLERANCE && Number.isFinite(rel);
    checkPassed &&= ok;
    results.unet_check = { max_abs_diff: maxDiff, max_abs_cpu: maxAbs, relative: rel, tolerance: UNET_REL_TOLERANCE, ok };
    log(
      `UNet (3 rows, ${latent}² latent) webgpu vs cpu: max |diff| ${maxDiff.toExponential(3)}, relative ${rel.toExponential(3)} (≤ ${UNET_REL_TOLERANCE}): ${ok ? 'PASS' : 'FAIL'}`,
    );
  }
  const provider: ExecutionProviderName = webgpuError ? 'cpu' : 'webgpu';
  const engineLog = (m: string): void => log(`  engine: ${m}`);
  const engine = await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'inline', provider, log: engineLog });
  const spec = engine.model('bench');
  const actual = engine.providers().bench ?? 'unknown';
  results.provider = actual;
  log(`pipeline provider: ${actual}`);
  const images = await Promise.all(Array.from({ length: Math.max(...batches) }, (_, i) => testImage(i)));
  const edit = (count: number, s: number) => resolveEditOptions(spec, count, { prompt: 'make it sepia', size: `${SIZE}x${SIZE}`, steps: s, seed: 7 });
  if (provider === 'webgpu') {
    const cpu = await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'inline', provider: 'cpu' });
    const [a, b] = await Promise.all([
      engine.edit('bench', edit(1, checkSteps), [{ bytes: images[0]! }]),
      cpu.edit('bench', edit(1, checkSteps), [{ bytes: images[0]! }]),
    ]);
    await cpu.close();
    const pa = await rawPixels(a.images[0]!.bytes);
    const pb = await rawPixels(b.images[0]!.bytes);
    let sum = 0;
    let max = 0;
    for (let k = 0; k < pa.length; k++) {
      const d = Math.abs(pa[k]! - pb[k]!);
      sum += d;
      max = Math.max(max, d);
    }
    const mean = sum / pa.length;
    const ok = mean <= PIXEL_MEAN_TOLERANCE && max <= PIXEL_MAX_TOLERANCE;
    checkPassed &&= ok;
    results.pipeline_check = {
      steps: checkSteps,
      mean_abs_diff: mean,
      max_abs_diff: max,
      tolerance: { mean: PIXEL_MEAN_TOLERANCE, max: PIXEL_MAX_TOLERANCE },
      ok,
    };
    log(
      `pipeline ${SIZE}² edit, ${checkSteps} steps, webgpu vs cpu: pixel |diff| mean ${mean.toFixed(3)} (≤ ${PIXEL_MEAN_TOLERANCE}), max ${max} (≤ ${PIXEL_MAX_TOLERANCE}): ${ok ? 'PASS' : 'FAIL'}`,
    );
  }

  // 3. Batching at 512²: one call over B images, the model's default steps.
  log(`batching at ${SIZE}², ${steps} steps, ${reps} runs each after a warm-up, provider ${actual}:`);
  const rows: Record<string, number>[] = [];
  let single = 0;
  for (const b of batches) {
    const inputs = images.slice(0, b).map((bytes) => ({ bytes }));
    await engine.edit('bench', edit(b, steps), inputs);
    const times: number[] = [];
    const runShares: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t = now();
      const out = await engine.edit('bench', edit(b, steps), inputs);
      times.push(now() - t);
      runShares.push(out.timings.sessionRunMs / out.timings.totalMs);
    }
    const s = median(times) / 1000;
    if (b === batches[0]) single = s / b;
    const row = { batch: b, seconds_per_call: s, images_per_s: b / s, speedup_per_image: single / (s / b), session_run_share: median(runShares) };
    rows.push(row);
    log(
      `  batch ${String(b).padStart(2)}: ${s.toFixed(3)} s per call, ${row.images_per_s.toFixed(2)} images/s, ${row.speedup_per_image.toFixed(2)}× per image vs batch ${batches[0]}, session.run ${(row.session_run_share * 100).toFixed(1)}% of the call`,
    );
  }
  results.batching = { size: `${SIZE}x${SIZE}`, steps, provider: actual, rows };
  await engine.close();

  // 4. bench-qwen (Qwen-Image-Edit layout; every row attends over the 1 MP condition): one call over N images, N = 1, 2, 4.
  if (existsSync(join(modelsDir, 'bench-qwen'))) {
    const qwen = await InferenceEngine.start({ modelsDir, modelIds: ['bench-qwen'], threading: 'inline', provider, log: engineLog });
    const qspec = qwen.model('bench-qwen');
    const qedit = (count: number) => resolveEditOptions(qspec, count, { prompt: 'make it sepia', size: `${SIZE}x${SIZE}`, steps: 2, seed: 7 });
    log(`bench-qwen at ${SIZE}², 2 steps, provider ${qwen.providers()['bench-qwen'] ?? 'unknown'}:`);
    const qrows: Record<string, number>[] = [];
    let qsingle = 0;
    for (const b of [1, 2, 4]) {
      const inputs = images.slice(0, b).map((bytes) => ({ bytes }));
      await qwen.edit('bench-qwen', qedit(b), inputs);
      const t = now();
      const out = await qwen.edit('bench-qwen', qedit(b), inputs);
      const s = (now() - t) / 1000;
      if (b === 1) qsingle = s;
      qrows.push({ batch: b, seconds_per_call: s, speedup_per_image: qsingle / (s / b), micro_batches: out.usage.batches });
      log(`  batch ${b}: ${s.toFixed(3)} s per call, ${(qsingle / (s / b)).toFixed(2)}× per image vs batch 1, ${out.usage.batches} micro-batch(es)`);
    }
    results.qwen = { size: `${SIZE}x${SIZE}`, steps: 2, rows: qrows };
    await qwen.close();
  }
  if (outFile) writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
  log(`RESULT ${JSON.stringify(results)}`);
  if (!checkPassed) {
    log('output check FAILED');
    return 1;
  }
  return webgpuError || actual !== 'webgpu' ? 2 : 0;
}

process.exitCode = await main();
