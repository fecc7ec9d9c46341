/**
 * The Redis event append (redisShared.ts recordEvent) on a real redis-server with two writers on two
 * connections appending to one job at the same time, as a worker's progress and an API process's
 * cancel (or a worker that took the job over) do: every event is published once under its own
 * sequence number, the stored snapshot is the last one's, exactly one terminal event is taken, and
 * nothing is appended after it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { waitFor } from './support/processes.js';
import { fromWire, keys, readSnapshot, recordEvent, snapshotFields, toWire, type WireEvent } from '../src/jobs/redisShared.js';
import type { JobEvent, JobSnapshot } from '../src/jobs/types.js';

const TTL = 60_000;

describe('Redis event append with two writers', { timeout: 60_000 }, () => {
  let server: ChildProcess;
  let url: string;
  const clients: Redis[] = [];
  const client = (): Redis => {
    const r = new Redis(url);
    clients.push(r);
    return r;
  };

  before(async () => {
    const port = await freePort();
    server = startRedisServer(port);
    url = `redis://127.0.0.1:${port}`;
    const probe = client();
    probe.on('error', () => undefined); // refused until redis-server listens
    await waitFor(async () => (await probe.ping()) === 'PONG', 'redis-server');
  });

  after(() => {
    for (const c of clients) c.disconnect();
    server?.kill('SIGKILL');
  });

  /** A queued job as RedisJobBackend stores it, and a subscriber collecting what is published for it. */
  async function newJob(): Promise<{ id: string; published: WireEvent[] }> {
    const id = randomUUID();
    const snapshot: JobSnapshot = {
      id,
      modelId: 'tiny-edit',
      status: 'QUEUED',
      queuePosition: 1,
      createdAt: Date.now() / 1000,
      inputImages: 1,
      n: 1,
      progress: null,
      result: null,
      error: null,
      owner: 'o'.repeat(64),
    };
    const setup = client();
    await setup.multi().hset(keys.snapshot(id), snapshotFields(snapshot)).pexpire(keys.snapshot(id), TTL).set(keys.owner(id), snapshot.owner, 'PX', TTL).exec();
    const sub = client();
    const published: WireEvent[] = [];
    sub.on('message', (_c: string, m: string) => published.push(fromWire<WireEvent>(m)));
    await sub.subscribe(keys.channel(id));
    return { id, published };
  }

  const progress = (id: string, writer: number, step: number): JobEvent => ({
    type: 'progress',
    jobId: id,
    status: 'RUNNING',
    step,
    totalSteps: 1000,
    previews: [{ index: writer, bytes: new Uint8Array([writer, step & 255]), mimeType: 'image/png' }],
    emittedAt: Date.now(),
  });

  it('loses no event when two clients append to one job concurrently', async () => {
    const { id, published } = await newJob();
    const writers = [client(), client()];
    const N = 300;
    // All appends in flight at once on both connections: their commands interleave in Redis.
    const results = await Promise.all(
      writers.flatMap((w, writer) => Array.from({ length: N }, (_, k) => recordEvent(w, id, progress(id, writer, k + 1), TTL))),
    );
    assert.ok(results.every(Boolean));
    await waitFor(() => published.length >= 2 * N, 'every event published', 10_000);
    assert.equal(published.length, 2 * N);
    assert.deepEqual(
      published.map((p) => p.seq).sort((a, b) => a - b),
      Array.from({ length: 2 * N }, (_, i) => i + 1),
    );
    // Each writer's events all arrived, in its own order.
    for (const writer of [0, 1]) {
      const steps = published
        .filter((p) => p.event.type === 'progress' && p.event.previews[0]!.index === writer)
        .map((p) => (p.event as { step: number }).step);
      assert.deepEqual(
        steps,
        Array.from({ length: N }, (_, k) => k + 1),
      );
    }
    // The stored snapshot is the last published event's, under its sequence number.
    const stored = (await readSnapshot(writers[0]!, id))!;
    const last = published.reduce((a, b) => (b.seq > a.seq ? b : a));
    assert.equal(stored.seq, 2 * N);
    assert.equal(last.seq, 2 * N);
    assert.equal(stored.snapshot.status, 'RUNNING');
    assert.deepEqual(stored.snapshot.progress?.previews, (last.event as { previews: unknown }).previews);
    assert.equal(stored.snapshot.progress?.step, (last.event as { step: number }).step);
  });

  it('takes exactly one terminal event under concurrent writers, and nothing after it', async () => {
    const { id, published } = await newJob();
    const writers = [client(), client()];
    const completed: JobEvent = {
      type: 'completed',
      jobId: id,
      status: 'SUCCEEDED',
      result: {
        created: Date.now() / 1000,
        images: [],
        usage: { inputImages: 1, generatedImages: 0, steps: 1, batches: 1, mergedJobs: 1, processingTimeSeconds: 1, queueTimeSeconds: 0 },
      },
    };
    const cancelled: JobEvent = { type: 'cancelled', jobId: id, status: 'CANCELLED', reason: 'CLIENT' };
    const calls = writers.flatMap((w, writer) => [
      ...Array.from({ length: 100 }, (_, k) => recordEvent(w, id, progress(id, writer, k + 1), TTL)),
      recordEvent(w, id, writer === 0 ? completed : cancelled, TTL),
      ...Array.from({ length: 100 }, (_, k) => recordEvent(w, id, progress(id, writer, k + 101), TTL)),
    ]);
    const results = await Promise.all(calls);
    const accepted = results.filter(Boolean).length;
    await waitFor(() => published.length >= accepted, 'accepted events published', 10_000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(published.length, accepted);
    const terminals = published.filter((p) => p.event.type !== 'progress');
    assert.equal(terminals.length, 1, JSON.stringify(terminals.map((t) => t.event.type)));
    const terminal = terminals[0]!;
    // Nothing was appended after the terminal event, and the snapshot ends in its state.
    assert.equal(Math.max(...published.map((p) => p.seq)), terminal.seq);
    const stored = (await readSnapshot(writers[1]!, id))!;
    assert.equal(stored.seq, terminal.seq);
    assert.equal(stored.snapshot.status, terminal.event.status);
    assert.equal(await recordEvent(writers[0]!, id, progress(id, 0, 999), TTL), false);
    assert.equal(await recordEvent(writers[1]!, id, completed, TTL), false);
  });

  it('publishes and stores a result (sent once) as it was recorded', async () => {
    const { id, published } = await newJob();
    const completed: JobEvent = {
      type: 'completed',
      jobId: id,
      status: 'SUCCEEDED',
      result: {
        created: 1.5,
        images: [{ index: 0, inputIndex: 0, variant: 0, seed: 7, bytes: new Uint8Array([1, 2, 3, 250]), mimeType: 'image/png', width: 1, height: 1 }],
        usage: { inputImages: 1, generatedImages: 1, steps: 1, batches: 1, mergedJobs: 2, processingTimeSeconds: 0.25, queueTimeSeconds: 0 },
      },
    };
    assert.equal(await recordEvent(client(), id, completed, TTL), true);
    await waitFor(() => published.length === 1, 'the event published', 10_000);
    assert.deepEqual(published[0], { seq: 1, event: completed });
    const stored = (await readSnapshot(client(), id))!;
    assert.deepEqual(stored.snapshot.result, completed.result);
    assert.equal(stored.snapshot.status, 'SUCCEEDED');
  });

  it('refuses events for a job whose state is gone', async () => {
    assert.equal(await recordEvent(client(), randomUUID(), { type: 'queued', jobId: 'x', status: 'QUEUED', position: 1 }, TTL), false);
  });
});

describe('the Redis wire format', () => {
  it('carries bytes as bytes, whether a Buffer, a Uint8Array or a view into a larger buffer', () => {
    const backing = new Uint8Array([9, 1, 2, 3, 9]);
    const value = { a: Buffer.from([1, 2, 3]), b: new Uint8Array([1, 2, 3]), c: backing.subarray(1, 4), n: [{ d: Buffer.from('xyz') }] };
    const back = fromWire<{ a: Uint8Array; b: Uint8Array; c: Uint8Array; n: { d: Uint8Array }[] }>(toWire(value));
    for (const bytes of [back.a, back.b, back.c]) assert.deepEqual([...bytes], [1, 2, 3]);
    assert.ok(back.a instanceof Uint8Array);
    assert.equal(Buffer.from(back.n[0]!.d).toString(), 'xyz');
  });
});
