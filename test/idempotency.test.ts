/**
 * Idempotent submits: the same principal and Idempotency-Key (header or `idempotencyKey`) give one
 * job, in memory and across two API processes on one Redis; the same key with another request is
 * IDEMPOTENCY_CONFLICT; keys are per tenant.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';
import { startTestServer, type TestServer } from './support/server.js';

const SUBMIT = 'mutation($images:[Upload!]!, $prompt: String!){ editImages(images:$images, prompt:$prompt, size:"32x32", steps:2){ id status } }';
const SUBMIT_URLS =
  'mutation($urls:[String!]!, $key: String){ editImages(imageUrls:$urls, prompt:"sepia", size:"32x32", steps:2, idempotencyKey:$key){ id status } }';

type Submitted = { editImages: { id: string; status: string } | null };

function submitter(img: Buffer) {
  return (api: string, token: string, key: string | null, prompt = 'sepia') =>
    postMultipart<Submitted>(api, SUBMIT, { prompt }, [{ bytes: img, name: 'a.png' }], {
      'apollo-require-preflight': 'true',
      authorization: `Bearer ${token}`,
      ...(key ? { 'idempotency-key': key } : {}),
    });
}

const codeOf = (r: { body: { errors?: { extensions?: { code?: string } }[] } }): string | undefined => r.body.errors?.[0]?.extensions?.code;

async function metricSum(api: string, token: string, name: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
}

/** Finished jobs, read once nothing is queued or running (the earlier tests' jobs finish in the background). */
async function finishedJobs(api: string, token: string): Promise<number> {
  await waitFor(
    async () => (await metricSum(api, token, 'image_edit_queue_depth')) + (await metricSum(api, token, 'image_edit_running_jobs')) === 0,
    'an idle server',
    60_000,
  );
  return metricSum(api, token, 'image_edit_jobs_finished_total');
}

describe('idempotent submits in memory', { timeout: 120_000 }, () => {
  let server: TestServer;
  let img: Buffer;
  let submit: ReturnType<typeof submitter>;

  before(async () => {
    server = await startTestServer({ AUTH_TOKENS: 'alice,bob' });
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    submit = submitter(img);
  });
  after(() => server.close());

  it('gives one job for the same key, sent twice at once and again later', async () => {
    const key = randomUUID();
    const [a, b] = await Promise.all([submit(server.url, 'alice', key), submit(server.url, 'alice', key)]);
    assert.equal(a.body.errors, undefined, JSON.stringify(a.body));
    assert.equal(b.body.errors, undefined, JSON.stringify(b.body));
    assert.equal(a.body.data!.editImages!.id, b.body.data!.editImages!.id);
    const c = await submit(server.url, 'alice', key);
    assert.equal(c.body.data!.editImages!.id, a.body.data!.editImages!.id);
    const d = await submit(server.url, 'alice', null);
    assert.notEqual(d.body.data!.editImages!.id, a.body.data!.editImages!.id);
  });

  it('refuses the same key with a different request (IDEMPOTENCY_CONFLICT), and keeps keys per tenant', async () => {
    const key = randomUUID();
    const first = await submit(server.url, 'alice', key);
    const other = await submit(server.url, 'alice', key, 'invert');
    assert.equal(codeOf(other), 'IDEMPOTENCY_CONFLICT', JSON.stringify(other.body));
    const bobs = await submit(server.url, 'bob', key, 'invert');
    assert.equal(bobs.body.errors, undefined, JSON.stringify(bobs.body));
    assert.notEqual(bobs.body.data!.editImages!.id, first.body.data!.editImages!.id);
  });

  it('takes the key as an argument too; header and argument must agree; bad keys are refused', async () => {
    const urls = [`data:image/png;base64,${img.toString('base64')}`];
    const key = randomUUID();
    const auth = { authorization: 'Bearer alice' };
    const a = await postGraphQL<Submitted>(server.url, SUBMIT_URLS, { urls, key }, auth);
    const b = await postGraphQL<Submitted>(server.url, SUBMIT_URLS, { urls, key }, auth);
    assert.equal(a.body.data!.editImages!.id, b.body.data!.editImages!.id);
    const differ = await postGraphQL<Submitted>(server.url, SUBMIT_URLS, { urls, key }, { ...auth, 'idempotency-key': 'another' });
    assert.equal(codeOf(differ), 'BAD_USER_INPUT', JSON.stringify(differ.body));
    const bad = await postGraphQL<Submitted>(server.url, SUBMIT_URLS, { urls, key: 'has space' }, auth);
    assert.equal(codeOf(bad), 'BAD_USER_INPUT', JSON.stringify(bad.body));
  });

  it('runs one job for two REST requests with one Idempotency-Key; another request with it gets 409', async () => {
    const key = randomUUID();
    const form = (prompt: string): FormData => {
      const f = new FormData();
      f.set('image', new Blob([new Uint8Array(img)]), 'a.png');
      f.set('prompt', prompt);
      f.set('size', '32x32');
      f.set('num_inference_steps', '2');
      return f;
    };
    const post = (prompt: string) =>
      fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form(prompt), headers: { authorization: 'Bearer alice', 'idempotency-key': key } });
    const before = await finishedJobs(server.url, 'alice');
    const first = await post('sepia');
    const second = await post('sepia');
    assert.equal(first.status, 200, await first.clone().text());
    assert.equal(second.status, 200);
    const [x, y] = [(await first.json()) as { data: unknown[] }, (await second.json()) as { data: unknown[] }];
    assert.deepEqual(x.data, y.data);
    assert.equal(await finishedJobs(server.url, 'alice'), before + 1);
    const conflict = await post('invert');
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as { error: { code: string } }).error.code, 'IDEMPOTENCY_CONFLICT');
  });
});

describe('idempotent submits across two API processes on one Redis', { timeout: 240_000 }, () => {
  let redisServer: ChildProcess;
  let redis: Redis;
  const procs: Proc[] = [];
  let apis: string[] = [];
  let submit: ReturnType<typeof submitter>;

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, AUTH_TOKENS: 'alice,bob', LOG_LEVEL: 'warn' };
    const ports = [await freePort(), await freePort()];
    apis = ports.map((p) => `http://127.0.0.1:${p}`);
    // API processes only: the jobs stay queued, which is all a submit needs.
    for (const port of ports) procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }));
    for (const api of apis) await waitFor(async () => (await fetch(`${api}/healthz`)).ok, `${api} health`, 120_000);
    redis = new Redis(env.REDIS_URL);
    submit = submitter(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]));
  });

  after(() => {
    redis?.disconnect();
    for (const p of procs) p.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  it('gives one job for two identical submits with one key, one to each process', async () => {
    const key = randomUUID();
    const [a, b] = await Promise.all([submit(apis[0]!, 'alice', key), submit(apis[1]!, 'alice', key)]);
    assert.equal(a.body.errors, undefined, JSON.stringify(a.body));
    assert.equal(b.body.errors, undefined, JSON.stringify(b.body));
    const id = a.body.data!.editImages!.id;
    assert.equal(b.body.data!.editImages!.id, id);
    assert.equal(await redis.llen('bull:image-edit:wait'), 1);
    const conflict = await submit(apis[1]!, 'alice', key, 'invert');
    assert.equal(codeOf(conflict), 'IDEMPOTENCY_CONFLICT', JSON.stringify(conflict.body));
    const bobs = await submit(apis[0]!, 'bob', key);
    assert.notEqual(bobs.body.data!.editImages!.id, id);
    const idem = await redis.keys('ie:idem:*');
    assert.equal(idem.length, 2);
    for (const k of idem) assert.ok((await redis.pttl(k)) > 23 * 3600_000, `${k} expires within 24 h`);
  });
});
