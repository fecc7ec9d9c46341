/**
 * Results in an S3-compatible bucket (S3_BUCKET), against a real S3 API server from the npm
 * registry: @20minutes/s3rver 4 (a maintained fork of s3rver; s3rver 3.7.1 accepts any SigV4
 * signature), started here on loopback with its built-in credentials (S3RVER/S3RVER). It checks
 * SigV4 signatures and presigned URLs' expiry as S3 does. A completed job's `url` (GraphQL and REST
 * `response_format=url`) is a presigned URL of the bucket that downloads the image with curl and no
 * credentials, the same bytes as `b64Json`; a changed signature, the same signature on another key
 * and a URL past its expiry get 403 from the bucket. Each read presigns a fresh URL, valid
 * RESULT_URL_TTL_SECONDS from the read but not past the job's retention. In memory and with
 * REDIS_URL (the worker stores the result before its completed event). Not checked here: that the
 * bucket refuses unsigned reads (s3rver serves them; a real bucket must be private, docs/deploy.md).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from '@20minutes/s3rver';
import type { OutputImage } from '../src/inference/editRunner.js';
import { ConfigError, loadConfig } from '../src/server/config.js';
import { S3ResultStore } from '../src/jobs/resultStore.js';
import { ResultUrls } from '../src/jobs/resultUrls.js';
import { curl, freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { waitFor } from './support/processes.js';
import { startTestServer, type TestServer } from './support/server.js';

const BUCKET = 'edit-results';
const SUBMIT = 'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"32x32", steps:2, n:2){ id } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { status error { code message } result { images { index url b64Json mimeType } } } }';
type Job = {
  status: string;
  error: { code: string; message: string } | null;
  result: { images: { index: number; url: string; b64Json: string; mimeType: string }[] } | null;
} | null;

async function finishedJob(api: string, img: Buffer): Promise<{ id: string; job: NonNullable<Job> }> {
  const sub = await postMultipart<{ editImages: { id: string } }>(api, SUBMIT, {}, [{ bytes: img, name: 'a.png' }], { 'apollo-require-preflight': 'true' });
  const id = sub.body.data?.editImages.id;
  assert.ok(id, JSON.stringify(sub.body));
  let job: Job = null;
  await waitFor(
    async () => {
      job = (await postGraphQL<{ editJob: Job }>(api, JOB, { id })).body.data!.editJob;
      return job?.status === 'SUCCEEDED' || job?.status === 'FAILED';
    },
    'the job to end',
    120_000,
  );
  assert.equal(job!.status, 'SUCCEEDED', JSON.stringify(job!.error));
  return { id, job: job! };
}

describe('results in S3 (s3rver)', { timeout: 240_000 }, () => {
  let s3: S3rver;
  let dir: string;
  let endpoint: string;
  let env: Record<string, string>;
  let img: Buffer;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 's3rver-'));
    const port = await freePort();
    s3 = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir, configureBuckets: [{ name: BUCKET, configs: [] }] });
    await s3.run();
    endpoint = `http://127.0.0.1:${port}`;
    // The AWS SDK's credential chain reads these; s3rver's built-in account.
    process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    // Jobs kept longer than their URLs' TTL: each URL gets the whole TTL.
    env = { S3_BUCKET: BUCKET, S3_ENDPOINT: endpoint, S3_PREFIX: 'out/', JOB_RETENTION_SECONDS: '7200' };
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
  });
  after(async () => {
    await s3?.close();
    rmSync(dir, { recursive: true, force: true });
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  /** Each image's URL is the bucket's, presigned, and downloads what b64Json holds; a changed one opens nothing. */
  async function checkUrls(id: string, job: NonNullable<Job>): Promise<void> {
    assert.equal(job.result!.images.length, 2);
    for (const image of job.result!.images) {
      const url = new URL(image.url);
      assert.equal(url.origin, endpoint);
      assert.equal(url.pathname, `/${BUCKET}/out/${id}/${image.index}.png`);
      assert.equal(url.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
      assert.equal(url.searchParams.get('X-Amz-Expires'), '3600');
      const got = await curl(image.url);
      assert.equal(got.status, 200, got.body.toString());
      assert.equal(got.type, 'image/png');
      assert.deepEqual(got.body, Buffer.from(image.b64Json, 'base64'));
      // A changed signature, or the same signature on another key: the bucket refuses (403).
      const sig = url.searchParams.get('X-Amz-Signature')!;
      const tampered = new URL(url);
      tampered.searchParams.set('X-Amz-Signature', `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`);
      assert.equal((await curl(tampered.href)).status, 403);
      const other = new URL(url);
      other.pathname = `/${BUCKET}/out/${id}/${1 - image.index}.png`;
      assert.equal((await curl(other.href)).status, 403);
    }
  }

  it('in memory: url is a presigned URL of the bucket (GraphQL and REST); curl downloads the image; a changed URL gets 403', async () => {
    const server: TestServer = await startTestServer(env);
    try {
      const { id, job } = await finishedJob(server.url, img);
      await checkUrls(id, job);
      // REST response_format=url: the bucket's URL too.
      const form = new FormData();
      form.set('image', new Blob([new Uint8Array(img)]), 'a.png');
      form.set('prompt', 'sepia');
      form.set('size', '32x32');
      form.set('num_inference_steps', '2');
      form.set('response_format', 'url');
      const rest = (await (await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form })).json()) as { data: { url: string }[] };
      assert.ok(rest.data, JSON.stringify(rest));
      const got = await curl(rest.data[0]!.url);
      assert.equal(got.status, 200);
      assert.ok(rest.data[0]!.url.startsWith(`${endpoint}/${BUCKET}/out/`), rest.data[0]!.url);
      assert.equal(got.body.subarray(1, 4).toString(), 'PNG');
    } finally {
      await server.close();
    }
  });

  it('with REDIS_URL: the worker puts the result in the bucket before the job completes', async () => {
    const redisPort = await freePort();
    const redis: ChildProcess = startRedisServer(redisPort);
    let server: TestServer | undefined;
    try {
      server = await startTestServer({ ...env, REDIS_URL: `redis://127.0.0.1:${redisPort}` });
      const { id, job } = await finishedJob(server.url, img);
      await checkUrls(id, job);
    } finally {
      await server?.close();
      redis.kill('SIGKILL');
    }
  });

  it('a URL read after the first has expired is signed at that read: it opens the image for the whole TTL', async () => {
    const server: TestServer = await startTestServer({ ...env, RESULT_URL_TTL_SECONDS: '2' });
    try {
      const { id, job } = await finishedJob(server.url, img);
      const first = job.result!.images[0]!.url;
      await waitFor(async () => (await curl(first)).status === 403, 'the first URL to expire', 30_000);
      const readAt = Math.floor(Date.now() / 1000);
      const again = (await postGraphQL<{ editJob: Job }>(server.url, JOB, { id })).body.data!.editJob!.result!.images[0]!.url;
      const signed = new URL(again).searchParams;
      assert.equal(signed.get('X-Amz-Expires'), '2');
      // X-Amz-Date (YYYYMMDDTHHMMSSZ): when its lifetime starts, the read, not the job's completion.
      const date = signed.get('X-Amz-Date')!.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z');
      assert.ok(Date.parse(date) / 1000 >= readAt, `${date} is before the read`);
      assert.equal((await curl(again)).status, 200);
    } finally {
      await server.close();
    }
  });

  it('a presigned URL lasts RESULT_URL_TTL_SECONDS but never past the job retention; past its expiry the bucket answers 403', async () => {
    const store = new S3ResultStore(loadConfig(env).s3Results!);
    const urls = new ResultUrls(undefined, 60, { store, retentionSeconds: 600 });
    const bytes = new Uint8Array(await twoColourPng(8, 8, [1, 2, 3], [4, 5, 6]));
    const image: OutputImage = { index: 0, inputIndex: 0, variant: 0, seed: 1, bytes, mimeType: 'image/png', width: 8, height: 8 };
    await store.store('a-job', { created: 0, images: [image] } as never);
    assert.equal(image.objectKey, 'out/a-job/0.png');
    const now = Date.now();
    const fresh = await urls.image('http://api.example', 'a-job', image, now / 1000 - 1, now);
    assert.equal(new URL(fresh).searchParams.get('X-Amz-Expires'), '60');
    assert.equal((await curl(fresh)).status, 200);
    // The job completed 590 s ago and is kept 600 s: 10 s left.
    const late = await urls.image('http://api.example', 'a-job', image, now / 1000 - 590, now);
    assert.equal(new URL(late).searchParams.get('X-Amz-Expires'), '10');
    // Signed two minutes ago with a 60 s lifetime: expired.
    const old = await urls.image('http://api.example', 'a-job', image, now / 1000 - 121, now - 120_000);
    const expired = await curl(old);
    assert.equal(expired.status, 403);
    assert.match(expired.body.toString(), /expired/i);
    // An image not in the bucket gets the server's own URL.
    assert.match(await urls.image('http://api.example', 'a-job', { index: 0 }, now / 1000, now), /^http:\/\/api\.example\/v1\/results\/a-job\/0\?expires=/);
    urls.close();
  });

  it('reads S3_* strictly', () => {
    assert.equal(loadConfig({}).s3Results, null);
    assert.deepEqual(loadConfig({ S3_BUCKET: 'b-1' }).s3Results, {
      bucket: 'b-1',
      endpoint: undefined,
      region: 'us-east-1',
      forcePathStyle: false,
      prefix: 'results/',
    });
    assert.equal(loadConfig({ S3_BUCKET: 'b-1', S3_ENDPOINT: 'http://minio:9000/' }).s3Results!.forcePathStyle, true);
    for (const [bad, message] of [
      [{ S3_ENDPOINT: endpoint }, /S3_ENDPOINT set without S3_BUCKET/],
      [{ S3_BUCKET: 'Bad_Bucket' }, /S3_BUCKET must be an S3 bucket name/],
      [{ S3_BUCKET: 'b-1', S3_ENDPOINT: 'ftp://x' }, /S3_ENDPOINT must be an http\(s\) URL/],
      [{ S3_BUCKET: 'b-1', S3_ENDPOINT: 'http://key:secret@x' }, /without credentials/],
      [{ S3_BUCKET: 'b-1', S3_REGION: 'Europe West' }, /S3_REGION/],
      [{ S3_BUCKET: 'b-1', S3_PREFIX: '/abs' }, /S3_PREFIX/],
      [{ S3_BUCKET: 'b-1', S3_FORCE_PATH_STYLE: 'maybe' }, /S3_FORCE_PATH_STYLE/],
      [{ S3_BUCKET: 'b-1', RESULT_URL_TTL_SECONDS: '604801' }, /at most 604800/],
    ] as [Record<string, string>, RegExp][])
      assert.throws(
        () => loadConfig(bad),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
        JSON.stringify(bad),
      );
  });
});
