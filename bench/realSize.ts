/**
 * Real-size SD 1.5 (issue 29): the pipeline against warm raw ONNX Runtime sessions, stage by
 * stage, on the folder scripts/export/sd15_real_size.py writes. One process per measurement, so
 * each has its own memory:
 *   npx tsx bench/realSize.ts engine <model folder> [--images N] [--n N] [--threading inline|worker]
 *     [--memory-budget MiB] [--jobs N] [--size S] [--warm-up 0|1]
 *   npx tsx bench/realSize.ts raw <model folder> --unet-rows R --unet-calls C [--images N] [--n N]
 * Both run a 512² img2img job, PNDM `--steps 4 --strength 1`, guidance 7.5 (five UNet calls of two
 * rows per output). `engine` runs it twice through InferenceEngine (the CLI's and the server's
 * engine; the first job is the first at this shape after the load's warm-up) and reports each
 * job's wall time, its session time per component and its step intervals. `raw` opens the same
 * four sessions with the server's session options and runs the same calls, with the same shapes,
 * in the same order twice: the second pass is the warm reference. Each prints `REALSIZE {json}`;
 * `npm run bench -- --real-size` runs them in turn (bench/realSizeRun.ts).
 */
import { cpus } from 'node:os';
import { join, dirname, basename } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { InferenceEngine } from '../src/inference/engine.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { sessionOptions } from '../src/inference/sessions.js';
import { createCachedSession } from '../src/inference/optimizedCache.js';
import { decodeToTensor } from '../src/inference/imageIO.js';
import { optimizedCacheDir } from '../src/config.js';
import { REAL_SIZE_JOB, REAL_SIZE_MARKER } from './realSizeRun.js';

/** The optimized-model cache, as the server and CLI find it (ORT_OPTIMIZED_CACHE). */
const CACHE = optimizedCacheDir(process.env);

const { values: flags, positionals } = parseArgs({
  options: {
    images: { type: 'string', default: '1' },
    n: { type: 'string', default: '1' },
    threading: { type: 'string', default: 'inline' },
    'unet-rows': { type: 'string' },
    'unet-calls': { type: 'string' },
    'memory-budget': { type: 'string', default: '16384' },
    jobs: { type: 'string', default: '2' },
    size: { type: 'string', default: `${REAL_SIZE_JOB.size}` },
    'warm-up': { type: 'string', default: '1' },
  },
  strict: true,
  allowPositionals: true,
});
const int = (name: string, raw: string | undefined): number => {
  if (raw === undefined || !/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`--${name} needs a positive integer (got ${raw})`);
  return Number(raw);
};
const [mode, folder] = positionals;
if ((mode !== 'engine' && mode !== 'raw') || !folder) throw new Error('usage: realSize.ts engine|raw <model folder> [flags]');
const IMAGES = int('images', flags.images);
const SIZE = int('size', flags.size);
const N = int('n', flags.n);
const peakRssMiB = (): number => Math.round(process.resourceUsage().maxRSS / 1024);
const rssMiB = (): number => Math.round(process.memoryUsage().rss / 2 ** 20);

async function testImage(i: number): Promise<Buffer> {
  const s = SIZE;
  return sharp({ create: { width: s, height: s, channels: 3, background: { r: 40 * i + 30, g: 120, b: 200 - 30 * i } } })
    .png()
    .toBuffer();
}

async function engineMode(): Promise<unknown> {
  const threading = flags.threading;
  if (threading !== 'inline' && threading !== 'worker') throw new Error('--threading is inline or worker');
  const id = basename(folder!);
  const t0 = performance.now();
  const engine = await InferenceEngine.start({
    modelsDir: dirname(folder!),
    modelIds: [id],
    threading,
    memoryBudgetBytes: int('memory-budget', flags['memory-budget']) * 2 ** 20,
    optimizedCacheDir: CACHE,
    // The server's and the CLI's defaults (ORT_WARM_UP, ORT_MEM_PATTERN on).
    warmUp: flags['warm-up'] !== '0',
    memPattern: true,
  });
  while (engine.modelState(id) !== 'loaded') {
    if (engine.modelState(id) === 'error') throw new Error(`${id}: ${engine.errorReason(id)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const loadMs = performance.now() - t0;
  const spec = readModelFolder(folder!, id);
  const images = await Promise.all(Array.from({ length: IMAGES }, (_, i) => testImage(i)));
  const { size: _, ...job } = REAL_SIZE_JOB;
  const edit = resolveEditOptions(spec, IMAGES, { prompt: 'make it sepia', size: `${SIZE}x${SIZE}`, n: N, seed: 1, ...job });
  const jobs = [];
  for (let j = 0; j < int('jobs', flags.jobs); j++) {
    const stepsAt: number[] = [];
    const s0 = performance.now();
    const out = await engine.edit(
      id,
      edit,
      images.map((bytes) => ({ bytes })),
      { onProgress: (p) => p.step > 0 && stepsAt.push(performance.now()) },
    );
    const wallMs = performance.now() - s0;
    jobs.push({
      wallMs,
      timings: out.timings,
      batches: out.usage.batches,
      stepIntervalsMs: stepsAt.slice(1).map((t, i) => t - stepsAt[i]!),
      rssMiB: rssMiB(),
    });
  }
  await engine.close();
  return { mode, threading, size: SIZE, warmUp: flags['warm-up'] !== '0', images: IMAGES, n: N, loadMs, jobs, peakRssMiB: peakRssMiB() };
}

async function rawMode(): Promise<unknown> {
  const rows = int('unet-rows', flags['unet-rows']);
  const calls = int('unet-calls', flags['unet-calls']);
  // The server's defaults: one intra-op thread per core, memory pattern on.
  const threads = cpus().length;
  const opts = sessionOptions({ provider: 'cpu', intraOpThreads: threads }, 'cpu');
  const open = async (dir: string) => (await createCachedSession(join(folder!, dir, 'model.onnx'), opts, CACHE)).session;
  const te = await open('text_encoder');
  const unet = await open('unet');
  const enc = await open('vae_encoder');
  const dec = await open('vae_decoder');
  const type = (s: ort.InferenceSession, name: string) => (s.inputMetadata.find((m) => m.name === name) as { type?: string }).type;
  const s = SIZE;
  const l = s / 8;
  const idsType = type(te, 'input_ids');
  const ids =
    idsType === 'int64'
      ? new ort.Tensor('int64', new BigInt64Array(2 * 77).fill(1n), [2, 77])
      : new ort.Tensor('int32', new Int32Array(2 * 77).fill(1), [2, 77]);
  // The inputs as the engine decodes them (sharp → signed floats), one batch of IMAGES.
  const decoded = await Promise.all(
    Array.from({ length: IMAGES }, async (_, i) =>
      decodeToTensor(
        await testImage(i),
        { width: s, height: s },
        { fit: 'pad', multiple: 64, maxPixels: s * s, defaultSize: { width: s, height: s }, limits: { maxInputPixels: s * s * 4 } },
      ),
    ),
  );
  const pixels = new Float32Array(IMAGES * 3 * s * s);
  decoded.forEach((d, i) => pixels.set(d.data, i * 3 * s * s));
  const sample = new ort.Tensor('float32', pixels, [IMAGES, 3, s, s]);
  const tsType = unet.inputMetadata.find((m) => m.name === 'timestep') as { type?: string; shape?: unknown[] };
  const timestep =
    tsType.shape && tsType.shape.length === 0
      ? new ort.Tensor(tsType.type === 'int64' ? 'int64' : 'float32', tsType.type === 'int64' ? new BigInt64Array([981n]) : new Float32Array([981]), [])
      : tsType.type === 'int64'
        ? new ort.Tensor('int64', new BigInt64Array(rows).fill(981n), [rows])
        : new ort.Tensor('float32', new Float32Array(rows).fill(981), [rows]);
  const latents = new ort.Tensor(
    'float32',
    Float32Array.from({ length: rows * 4 * l * l }, (_, i) => Math.sin(i)),
    [rows, 4, l, l],
  );
  const one = new ort.Tensor(
    'float32',
    Float32Array.from({ length: 4 * l * l }, (_, i) => Math.sin(i) * 3),
    [1, 4, l, l],
  );
  const passes: Record<string, number>[] = [];
  for (let pass = 0; pass < 2; pass++) {
    const ms: Record<string, number> = { textEncoder: 0, vaeEncoder: 0, unet: 0, vaeDecoder: 0 };
    const time = async (key: string, run: () => Promise<unknown>) => {
      const t = performance.now();
      await run();
      ms[key]! += performance.now() - t;
    };
    let hidden: ort.Tensor | undefined;
    await time('textEncoder', async () => {
      hidden = (await te.run({ input_ids: ids })).last_hidden_state;
    });
    const ehs = new ort.Tensor(
      'float32',
      Float32Array.from({ length: rows * 77 * 768 }, (_, i) => (hidden!.data as Float32Array)[i % (2 * 77 * 768)]!),
      [rows, 77, 768],
    );
    await time('vaeEncoder', () => enc.run({ sample }));
    for (let c = 0; c < calls; c++) await time('unet', () => unet.run({ sample: latents, timestep, encoder_hidden_states: ehs }));
    for (let i = 0; i < IMAGES * N; i++) await time('vaeDecoder', () => dec.run({ latent_sample: one }));
    passes.push(ms);
  }
  return { mode, threads, images: IMAGES, n: N, rows, calls, passes, peakRssMiB: peakRssMiB() };
}

const result = mode === 'engine' ? await engineMode() : await rawMode();
console.log(`${REAL_SIZE_MARKER} ${JSON.stringify(result)}`);
process.exit(0);
