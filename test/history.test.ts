/**
 * Job history (`editJobs`) and client metadata, in memory and on Redis (two API processes: a job
 * submitted to one is listed by the other): newest first, cursor pagination, the status filter,
 * one tenant's listing never showing another's jobs, admins seeing everyone's, metadata echoed
 * (GraphQL, REST, webhook bodies) and refused past its bound.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { type GraphQLResponse, postGraphQL } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';
import { startTestServer, type TestServer } from './support/server.js';

const SUBMIT = `mutation($urls:[String!]!, $metadata: JSON, $size: String, $steps: Int, $hook: String){
  editImages(imageUrls:$urls, prompt:"sepia", size:$size, steps:$steps, metadata:$metadata, webhookUrl:$hook){ id status metadata } }`;
const LIST = `query($first: Int, $after: String, $status: JobStatus){ editJobs(first:$first, after:$after, status:$status){
  edges { cursor node { id status metadata } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`;
const JOB = 'query($id: ID!){ editJob(id:$id){ id status metadata } }';
const CANCEL = 'mutation($id: ID!){ cancelEditJob(id:$id){ id status } }';

type Job = { id: string; status: string; metadata: unknown };
type Page = {
  editJobs: {
    edges: { cursor: string; node: Job }[];
    nodes: { id: string }[];
    pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  };
};
const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const codeOf = (b: GraphQLResponse<unknown>): string | undefined => b.errors?.[0]?.extensions?.code;

/** Everything that holds whatever the backend: `submitTo` takes jobs, `listOn` lists them (another process on Redis). */
function historySpec(ctx: { submitTo: () => string; listOn: () => string; urls: () => string[]; setUp?: () => Promise<void> }): void {
  const submit = async (token: string, metadata: unknown, extra: Record<string, unknown> = {}): Promise<Job> => {
    const r = await postGraphQL<{ editImages: Job }>(ctx.submitTo(), SUBMIT, { urls: ctx.urls(), metadata, size: '32x32', steps: 2, ...extra }, auth(token));
    assert.equal(r.body.errors, undefined, JSON.stringify(r.body));
    return r.body.data!.editImages;
  };
  const list = async (token: string, vars: Record<string, unknown>): Promise<Page['editJobs']> => {
    const r = await postGraphQL<Page>(ctx.listOn(), LIST, vars, auth(token));
    assert.equal(r.body.errors, undefined, JSON.stringify(r.body));
    return r.body.data!.editJobs;
  };
  /** Every page of a listing, following endCursor. */
  const all = async (token: string, vars: Record<string, unknown>, first: number): Promise<Job[]> => {
    const jobs: Job[] = [];
    let after: string | null = null;
    for (;;) {
      const page = await list(token, { ...vars, first, after });
      assert.ok(page.edges.length <= first);
      assert.deepEqual(
        page.nodes.map((n) => n.id),
        page.edges.map((e) => e.node.id),
      );
      assert.equal(page.pageInfo.hasPreviousPage, after !== null);
      jobs.push(...page.edges.map((e) => e.node));
      if (!page.pageInfo.hasNextPage) return jobs;
      assert.equal(page.pageInfo.endCursor, page.edges.at(-1)!.cursor);
      after = page.pageInfo.endCursor;
    }
  };

  it('lists the caller’s jobs newest first, page by page, with their metadata; never another tenant’s; admins see all', async () => {
    await ctx.setUp?.();
    const mine: Job[] = [];
    for (let i = 0; i < 5; i++) mine.push(await submit('alice', { order: 'o-1', i }));
    const bobs = [await submit('bob', { owner: 'bob' }), await submit('bob', null)];
    assert.deepEqual(mine[0]!.metadata, { order: 'o-1', i: 0 });
    assert.equal(bobs[1]!.metadata, null);
    const alices = await all('alice', {}, 2);
    const ids = alices.map((j) => j.id);
    // Newest first: alice's five in reverse order of submission (the same ids whatever the page size).
    assert.deepEqual(
      ids.filter((id) => mine.some((m) => m.id === id)),
      mine.map((m) => m.id).reverse(),
    );
    assert.deepEqual(
      (await all('alice', {}, 100)).map((j) => j.id),
      ids,
    );
    assert.deepEqual(alices.find((j) => j.id === mine[3]!.id)!.metadata, { order: 'o-1', i: 3 });
    for (const b of bobs) assert.ok(!ids.includes(b.id), 'bob’s job listed for alice');
    const bobList = (await all('bob', {}, 100)).map((j) => j.id);
    for (const m of mine) assert.ok(!bobList.includes(m.id), 'alice’s job listed for bob');
    assert.deepEqual(
      bobList.filter((id) => bobs.some((b) => b.id === id)),
      bobs.map((b) => b.id).reverse(),
    );
    const everyone = (await all('root', {}, 3)).map((j) => j.id);
    for (const j of [...mine, ...bobs]) assert.ok(everyone.includes(j.id), `admin listing lacks ${j.id}`);
  });

  it('filters by status', async () => {
    const job = await submit('carol', { tag: 'cancel-me' });
    await postGraphQL(ctx.submitTo(), CANCEL, { id: job.id }, auth('carol'));
    await waitFor(
      // Terminal, not merely past QUEUED: a job cancelled while RUNNING is RUNNING until its step ends.
      async () =>
        ['CANCELLED', 'SUCCEEDED'].includes(
          (await postGraphQL<{ editJob: Job }>(ctx.listOn(), JOB, { id: job.id }, auth('carol'))).body.data?.editJob.status ?? '',
        ),
      'cancel',
    );
    const { status } = (await postGraphQL<{ editJob: Job }>(ctx.listOn(), JOB, { id: job.id }, auth('carol'))).body.data!.editJob;
    const other = status === 'CANCELLED' ? 'SUCCEEDED' : 'CANCELLED';
    const inStatus = await all('carol', { status }, 10);
    assert.ok(inStatus.some((j) => j.id === job.id));
    assert.ok(inStatus.every((j) => j.status === status));
    assert.ok(!(await all('carol', { status: other }, 10)).some((j) => j.id === job.id));
  });

  it('refuses bad pages and bad metadata with coded errors', async () => {
    for (const vars of [{ first: 0 }, { first: 101 }, { after: 'not-a-cursor' }]) {
      const r = await postGraphQL<Page>(ctx.listOn(), LIST, vars, auth('alice'));
      assert.equal(codeOf(r.body), 'BAD_USER_INPUT', JSON.stringify(vars));
    }
    const big = await postGraphQL(ctx.submitTo(), SUBMIT, { urls: ctx.urls(), metadata: { text: 'x'.repeat(5000) } }, auth('alice'));
    assert.equal(codeOf(big.body), 'PAYLOAD_TOO_LARGE', JSON.stringify(big.body));
    const list = await postGraphQL(ctx.submitTo(), SUBMIT, { urls: ctx.urls(), metadata: [1, 2] }, auth('alice'));
    assert.equal(codeOf(list.body), 'BAD_USER_INPUT', JSON.stringify(list.body));
  });
}

const TOKENS = { AUTH_TOKENS: 'alice,bob,carol', AUTH_ADMIN_TOKENS: 'root' };

describe('job history in memory', { timeout: 180_000 }, () => {
  let server: TestServer;
  let urls: string[];
  let hook: Server;
  const bodies: { data: { id: string; metadata: unknown } }[] = [];

  before(async () => {
    hook = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        bodies.push(JSON.parse(text));
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    server = await startTestServer({
      ...TOKENS,
      MERGE_JOBS: '0',
      WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
      WEBHOOK_ALLOW_PRIVATE: '1',
    });
    urls = [`data:image/png;base64,${(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220])).toString('base64')}`];
  });
  after(async () => {
    await server.close();
    hook.close();
  });

  historySpec({ submitTo: () => server.url, listOn: () => server.url, urls: () => urls });

  it('sends metadata in webhook bodies and echoes REST metadata; refuses REST metadata that is not a JSON object', async () => {
    const { port } = hook.address() as { port: number };
    const r = await postGraphQL<{ editImages: Job }>(
      server.url,
      SUBMIT,
      { urls, metadata: { order: 42 }, size: '32x32', steps: 2, hook: `http://127.0.0.1:${port}/hook` },
      auth('alice'),
    );
    const id = r.body.data!.editImages.id;
    await waitFor(() => bodies.some((b) => b.data.id === id), 'the completed webhook');
    for (const b of bodies.filter((x) => x.data.id === id)) assert.deepEqual(b.data.metadata, { order: 42 });

    const form = (metadata: string): FormData => {
      const f = new FormData();
      f.set('image', new Blob([Buffer.from(urls[0]!.split(',')[1]!, 'base64')]), 'a.png');
      f.set('prompt', 'sepia');
      f.set('size', '32x32');
      f.set('num_inference_steps', '2');
      f.set('metadata', metadata);
      return f;
    };
    const ok = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form('{"order":"r-1"}'), headers: auth('alice') });
    assert.equal(ok.status, 200);
    assert.deepEqual(((await ok.json()) as { metadata: unknown }).metadata, { order: 'r-1' });
    for (const bad of ['{not json', '"a string"']) {
      const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form(bad), headers: auth('alice') });
      assert.equal(res.status, 400);
      const { error } = (await res.json()) as { error: { code: string; param: string } };
      assert.deepEqual([error.code, error.param], ['BAD_USER_INPUT', 'metadata']);
    }
  });
});

describe('job history on Redis (two API processes)', { timeout: 240_000 }, () => {
  let redisServer: ChildProcess;
  let redis: Redis;
  const procs: Proc[] = [];
  let apis: string[] = [];
  let urls: string[];

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...TOKENS, LOG_LEVEL: 'warn' };
    const ports = [await freePort(), await freePort()];
    apis = ports.map((p) => `http://127.0.0.1:${p}`);
    for (const port of ports) procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }));
    procs.push(startServerProcess({ ...env, ROLE: 'worker' }));
    for (const api of apis) await waitFor(async () => (await fetch(`${api}/healthz`)).ok, `${api} health`, 120_000);
    redis = new Redis(env.REDIS_URL);
    urls = [`data:image/png;base64,${(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220])).toString('base64')}`];
  });
  after(() => {
    redis?.disconnect();
    for (const p of procs) p.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  historySpec({ submitTo: () => apis[0]!, listOn: () => apis[1]!, urls: () => urls });

  it("gives a listed job's result when it is selected", async () => {
    const r = await postGraphQL<{ editImages: Job }>(apis[0]!, SUBMIT, { urls, size: '32x32', steps: 2 }, auth('alice'));
    const id = r.body.data!.editImages.id;
    await waitFor(async () => (await postGraphQL<{ editJob: Job }>(apis[1]!, JOB, { id }, auth('alice'))).body.data?.editJob.status === 'SUCCEEDED', 'the job');
    const q = '{ editJobs(first: 1, status: SUCCEEDED) { nodes { id result { images { width b64Json } } } } }';
    const page = await postGraphQL<{ editJobs: { nodes: { id: string; result: { images: { width: number; b64Json: string }[] } | null }[] } }>(
      apis[1]!,
      q,
      {},
      auth('alice'),
    );
    const node = page.body.data!.editJobs.nodes[0]!;
    assert.equal(node.id, id);
    assert.equal(node.result?.images[0]?.width, 32);
    assert.ok(node.result!.images[0]!.b64Json.length > 0);
  });

  it('keeps every history key with a TTL, and drops entries of jobs that are gone', async () => {
    const history = await redis.keys('ie:history*');
    assert.ok(history.length >= 4, history.join(','));
    for (const k of history) assert.ok((await redis.pttl(k)) > 0, `${k} has no TTL`);
    const page = await postGraphQL<Page>(apis[1]!, LIST, { first: 100 }, auth('alice'));
    const gone = page.body.data!.editJobs.edges[0]!.node.id;
    await redis.del(`ie:job:${gone}`);
    const after = await postGraphQL<Page>(apis[1]!, LIST, { first: 100 }, auth('alice'));
    assert.ok(!after.body.data!.editJobs.edges.some((e) => e.node.id === gone));
    // Dropped from alice's set as it was met; from the admins' one when an admin meets it.
    for (const k of history.filter((k) => k !== 'ie:history')) assert.equal(await redis.zscore(k, gone), null, k);
    assert.notEqual(await redis.zscore('ie:history', gone), null);
    await postGraphQL<Page>(apis[1]!, LIST, { first: 100 }, auth('root'));
    assert.equal(await redis.zscore('ie:history', gone), null);
  });
});
