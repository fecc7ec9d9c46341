/**
 * Cross-request batching on Redis workers, on a real redis-server with the real engine (tiny-edit):
 * an API-side RedisJobBackend and workers in this process (and one worker process, SIGKILLed
 * mid-call). Jobs are queued before a worker starts, so the worker finds them waiting together.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { defaultModelsDir } from '../src/config.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { RedisJobBackend } from '../src/jobs/redisJobs.js';
import { type RedisWorkerConfig, type RunningRedisWorker, startRedisWorker } from '../src/jobs/redisWorker.js';
import type { JobEvent } from '../src/jobs/types.js';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { twoColourPng } from './support/images.js';
import { startServerProcess, waitFor } from './support/processes.js';

interface Spec {
  prompt: string;
  seed: number;
  n: number;
  images: number;
  steps?: number;
  size?: number;
}

describe('batching on Redis workers', { timeout: 240_000 }, () => {
  let server: ChildProcess;
  let redisUrl: string;
  let engine: InferenceEngine;
  let jobs: RedisJobBackend;
  let img: Buffer;
  const lines: Record<string, unknown>[] = [];

  before(async () => {
    const port = await freePort();
    server = startRedisServer(port);
    redisUrl = `redis://127.0.0.1:${port}`;
    const probe = new Redis(redisUrl, { lazyConnect: true });
    probe.on('error', () => undefined); // refused until redis-server listens
    await waitFor(async () => (await probe.ping()) === 'PONG', 'redis-server');
    probe.disconnect();
    engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'inline' });
    jobs = new RedisJobBackend({ redisUrl, retentionMs: 60_000, maxQueuedJobs: 100, attempts: 2, maxInputBytes: 100_000_000 });
    await waitFor(async () => (await jobs.health()) === null, 'the job backend');
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
  });

  after(async () => {
    await jobs?.shutdown();
    await engine?.close();
    server?.kill('SIGKILL');
  });

  const worker = (overrides: Partial<RedisWorkerConfig> = {}): Promise<RunningRedisWorker> =>
    startRedisWorker(engine, {
      redisUrl,
      retentionMs: 60_000,
      jobTimeoutMs: 0,
      attempts: 2,
      stallMs: 2_000,
      log: (fields) => lines.push(fields),
      ...overrides,
    });

  const submit = async (s: Spec): Promise<string> => {
    const size = s.size ?? 32;
    const edit = resolveEditOptions(engine.model('tiny-edit'), s.images, {
      prompt: s.prompt,
      size: `${size}x${size}`,
      steps: s.steps ?? 4,
      seed: s.seed,
      n: s.n,
    });
    const inputs = Array.from({ length: s.images }, () => ({ bytes: new Uint8Array(img), pixels: 32 * 32 }));
    return (await jobs.submit('tiny-edit', edit, inputs, 'owner')).id;
  };

  const collect = async (id: string, onEvent?: (e: JobEvent) => void): Promise<JobEvent[]> => {
    const seen: JobEvent[] = [];
    for await (const e of await jobs.subscribe(id)) {
      seen.push(e);
      onEvent?.(e);
    }
    return seen;
  };

  /** Queues `specs`, then starts a worker and waits for every job's last event. */
  async function runAll(specs: Spec[], mergeJobs: boolean, onEvent?: (index: number, e: JobEvent) => void) {
    const ids: string[] = [];
    for (const s of specs) ids.push(await submit(s));
    const streams = ids.map((id, i) => collect(id, (e) => onEvent?.(i, e)));
    const w = await worker({ mergeJobs });
    try {
      const events = await Promise.all(streams);
      return ids.map((id, i) => ({ id, events: events[i]! }));
    } finally {
      await w.close();
    }
  }

  const result = (events: JobEvent[]) => {
    const last = events.at(-1)!;
    assert.equal(last.type, 'completed', JSON.stringify(last).slice(0, 300));
    return (last as Extract<JobEvent, { type: 'completed' }>).result;
  };

  const SPECS: Spec[] = [
    { prompt: 'invert', seed: 5, n: 2, images: 1 },
    { prompt: 'grayscale', seed: 9, n: 1, images: 2 },
    { prompt: 'sepia', seed: 1, n: 1, images: 1 },
  ];

  it('runs compatible waiting jobs as one call, with images identical to unmerged runs and each job its own progress', async () => {
    const merged = await runAll(SPECS, true);
    const single = await runAll(SPECS, false);
    for (const [i, job] of merged.entries()) {
      const m = result(job.events);
      const s = result(single[i]!.events);
      assert.equal(m.usage.mergedJobs, 3);
      assert.equal(s.usage.mergedJobs, 1);
      assert.equal(m.images.length, SPECS[i]!.n * SPECS[i]!.images);
      assert.deepEqual(
        m.images.map((x) => [x.index, x.seed, Buffer.from(x.bytes).toString('base64')]),
        s.images.map((x) => [x.index, x.seed, Buffer.from(x.bytes).toString('base64')]),
      );
      // Its own progress: events carry its id only, steps rise to its total.
      const steps = job.events.filter((e) => e.type === 'progress' && e.step > 0) as Extract<JobEvent, { type: 'progress' }>[];
      assert.ok(steps.length > 0);
      for (const e of job.events) assert.equal(e.jobId, job.id);
      assert.deepEqual(
        steps.map((e) => e.step),
        [...steps.map((e) => e.step)].sort((a, b) => a - b),
      );
      assert.equal(steps.at(-1)!.step, steps.at(-1)!.totalSteps);
      const running = lines.filter((l) => l.jobId === job.id && l.status === 'RUNNING');
      assert.deepEqual(
        running.map((l) => l.mergedJobs),
        [3],
      );
    }
  });

  it('cancelling one merged job leaves the others to finish', async () => {
    const specs = SPECS.map((s) => ({ ...s, steps: 100, size: 128 }));
    let cancelled = false;
    const out = await runAll(specs, true, (i, e) => {
      if (!cancelled && e.type === 'progress' && e.step >= 2 && i === 1) {
        cancelled = true;
        void jobs.cancel(e.jobId);
      }
    });
    const ids = out.map((o) => o.id);
    assert.ok(cancelled);
    assert.deepEqual(out[1]!.events.at(-1), { type: 'cancelled', jobId: ids[1], status: 'CANCELLED', reason: 'CLIENT' });
    for (const i of [0, 2]) assert.equal(result(out[i]!.events).usage.mergedJobs, 3);
  });

  it('merges only the compatible prefix of the waiting list: an incompatible job is put back in its place', async () => {
    const out = await runAll(
      [
        { prompt: 'invert', seed: 1, n: 1, images: 1 },
        { prompt: 'invert', seed: 2, n: 1, images: 1, steps: 5 },
        { prompt: 'invert', seed: 3, n: 1, images: 1 },
      ],
      true,
    );
    for (const o of out) assert.equal(result(o.events).usage.mergedJobs, 1);
    const order = lines.filter((l) => l.status === 'RUNNING' && out.some((o) => o.id === l.jobId)).map((l) => l.jobId);
    assert.deepEqual(
      order,
      out.map((o) => o.id),
    );
    assert.deepEqual(await jobs.stats(), { queued: 0, running: 0, jobs: 0 });
  });

  it('retries each job of a call once when its worker is lost mid-call', async () => {
    const ids: string[] = [];
    for (const s of SPECS.slice(0, 2)) ids.push(await submit({ ...s, steps: 100, size: 256 }));
    const streams = ids.map((id) => collect(id));
    const victim = startServerProcess({ REDIS_URL: redisUrl, ROLE: 'worker', JOB_STALL_SECONDS: '2', JOB_ATTEMPTS: '2' });
    try {
      await waitFor(
        () => ids.every((id) => victim.output.some((l) => l.includes(id) && l.includes('job running') && l.includes('"mergedJobs":2'))),
        'the worker process to take both jobs in one call',
        120_000,
      );
      await waitFor(async () => (await jobs.get(ids[0]!))?.progress !== null, 'progress');
    } finally {
      victim.child.kill('SIGKILL');
    }
    const w = await worker({ mergeJobs: true });
    try {
      for (const events of await Promise.all(streams)) {
        result(events);
        const requeued = events.map((e) => e.type).lastIndexOf('queued');
        assert.ok(requeued > 0, events.map((e) => e.type).join(','));
        const after = events.slice(requeued + 1).filter((e) => e.type === 'progress' && e.step > 0) as Extract<JobEvent, { type: 'progress' }>[];
        assert.equal(after[0]?.step, 1);
      }
    } finally {
      await w.close();
    }
    for (const id of ids)
      assert.deepEqual(
        lines.filter((l) => l.jobId === id && l.status === 'RUNNING').map((l) => l.attempt),
        [2],
      );
  });
});
