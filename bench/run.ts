/**
 * `npm run bench` (quick) / `npm run bench -- --full`: measures, side by side in one run, on the
 * generated `bench` model (realistic convolutions, GroupNorm, attention, 8× VAE):
 *   batching            one batched call over B images vs B single-image calls, and raw ORT UNet batch B vs B×1
 *   pipeline_overhead   share of pipeline wall time outside session.run
 *   engine_busy         share of wall time the UNet runs under a saturating load of 1-image 256² jobs
 *   overlap             engine_busy, jobs/s and pipeline_overhead at 4 and 20 steps with the stage thread
 *                       (text encoders and VAEs beside the denoise loop) on and off, side by side
 *   server_overhead     GraphQL client wall time (upload → final event) / in-process pipeline time − 1
 *   coalescing          C concurrent single-image clients through the queue, merged vs not merged (engine
 *                       on a worker thread, as servers run it)
 *   coalescing_redis    the same through the Redis backend and a Redis worker (a redis-server on a free
 *                       port, same engine), merged vs not; share_of_in_memory = its speedup / coalescing's
 *   progress_latency_ms step callback on the worker → websocket client receipt
 *   peak_rss_mb         process RSS peak during a 4-image 512×512 job through the server
 *   memory              peak and settled RSS of 1- and 4-image 512² jobs in fresh processes, what
 *                       the peak is made of, and the memory plan's figure (bench/memory.ts)
 *   masks               the batched job with a mask per image (maskBlur 4) vs the same job unmasked
 *   sdxl                batching and pipeline_overhead on `bench-sdxl` (SDXL img2img layout, its own
 *                       defaults: 30 steps × strength 0.3, guidance 5), at 512² (full) or 256² (quick)
 *   flow                batching, pipeline_overhead and peak RSS on `bench-flux` (FLUX.1-dev layout, joint
 *                       attention over image + 512 T5 tokens), one child process per size (bench/flow.ts):
 *                       512² (quick), 512² and 1024² (full); `--flow-sizes 512,1024` chooses, `--flow-steps N`
 *                       (default 4), and `--flow-only` runs just this section, updating the `flow` key
 *                       of an existing bench/results.json
 *   qwen                on `bench-qwen` (Qwen-Image-Edit layout, attention over text + noise + 1 MP condition
 *                       tokens), one child process per size (bench/qwen.ts): batching N = 1, 2, 4 against raw
 *                       ORT, true CFG in one call against two, Lightning 8 steps against 50 with CFG; 512²
 *                       (quick), 512² and 1024² (full); `--qwen-sizes`, `--qwen-steps N` (default 2), `--qwen-only`
 *   real_size           `--real-size` (alone): an SD 1.5-size model (scripts/export/sd15_real_size.py; its folder
 *                       from REAL_SIZE_MODEL, default .cache/real-size/models/sd15-real-size, exported there
 *                       first when REAL_SIZE_PYTHON names a Python with torch, diffusers and optimum-onnx):
 *                       a 512² job through the engine against the same session runs on warm raw sessions,
 *                       per stage, alternated `--reps` times (default 2), with peak RSS against the plan
 *                       (bench/realSize.ts); `--real-size-n 1,2` chooses outputs per job
 * Prints a table and writes bench/results.json. Figures are ratios measured in the same run.
 */
import { spawn } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { dirname } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { ensureBenchModel } from '../models/bench.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { sessionOptions } from '../src/inference/sessions.js';
import { DEFAULT_PNG_COMPRESSION_LEVEL } from '../src/inference/imageIO.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { JobService } from '../src/jobs/jobService.js';
import { RedisJobBackend } from '../src/jobs/redisJobs.js';
import { startRedisWorker } from '../src/jobs/redisWorker.js';
import type { JobBackend } from '../src/jobs/types.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { startServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { postMultipart, wsClient } from '../test/support/graphql.js';
import { freePort } from '../test/support/net.js';
import { pino } from 'pino';
import { flowBench } from './flow.js';
import { qwenBench } from './qwen.js';
import { realSizeBench } from './realSizeRun.js';
import { LOAD_FLAGS, runLoadBench } from './load.js';
import { readResults, writeResults } from './child.js';
import { measureMemory } from './memory.js';

// Flags are parsed strictly: an unknown or misspelt flag stops the run.
const { values: flags } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    reps: { type: 'string' },
    steps: { type: 'string' },
    'flow-sizes': { type: 'string' },
    'flow-steps': { type: 'string', default: '4' },
    'flow-only': { type: 'boolean', default: false },
    'qwen-sizes': { type: 'string' },
    'qwen-steps': { type: 'string', default: '2' },
    'qwen-only': { type: 'boolean', default: false },
    load: { type: 'boolean', default: false },
    'real-size': { type: 'boolean', default: false },
    'real-size-n': { type: 'string', default: '1' },
    ...LOAD_FLAGS,
  },
  strict: true,
  allowPositionals: false,
});
const positiveInt = (name: string, raw: string): number => {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`--${name} needs a positive integer (got "${raw}")`);
  return Number(raw);
};
const full = flags.full;
const IMAGES = 4;
const SIZE = full ? 512 : 256;
// `--reps N`: more interleaved repetitions where timings are noisy (medians need them).
const REPS = flags.reps !== undefined ? positiveInt('reps', flags.reps) : full ? 7 : 3;
const modelDir = await ensureBenchModel();
const sdxlDir = await ensureBenchModel({ family: 'sdxl-img2img' });
// Full mode runs jobs as a client gets them by default: the bench model's default step count
// (`--steps N` overrides it, e.g. to compare with runs recorded at another count).
const STEPS = flags.steps !== undefined ? positiveInt('steps', flags.steps) : full ? readModelFolder(modelDir, 'bench').defaults.steps : 4;
const FLOW_SIZES = flags['flow-sizes'] !== undefined ? flags['flow-sizes'].split(',').map((v) => positiveInt('flow-sizes', v)) : full ? [512, 1024] : [512];
if (!FLOW_SIZES.every((v) => v >= 64 && v % 64 === 0)) throw new Error('--flow-sizes needs multiples of 64, comma-separated');
const FLOW_STEPS = positiveInt('flow-steps', flags['flow-steps']);
const QWEN_SIZES = flags['qwen-sizes'] !== undefined ? flags['qwen-sizes'].split(',').map((v) => positiveInt('qwen-sizes', v)) : full ? [512, 1024] : [512];
if (!QWEN_SIZES.every((v) => v >= 64 && v % 16 === 0)) throw new Error('--qwen-sizes needs multiples of 16, comma-separated');
const QWEN_STEPS = positiveInt('qwen-steps', flags['qwen-steps']);

const MASK_BLUR = 4;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const now = (): number => performance.now();

async function testImage(i: number, size: number): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: 40 * i + 30, g: 120, b: 200 - 30 * i } } })
    .png()
    .toBuffer();
}

/** A greyscale PNG mask (white edits): a disc over the middle of the image, ~half its area, shifted per image. */
async function testMask(i: number, size: number): Promise<Buffer> {
  const data = Buffer.alloc(size * size);
  const r = size * 0.4;
  const cx = size / 2 + (i - 1.5) * size * 0.05;
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) data[y * size + x] = (x - cx) ** 2 + (y - size / 2) ** 2 < r * r ? 255 : 0;
  return sharp(data, { raw: { width: size, height: size, channels: 1 } })
    .png()
    .toBuffer();
}

/** UNet feeds of `rows` rows: the bench UNet's, plus SDXL's `text_embeds` and `time_ids` when `sdxl` gives their widths. */
type UnetShape = { channels: number; latent: number; hidden: number; sdxl?: { pooled: number; size: number } };
function unetFeeds(rows: number, u: UnetShape): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    sample: new ort.Tensor('float32', new Float32Array(rows * u.channels * u.latent * u.latent).fill(0.1), [rows, u.channels, u.latent, u.latent]),
    timestep: new ort.Tensor('float32', new Float32Array(rows).fill(500), [rows]),
    encoder_hidden_states: new ort.Tensor('float32', new Float32Array(rows * 77 * u.hidden).fill(0.01), [rows, 77, u.hidden]),
  };
  if (u.sdxl) {
    feeds.text_embeds = new ort.Tensor('float32', new Float32Array(rows * u.sdxl.pooled).fill(0.01), [rows, u.sdxl.pooled]);
    const ids = [u.sdxl.size, u.sdxl.size, 0, 0, u.sdxl.size, u.sdxl.size];
    feeds.time_ids = new ort.Tensor(
      'float32',
      Float32Array.from({ length: rows * 6 }, (_, k) => ids[k % 6]!),
      [rows, 6],
    );
  }
  return feeds;
}

async function rawOrtSpeedup(unetPath: string, batch: number, branches: number, shape: UnetShape): Promise<number> {
  // The server's own session options, so the raw figure is comparable with the pipeline's.
  const session = await ort.InferenceSession.create(unetPath, sessionOptions({ provider: 'cpu' }, 'cpu'));
  const run = async (rows: number): Promise<void> => {
    await session.run(unetFeeds(rows, shape));
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

/** The flow section: bench-flux at each of FLOW_SIZES, printed. */
async function flowSection(): Promise<{ model: string; reps: number; sizes: Awaited<ReturnType<typeof flowBench>> }> {
  console.log(`bench-flux: ${IMAGES} images at ${FLOW_SIZES.map((s) => `${s}²`).join(', ')}, ${FLOW_STEPS} steps, ${REPS} interleaved repetitions`);
  const sizes = await flowBench({ sizes: FLOW_SIZES, steps: FLOW_STEPS, images: IMAGES, reps: REPS });
  const f = (x: number, d = 3): string => x.toFixed(d);
  console.table(
    Object.fromEntries(
      sizes.map((r) => [
        `flow ${r.size}`,
        { 'batching speedup': f(r.speedup), 'pipeline overhead': f(r.pipeline_overhead, 4), 'peak RSS MB': r.peak_rss_mb, 'batched s': f(r.batched_s, 2) },
      ]),
    ),
  );
  return { model: 'bench-flux', reps: REPS, sizes };
}

/** The qwen section: bench-qwen at each of QWEN_SIZES (one repetition each: every row attends over the 1 MP condition), printed. */
async function qwenSection(): Promise<{ model: string; sizes: Awaited<ReturnType<typeof qwenBench>> }> {
  console.log(`bench-qwen: 1, 2 and ${IMAGES} images at ${QWEN_SIZES.map((s) => `${s}²`).join(', ')}, ${QWEN_STEPS} steps`);
  const sizes = await qwenBench({ sizes: QWEN_SIZES, steps: QWEN_STEPS, reps: 1, maxImages: IMAGES });
  const f = (x: number, d = 3): string => x.toFixed(d);
  console.table(
    Object.fromEntries(
      sizes.flatMap((r) => [
        ...r.batching.map((b) => [
          `qwen ${r.size} N=${b.images}`,
          { 'pipeline speedup': f(b.speedup), 'raw transformer speedup': f(b.raw_transformer_speedup) },
        ]),
        [`qwen ${r.size} CFG in one call`, { 'pipeline speedup': '', 'raw transformer speedup': f(r.cfg.raw_speedup) }],
        [`qwen ${r.size} Lightning 8 vs 50+CFG`, { 'pipeline speedup': f(r.lightning.speedup), 'raw transformer speedup': '' }],
      ]),
    ),
  );
  return { model: 'bench-qwen', sizes };
}

async function main(): Promise<void> {
  if (flags['real-size']) {
    const counts = flags['real-size-n'].split(',').map((v) => positiveInt('real-size-n', v));
    const section = await realSizeBench({ reps: flags.reps !== undefined ? REPS : 2, counts });
    // Rows of other output counts from an earlier run stay (each row says its own reps).
    const earlier = ((readResults().real_size as typeof section | undefined)?.results ?? []).filter((r) => !counts.includes(r.n));
    const results = [...earlier, ...section.results].sort((a, b) => a.n - b.n);
    console.log(`wrote the real_size key of ${writeResults({ real_size: { ...section, results } })}`);
    return;
  }
  if (flags['qwen-only']) {
    console.log(`wrote the qwen key of ${writeResults({ qwen: await qwenSection() })}`);
    return;
  }
  if (flags['flow-only']) {
    console.log(`wrote the flow key of ${writeResults({ flow: await flowSection() })}`);
    return;
  }
  const modelsDir = dirname(modelDir);
  const images = await Promise.all(Array.from({ length: IMAGES }, (_, i) => testImage(i, SIZE)));
  const masks = await Promise.all(Array.from({ length: IMAGES }, (_, i) => testMask(i, SIZE)));
  const serverSize = 512;
  const serverSteps = STEPS;
  const bigImages = await Promise.all(Array.from({ length: 4 }, (_, i) => testImage(i, serverSize)));
  console.log(
    `bench model: batching at ${SIZE}x${SIZE}, server job 4×${serverSize}², ${STEPS} steps, ${REPS} interleaved repetitions (${full ? 'full' : 'quick'})`,
  );

  // --- the server: a GraphQL client's wall time, upload → final event, with progress latencies.
  const server = await startServer(loadConfig({ PORT: '0', MODELS_DIR: modelsDir, DEFAULT_MODEL: 'bench', LOG_LEVEL: 'silent' }), {
    logger: pino({ level: 'silent' }),
  });
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
      client.subscribe<Ev>(
        { query: subscription, variables: { id } },
        {
          next: (v) => {
            const e = v.data!.editJobEvents;
            if (e.emittedAt !== undefined) latencies.push(performance.timeOrigin + performance.now() - e.emittedAt);
          },
          error: reject,
          complete: resolve,
        },
      );
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
  const edit = (count: number, size = SIZE, steps = STEPS, maskBlur?: number) =>
    resolveEditOptions(spec, count, { prompt: 'make it sepia', size: `${size}x${size}`, steps, seed: 1, maskBlur });
  const inProcessJob = async (): Promise<number> => {
    const t = now();
    await engine.edit(
      'bench',
      edit(4, serverSize, serverSteps),
      bigImages.map((bytes) => ({ bytes })),
    );
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
  await engine.edit(
    'bench',
    edit(IMAGES),
    images.map((bytes) => ({ bytes })),
  );
  const maskedInputs = images.map((bytes, i) => ({ bytes, mask: masks[i]! }));
  await engine.edit('bench', edit(IMAGES, SIZE, STEPS, MASK_BLUR), maskedInputs);
  const seqTimes: number[] = [];
  const batTimes: number[] = [];
  const batchRatios: number[] = [];
  const overheads: number[] = [];
  const decodeShares: number[] = [];
  const encodeShares: number[] = [];
  // The masked job runs next to the unmasked batched one it is compared with, first on odd
  // repetitions and second on even ones (the first job of a pair tends to be the slower).
  const maskedTimes: number[] = [];
  const maskRatios: number[] = [];
  const maskedOverheads: number[] = [];
  const maskedDecodeShares: number[] = [];
  const maskedEncodeShares: number[] = [];
  for (let r = 0; r < REPS; r++) {
    let t = now();
    for (const bytes of images) await engine.edit('bench', edit(1), [{ bytes }]);
    const seq = now() - t;
    const maskedJob = async () => {
      const t0 = now();
      const o = await engine.edit('bench', edit(IMAGES, SIZE, STEPS, MASK_BLUR), maskedInputs);
      return { o, ms: now() - t0 };
    };
    const early = r % 2 === 1 ? await maskedJob() : null;
    t = now();
    const out = await engine.edit(
      'bench',
      edit(IMAGES),
      images.map((bytes) => ({ bytes })),
    );
    const bat = now() - t;
    const { o: masked, ms: mt } = early ?? (await maskedJob());
    maskedTimes.push(mt);
    maskRatios.push(mt / bat);
    maskedOverheads.push((masked.timings.totalMs - masked.timings.sessionRunMs) / masked.timings.totalMs);
    maskedDecodeShares.push(masked.timings.decodeMs / masked.timings.totalMs);
    maskedEncodeShares.push(masked.timings.encodeMs / masked.timings.totalMs);
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
  const rawSpeedup = await rawOrtSpeedup(spec.paths.unet!, IMAGES, branches, { channels: 8, latent, hidden });
  const speedup = median(batchRatios);

  // --- cross-request batching: C concurrent single-image clients through the queue, merged vs not,
  // in memory and through Redis (the API-side backend and a worker in this process), interleaved, on
  // one engine with its sessions on a worker thread as servers and ROLE=worker run it: inline, the
  // engine's input decoding and PNG encoding would hold up the Redis worker's event I/O.
  const queueEngine = await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'worker' });
  const drain = async (jobs: JobBackend, submitted: { id: string }[]): Promise<void> => {
    await Promise.all(
      submitted.map(async (job) => {
        for await (const _event of await jobs.subscribe(job.id)) {
          // drain until the terminal event
        }
      }),
    );
  };
  const coalesce = async (mergeJobs: boolean): Promise<number> => {
    const jobs = new JobService(queueEngine, { retentionMs: 60_000, maxQueuedJobs: 100, jobTimeoutMs: 0, mergeJobs });
    const t = now();
    await drain(
      jobs,
      images.map((bytes) => jobs.submit('bench', edit(1), [{ bytes }], 'anonymous')),
    );
    const ms = now() - t;
    await jobs.shutdown(0);
    return ms;
  };
  const redisPort = await freePort();
  const redisServer = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const redisJobs = new RedisJobBackend({ redisUrl, retentionMs: 60_000, maxQueuedJobs: 100, attempts: 1, maxInputBytes: 1e9 });
  while ((await redisJobs.health()) !== null) await new Promise((r) => setTimeout(r, 50));
  const coalesceRedis = async (mergeJobs: boolean): Promise<number> => {
    const worker = await startRedisWorker(queueEngine, { redisUrl, retentionMs: 60_000, jobTimeoutMs: 0, attempts: 1, stallMs: 30_000, mergeJobs });
    const t = now();
    await drain(redisJobs, await Promise.all(images.map((bytes) => redisJobs.submit('bench', edit(1), [{ bytes, pixels: SIZE * SIZE }], 'anonymous'))));
    const ms = now() - t;
    await worker.close();
    return ms;
  };
  await coalesce(true);
  await coalesceRedis(true);
  const coalesceRatios: number[] = [];
  const coalesceRedisRatios: number[] = [];
  for (let r = 0; r < REPS; r++) {
    coalesceRatios.push((await coalesce(false)) / (await coalesce(true)));
    coalesceRedisRatios.push((await coalesceRedis(false)) / (await coalesceRedis(true)));
  }
  const coalescingSpeedup = median(coalesceRatios);
  const coalescingRedisSpeedup = median(coalesceRedisRatios);
  await redisJobs.shutdown();
  redisServer.kill('SIGKILL');
  await queueEngine.close();

  await engine.close();

  // --- overlap: what the stage thread (text encoders and VAEs beside the denoise loop) buys, at 4
  // and at 20 steps, with it on and off side by side (one engine each, alternating):
  //   engine_busy        a saturating load of SATURATING_JOBS 1-image 256² jobs submitted at once
  //                      (each its own pipeline call): the share of wall time the UNet runs
  //   jobs_per_s         that load's throughput
  //   pipeline_overhead  the batched 4-image call at SIZE, alone: share of its wall time outside session.run
  const SATURATING_JOBS = 12;
  const SMALL = 256;
  const smallImages = SIZE === SMALL ? images : await Promise.all(Array.from({ length: IMAGES }, (_, i) => testImage(i, SMALL)));
  const engines = {
    stage_thread: await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'inline', stageThread: true }),
    one_thread: await InferenceEngine.start({ modelsDir, modelIds: ['bench'], threading: 'inline', stageThread: false }),
  };
  type Mode = keyof typeof engines;
  const saturate = async (e: InferenceEngine, steps: number) => {
    const t = now();
    const outs = await Promise.all(
      Array.from({ length: SATURATING_JOBS }, (_, j) => e.edit('bench', edit(1, SMALL, steps), [{ bytes: smallImages[j % IMAGES]! }])),
    );
    const wall = now() - t;
    return {
      busy: outs.reduce((sum, o) => sum + o.timings.denoiseMs, 0) / wall,
      sessions: outs.reduce((sum, o) => sum + o.timings.sessionRunMs, 0) / wall,
      jobsPerS: SATURATING_JOBS / (wall / 1000),
    };
  };
  const alone = async (e: InferenceEngine, steps: number): Promise<number> => {
    const o = await e.edit(
      'bench',
      edit(IMAGES, SIZE, steps),
      images.map((bytes) => ({ bytes })),
    );
    return (o.timings.totalMs - o.timings.sessionRunMs) / o.timings.totalMs;
  };
  const OVERLAP_STEPS = [...new Set([4, 20, STEPS])].sort((a, b) => a - b);
  const overlapReps = Math.min(REPS, 3);
  type Figures = { engine_busy: number; all_sessions: number; jobs_per_s: number; pipeline_overhead: number };
  const overlap: Record<number, Record<Mode, Figures>> = {};
  for (const steps of OVERLAP_STEPS) {
    const samples = { stage_thread: [] as Omit<Figures, 'pipeline_overhead'>[], one_thread: [] as Omit<Figures, 'pipeline_overhead'>[] };
    const overheads = { stage_thread: [] as number[], one_thread: [] as number[] };
    // Alternating which goes first, so drift hits both alike; the lone calls after the loads, each
    // engine warmed for them first (a call after other shapes touches fresh memory).
    const order = (r: number): Mode[] => (r % 2 === 0 ? ['stage_thread', 'one_thread'] : ['one_thread', 'stage_thread']);
    for (const mode of order(0)) await saturate(engines[mode], steps);
    for (let r = 0; r < overlapReps; r++) {
      for (const mode of order(r)) {
        const s = await saturate(engines[mode], steps);
        samples[mode].push({ engine_busy: s.busy, all_sessions: s.sessions, jobs_per_s: s.jobsPerS });
      }
    }
    for (const mode of order(0)) await alone(engines[mode], steps);
    for (let r = 0; r < overlapReps; r++) for (const mode of order(r)) overheads[mode].push(await alone(engines[mode], steps));
    const med = (mode: Mode): Figures => ({
      engine_busy: median(samples[mode].map((x) => x.engine_busy)),
      all_sessions: median(samples[mode].map((x) => x.all_sessions)),
      jobs_per_s: median(samples[mode].map((x) => x.jobs_per_s)),
      pipeline_overhead: median(overheads[mode]),
    });
    overlap[steps] = { stage_thread: med('stage_thread'), one_thread: med('one_thread') };
  }
  await Promise.all(Object.values(engines).map((e) => e.close()));
  const engineBusy = overlap[STEPS]!.stage_thread.engine_busy;
  const byStep = (pick: (f: Figures) => number) => Object.fromEntries(OVERLAP_STEPS.map((st) => [st, pick(overlap[st]!.stage_thread)]));

  // --- SDXL layout: batching and overhead on bench-sdxl with its own defaults (full) or 4 steps at strength 1 (quick).
  const sdxlEngine = await InferenceEngine.start({ modelsDir: dirname(sdxlDir), modelIds: ['bench-sdxl'], threading: 'inline' });
  const sdxlSpec = sdxlEngine.model('bench-sdxl');
  const sdxlSteps = full ? sdxlSpec.defaults.steps : 4;
  const sdxlStrength = full ? sdxlSpec.defaults.strength! : 1;
  const sdxlEdit = (count: number) =>
    resolveEditOptions(sdxlSpec, count, { prompt: 'make it sepia', size: `${SIZE}x${SIZE}`, steps: sdxlSteps, strength: sdxlStrength, seed: 1 });
  const sdxlImages = images.map((bytes) => ({ bytes }));
  await sdxlEngine.edit('bench-sdxl', sdxlEdit(1), [sdxlImages[0]!]);
  const sdxlWarm = await sdxlEngine.edit('bench-sdxl', sdxlEdit(IMAGES), sdxlImages);
  const sdxlSeq: number[] = [];
  const sdxlBat: number[] = [];
  const sdxlRatios: number[] = [];
  const sdxlOverheads: number[] = [];
  const sdxlDecode: number[] = [];
  const sdxlEncode: number[] = [];
  for (let r = 0; r < REPS; r++) {
    let t = now();
    for (const input of sdxlImages) await sdxlEngine.edit('bench-sdxl', sdxlEdit(1), [input]);
    const seq = now() - t;
    t = now();
    const out = await sdxlEngine.edit('bench-sdxl', sdxlEdit(IMAGES), sdxlImages);
    const bat = now() - t;
    sdxlSeq.push(seq);
    sdxlBat.push(bat);
    sdxlRatios.push(seq / bat);
    sdxlOverheads.push((out.timings.totalMs - out.timings.sessionRunMs) / out.timings.totalMs);
    sdxlDecode.push(out.timings.decodeMs / out.timings.totalMs);
    sdxlEncode.push(out.timings.encodeMs / out.timings.totalMs);
  }
  const sdxlBranches = sdxlSpec.defaults.guidanceScale > 1 ? 2 : 1;
  const sdxlRaw = await rawOrtSpeedup(sdxlSpec.paths.unet!, IMAGES, sdxlBranches, { channels: 4, latent, hidden: 160, sdxl: { pooled: 96, size: SIZE } });
  await sdxlEngine.close();
  const sdxlSpeedup = median(sdxlRatios);
  const flow = await flowSection();
  const qwen = await qwenSection();

  // --- memory per job size, each job in a fresh process with the arena on and off (bench/memory.ts).
  const memoryJobs = measureMemory(modelsDir, [1, 4]);
  const memory4 = memoryJobs.find((j) => j.images === 4)!;

  const results = {
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      onnxruntime: ort.env.versions.node,
    },
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
    // Under SATURATING_JOBS 1-image 256² jobs at STEPS, stage thread on (see `overlap`).
    engine_busy: engineBusy,
    engine_busy_by_steps: byStep((f) => f.engine_busy),
    pipeline_overhead_by_steps: byStep((f) => f.pipeline_overhead),
    // Stage thread on (the default) and off, side by side: saturation at 256², the lone call at SIZE.
    overlap: { saturating_jobs: SATURATING_JOBS, saturating_size: `${SMALL}x${SMALL}`, call: { images: IMAGES, size: `${SIZE}x${SIZE}` }, steps: overlap },
    // The two largest parts of pipeline_overhead (shares of the same wall time).
    pipeline_overhead_parts: { input_decode: median(decodeShares), output_encode: median(encodeShares), png_compression_level: DEFAULT_PNG_COMPRESSION_LEVEL },
    server_overhead: median(serverRatios) - 1,
    server_job: {
      images: 4,
      size: `${serverSize}x${serverSize}`,
      steps: serverSteps,
      client_s: median(clientTimes) / 1000,
      in_process_s: median(inProcess) / 1000,
    },
    coalescing: { clients: IMAGES, speedup: coalescingSpeedup, share_of_batched_speedup: coalescingSpeedup / speedup },
    coalescing_redis: { clients: IMAGES, speedup: coalescingRedisSpeedup, share_of_in_memory: coalescingRedisSpeedup / coalescingSpeedup },
    progress_latency_ms: { p50: pct(latencies, 50), p99: pct(latencies, 99), samples: latencies.length },
    peak_rss_mb: Math.round(peakRss / 2 ** 20),
    // A 4 × 512² job in a fresh process (ORT arena on) and what its peak is made of; `jobs`: every size measured.
    memory: { peak_rss_mb: memory4.peak_rss_mb, settled_rss_mb: memory4.settled_rss_mb, parts: memory4.parts, jobs: memoryJobs },
    // The batched bench job above with a mask per image (a disc, ~half the area) and maskBlur 4,
    // run next to the unmasked one in alternating order: cost_ratio = masked / unmasked wall time.
    masks: {
      images: IMAGES,
      size: `${SIZE}x${SIZE}`,
      steps: STEPS,
      mask_blur: MASK_BLUR,
      order: 'alternating',
      unmasked_s: median(batTimes) / 1000,
      masked_s: median(maskedTimes) / 1000,
      cost_ratio: median(maskRatios),
      pipeline_overhead: median(maskedOverheads),
      pipeline_overhead_parts: { input_decode: median(maskedDecodeShares), output_encode: median(maskedEncodeShares) },
    },
    // bench-sdxl (SDXL img2img layout; guidance 5 → 2 UNet rows per image).
    sdxl: {
      model: 'bench-sdxl',
      images: IMAGES,
      size: `${SIZE}x${SIZE}`,
      steps: sdxlSteps,
      strength: sdxlStrength,
      denoise_steps: sdxlWarm.usage.steps / sdxlWarm.usage.batches,
      micro_batches: sdxlWarm.usage.batches,
      guidance_scale: sdxlSpec.defaults.guidanceScale,
      sequential_s: median(sdxlSeq) / 1000,
      batched_s: median(sdxlBat) / 1000,
      speedup: sdxlSpeedup,
      raw_ort_speedup: sdxlRaw,
      kept_fraction_of_raw_gain: sdxlSpeedup / sdxlRaw,
      pipeline_overhead: median(sdxlOverheads),
      pipeline_overhead_parts: { input_decode: median(sdxlDecode), output_encode: median(sdxlEncode) },
    },
    // bench-flux (FLUX.1-dev layout) per size, each measured in its own child process.
    flow,
    // bench-qwen (Qwen-Image-Edit layout) per size, likewise.
    qwen,
  };
  const out = writeResults(results);
  const f = (x: number, d = 3): string => x.toFixed(d);
  console.table({
    'batching speedup (pipeline)': f(speedup),
    'batching speedup (raw ORT UNet)': f(rawSpeedup),
    'kept share of raw gain': f(speedup / rawSpeedup),
    'coalescing speedup (4 clients, merged vs not)': f(coalescingSpeedup),
    'coalescing share of batched speedup': f(coalescingSpeedup / speedup),
    'coalescing speedup on Redis (4 clients, merged vs not)': f(coalescingRedisSpeedup),
    'coalescing on Redis, share of in-memory': f(coalescingRedisSpeedup / coalescingSpeedup),
    'pipeline overhead (outside session.run)': f(results.pipeline_overhead, 4),
    '  of which input decode': f(results.pipeline_overhead_parts.input_decode, 4),
    '  of which output encode (PNG)': f(results.pipeline_overhead_parts.output_encode, 4),
    ...Object.fromEntries(
      OVERLAP_STEPS.flatMap((st) => {
        const { stage_thread: on, one_thread: off } = overlap[st]!;
        const pair = (pick: (x: Figures) => number, d: number) => `${f(pick(on), d)} (one thread: ${f(pick(off), d)})`;
        return [
          [`${st} steps: engine busy (UNet share of wall, ${SATURATING_JOBS} 1-image ${SMALL}² jobs)`, pair((x) => x.engine_busy, 4)],
          [`${st} steps:   all sessions`, pair((x) => x.all_sessions, 4)],
          [`${st} steps:   jobs/s`, pair((x) => x.jobs_per_s, 2)],
          [`${st} steps: pipeline overhead, ${IMAGES}×${SIZE}² call`, pair((x) => x.pipeline_overhead, 4)],
        ];
      }),
    ),
    'server overhead (GraphQL vs in-process)': f(results.server_overhead, 4),
    'progress latency p50 ms': f(results.progress_latency_ms.p50, 2),
    'progress latency p99 ms': f(results.progress_latency_ms.p99, 2),
    'peak RSS MB (4×512² job)': results.peak_rss_mb,
    ...Object.fromEntries(
      memoryJobs.map((j) => [
        `memory ${j.images}×512²: peak / settled / job / plan MB`,
        `${j.peak_rss_mb} / ${j.settled_rss_mb} / ${j.job_mb} / ${j.plan_mb} (arena off: job ${j.arena_off.job_mb})`,
      ]),
    ),
    'memory 4×512² parts MB': Object.entries(memory4.parts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    'masked job / unmasked job (wall time)': f(results.masks.cost_ratio),
    'pipeline overhead with masks': f(results.masks.pipeline_overhead, 4),
    'masks   of which input decode (images + masks)': f(results.masks.pipeline_overhead_parts.input_decode, 4),
    'masks   of which output encode (PNG)': f(results.masks.pipeline_overhead_parts.output_encode, 4),
    [`SDXL batching speedup (pipeline, ${results.sdxl.denoise_steps} steps)`]: f(sdxlSpeedup),
    'SDXL batching speedup (raw ORT UNet)': f(sdxlRaw),
    'SDXL kept share of raw gain': f(sdxlSpeedup / sdxlRaw),
    'SDXL pipeline overhead': f(results.sdxl.pipeline_overhead, 4),
    'SDXL   of which input decode': f(results.sdxl.pipeline_overhead_parts.input_decode, 4),
    'SDXL   of which output encode (PNG)': f(results.sdxl.pipeline_overhead_parts.output_encode, 4),
  });
  console.log(`wrote ${out}`);
}

// `--load`: the load run alone (bench/load.ts), merged into bench/results.json.
if (flags.load) await runLoadBench(flags);
else await main();
