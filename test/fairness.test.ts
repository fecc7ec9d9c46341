/**
 * Fair scheduling on the in-memory backend, over real HTTP: tenants take turns at the engine, so
 * one tenant's backlog holds another's job back by at most the call already running; `priority`
 * orders a tenant's own jobs, and only admins may raise it. Order is read from the "job running"
 * log lines (one per job, in the order calls start).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';

const SUBMIT =
  'mutation($images:[Upload!]!,$prompt:String!,$size:String,$steps:Int,$priority:Int){ editImages(images:$images, prompt:$prompt, size:$size, steps:$steps, priority:$priority){ id status queuePosition } }';

describe('fair scheduling (in-memory backend)', { timeout: 240_000 }, () => {
  let server: RunningServer;
  const lines: { jobId?: string; msg: string }[] = [];
  let small: Buffer;
  let big: Buffer;
  const alice = { authorization: 'Bearer alice-token', 'apollo-require-preflight': 'true' };
  const bob = { authorization: 'Bearer bob-token', 'apollo-require-preflight': 'true' };
  const root = { authorization: 'Bearer root-token', 'apollo-require-preflight': 'true' };

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { jobId?: string; msg: string });
        done();
      },
    });
    // Merging off: every job is its own pipeline call, so the start order is the call order.
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      AUTH_TOKENS: 'alice-token,bob-token',
      AUTH_ADMIN_TOKENS: 'root-token',
      MERGE_JOBS: '0',
      TENANT_MAX_QUEUED_JOBS: '0',
    });
    server = await startServer(config, { logger: pino({ level: 'info' }, sink) });
    small = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    big = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
  });
  after(async () => server.shutdown(60_000));

  const submit = async (headers: Record<string, string>, vars: Record<string, unknown>, image = small) => {
    const res = await postMultipart<{ editImages: { id: string; queuePosition: number | null } }>(
      server.url,
      SUBMIT,
      { prompt: 'sepia', size: '32x32', steps: 2, ...vars },
      [{ bytes: image, name: 'a.png' }],
      headers,
    );
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    return res.body.data!.editImages;
  };
  const started = (): string[] => lines.filter((l) => l.msg === 'job running').map((l) => l.jobId!);
  const idle = async (ids: string[]): Promise<void> => {
    while (!ids.every((id) => lines.some((l) => l.jobId === id && l.msg === 'job succeeded'))) await new Promise((r) => setTimeout(r, 50));
  };

  it("starts B's one job right after the call running when it arrives, ahead of A's 20 queued jobs", async () => {
    const blocker = await submit(alice, { size: '512x512', steps: 30 }, big);
    const backlog: string[] = [];
    for (let i = 0; i < 20; i++) backlog.push((await submit(alice, {})).id);
    const b = await submit(bob, {});
    assert.equal(b.queuePosition, 1, 'B is next in line');
    await idle([blocker.id, ...backlog, b.id]);
    const order = started();
    const queuedAt = lines.findIndex((l) => l.jobId === b.id && l.msg === 'job queued');
    const runningAt = lines.findIndex((l) => l.jobId === b.id && l.msg === 'job running');
    const between = lines.slice(queuedAt, runningAt).filter((l) => l.msg === 'job running');
    assert.deepEqual(between, [], 'no call started between B being queued and B starting');
    // A's backlog really was there: most of it ran after B.
    assert.ok(backlog.filter((id) => order.indexOf(id) > order.indexOf(b.id)).length >= 15, order.join('\n'));
    // A's own jobs kept their submission order.
    const aOrder = order.filter((id) => backlog.includes(id));
    assert.deepEqual(aOrder, backlog);
  });

  it("orders a tenant's own queued jobs by priority; only an admin may raise it", async () => {
    const blocker = await submit(root, { size: '512x512', steps: 30 }, big);
    const normal = [(await submit(root, {})).id, (await submit(root, {})).id];
    const low = await submit(root, { priority: -3 });
    const high = await submit(root, { priority: 5 });
    const lowered = await submit(alice, { priority: -10 });
    await idle([blocker.id, ...normal, low.id, high.id, lowered.id]);
    const order = started().filter((id) => [...normal, low.id, high.id].includes(id));
    assert.deepEqual(order, [high.id, ...normal, low.id]);

    for (const priority of [1, 10]) {
      const res = await postMultipart(server.url, SUBMIT, { prompt: 'x', priority }, [{ bytes: small, name: 'a.png' }], alice);
      assert.equal(res.body.errors?.[0]?.extensions?.code, 'FORBIDDEN', JSON.stringify(res.body));
    }
    const res = await postMultipart(server.url, SUBMIT, { prompt: 'x', priority: 11 }, [{ bytes: small, name: 'a.png' }], root);
    assert.equal(res.body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(res.body));

    // REST: the same field and the same refusal.
    const form = new FormData();
    form.set('image', new Blob([new Uint8Array(small)]), 'a.png');
    form.set('prompt', 'x');
    form.set('priority', '2');
    const rest = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form, headers: { authorization: alice.authorization } });
    assert.equal(rest.status, 403);
    assert.equal(((await rest.json()) as { error: { code: string } }).error.code, 'FORBIDDEN');
  });
});
