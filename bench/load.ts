/**
 * `npm run bench -- --load`: a real server process under N concurrent clients.
 *
 * For each mode (in memory; Redis: a real redis-server on a free port, ROLE=all) and each client
 * count C, C clients run a fixed number of one-image jobs between them, each client starting its
 * next job when the last one's result arrives. Even-numbered clients use GraphQL (multipart upload,
 * then a graphql-ws subscription to the final event), odd-numbered ones REST /v1/images/edits.
 * Reported per level: jobs/s, images/s, p50/p99 time to result (submission → result at the
 * client), queue time (the server's `usage.queueTimeSeconds`, GraphQL jobs only: REST does not
 * return it), mean `usage.mergedJobs`, and the share of the single-client batched figure (one job
 * of C images from one client, images/s). Cold start per model: process spawn → /healthz answers
 * → first result of a one-image job.
 *
 * Writes `load`, `load_batched`, `load_config` and `cold_start` into bench/results.json (other
 * keys kept) and bench/load.svg (throughput and p99 against clients).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import type { Client } from 'graphql-ws';
import { PROJECT_ROOT } from '../src/config.js';
import { writeResults } from './child.js';
import { ensureBenchModel } from '../models/bench.js';
import { postMultipart, wsClient } from '../test/support/graphql.js';
import { freePort } from '../test/support/net.js';

export interface LoadOptions {
  clients: number[];
  jobsPerLevel: number;
  size: number;
  steps: number;
  modes: ('memory' | 'redis')[];
}

export interface LoadRow {
  mode: 'memory' | 'redis';
  clients: number;
  jobs: number;
  wall_s: number;
  jobs_per_s: number;
  images_per_s: number;
  p50_s: number;
  p99_s: number;
  queue_p50_s: number;
  queue_p99_s: number;
  merged_jobs_mean: number;
  /** images/s here ÷ images/s of one client's batched job of `clients` images (same mode). */
  share_of_batched: number;
}

const now = (): number => performance.now();
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
};
const round = (x: number, d = 3): number => Number(x.toFixed(d));

/** The load run's flags (bench/run.ts parses them strictly with its own). */
export const LOAD_FLAGS = {
  'load-clients': { type: 'string', default: '1,2,4,8' },
  'load-jobs': { type: 'string', default: '16' },
  'load-size': { type: 'string', default: '256' },
  'load-steps': { type: 'string', default: '4' },
  'load-modes': { type: 'string', default: 'memory,redis' },
} as const;

type LoadFlagValues = { [K in keyof typeof LOAD_FLAGS]?: string };

const positiveInt = (name: string, raw: string): number => {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`--${name} must be a positive integer (got "${raw}")`);
  return Number(raw);
};

/** `--load-clients 1,2,4,8`, `--load-jobs 16`, `--load-size 256`, `--load-steps 4`, `--load-modes memory,redis`. */
export function parseLoadOptions(values: LoadFlagValues): LoadOptions {
  const get = (name: keyof typeof LOAD_FLAGS): string => values[name] ?? LOAD_FLAGS[name].default;
  const clients = get('load-clients')
    .split(',')
    .map((c) => positiveInt('load-clients', c));
  const modes = get('load-modes')
    .split(',')
    .map((m) => {
      if (m !== 'memory' && m !== 'redis') throw new Error(`--load-modes takes memory and/or redis (got "${m}")`);
      return m;
    });
  return {
    clients,
    jobsPerLevel: positiveInt('load-jobs', get('load-jobs')),
    size: positiveInt('load-size', get('load-size')),
    steps: positiveInt('load-steps', get('load-steps')),
    modes,
  };
}

interface ServerProc {
  child: ChildProcess;
  url: string;
  output: () => string;
  stop: () => Promise<void>;
}

async function waitUntil(check: () => Promise<boolean>, what: string, ms: number, proc?: ServerProc): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    if (proc && proc.child.exitCode !== null) throw new Error(`${what}: the process exited (${proc.child.exitCode}):\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${proc ? `:\n${proc.output()}` : ''}`);
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
  });
}

/** `src/server/main.ts` as `npm start` runs it, on a free port; resolves once /healthz answers 200. */
async function startServer(env: Record<string, string>): Promise<ServerProc & { readyMs: number }> {
  const port = await freePort();
  const t0 = now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const proc: ServerProc = { child, url, output: () => text.slice(-4000), stop: () => stopProcess(child) };
  await waitUntil(async () => (await fetch(`${url}/healthz`)).ok, `the server on port ${port}`, 180_000, proc);
  return { ...proc, readyMs: now() - t0 };
}

async function startRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], {
    stdio: 'ignore',
  });
  const { default: Redis } = await import('ioredis');
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused until redis-server listens: polled below
  await waitUntil(
    async () => {
      if (probe.status !== 'ready') await probe.connect();
      return (await probe.ping()) === 'PONG';
    },
    'redis-server',
    20_000,
  );
  probe.disconnect();
  return { url: `redis://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}

const SUBMIT =
  'mutation($images:[Upload!]!,$size:String,$steps:Int,$seed:Int){ editImages(images:$images, prompt:"make it sepia", size:$size, steps:$steps, seed:$seed){ id } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditCompleted { result { images { index } usage { queueTimeSeconds mergedJobs } } } ... on EditFailed { error { code message } } } }';
type Ev = {
  editJobEvents: {
    __typename: string;
    result?: { images: { index: number }[]; usage: { queueTimeSeconds: number; mergedJobs: number } };
    error?: { code: string; message: string };
  };
};

interface JobResult {
  ms: number;
  images: number;
  queueS?: number;
  mergedJobs?: number;
}

/** One GraphQL job: multipart upload, then the subscription until the final event. */
async function graphqlJob(url: string, ws: Client, files: Buffer[], size: number, steps: number, seed: number): Promise<JobResult> {
  const t = now();
  const res = await postMultipart<{ editImages: { id: string } }>(
    url,
    SUBMIT,
    { size: `${size}x${size}`, steps, seed },
    files.map((bytes, i) => ({ bytes, name: `${i}.png` })),
  );
  if (!res.body.data) throw new Error(`editImages failed: ${JSON.stringify(res.body.errors)}`);
  const id = res.body.data.editImages.id;
  const final = await new Promise<Ev['editJobEvents']>((resolve, reject) => {
    let last: Ev['editJobEvents'] | undefined;
    ws.subscribe<Ev>(
      { query: EVENTS, variables: { id } },
      {
        next: (v) => {
          if (v.data) last = v.data.editJobEvents;
        },
        error: (e) => reject(e instanceof Error ? e : new Error(JSON.stringify(e))),
        complete: () => (last ? resolve(last) : reject(new Error(`job ${id}: no events`))),
      },
    );
  });
  if (final.__typename !== 'EditCompleted' || !final.result) throw new Error(`job ${id} ended with ${final.__typename}: ${JSON.stringify(final.error)}`);
  return { ms: now() - t, images: final.result.images.length, queueS: final.result.usage.queueTimeSeconds, mergedJobs: final.result.usage.mergedJobs };
}

/** One REST job: POST /v1/images/edits (multipart) and the JSON answer. */
async function restJob(url: string, file: Buffer, size: number, steps: number, seed: number): Promise<JobResult> {
  const t = now();
  const form = new FormData();
  form.set('image', new Blob([new Uint8Array(file)], { type: 'image/png' }), 'in.png');
  form.set('prompt', 'make it sepia');
  form.set('size', `${size}x${size}`);
  form.set('num_inference_steps', String(steps));
  form.set('seed', String(seed));
  const res = await fetch(`${url}/v1/images/edits`, { method: 'POST', body: form });
  const body = (await res.json()) as { data?: unknown[]; error?: unknown };
  if (!res.ok || !body.data) throw new Error(`REST edit failed (${res.status}): ${JSON.stringify(body.error)}`);
  return { ms: now() - t, images: body.data.length };
}

async function testImage(i: number, size: number): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: (40 * i + 30) % 256, g: 120, b: (200 + 30 * i) % 256 } } })
    .png()
    .toBuffer();
}

/** C clients share `jobs` one-image jobs; each starts its next job when its last result arrives. */
async function level(
  url: string,
  clients: number,
  jobs: number,
  size: number,
  steps: number,
  images: Buffer[],
): Promise<{ wallMs: number; results: JobResult[] }> {
  const sockets = Array.from({ length: clients }, () => wsClient(`${url.replace(/^http/, 'ws')}/graphql`));
  let next = 0;
  const results: JobResult[] = [];
  const t = now();
  await Promise.all(
    sockets.map(async (ws, c) => {
      for (let j = next++; j < jobs; j = next++) {
        const image = images[j % images.length]!;
        results.push(c % 2 === 0 ? await graphqlJob(url, ws, [image], size, steps, j) : await restJob(url, image, size, steps, j));
      }
    }),
  );
  const wallMs = now() - t;
  await Promise.all(sockets.map((s) => s.dispose()));
  return { wallMs, results };
}

/** One client, one GraphQL job of `count` images (the batched figure each level is compared with). */
async function batchedImagesPerS(url: string, count: number, size: number, steps: number, images: Buffer[]): Promise<number> {
  const ws = wsClient(`${url.replace(/^http/, 'ws')}/graphql`);
  const files = Array.from({ length: count }, (_, i) => images[i % images.length]!);
  const runs: number[] = [];
  // The first run of a batch size sizes ONNX Runtime's arena for it: the best of three.
  for (let r = 0; r < 3; r++) runs.push((await graphqlJob(url, ws, files, size, steps, 1)).ms);
  await ws.dispose();
  return count / (Math.min(...runs) / 1000);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

async function runMode(
  mode: 'memory' | 'redis',
  options: LoadOptions,
  modelsDir: string,
  images: Buffer[],
): Promise<{ rows: LoadRow[]; batched: Record<string, number> }> {
  const redis = mode === 'redis' ? await startRedis() : null;
  const server = await startServer({
    MODELS_DIR: modelsDir,
    DEFAULT_MODEL: 'bench',
    MAX_QUEUED_JOBS: '1000',
    ...(redis ? { REDIS_URL: redis.url, ROLE: 'all' } : {}),
  });
  try {
    const { size, steps } = options;
    // Warm-up: sessions, first pipeline call, scratch, and each client path once.
    const ws = wsClient(`${server.url.replace(/^http/, 'ws')}/graphql`);
    await graphqlJob(server.url, ws, [images[0]!], size, steps, 0);
    await ws.dispose();
    await restJob(server.url, images[0]!, size, steps, 0);
    const batched: Record<string, number> = {};
    const rows: LoadRow[] = [];
    for (const clients of options.clients) {
      const batchedRate = (batched[String(clients)] ??= await batchedImagesPerS(server.url, clients, size, steps, images));
      const { wallMs, results } = await level(server.url, clients, options.jobsPerLevel, size, steps, images);
      const seconds = results.map((r) => r.ms / 1000);
      const queue = results.flatMap((r) => (r.queueS === undefined ? [] : [r.queueS]));
      const outputs = results.reduce((n, r) => n + r.images, 0);
      const row: LoadRow = {
        mode,
        clients,
        jobs: results.length,
        wall_s: round(wallMs / 1000),
        jobs_per_s: round(results.length / (wallMs / 1000)),
        images_per_s: round(outputs / (wallMs / 1000)),
        p50_s: round(pct(seconds, 50)),
        p99_s: round(pct(seconds, 99)),
        queue_p50_s: round(pct(queue, 50)),
        queue_p99_s: round(pct(queue, 99)),
        merged_jobs_mean: round(mean(results.flatMap((r) => (r.mergedJobs === undefined ? [] : [r.mergedJobs]))), 2),
        share_of_batched: round(outputs / (wallMs / 1000) / batchedRate),
      };
      rows.push(row);
      console.log(
        `${mode.padEnd(6)} clients ${String(clients).padStart(2)}: ${row.jobs_per_s} jobs/s, p50 ${row.p50_s} s, p99 ${row.p99_s} s, queue p50 ${row.queue_p50_s} s, merged ${row.merged_jobs_mean}, ${row.share_of_batched} of one client's batched ${clients}-image job (${round(batchedRate)} images/s)`,
      );
    }
    return { rows, batched: Object.fromEntries(Object.entries(batched).map(([k, v]) => [k, round(v)])) };
  } finally {
    await server.stop();
    await redis?.stop();
  }
}

/** Process spawn → /healthz 200 → first result (REST, one image) for each model, in memory mode. */
async function coldStart(
  modelsDir: string,
  model: string,
  size: number,
  steps: number,
  image: Buffer,
): Promise<{ model: string; ready_s: number; first_result_s: number }> {
  const t0 = now();
  const server = await startServer({ MODELS_DIR: modelsDir, DEFAULT_MODEL: model, PRELOAD_MODELS: model });
  try {
    await restJob(server.url, image, size, steps, 1);
    return { model, ready_s: round(server.readyMs / 1000), first_result_s: round((now() - t0) / 1000) };
  } finally {
    await server.stop();
  }
}

/** Throughput (jobs/s, left axis) and p99 time to result (s, right axis) against clients; no plotting dependency. */
export function loadSvg(rows: readonly LoadRow[], batched: Record<string, Record<string, number>>, title: string): string {
  const W = 720;
  const H = 400;
  const m = { l: 60, r: 60, t: 40, b: 70 };
  const clients = [...new Set(rows.map((r) => r.clients))].sort((a, b) => a - b);
  const xs = (c: number): number => {
    const i = clients.indexOf(c);
    return m.l + (clients.length === 1 ? (W - m.l - m.r) / 2 : (i / (clients.length - 1)) * (W - m.l - m.r));
  };
  const nice = (v: number): number => {
    const p = 10 ** Math.floor(Math.log10(v || 1));
    return ([1, 2, 2.5, 5, 10].find((k) => k * p >= v) ?? 10) * p;
  };
  const batchedJobs = Object.values(batched).flatMap((b) => Object.values(b));
  const tMax = nice(Math.max(...rows.map((r) => r.jobs_per_s), ...batchedJobs) * 1.1);
  const pMax = nice(Math.max(...rows.map((r) => r.p99_s)) * 1.1);
  const yl = (v: number): number => H - m.b - (v / tMax) * (H - m.t - m.b);
  const yr = (v: number): number => H - m.b - (v / pMax) * (H - m.t - m.b);
  const colours: Record<string, string> = { memory: '#1f77b4', redis: '#d62728' };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`,
  ];
  for (let k = 0; k <= 5; k++) {
    const y = yl((tMax * k) / 5);
    out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${round((tMax * k) / 5, 2)}</text>`);
    out.push(`<text x="${W - m.r + 6}" y="${yr((pMax * k) / 5) + 4}">${round((pMax * k) / 5, 2)}</text>`);
  }
  for (const c of clients) out.push(`<text x="${xs(c)}" y="${H - m.b + 18}" text-anchor="middle">${c}</text>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - m.b + 36}" text-anchor="middle">concurrent clients</text>`);
  out.push(`<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">jobs/s (solid)</text>`);
  out.push(`<text transform="translate(${W - 14} ${(m.t + H - m.b) / 2}) rotate(90)" text-anchor="middle">p99 time to result, s (dashed)</text>`);
  out.push(
    `<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="black"/><line x1="${W - m.r}" x2="${W - m.r}" y1="${m.t}" y2="${H - m.b}" stroke="black"/>`,
  );
  out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="black"/>`);
  const modes = [...new Set(rows.map((r) => r.mode))];
  for (const mode of modes) {
    const series = rows.filter((r) => r.mode === mode).sort((a, b) => a.clients - b.clients);
    const colour = colours[mode] ?? 'black';
    const path = (y: (r: LoadRow) => number): string => series.map((r, i) => `${i ? 'L' : 'M'}${xs(r.clients).toFixed(1)},${y(r).toFixed(1)}`).join(' ');
    out.push(`<path d="${path((r) => yl(r.jobs_per_s))}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<path d="${path((r) => yr(r.p99_s))}" fill="none" stroke="${colour}" stroke-width="2" stroke-dasharray="6 4"/>`);
    for (const r of series) {
      out.push(`<circle cx="${xs(r.clients)}" cy="${yl(r.jobs_per_s)}" r="3" fill="${colour}"/>`);
      out.push(`<rect x="${xs(r.clients) - 3}" y="${yr(r.p99_s) - 3}" width="6" height="6" fill="${colour}"/>`);
    }
    // The single-client batched figure (images/s of one job of C images = the jobs/s C clients could reach).
    const b = batched[mode] ?? {};
    const bPath = clients
      .filter((c) => b[String(c)] !== undefined)
      .map((c, i) => `${i ? 'L' : 'M'}${xs(c).toFixed(1)},${yl(b[String(c)]!).toFixed(1)}`)
      .join(' ');
    if (bPath) out.push(`<path d="${bPath}" fill="none" stroke="${colour}" stroke-width="1" stroke-dasharray="1 3"/>`);
  }
  const legend = modes.flatMap((mode, i) => {
    const x = m.l;
    const y = H - 18 + i * 14;
    const colour = colours[mode] ?? 'black';
    return [
      `<line x1="${x}" x2="${x + 24}" y1="${y - 4}" y2="${y - 4}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${x + 28}" y="${y}">${mode}: jobs/s (solid), p99 (dashed), one client's batched job of C images, images/s (dotted)</text>`,
    ];
  });
  out.push(...legend, '</svg>');
  return `${out.join('\n')}\n`;
}

export async function runLoadBench(values: LoadFlagValues): Promise<void> {
  const options = parseLoadOptions(values);
  const modelDir = await ensureBenchModel();
  const sdxlDir = await ensureBenchModel({ family: 'sdxl-img2img' });
  const modelsDir = dirname(modelDir);
  if (dirname(sdxlDir) !== modelsDir) throw new Error('bench and bench-sdxl are expected in one models folder');
  const images = await Promise.all(Array.from({ length: 4 }, (_, i) => testImage(i, options.size)));
  console.log(
    `load: clients ${options.clients.join(',')}, ${options.jobsPerLevel} one-image jobs per level, ${options.size}² ${options.steps} steps, modes ${options.modes.join(',')}`,
  );
  const started = now();
  const rows: LoadRow[] = [];
  const batched: Record<string, Record<string, number>> = {};
  for (const mode of options.modes) {
    const r = await runMode(mode, options, modelsDir, images);
    rows.push(...r.rows);
    batched[mode] = r.batched;
  }
  const cold = [];
  for (const model of ['bench', 'bench-sdxl']) {
    const c = await coldStart(modelsDir, model, options.size, options.steps, images[0]!);
    console.log(`cold start ${model}: /healthz after ${c.ready_s} s, first result after ${c.first_result_s} s`);
    cold.push(c);
  }
  const loadConfig = {
    clients: options.clients,
    jobs_per_level: options.jobsPerLevel,
    size: `${options.size}x${options.size}`,
    steps: options.steps,
    images_per_job: 1,
    client_mix: 'even-numbered clients GraphQL (multipart + graphql-ws), odd-numbered REST /v1/images/edits',
    wall_s: round((now() - started) / 1000, 1),
  };
  const path = writeResults({ load: rows, load_batched: batched, load_config: loadConfig, cold_start: cold });
  const svg = join(PROJECT_ROOT, 'bench', 'load.svg');
  writeFileSync(svg, loadSvg(rows, batched, `bench model, one-image ${options.size}² jobs, ${options.steps} steps`));
  console.table(rows);
  console.log(`wrote ${path} and ${svg} (${round((now() - started) / 1000, 1)} s)`);
}
