/**
 * `npm run bench:jobs`: the job resource's figures (issue 25), side by side in one run, on the
 * `tiny-edit` model (1 image `--size` 64², `--steps` 4 a job: the scheduler, not the model, is what is measured),
 * with the engine on a worker thread as servers run it, in memory (JobService) and on Redis
 * (RedisJobBackend + a Redis worker in this process, a redis-server on a free port):
 *   fairness     tenant A queues `--backlog` jobs (default 200), and once A's first runs tenant B queues
 *                one; reported: A's calls that started between B's submit and B's start (fair turns:
 *                at most the one already running), B's wait in ms, and what first-in first-out would
 *                have made B wait (A's jobs still queued × the median call time). Merging is off, so
 *                a job is a call.
 *   throughput   `--jobs` jobs (default 48) from one tenant vs the same jobs from two tenants (half
 *                each, A's all queued first: fair turns alternate them), jobs/s, `--reps` times each
 *                (default 3), interleaved; ratio = two tenants / one. There is no unfair mode to
 *                compare with: two tenants exercise the turns, one does not. Also this process's CPU
 *                time (all its threads: scheduler, engine, Redis worker) per run, two tenants / one:
 *                the work the turns add, which other load on the cores does not change as it does
 *                wall time.
 *   response_bytes  the body of `editJob { result { images { b64Json } } }` vs `{ url }` for a
 *                finished job of 16 outputs at 1024² (2 noisy inputs, n 8, 1 step), over HTTP from an
 *                in-memory server (`--no-bytes` skips it)
 * Prints JSON lines and writes bench/jobs-results.json.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import sharp from 'sharp';
import { defaultModelsDir, PROJECT_ROOT } from '../src/config.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { JobService } from '../src/jobs/jobService.js';
import { RedisJobBackend } from '../src/jobs/redisJobs.js';
import { type RunningRedisWorker, startRedisWorker } from '../src/jobs/redisWorker.js';
import type { JobBackend } from '../src/jobs/types.js';
import { startServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { postGraphQL, postMultipart } from '../test/support/graphql.js';
import { twoColourPng } from '../test/support/images.js';
import { freePort } from '../test/support/net.js';

const { values: flags } = parseArgs({
  options: {
    backlog: { type: 'string', default: '200' },
    jobs: { type: 'string', default: '48' },
    reps: { type: 'string', default: '3' },
    size: { type: 'string', default: '64' },
    steps: { type: 'string', default: '4' },
    'no-bytes': { type: 'boolean', default: false },
  },
  strict: true,
});
const BACKLOG = Number(flags.backlog);
const JOBS = Number(flags.jobs);
const REPS = Number(flags.reps);
const SIZE = Number(flags.size);
const STEPS = Number(flags.steps);

const now = (): number => performance.now();
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

type Line = { message: string; jobId?: string; at: number };

/** A backend under test: its jobs, the 'job running' / terminal log lines, and how to end it. */
interface Harness {
  jobs: JobBackend;
  lines: Line[];
  close(): Promise<void>;
}

const engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'worker' });
const model = engine.model('tiny-edit');
const png = await twoColourPng(SIZE, SIZE, [200, 60, 30], [20, 120, 220]);
const edit = resolveEditOptions(model, 1, { prompt: 'sepia', size: `${SIZE}x${SIZE}`, steps: STEPS, seed: 1 });
const inputs = [{ bytes: new Uint8Array(png), pixels: SIZE * SIZE }];

function memoryHarness(): Harness {
  const lines: Line[] = [];
  const jobs = new JobService(engine, {
    retentionMs: 600_000,
    maxQueuedJobs: 10_000,
    jobTimeoutMs: 0,
    mergeJobs: false,
    log: (fields, message) => lines.push({ message, jobId: fields.jobId as string, at: now() }),
  });
  return { jobs, lines, close: () => jobs.shutdown(0) };
}

async function redisHarness(): Promise<Harness> {
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redisUrl = `redis://127.0.0.1:${port}`;
  const jobs = new RedisJobBackend({ redisUrl, retentionMs: 600_000, maxQueuedJobs: 10_000, attempts: 1, maxInputBytes: 1e9 });
  while ((await jobs.health()) !== null) await new Promise((r) => setTimeout(r, 50));
  const lines: Line[] = [];
  const worker: RunningRedisWorker = await startRedisWorker(engine, {
    redisUrl,
    retentionMs: 600_000,
    jobTimeoutMs: 0,
    attempts: 1,
    stallMs: 30_000,
    mergeJobs: false,
    log: (fields, message) => lines.push({ message, jobId: fields.jobId as string, at: now() }),
  });
  return {
    jobs,
    lines,
    async close() {
      await worker.close();
      await jobs.shutdown();
      server.kill('SIGKILL');
    },
  };
}

const harnesses: Record<'memory' | 'redis', () => Harness | Promise<Harness>> = { memory: memoryHarness, redis: redisHarness };

async function waitUntil(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 5));
}

/** Tenant A's backlog, then B's one job once A's first runs. */
async function fairness(kind: 'memory' | 'redis'): Promise<Record<string, number | string>> {
  const h = await harnesses[kind]();
  const a: string[] = [];
  for (let i = 0; i < BACKLOG; i++) a.push((await h.jobs.submit('tiny-edit', edit, inputs, 'tenant-a')).id);
  await waitUntil(() => h.lines.some((l) => l.message === 'job running'));
  const startedBefore = h.lines.filter((l) => l.message === 'job running').length;
  const submittedAt = now();
  const b = (await h.jobs.submit('tiny-edit', edit, inputs, 'tenant-b')).id;
  await waitUntil(() => h.lines.some((l) => l.message === 'job running' && l.jobId === b));
  const running = h.lines.filter((l) => l.message === 'job running');
  const bAt = running.findIndex((l) => l.jobId === b);
  const aCallsBeforeB = running.slice(0, bAt).filter((l) => l.at >= submittedAt).length;
  // Let a few more of A's calls run to time them (the backlog's call time, after B's).
  await waitUntil(() => h.lines.filter((l) => l.message === 'job running').length >= bAt + 6);
  const starts = h.lines.filter((l) => l.message === 'job running').map((l) => l.at);
  const callMs = median(starts.slice(1).map((t, i) => t - starts[i]!));
  const aQueuedAtB = BACKLOG - startedBefore;
  await h.close();
  return {
    backend: kind,
    backlog: BACKLOG,
    a_calls_started_between_b_submit_and_b_start: aCallsBeforeB,
    b_wait_ms: round(running[bAt]!.at - submittedAt, 1),
    call_ms_median: round(callMs, 1),
    a_queued_when_b_submitted: aQueuedAtB,
    fifo_b_wait_ms_estimate: round(aQueuedAtB * callMs, 0),
  };
}

/** Wall and process CPU time (ms) to run `JOBS` jobs from `tenants` tenants (each tenant's jobs queued in a row). */
async function drainTime(h: Harness, tenants: number): Promise<{ ms: number; cpuMs: number }> {
  const done = (): number => h.lines.filter((l) => l.message === 'job succeeded').length;
  const before = done();
  const cpu = process.cpuUsage();
  const t = now();
  for (let k = 0; k < tenants; k++) for (let i = 0; i < JOBS / tenants; i++) await h.jobs.submit('tiny-edit', edit, inputs, `tenant-${k}`);
  await waitUntil(() => done() - before === JOBS);
  const ms = now() - t;
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000 };
}

async function throughput(kind: 'memory' | 'redis'): Promise<Record<string, number | string>> {
  const h = await harnesses[kind]();
  await drainTime(h, 1); // warm-up
  const one: { ms: number; cpuMs: number }[] = [];
  const two: { ms: number; cpuMs: number }[] = [];
  for (let r = 0; r < REPS; r++) {
    // Interleaved, alternating which goes first.
    if (r % 2 === 0) {
      one.push(await drainTime(h, 1));
      two.push(await drainTime(h, 2));
    } else {
      two.push(await drainTime(h, 2));
      one.push(await drainTime(h, 1));
    }
  }
  await h.close();
  const jps = (ms: number): number => JOBS / (ms / 1000);
  return {
    backend: kind,
    jobs: JOBS,
    reps: REPS,
    one_tenant_jobs_per_s: round(median(one.map((r) => jps(r.ms))), 2),
    two_tenants_jobs_per_s: round(median(two.map((r) => jps(r.ms))), 2),
    ratio_two_over_one: round(median(two.map((t, i) => one[i]!.ms / t.ms)), 3),
    ratios: one.map((o, i) => round(o.ms / two[i]!.ms, 3)).join(' '),
    cpu_ms_one_tenant: round(median(one.map((r) => r.cpuMs)), 0),
    cpu_two_over_one: round(median(two.map((t, i) => t.cpuMs / one[i]!.cpuMs)), 3),
    cpu_ratios: two.map((t, i) => round(t.cpuMs / one[i]!.cpuMs, 3)).join(' '),
  };
}

/** Body bytes of one finished 16 × 1024² job read with b64Json, and with url only. */
async function responseBytes(): Promise<Record<string, number | string>> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MAX_IMAGES_PER_JOB: '16', LOG_LEVEL: 'silent' });
  const server = await startServer(config, { logger: pino({ level: 'silent' }) });
  try {
    // Noisy content, so PNG cannot shrink it to nothing.
    const noise = async (seed: number): Promise<Buffer> => {
      const raw = Buffer.alloc(1024 * 1024 * 3);
      let x = seed;
      for (let i = 0; i < raw.length; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        raw[i] = x >>> 24;
      }
      return sharp(raw, { raw: { width: 1024, height: 1024, channels: 3 } })
        .png()
        .toBuffer();
    };
    const files = [
      { bytes: await noise(1), name: 'a.png' },
      { bytes: await noise(2), name: 'b.png' },
    ];
    const sub = await postMultipart<{ editImages: { id: string } }>(
      server.url,
      'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"1024x1024", steps:1, n:8){ id } }',
      {},
      files,
      { 'apollo-require-preflight': 'true' },
    );
    const id = sub.body.data?.editImages.id;
    if (!id) throw new Error(`submit refused: ${JSON.stringify(sub.body.errors)}`);
    let status = '';
    while (status !== 'SUCCEEDED') {
      const r = await postGraphQL<{ editJob: { status: string; error: { message: string } | null } }>(
        server.url,
        'query($id:ID!){ editJob(id:$id){ status error { message } } }',
        { id },
      );
      status = r.body.data!.editJob.status;
      if (status === 'FAILED' || status === 'CANCELLED') throw new Error(`the job ended ${status}: ${r.body.data!.editJob.error?.message}`);
      await new Promise((res) => setTimeout(res, 200));
    }
    const bodyBytes = async (selection: string): Promise<{ bytes: number; images: number }> => {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: `query($id:ID!){ editJob(id:$id){ result { images { ${selection} } } } }`, variables: { id } }),
      });
      const body = Buffer.from(await res.arrayBuffer());
      return {
        bytes: body.byteLength,
        images: (JSON.parse(body.toString()) as { data: { editJob: { result: { images: unknown[] } } } }).data.editJob.result.images.length,
      };
    };
    const b64 = await bodyBytes('b64Json');
    const url = await bodyBytes('url');
    return { outputs: b64.images, size: '1024x1024', b64Json_bytes: b64.bytes, url_bytes: url.bytes, ratio: round(b64.bytes / url.bytes, 0) };
  } finally {
    await server.shutdown(1000);
  }
}

// Warm-up: the model's sessions open on the first call (not a call to time).
{
  const h = memoryHarness();
  await drainTime(h, 1);
  await h.close();
}
const results: Record<string, unknown> = {
  when: new Date().toISOString(),
  cpus: cpus().length,
  model: `tiny-edit ${SIZE}², ${STEPS} steps, 1 image a job`,
  flags,
};
/** One section's row per backend, in turn, each printed as it lands. */
async function perBackend(section: string, measure: (kind: 'memory' | 'redis') => Promise<Record<string, unknown>>): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for (const kind of ['memory', 'redis'] as const) {
    const row = await measure(kind);
    console.log(JSON.stringify({ section, ...row }));
    rows.push(row);
  }
  return rows;
}
results.fairness = await perBackend('fairness', fairness);
results.throughput = await perBackend('throughput', throughput);
await engine.close();
if (!flags['no-bytes']) {
  results.response_bytes = await responseBytes();
  console.log(JSON.stringify({ section: 'response_bytes', ...(results.response_bytes as object) }));
}
writeFileSync(join(PROJECT_ROOT, 'bench', 'jobs-results.json'), `${JSON.stringify(results, null, 2)}\n`);
process.exit(0);
