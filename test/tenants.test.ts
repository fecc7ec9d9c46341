/**
 * Tenants on the in-memory backend, over real HTTP, SSE and graphql-ws clients: a job belongs to
 * the credential that submitted it; another tenant gets exactly the answer an unknown id gets;
 * admins see and cancel everything; every spelling of a credential shares one rate-limit bucket;
 * wrong passwords are limited per IP; per-tenant quotas; merged jobs of different owners keep
 * their own outputs; job logs carry the owner's hash, never the credential.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { postGraphQL, postMultipart, type GraphQLResponse } from './support/graphql.js';
import { answers, basic, rawSse, rawWs } from './support/tenants.js';
import { expectedColour, maxChannelDiff, pixelAt, twoColourPng, type Rgb } from './support/images.js';

const SUBMIT =
  'mutation($images:[Upload!]!,$prompt:String!,$size:String,$steps:Int,$n:Int,$previewEvery:Int){ editImages(images:$images, prompt:$prompt, size:$size, steps:$steps, n:$n, previewEvery:$previewEvery){ id status } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { id status result { images { b64Json } } } }';
const CANCEL = 'mutation($id: ID!) { cancelEditJob(id: $id) { id status } }';

interface Logged {
  server: RunningServer;
  url: string;
  lines: string[];
  close(): Promise<void>;
}

async function start(env: Record<string, string>): Promise<Logged> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', ...env });
  const server = await startServer(config, { logger: pino({ level: 'info' }, sink) });
  return { server, url: server.url, lines, close: () => server.shutdown(1000) };
}

const RED: Rgb = [200, 60, 30];
const BLUE: Rgb = [20, 120, 220];

describe('tenants (in-memory backend)', { timeout: 240_000 }, () => {
  let s: Logged;
  let small: Buffer;
  let big: Buffer;
  const alice = { authorization: 'Bearer alice-token' };
  const bob = { authorization: 'Bearer bob-token' };
  const admin = { authorization: 'Bearer root-token' };
  const carol = { authorization: basic('carol', 'pw1') };
  const dave = { authorization: basic('dave', 'pw2') };

  before(async () => {
    s = await start({ AUTH_TOKENS: 'alice-token,bob-token', AUTH_ADMIN_TOKENS: 'root-token', AUTH_BASIC: 'carol:pw1,dave:pw2', TENANT_MAX_QUEUED_JOBS: '3' });
    small = await twoColourPng(32, 32, RED, RED);
    big = await twoColourPng(512, 512, RED, BLUE);
  });
  after(async () => s.close());

  const submit = async (headers: Record<string, string>, vars: Record<string, unknown>, files: Buffer[]) => {
    const res = await postMultipart<{ editImages: { id: string } }>(
      s.url,
      SUBMIT,
      { prompt: 'sepia', ...vars },
      files.map((bytes, i) => ({ bytes, name: `${i}.png` })),
      { 'apollo-require-preflight': 'true', ...headers },
    );
    return res;
  };
  const submitOk = async (headers: Record<string, string>, vars: Record<string, unknown>, files: Buffer[]): Promise<string> => {
    const res = await submit(headers, vars, files);
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    return res.body.data!.editImages.id;
  };
  const status = async (id: string, headers: Record<string, string>) =>
    (await postGraphQL<{ editJob: { status: string } | null }>(s.url, JOB, { id }, headers)).body.data?.editJob?.status ?? null;

  it('another tenant (bearer or Basic) gets exactly the answers an unknown id gets: editJob, cancel, SSE, graphql-ws', async () => {
    // A long job, so that it is queued or running while the others try it.
    const aliceJob = await submitOk(alice, { size: '512x512', steps: 100, previewEvery: 1 }, [big, big, big, big]);
    const carolJob = await submitOk(carol, { size: '32x32', steps: 2 }, [small]);
    for (const [victim, intruder] of [
      [aliceJob, bob],
      [carolJob, dave],
      [aliceJob, carol],
      [carolJob, alice],
    ] as const) {
      const foreign = await answers(s.url, victim, intruder.authorization);
      const unknown = await answers(s.url, randomUUID(), intruder.authorization);
      assert.deepEqual(foreign, unknown);
      assert.deepEqual((foreign.job as { body: unknown }).body, { data: { editJob: null } });
      assert.equal((foreign.cancel as { body: GraphQLResponse<unknown> }).body.errors?.[0]?.extensions?.code, 'NOT_FOUND');
      assert.match((foreign.sse as { text: string }).text, /NOT_FOUND/);
      assert.match(String(foreign.ws), /NOT_FOUND/);
    }
    // Nobody but alice (and admins) changed her job: it is still going.
    assert.ok(['QUEUED', 'RUNNING'].includes((await status(aliceJob, alice))!));
    // An admin sees it, watches it (previews included) and cancels it; the owner sees why.
    assert.ok(['QUEUED', 'RUNNING'].includes((await status(aliceJob, admin))!));
    const watched = await rawWs(s.url.replace(/^http/, 'ws') + '/graphql', aliceJob, admin.authorization, 20_000);
    assert.match(watched, /"type":"next"/);
    const cancelled = await postGraphQL<{ cancelEditJob: { id: string } }>(s.url, CANCEL, { id: aliceJob }, admin);
    assert.equal(cancelled.body.data!.cancelEditJob.id, aliceJob);
    const sse = await rawSse(s.url, aliceJob, alice.authorization, 60_000);
    assert.match(sse.text, /"__typename":"EditCancelled","status":"CANCELLED","reason":"CLIENT"/);
    // Carol's finished result: she (and admins) can download it; dave gets null.
    for (let i = 0; i < 100 && (await status(carolJob, carol)) !== 'SUCCEEDED'; i++) await new Promise((r) => setTimeout(r, 200));
    const own = await postGraphQL<{ editJob: { result: { images: unknown[] } } }>(s.url, JOB, { id: carolJob }, carol);
    assert.equal(own.body.data!.editJob.result.images.length, 1);
    assert.equal(
      (await postGraphQL<{ editJob: unknown }>(s.url, JOB, { id: carolJob }, { authorization: basic('dave', 'pw2', false) })).body.data!.editJob,
      null,
    );
    assert.equal(await status(carolJob, admin), 'SUCCEEDED');
    // Padding variants of carol's Basic credentials are carol.
    assert.equal(await status(carolJob, { authorization: basic('carol', 'pw1', false) }), 'SUCCEEDED');
  });

  it('logs job ids only with the owner hash, and /metrics carries no job ids or owners', async () => {
    const id = await submitOk(bob, { size: '32x32', steps: 2 }, [small]);
    for (let i = 0; i < 100 && (await status(id, bob)) !== 'SUCCEEDED'; i++) await new Promise((r) => setTimeout(r, 200));
    const queued = s.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.jobId === id);
    assert.ok(queued.length > 0);
    for (const line of queued) assert.match(String(line.owner), /^[0-9a-f]{12}$/);
    assert.ok(!s.lines.some((l) => /alice-token|bob-token|root-token|pw1|pw2/.test(l)), 'no credential in the log');
    const metrics = await (await fetch(`${s.url}/metrics`, { headers: bob })).text();
    assert.ok(!metrics.includes(id));
    assert.doesNotMatch(metrics, /owner|tenant/);
  });

  it('refuses a tenant over its quota with QUOTA_EXCEEDED, while another tenant is not refused', async () => {
    // Three unfinished jobs are allowed per tenant (TENANT_MAX_QUEUED_JOBS=3); a long one holds the pipeline.
    const blocker = await submitOk(admin, { size: '512x512', steps: 100 }, [big]);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await submitOk(bob, { size: '32x32', steps: 2 }, [small]));
    const refused = await submit(bob, { size: '32x32', steps: 2 }, [small]);
    assert.equal(refused.body.errors?.[0]?.extensions?.code, 'QUOTA_EXCEEDED');
    assert.match(refused.body.errors![0]!.message, /tenant quota/);
    const rest = new FormData();
    rest.set('images', new Blob([new Uint8Array(small)]), 'a.png');
    rest.set('prompt', 'sepia');
    const restRefused = await fetch(`${s.url}/v1/images/edits`, { method: 'POST', body: rest, headers: bob });
    assert.equal(restRefused.status, 429);
    assert.equal(((await restRefused.json()) as { error: { code: string } }).error.code, 'QUOTA_EXCEEDED');
    // Alice is not affected by bob's quota.
    const aliceId = await submitOk(alice, { size: '32x32', steps: 2 }, [small]);
    // Cancelling one of bob's jobs gives its place back.
    await postGraphQL(s.url, CANCEL, { id: ids[0] }, bob);
    const again = await submitOk(bob, { size: '32x32', steps: 2 }, [small]);
    for (const id of [...ids.slice(1), again, aliceId, blocker]) await postGraphQL(s.url, CANCEL, { id }, admin);
  });

  it('merges jobs of different owners into one pipeline call, each getting only its own outputs', async () => {
    const blocker = await submitOk(admin, { size: '512x512', steps: 30 }, [big]);
    const blue = await twoColourPng(32, 32, BLUE, BLUE);
    const a = await submitOk(alice, { size: '32x32', steps: 3, n: 1 }, [small]);
    const b = await submitOk(bob, { size: '32x32', steps: 3, n: 2 }, [blue]);
    const watch = async (id: string, headers: Record<string, string>) => {
      const text = (await rawSse(s.url, id, headers.authorization!, 120_000)).text;
      const done = text
        .split('\n')
        .filter((l) => l.startsWith('data:') && l.slice(5).trim())
        .map(
          (l) =>
            JSON.parse(l.slice(5)) as {
              data: {
                editJobEvents: { __typename: string; result?: { images: { b64Json: string }[]; usage: { mergedJobs: number; generatedImages: number } } };
              };
            },
        )
        .map((e) => e.data.editJobEvents)
        .find((e) => e.__typename === 'EditCompleted');
      assert.ok(done, text);
      return done.result!;
    };
    const [ra, rb] = await Promise.all([watch(a, alice), watch(b, bob)]);
    await watch(blocker, admin);
    assert.equal(ra.usage.mergedJobs, 2);
    assert.equal(rb.usage.mergedJobs, 2);
    assert.equal(ra.images.length, 1);
    assert.equal(rb.images.length, 2);
    assert.ok(maxChannelDiff(await pixelAt(Buffer.from(ra.images[0]!.b64Json, 'base64'), 16, 16), expectedColour(RED, 'sepia')) <= 3);
    for (const img of rb.images) assert.ok(maxChannelDiff(await pixelAt(Buffer.from(img.b64Json, 'base64'), 16, 16), expectedColour(BLUE, 'sepia')) <= 3);
  });
});

describe('limits keyed on identity (in-memory)', { timeout: 60_000 }, () => {
  it('every spelling of one credential shares one bucket (HTTP and graphql-ws); wrong passwords are limited per IP', async () => {
    const s = await start({ AUTH_TOKENS: 'alice-token', AUTH_BASIC: 'carol:pw1', RATE_LIMIT_PER_MINUTE: '10', AUTH_FAIL_LIMIT: '5', LOG_LEVEL: 'silent' });
    try {
      const spellings = [
        'Bearer alice-token',
        'bearer alice-token',
        'BEARER alice-token',
        'Bearer  alice-token',
        'Bearer\talice-token',
        ' Bearer alice-token',
        'Bearer alice-token  ',
        'bEaReR \t alice-token',
      ];
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++)
        statuses.push((await postGraphQL(s.url, '{ models { id } }', {}, { authorization: spellings[i % spellings.length]! })).status);
      assert.equal(statuses.filter((x) => x === 200).length, 10, statuses.join(','));
      assert.equal(statuses.filter((x) => x === 429).length, 20);
      // graphql-ws with lower-case "bearer" is the same principal: its operation is refused too.
      const ws = await rawWs(s.url.replace(/^http/, 'ws') + '/graphql', 'x', 'bearer alice-token');
      assert.match(ws, /RATE_LIMITED/);
      // Basic padding variants: one bucket.
      const basics: number[] = [];
      for (let i = 0; i < 12; i++)
        basics.push((await postGraphQL(s.url, '{ models { id } }', {}, { authorization: basic('carol', 'pw1', i % 2 === 0) })).status);
      assert.deepEqual(basics, [...Array(10).fill(200), 429, 429]);

      // Wrong Basic passwords: 5 × 401, then 429 with Retry-After, for good credentials too.
      const wrong: { status: number; retry: string | null }[] = [];
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${s.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: basic('carol', `guess-${i}`) },
          body: '{"query":"{ __typename }"}',
        });
        await res.arrayBuffer();
        wrong.push({ status: res.status, retry: res.headers.get('retry-after') });
      }
      const ms = performance.now() - t0;
      assert.deepEqual(
        wrong.map((w) => w.status),
        [...Array(5).fill(401), ...Array(15).fill(429)],
      );
      assert.ok(Number(wrong[5]!.retry) >= 1);
      const good = await fetch(`${s.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('carol', 'pw1') },
        body: '{"query":"{ __typename }"}',
      });
      assert.equal(good.status, 429, 'a blocked address is not answered even with the right password');
      // graphql-ws connection_init from the blocked address: closed with 4429.
      assert.equal(await rawWs(s.url.replace(/^http/, 'ws') + '/graphql', 'x', basic('carol', 'guess')), 'closed 4429');
      console.log(
        `# 20 wrong Basic passwords in ${ms.toFixed(0)} ms: ${wrong.filter((w) => w.status === 401).length} × 401, ${wrong.filter((w) => w.status === 429).length} × 429`,
      );
    } finally {
      await s.close();
    }
  });
});

describe('EditCancelled.reason', { timeout: 60_000 }, () => {
  it('is SHUTDOWN for a job the server cancels when its shutdown grace period runs out', async () => {
    const s = await start({ LOG_LEVEL: 'silent' });
    const big = await twoColourPng(512, 512, RED, BLUE);
    const res = await postMultipart<{ editImages: { id: string } }>(
      s.url,
      SUBMIT,
      { prompt: 'sepia', size: '512x512', steps: 100 },
      [big, big, big, big].map((bytes, i) => ({ bytes, name: `${i}.png` })),
    );
    const id = res.body.data!.editImages.id;
    const watching = rawSse(s.url, id, '', 30_000);
    await new Promise((r) => setTimeout(r, 300));
    await s.server.shutdown(100);
    assert.match((await watching).text, /"__typename":"EditCancelled","status":"CANCELLED","reason":"SHUTDOWN"/);
  });
});
