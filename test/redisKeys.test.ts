/**
 * Every Redis key the project writes expires or is deleted: with REDIS_URL, jobs (completed,
 * cancelled while queued and while running, alone and merged) leave no `ie:` key behind once JOB_RETENTION_SECONDS have passed,
 * and no `ie:` key is ever without a TTL. What stays is BullMQ's queue-level bookkeeping, the same
 * few keys however many jobs ran (docs/deploy.md lists them).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';

const SUBMIT = 'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"32x32", steps:2){ id status } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { status } }';
const CANCEL = 'mutation($id: ID!) { cancelEditJob(id: $id) { status } }';
const BLOCK = 'mutation($images:[Upload!]!){ editImages(images:$images, prompt:"sepia", size:"1024x1024", steps:100, n:4){ id status } }';
const JOBS = 24;

async function allKeys(redis: Redis): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found.sort();
}

describe('Redis keys: none outlives its job', { timeout: 180_000 }, () => {
  let redisServer: ChildProcess;
  let redis: Redis;
  let proc: Proc;
  let api: string;

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    proc = startServerProcess({ REDIS_URL: `redis://127.0.0.1:${redisPort}`, PORT: String(port), JOB_RETENTION_SECONDS: '2', LOG_LEVEL: 'warn' });
    await waitFor(async () => (await fetch(`${api}/healthz`)).ok, 'server health');
    redis = new Redis(`redis://127.0.0.1:${redisPort}`);
  });

  after(() => {
    redis?.disconnect();
    proc?.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  it(`after ${JOBS} jobs and the retention time, no ie: key remains, and none ever lacked a TTL`, async () => {
    const img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    const status = async (id: string) => (await postGraphQL<{ editJob: { status: string } | null }>(api, JOB, { id })).body.data?.editJob?.status;
    const submit = async (query: string): Promise<string> =>
      (await postMultipart<{ editImages: { id: string } }>(api, query, {}, [{ bytes: img, name: 'a.png' }], { 'apollo-require-preflight': 'true' })).body.data!
        .editImages.id;
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push(await submit(SUBMIT));
    const ended = async (): Promise<boolean> => {
      // A job that ended first may already be gone (its retention is 2 s): null then.
      for (const id of ids) if (!['SUCCEEDED', 'CANCELLED', undefined].includes(await status(id))) return false;
      return true;
    };
    await waitFor(ended, 'every job to end', 120_000);
    // Then a long job holds the worker while four more are queued and cancelled there (their
    // tokens go with them, so no worker looks at the queue again), and the long one is cancelled.
    const blocker = await submit(BLOCK);
    await waitFor(async () => (await status(blocker)) === 'RUNNING', 'the long job to start');
    const queued = [await submit(SUBMIT), await submit(SUBMIT), await submit(SUBMIT), await submit(SUBMIT)];
    const cancelled = [];
    for (const id of queued) cancelled.push((await postGraphQL<{ cancelEditJob: { status: string } }>(api, CANCEL, { id })).body.data?.cancelEditJob.status);
    assert.deepEqual(cancelled, ['CANCELLED', 'CANCELLED', 'CANCELLED', 'CANCELLED'], 'cancelled while queued');
    await postGraphQL(api, CANCEL, { id: blocker });
    ids.push(...queued, blocker);
    await waitFor(ended, 'every job to end', 120_000);

    const project = (await allKeys(redis)).filter((k) => k.startsWith('ie:'));
    assert.ok(project.length > 0, 'the ended jobs are still readable within the retention time');
    const withoutTtl = [];
    for (const key of project) if ((await redis.pttl(key)) < 0) withoutTtl.push(key);
    assert.deepEqual(withoutTtl, [], 'ie: keys without a TTL');

    await waitFor(async () => (await allKeys(redis)).every((k) => !k.startsWith('ie:')), 'every ie: key to expire', 30_000).catch(async () => {
      const stay = (await allKeys(redis)).filter((k) => k.startsWith('ie:'));
      assert.deepEqual(await Promise.all(stay.map(async (k) => `${k} (pttl ${await redis.pttl(k)})`)), [], 'ie: keys left after the retention time');
    });
    const left = await allKeys(redis);
    for (const id of ids) assert.ok(!left.some((k) => k.includes(id)), `a key of job ${id} remains: ${left.join(', ')}`);
    console.log(`# after ${JOBS} jobs and the retention time: ${left.length} keys, all BullMQ's queue-level ones: ${left.join(', ')}`);
    assert.ok(
      left.every((k) => k.startsWith('bull:image-edit:')),
      left.join(', '),
    );
  });
});
