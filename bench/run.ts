/**
 * `npm run bench` (quick) / `npm run bench -- --full`: measures, side by side in one run, on the
 * generated `bench` model (realistic convolutions, GroupNorm, attention, 8× VAE):
 *   batching            one batched call over B images vs B single-image calls, and raw ORT UNet batch B vs B×1
 *   pipeline_overhead   share of pipeline wall time outside session.run
 *   server_overhead     GraphQL client wall time (upload → final event) / in-process pipeline time − 1
 *   coalescing          C concurrent single-image clients through the queue, merged vs not merged
 *   progress_latency_ms step callback on the worker → websocket client receipt
 *   peak_rss_mb         process RSS peak during a 4-image 512×512 job through the server
 * Prints a table and writes bench/results.json. Figures are ratios measured in the same run.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { ensureBenchModel } from '../models/bench.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { sessionOptions } from '../src/inference/sessions.js';
import { DEFAULT_PNG_COMPRESSION_LEVEL } from '../src/inference/imageIO.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { JobService } from '../src/jobs/jobService.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { startServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { PROJECT_ROOT } from '../src/config.js';
import { postMultipart, wsClient } from '../test/support/graphql.js';
import { pino } from 'pino';

const full = process.argv.includes('--full');
const IMAGES = 4;
const SIZE = full ? 512 : 256;
// `--reps N`: more interleaved repetitions where timings are noisy (medians need them).
const repsArg = process.argv.indexOf('--reps');
const REPS = repsArg > 0 ? Number(process.argv[repsArg + 1]) : full ? 7 : 3;
if (!Number.isInteger(REPS) || REPS < 1) throw new Error('--reps needs a positive integer');
const modelDir = await ensureBenchModel();
// Full mode runs jobs as a client gets them by default: the bench model's default step count
// (`--steps N` overrides it, e.g. to compare with runs recorded at another count).
const stepsArg = process.argv.indexOf('--steps');
const STEPS = stepsArg > 0 ? Number(process.argv[stepsArg + 1]) : full ? readModelFolder(modelDir, 'bench').defaults.steps : 4;
if (!Number.isInteger(STEPS) || STEPS < 1) throw new Error('--steps needs a positive integer');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const now = (): number => performance.now();

async function testImage(i: number, size: number): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: 40 * i + 30, g: 120, b: 200 - 30 * i } } }).png().toBuffer();
}

async function rawOrtSpeedup(unetPath: string, batch: number, branches: number, latent: number, hidden: number): Promise<number> {
  // The server's own session options, so the raw figure is comparable with the pipeline's.
  const session = await ort.InferenceSession.create(unetPath, sessionOptions({ provider: 'cpu' }, 'cpu'));
  const run = async (rows: number): Promise<void> => {
    await session.run({
      sample: new ort.Tensor('float32', new Float32Array(rows * 8 * latent * latent).fill(0.1), [rows, 8, latent, latent]),
      timestep: new ort.Tensor('float32', new Float32Array(rows).fill(500), [rows]),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(rows * 77 * hidden).fill(0.01), [rows, 77, hidden]),
    });
  };
  await run(branches);
  await run(batch * branches);
  const single: number[] = [];
  const batched: number[] = [];
  for (let r = 0; r < REPS + 1; r++) {
    let t = now();
    for (let b = 0; b < batch; b++) await run(branches);
    single.push(now() - t);
    t = now();
    await run(batch * branches);
    batched.push(now() - t);
  }
  await session.release();
  return median(single) / median(batched);
}

async function main(): Promise<void> {
  const modelsDir = dirname(modelDir);
  const images = await Promise.all(Array.from({ length: IMAGES }, (_, i) => testImage(i, SIZE)));
  const serverSize = 512;
  const serverSteps = STEPS;
  const bigImages = await Promise.all(Array.from({ length: 4 }, (_, i) => testImage(i, serverSize)));
  console.log(`bench model: batching at ${SIZE}x${SIZE}, server job 4×${serverSize}², ${STEPS} steps, ${REPS} interleaved repetitions (${full ? 'full' : 'quick'})`);

  // --- the server: a GraphQL client's wall time, upload → final event, with progress latencies.
  const server = await startServer(loadConfig({ PORT: '0', MODELS_DIR: modelsDir, DEFAULT_MODEL: 'bench', LOG_LEVEL: 'silent' }), { logger: pino({ level: 'silent' }) });
  const client = wsClient(server.url.replace(/^http/, 'ws') + '/graphql');
  const subscription = 'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditProgress { step emittedAt } } }';
  type Ev = { editJobEvents: { __typename: string; emittedAt?: number } };
  const latencies: number[] = [];
  const serverJob = async (size: number, steps: number, files: Buffer[]): Promise<number> => {
    const t = now();
    const res = await postMultipart<{ editImages: { id: string } }>(
      server.url,
      'mutation($images:[Upload!]!,$size:String,$steps:Int){ editImages(images:$images, prompt:"make it sepia", size:$size, steps:$steps, seed:1){ id } }',
      { size: `${size}x${size}`, steps },
      files.map((bytes, i) => ({ bytes, name: `${i}.png` })),
    );
    const id = res.body.data!.editImages.id;
    await new Promise<void>((resolve, reject) => {
      client.subscribe<Ev>({ query: subscription, variables: { id } }, {
        next: (v) => {
          const e = v.data!.editJobEvents;
          if (e.emittedAt !== undefined) latencies.push(performance.timeOrigin + performance.now() - e.emittedAt);
        },
        error: reject,
        complete: resolve,
      });
    });
    return now() - t;
  };
  // Peak RSS of a 4-image 512² job, measured before the in-process engine below exists.
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  await serverJob(serverSize, serverSteps, bigImages);
  clearInterval(sampler);

  // --- the same work in process, interleaved with the server so drift hits both alike.
  const engine = await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'inline' });
  const spec = engine.model('bench');
  const edit = (count: number, size = SIZE, steps = STEPS) => resolveEditOptions(spec, count, { prompt: 'make it sepia', size: `${size}x${size}`, steps, seed: 1 });
  const inProcessJob = async (): Promise<number> => {
    const t = now();
    await engine.edit('bench', edit(4, serverSize, serverSteps), bigImages.map((bytes) => ({ bytes })));
    return now() - t;
  };
  await inProcessJob();
  const serverRatios: number[] = [];
  const clientTimes: number[] = [];
  const inProcess: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const c = await serverJob(serverSize, serverSteps, bigImages);
    const p = await inProcessJob();
    clientTimes.push(c);
    inProcess.push(p);
    serverRatios.push(c / p);
  }
  // More latency samples from many short steps.
  for (let r = 0; r < 2; r++) await serverJob(64, 50, [bigImages[0]!]);
  await client.dispose();
  await server.shutdown(1000);

  // --- batching: one call over B images against B single-image calls, interleaved pairs.
  await engine.edit('bench', edit(1), [{ bytes: images[0]! }]);
  await engine.edit('bench', edit(IMAGES), images.map((bytes) => ({ bytes })));
  const seqTimes: number[] = [];
  const batTimes: number[] = [];
  const batchRatios: number[] = [];
  const overheads: number[] = [];
  const decodeShares: number[] = [];
  const encodeShares: number[] = [];
  for (let r = 0; r < REPS; r++) {
    let t = now();
    for (const bytes of images) await engine.edit('bench', edit(1), [{ bytes }]);
    const seq = now() - t;
    t = now();
    const out = await engine.edit('bench', edit(IMAGES), images.map((bytes) => ({ bytes })));
    const bat = now() - t;
    seqTimes.push(seq);
    batTimes.push(bat);
    batchRatios.push(seq / bat);
    overheads.push((out.timings.totalMs - out.timings.sessionRunMs) / out.timings.totalMs);
    decodeShares.push(out.timings.decodeMs / out.timings.totalMs);
    encodeShares.push(out.timings.encodeMs / out.timings.totalMs);
  }
  const latent = SIZE / spec.vaeScaleFactor;
  const branches = 3; // InstructPix2Pix with guidance: the pipeline runs 3 UNet rows per item
  const hidden = 64;
  const rawSpeedup = await rawOrtSpeedup(spec.paths.unet!, IMAGES, branches, latent, hidden);
  const speedup = median(batchRatios);

  // --- cross-request batching: C concurrent single-image clients through the queue, merged vs not.
  const coalesce = async (mergeJobs: boolean): Promise<number> => {
    const jobs = new JobService(engine, { retentionMs: 60_000, maxQueuedJobs: 100, jobTimeoutMs: 0, mergeJobs });
    const t = now();
    const submitted = images.map((bytes) => jobs.submit('bench', edit(1), [{ bytes }], 'anonymous'));
    await Promise.all(submitted.map(async (job) => {
      for await (const _event of jobs.subscribe(job.id)) {
        // drain until the terminal event
      }
    }));
    const ms = now() - t;
    await jobs.shutdown(0);
    return ms;
  };
  const coalesceRatios: number[] = [];
  for (let r = 0; r < REPS; r++) coalesceRatios.push((await coalesce(false)) / (await coalesce(true)));
  const coalescingSpeedup = median(coalesceRatios);
  await engine.close();

  const results = {
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? 'unknown', memory_gb: Math.round(totalmem() / 2 ** 30), node: process.version, onnxruntime: ort.env.versions.node },
    mode: full ? 'full' : 'quick',
    batching: {
      images: IMAGES,
      n: 1,
      size: `${SIZE}x${SIZE}`,
      steps: STEPS,
      sequential_s: median(seqTimes) / 1000,
      batched_s: median(batTimes) / 1000,
      speedup,
      raw_ort_speedup: rawSpeedup,
      kept_fraction_of_raw_gain: speedup / rawSpeedup,
    },
    pipeline_overhead: median(overheads),
    // The two largest parts of pipeline_overhead (shares of the same wall time).
    pipeline_overhead_parts: { input_decode: median(decodeShares), output_encode: median(encodeShares), png_compression_level: DEFAULT_PNG_COMPRESSION_LEVEL },
    server_overhead: median(serverRatios) - 1,
    server_job: { images: 4, size: `${serverSize}x${serverSize}`, steps: serverSteps, client_s: median(clientTimes) / 1000, in_process_s: median(inProcess) / 1000 },
    coalescing: { clients: IMAGES, speedup: coalescingSpeedup, share_of_batched_speedup: coalescingSpeedup / speedup },
    progress_latency_ms: { p50: pct(latencies, 50), p99: pct(latencies, 99), samples: latencies.length },
    peak_rss_mb: Math.round(peakRss / 2 ** 20),
  };
  const out = join(PROJECT_ROOT, 'bench', 'results.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  const f = (x: number, d = 3): string => x.toFixed(d);
  console.table({
    'batching speedup (pipeline)': f(speedup),
    'batching speedup (raw ORT UNet)': f(rawSpeedup),
    'kept share of raw gain': f(speedup / rawSpeedup),
    'coalescing speedup (4 clients, merged vs not)': f(coalescingSpeedup),
    'coalescing share of batched speedup': f(coalescingSpeedup / speedup),
    'pipeline overhead (outside session.run)': f(results.pipeline_overhead, 4),
    '  of which input decode': f(results.pipeline_overhead_parts.input_decode, 4),
    '  of which output encode (PNG)': f(results.pipeline_overhead_parts.output_encode, 4),
    'server overhead (GraphQL vs in-process)': f(results.server_overhead, 4),
    'progress latency p50 ms': f(results.progress_latency_ms.p50, 2),
    'progress latency p99 ms': f(results.progress_latency_ms.p99, 2),
    'peak RSS MB (4×512² job)': results.peak_rss_mb,
  });
  console.log(`wrote ${out}`);
}

await main();
