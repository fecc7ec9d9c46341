/**
 * Result URLs: `EditedImage.url` and REST `response_format=url` download the image with curl, with
 * no credentials, until they expire (403 RESULT_URL_EXPIRED) or the job is gone (404); a changed
 * URL opens nothing (403 RESULT_URL_INVALID); with one RESULT_URL_SECRET any API process on the
 * same Redis serves a URL another one made.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { curl, freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';
import { startTestServer, type TestServer } from './support/server.js';

const SUBMIT = 'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"32x32", steps:2, n:2){ id } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { status result { images { index url b64Json mimeType } } } }';

type Job = { status: string; result: { images: { index: number; url: string; b64Json: string; mimeType: string }[] } | null } | null;

const errorCode = (body: Buffer): string => (JSON.parse(body.toString()) as { error: { code: string } }).error.code;

async function finishedJob(api: string, token: string, img: Buffer): Promise<{ id: string; job: NonNullable<Job> }> {
  const headers = { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}` };
  const sub = await postMultipart<{ editImages: { id: string } }>(api, SUBMIT, {}, [{ bytes: img, name: 'a.png' }], headers);
  const id = sub.body.data?.editImages.id;
  assert.ok(id, JSON.stringify(sub.body));
  let job: Job = null;
  await waitFor(
    async () => {
      job = (await postGraphQL<{ editJob: Job }>(api, JOB, { id }, { authorization: `Bearer ${token}` })).body.data!.editJob;
      return job?.status === 'SUCCEEDED';
    },
    'the job to succeed',
    120_000,
  );
  return { id, job: job! };
}

describe('result URLs in memory', { timeout: 180_000 }, () => {
  let server: TestServer;
  let img: Buffer;

  before(async () => {
    server = await startTestServer({ AUTH_TOKENS: 'alice,bob' });
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
  });
  after(() => server.close());

  it('downloads each image with curl and no credentials; a changed URL opens nothing', async () => {
    const { job } = await finishedJob(server.url, 'alice', img);
    const other = await finishedJob(server.url, 'bob', img);
    assert.equal(job.result!.images.length, 2);
    for (const image of job.result!.images) {
      assert.ok(image.url.startsWith(`${server.url}/v1/results/`), image.url);
      const got = await curl(image.url);
      assert.equal(got.status, 200);
      assert.equal(got.type, image.mimeType);
      assert.deepEqual(got.body, Buffer.from(image.b64Json, 'base64'));
    }
    const good = new URL(job.result!.images[0]!.url);
    const variants: [string, (u: URL) => void][] = [
      ['another index', (u) => (u.pathname = u.pathname.replace(/\/0$/, '/1'))],
      ["another tenant's job", (u) => (u.pathname = u.pathname.replace(/results\/[^/]+/, `results/${other.id}`))],
      ['a later expiry', (u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 60))],
      ['another signature', (u) => u.searchParams.set('signature', `A${u.searchParams.get('signature')!.slice(1)}`)],
      ['no signature', (u) => u.searchParams.delete('signature')],
      ['a path below', (u) => (u.pathname += '/x')],
    ];
    for (const [what, change] of variants) {
      const u = new URL(good);
      change(u);
      const got = await curl(u.toString());
      assert.equal(got.status, 403, what);
      assert.equal(errorCode(got.body), 'RESULT_URL_INVALID', what);
    }
    const past = new URL(good);
    past.searchParams.set('expires', '1000');
    const expired = await curl(past.toString());
    assert.equal(expired.status, 403);
    assert.equal(errorCode(expired.body), 'RESULT_URL_EXPIRED');
  });

  it('REST response_format=url answers in OpenAI shape with URLs only; stream with url is refused', async () => {
    const form = (extra: Record<string, string>): FormData => {
      const f = new FormData();
      f.set('image', new Blob([new Uint8Array(img)]), 'a.png');
      f.set('prompt', 'sepia');
      f.set('size', '32x32');
      f.set('num_inference_steps', '2');
      for (const [k, v] of Object.entries(extra)) f.set(k, v);
      return f;
    };
    const res = await fetch(`${server.url}/v1/images/edits`, {
      method: 'POST',
      body: form({ response_format: 'url', n: '2' }),
      headers: { authorization: 'Bearer alice' },
    });
    const body = (await res.json()) as { data: Record<string, string>[] };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.data.length, 2);
    for (const d of body.data) {
      assert.deepEqual(Object.keys(d), ['url']);
      const got = await curl(d.url!);
      assert.equal(got.status, 200);
      assert.equal(got.type, 'image/png');
    }
    const streamed = await fetch(`${server.url}/v1/images/edits`, {
      method: 'POST',
      body: form({ response_format: 'url', stream: 'true' }),
      headers: { authorization: 'Bearer alice' },
    });
    assert.equal(streamed.status, 400);
    const bad = await fetch(`${server.url}/v1/images/edits`, {
      method: 'POST',
      body: form({ response_format: 'link' }),
      headers: { authorization: 'Bearer alice' },
    });
    assert.equal(bad.status, 400);
  });
});

describe('result URLs expire, and go with their job', { timeout: 180_000 }, () => {
  let shortUrls: TestServer;
  let shortJobs: TestServer;
  let img: Buffer;

  before(async () => {
    shortUrls = await startTestServer({ RESULT_URL_TTL_SECONDS: '1' });
    shortJobs = await startTestServer({ JOB_RETENTION_SECONDS: '1' });
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
  });
  after(async () => {
    await shortUrls.close();
    await shortJobs.close();
  });

  it('403 RESULT_URL_EXPIRED once RESULT_URL_TTL_SECONDS have passed', async () => {
    const { job } = await finishedJob(shortUrls.url, 'none', img);
    const url = job.result!.images[0]!.url;
    const expires = Number(new URL(url).searchParams.get('expires'));
    await waitFor(() => Date.now() > expires * 1000 + 50, 'the expiry');
    const got = await curl(url);
    assert.equal(got.status, 403);
    assert.equal(errorCode(got.body), 'RESULT_URL_EXPIRED');
  });

  it('404 NOT_FOUND once the job is past JOB_RETENTION_SECONDS', async () => {
    const { id, job } = await finishedJob(shortJobs.url, 'none', img);
    await waitFor(async () => (await postGraphQL<{ editJob: Job }>(shortJobs.url, JOB, { id })).body.data?.editJob === null, 'the job to expire');
    const got = await curl(job.result!.images[0]!.url);
    assert.equal(got.status, 404);
    assert.equal(errorCode(got.body), 'NOT_FOUND');
  });
});

describe('result URLs across API processes on one Redis', { timeout: 240_000 }, () => {
  let redisServer: ChildProcess;
  const procs: Proc[] = [];
  let apis: string[] = [];

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, RESULT_URL_SECRET: 'test-result-secret', LOG_LEVEL: 'warn' };
    const ports = [await freePort(), await freePort()];
    apis = ports.map((p) => `http://127.0.0.1:${p}`);
    procs.push(startServerProcess({ ...env, ROLE: 'all', PORT: String(ports[0]) }));
    procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(ports[1]) }));
    for (const api of apis) await waitFor(async () => (await fetch(`${api}/healthz`)).ok, `${api} health`, 120_000);
  });
  after(() => {
    for (const p of procs) p.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  it('serves a URL made by one process from the other', async () => {
    const img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    const { job } = await finishedJob(apis[1]!, 'none', img);
    const image = job.result!.images[1]!;
    const there = new URL(image.url);
    assert.equal(there.origin, apis[1]);
    const got = await curl(`${apis[0]}${there.pathname}${there.search}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, Buffer.from(image.b64Json, 'base64'));
  });
});
