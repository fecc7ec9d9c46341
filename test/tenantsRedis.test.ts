/**
 * Tenants and limits with REDIS_URL, on a real redis-server with two API processes (ROLE=api) and
 * a worker: one rate limit and one failed-auth limit across both processes, per-tenant quotas
 * across both, and job ownership stored with the job state in Redis (another tenant gets the
 * unknown-id answers on either process; an admin sees the job).
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
import { answers, rawSse } from './support/tenants.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';

const SUBMIT = 'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"32x32", steps:2){ id status } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { id status result { images { b64Json } } } }';
const CANCEL = 'mutation($id: ID!) { cancelEditJob(id: $id) { id status } }';

describe('tenants and limits on Redis (two API processes)', { timeout: 240_000 }, () => {
  let redisServer: ChildProcess;
  let redis: Redis;
  const procs: Proc[] = [];
  let apis: string[] = [];
  let env: Record<string, string>;
  let img: Buffer;

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    env = {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      AUTH_TOKENS: 'alice-token,bob-token,rl-token,dana-token,erin-token',
      AUTH_ADMIN_TOKENS: 'root-token',
      RATE_LIMIT_PER_MINUTE: '10',
      AUTH_FAIL_LIMIT: '4',
      TENANT_MAX_QUEUED_JOBS: '2',
    };
    const ports = [await freePort(), await freePort()];
    apis = ports.map((p) => `http://127.0.0.1:${p}`);
    for (const port of ports) procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }));
    for (const api of apis) await waitFor(async () => (await fetch(`${api}/healthz`)).ok, `${api} health`);
    redis = new Redis(env.REDIS_URL!);
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
  });

  after(async () => {
    redis?.disconnect();
    for (const p of procs) p.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  const submit = (api: string, token: string) =>
    postMultipart<{ editImages: { id: string; status: string } }>(api, SUBMIT, {}, [{ bytes: img, name: 'a.png' }], {
      'apollo-require-preflight': 'true',
      authorization: `Bearer ${token}`,
    });

  it('enforces one rate limit across both API processes, whatever the spelling of the credential', async () => {
    const spellings = ['Bearer rl-token', 'bearer rl-token', 'BEARER  rl-token', 'Bearer\trl-token'];
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++)
      statuses.push((await postGraphQL(apis[i % 2]!, '{ models { id } }', {}, { authorization: spellings[i % spellings.length]! })).status);
    const ok = statuses.filter((s) => s === 200).length;
    console.log(`# 20 requests alternating over 2 API processes, limit 10/min: ${ok} × 200, ${20 - ok} × 429`);
    assert.equal(ok, 10, statuses.join(','));
    assert.deepEqual(statuses.slice(10), Array(10).fill(429));
  });

  it('applies per-tenant quotas across both processes; another tenant is not refused', async () => {
    const a = await submit(apis[0]!, 'dana-token');
    const b = await submit(apis[1]!, 'dana-token');
    assert.equal(a.body.errors, undefined, JSON.stringify(a.body.errors));
    assert.equal(b.body.errors, undefined, JSON.stringify(b.body.errors));
    for (const api of apis) {
      const refused = await submit(api, 'dana-token');
      assert.equal(refused.body.errors?.[0]?.extensions?.code, 'QUOTA_EXCEEDED', JSON.stringify(refused.body));
    }
    const erin = await submit(apis[0]!, 'erin-token');
    assert.equal(erin.body.errors, undefined);
    // Cancelling a queued job gives its place back, on any process.
    await postGraphQL(apis[1]!, CANCEL, { id: a.body.data!.editImages.id }, { authorization: 'Bearer dana-token' });
    const again = await submit(apis[1]!, 'dana-token');
    assert.equal(again.body.errors, undefined, JSON.stringify(again.body.errors));
    const cancelled = await rawSse(apis[0]!, a.body.data!.editImages.id, 'Bearer dana-token');
    assert.match(cancelled.text, /"reason":"CLIENT"/);
    for (const id of [b.body.data!.editImages.id, again.body.data!.editImages.id, erin.body.data!.editImages.id])
      await postGraphQL(apis[0]!, CANCEL, { id }, { authorization: 'Bearer root-token' });
  });

  it('stores the owner with the job in Redis: another tenant gets the unknown-id answers on either process; an admin sees the job', async () => {
    const submitted = await submit(apis[0]!, 'alice-token');
    const id = submitted.body.data!.editImages.id;
    const stored = JSON.stringify(await redis.hgetall(`ie:job:${id}`));
    const owner = (JSON.parse((await redis.hget(`ie:job:${id}`, 'base'))!) as { owner: string }).owner;
    assert.match(owner, /^[0-9a-f]{64}$/);
    assert.doesNotMatch(stored, /alice-token/);
    // Ownership checks read only this small key, never the snapshot with its result.
    assert.equal(await redis.get(`ie:job:${id}:owner`), owner);
    // Queued (no worker yet): bob on the other process.
    assert.deepEqual(await answers(apis[1]!, id, 'Bearer bob-token'), await answers(apis[1]!, randomUUID(), 'Bearer bob-token'));
    const admin = await postGraphQL<{ editJob: { status: string } }>(apis[1]!, JOB, { id }, { authorization: 'Bearer root-token' });
    assert.equal(admin.body.data!.editJob.status, 'QUEUED');
    // A worker runs it; alice watches it on the other process.
    const worker = startServerProcess({ ...env, ROLE: 'worker' });
    procs.push(worker);
    await waitFor(() => worker.output.some((l) => l.includes('image-edit worker ready')), 'worker ready');
    const watched = await rawSse(apis[1]!, id, 'Bearer alice-token', 120_000);
    assert.match(watched.text, /EditCompleted/);
    const own = await postGraphQL<{ editJob: { result: { images: unknown[] } } }>(apis[1]!, JOB, { id }, { authorization: 'Bearer alice-token' });
    assert.equal(own.body.data!.editJob.result.images.length, 1);
    const bob = await postGraphQL<{ editJob: unknown }>(apis[0]!, JOB, { id }, { authorization: 'Bearer bob-token' });
    assert.deepEqual(bob.body, { data: { editJob: null } });
    // The worker logs the job with the owner's hash only.
    const lines = worker.output.filter((l) => l.includes(id));
    assert.ok(lines.length > 0);
    for (const l of lines) assert.equal((JSON.parse(l) as { owner: string }).owner, owner.slice(0, 12));
  });

  it('limits failed authentications per IP across both processes', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${apis[i % 2]}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer wrong-${i}` },
        body: '{"query":"{ __typename }"}',
      });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    console.log(`# 10 wrong tokens alternating over 2 API processes, AUTH_FAIL_LIMIT=4: ${statuses.join(',')}`);
    assert.deepEqual(statuses, [401, 401, 401, 401, ...Array(6).fill(429)]);
  });
});
