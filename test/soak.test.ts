/**
 * Soak (loopback only, bounded): rounds of small queued jobs, each watched by two graphql-ws
 * subscriptions spread over a few connections. Every subscription must end with exactly one
 * terminal event and lose nothing; once the retention period has passed the jobs are gone
 * (editJob → null) and the heap is back near where it started.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Client } from 'graphql-ws';
import { startTestServer, type TestServer } from './support/server.js';
import { collect, collectSse, postGraphQL, postMultipart, wsClient } from './support/graphql.js';
import { solidPng, type Rgb } from './support/images.js';
import {
  EditImagesDocument,
  EditJobDocument,
  EditJobEventsDocument,
  type EditImagesMutation,
  type EditJobEventsSubscription,
  type EditJobQuery,
} from './generated/graphql.js';

type Event = EditJobEventsSubscription['editJobEvents'];

const ROUNDS = 4;
const JOBS_PER_ROUND = 15;
const SUBSCRIPTIONS_PER_JOB = 2;
const CONNECTIONS = 3;
const HEAP_SLACK_BYTES = 50 * 1024 * 1024;
const PROMPTS = ['invert', 'sepia', 'grayscale', 'brighter', 'darker', 'warmer', 'cooler'];
const TERMINAL = new Set(['EditCompleted', 'EditFailed', 'EditCancelled']);

/** A real gc() even without --expose-gc, so that heap numbers mean something. */
function gcFunction(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function settledHeap(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no end after ${ms} ms`)), ms);
    }),
  ]);
}

describe('soak: queued jobs under many concurrent subscriptions', { timeout: 60_000 }, () => {
  let server: TestServer;
  let images: Buffer[];
  const gc = gcFunction();

  before(async () => {
    server = await startTestServer({ JOB_RETENTION_SECONDS: '1' });
    const colours: Rgb[] = [
      [200, 60, 30],
      [20, 120, 220],
      [90, 200, 90],
    ];
    images = await Promise.all(colours.map((c) => solidPng(32, 32, c)));
  });
  after(async () => server.close());

  async function submit(i: number): Promise<{ id: string; outputs: number }> {
    const count = 1 + (i % 2);
    const n = 1 + (i % 3 === 0 ? 1 : 0);
    const res = await postMultipart<EditImagesMutation>(
      server.url,
      EditImagesDocument,
      { prompt: PROMPTS[i % PROMPTS.length], n, size: '32x32', steps: 2, seed: i, previewEvery: i % 2 },
      Array.from({ length: count }, (_, k) => ({ bytes: images[(i + k) % images.length]!, name: `in${k}.png` })),
    );
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    return { id: res.body.data!.editImages.id, outputs: count * n };
  }

  it('every subscription ends with exactly one terminal event; expired jobs are gone and the heap returns near its baseline', async (t) => {
    // Warm up (worker start, JIT, first allocations), let that job expire, then take the baseline.
    const warm = await submit(0);
    const warmEvents = await collectSse<EditJobEventsSubscription>(server.url, EditJobEventsDocument, { id: warm.id });
    assert.equal(warmEvents.events.at(-1)?.editJobEvents.__typename, 'EditCompleted');
    await new Promise((r) => setTimeout(r, 2200));
    const baseline = await settledHeap(gc);
    const baselineRss = process.memoryUsage().rss;

    const allIds: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const clients: Client[] = Array.from({ length: CONNECTIONS }, () => wsClient(server.wsUrl));
      const jobs = await Promise.all(Array.from({ length: JOBS_PER_ROUND }, (_, i) => submit(round * JOBS_PER_ROUND + i)));
      allIds.push(...jobs.map((j) => j.id));
      let next = 0;
      const streams = jobs.flatMap((job) =>
        Array.from({ length: SUBSCRIPTIONS_PER_JOB }, () => {
          const client = clients[next++ % CONNECTIONS]!;
          return collect<EditJobEventsSubscription>(client, EditJobEventsDocument, { id: job.id }).then((events) => ({
            job,
            events: events.map((e) => e.editJobEvents),
          }));
        }),
      );
      assert.equal(streams.length, JOBS_PER_ROUND * SUBSCRIPTIONS_PER_JOB);
      const results = await withTimeout(Promise.all(streams), 30_000, `round ${round}`);
      for (const { job, events } of results) {
        const terminal = events.filter((e: Event) => TERMINAL.has(e.__typename));
        assert.equal(terminal.length, 1, `job ${job.id}: ${events.map((e) => e.__typename).join(',')}`);
        assert.equal(events.at(-1), terminal[0], 'the terminal event is the last one');
        const done = terminal[0]!;
        assert.equal(done.__typename, 'EditCompleted', JSON.stringify(done));
        if (done.__typename === 'EditCompleted') assert.equal(done.result.images.length, job.outputs);
        const steps = events.flatMap((e) => (e.__typename === 'EditProgress' ? [e.step] : []));
        assert.deepEqual(
          steps,
          [...steps].sort((a, b) => a - b),
          'progress never goes backwards',
        );
      }
      // Both subscribers of a job saw the same final result.
      for (let i = 0; i < results.length; i += SUBSCRIPTIONS_PER_JOB) {
        const [a, b] = [results[i]!.events.at(-1), results[i + 1]!.events.at(-1)];
        assert.deepEqual(a, b);
      }
      await Promise.all(clients.map((c) => c.dispose()));
    }

    // Retention is 1 s and the sweep runs every second: every job expires.
    const deadline = Date.now() + 8000;
    let remaining = allIds;
    while (remaining.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      const polled = await Promise.all(
        remaining.map(async (id) => ({ id, job: (await postGraphQL<EditJobQuery>(server.url, EditJobDocument, { id })).body.data?.editJob })),
      );
      remaining = polled.filter((p) => p.job !== null).map((p) => p.id);
    }
    assert.deepEqual(remaining, [], 'jobs still readable after the retention period');

    const heap = await settledHeap(gc);
    const rss = process.memoryUsage().rss;
    const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;
    t.diagnostic(`heapUsed ${mb(baseline)} → ${mb(heap)}; rss ${mb(baselineRss)} → ${mb(rss)}`);
    assert.ok(heap < baseline + HEAP_SLACK_BYTES, `heap grew from ${mb(baseline)} to ${mb(heap)}`);
  });
});
