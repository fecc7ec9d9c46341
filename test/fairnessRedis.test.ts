/**
 * Fair scheduling with REDIS_URL (src/jobs/redisFair.ts), over real HTTP on a real redis-server:
 * one API process (ROLE=api, auth on: two tenants and an admin) and ONE worker process (ROLE=worker),
 * once with MERGE_JOBS off and once on.
 *
 * Tenant A (alice) queues her first job and then 15 more, tenant B (bob) then queues one, and the
 * admin queues four jobs at different priorities. The worker starts only after all of them are
 * queued: that is the queue as it stands while a worker is busy with A's first job, without racing
 * the submissions against a running call. Tenants take turns, so B (never served) is taken before A's
 * second job: none of A's queued jobs starts before B's. A first-in first-out queue would start B
 * after all 16 of A's jobs. Within a tenant, jobs start by priority, then in submission order.
 *
 * A third case races nothing either: the worker runs A's first (long) job while A queues 15 more
 * and B one; how many of A's jobs the worker had taken when B was queued is read from Redis (A's
 * fair queue), and no more than those may start before B.
 *
 * Order is read from the worker's "job running" log lines: one per job, in the order calls start
 * and, within a merged call, in the order its jobs were taken. With MERGE_JOBS on, the worker's
 * MAX_JOB_INPUT_PIXELS lets at most 3 of these jobs share a call, so the order is still the order
 * the calls take jobs in.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';

const SUBMIT =
  'mutation($images:[Upload!]!,$priority:Int,$size:String,$steps:Int){ editImages(images:$images, prompt:"sepia", size:$size, steps:$steps, priority:$priority){ id status } }';

interface Line {
  msg?: string;
  jobId?: string;
  mergedJobs?: number;
}

describe('fair scheduling on Redis (one API process, one worker process)', { timeout: 300_000 }, () => {
  let redisServer: ChildProcess;
  let redis: Redis;
  let api: Proc;
  let url: string;
  let env: Record<string, string>;
  let img: Buffer;
  let big: Buffer;
  const tokens = { alice: 'alice-token', bob: 'bob-token', root: 'root-token' };

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    env = {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      AUTH_TOKENS: `${tokens.alice},${tokens.bob}`,
      AUTH_ADMIN_TOKENS: tokens.root,
      TENANT_MAX_QUEUED_JOBS: '0',
    };
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    api = startServerProcess({ ...env, ROLE: 'api', PORT: String(port) });
    await waitFor(async () => (await fetch(`${url}/healthz`)).ok, 'API health');
    redis = new Redis(env.REDIS_URL!);
    img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    big = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
  });

  after(async () => {
    redis?.disconnect();
    api?.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  const submit = async (who: keyof typeof tokens, priority?: number, long = false): Promise<string> => {
    const res = await postMultipart<{ editImages: { id: string; status: string } }>(
      url,
      SUBMIT,
      { ...(priority === undefined ? {} : { priority }), ...(long ? { size: '512x512', steps: 30 } : { size: '32x32', steps: 2 }) },
      [{ bytes: long ? big : img, name: 'a.png' }],
      { 'apollo-require-preflight': 'true', authorization: `Bearer ${tokens[who]}` },
    );
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    assert.equal(res.body.data!.editImages.status, 'QUEUED');
    return res.body.data!.editImages.id;
  };

  const stop = async (worker: Proc): Promise<void> => {
    if (worker.child.exitCode !== null) return;
    const exited = once(worker.child, 'exit');
    worker.child.kill('SIGTERM');
    const force = setTimeout(() => worker.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(force);
  };

  for (const merge of [false, true]) {
    it(`takes B's job before A's queued jobs, and a tenant's jobs by priority (MERGE_JOBS=${merge ? 1 : 0})`, async () => {
      const aFirst = await submit('alice');
      const aQueued: string[] = [];
      let aLowered = '';
      for (let i = 0; i < 15; i++) {
        // Any tenant may lower a job's priority: it runs after her others, wherever it was queued.
        const id = await submit('alice', i === 5 ? -10 : undefined);
        if (i === 5) aLowered = id;
        aQueued.push(id);
      }
      const b = await submit('bob');
      const rootNormal = [await submit('root'), await submit('root')];
      const rootLow = await submit('root', -3);
      const rootHigh = await submit('root', 5);
      const all = [aFirst, ...aQueued, b, ...rootNormal, rootLow, rootHigh];

      const worker = startServerProcess({
        ...env,
        ROLE: 'worker',
        MERGE_JOBS: merge ? '1' : '0',
        // 3 inputs of 32×32: at most 3 of these jobs per merged call.
        MAX_JOB_INPUT_PIXELS: String(3 * 32 * 32),
      });
      try {
        const lines = (): Line[] =>
          worker.output.flatMap((l) => {
            try {
              return [JSON.parse(l) as Line];
            } catch {
              return [];
            }
          });
        await waitFor(() => all.every((id) => lines().some((l) => l.jobId === id && l.msg === 'job succeeded')), 'every job to succeed', 240_000);
        const running = lines().filter((l) => l.msg === 'job running');
        const order = running.map((l) => l.jobId!);
        assert.deepEqual([...order].sort(), [...all].sort(), 'each job started once');
        const at = (id: string): number => order.indexOf(id);

        // B was taken before A's second job (A had been served, B never): none of A's queued jobs
        // started before B's (first-in first-out: all 15 would have).
        const aheadOfB = aQueued.filter((id) => at(id) < at(b));
        assert.deepEqual(aheadOfB, [], `A's queued jobs that started before B's: ${order.join('\n')}`);
        assert.ok(at(b) <= 2, `B is among the first three jobs taken (one per tenant): ${at(b)}`);
        // A's own jobs: submission order, the lowered one last.
        const aOrder = order.filter((id) => id === aFirst || aQueued.includes(id));
        assert.deepEqual(aOrder, [aFirst, ...aQueued.filter((id) => id !== aLowered), aLowered]);
        // The admin's: priority 5, then the two at 0 in submission order, then −3.
        assert.deepEqual(
          order.filter((id) => [...rootNormal, rootLow, rootHigh].includes(id)),
          [rootHigh, ...rootNormal, rootLow],
        );
        // Merging really happened (or really did not), and within its bound.
        const merged = running.map((l) => l.mergedJobs ?? 1);
        if (merge) assert.ok(merged.some((n) => n > 1) && merged.every((n) => n <= 3), merged.join(','));
        else
          assert.ok(
            merged.every((n) => n === 1),
            merged.join(','),
          );

        // Nothing of the turns is left behind once the queue is empty (the rest expire). A claim is
        // deleted just after its job's terminal event, so it is waited for.
        assert.deepEqual(await redis.keys('ie:fair:queue:*'), []);
        await waitFor(async () => (await redis.keys('ie:fair:claim:*')).length === 0, 'the claims to be deleted', 10_000);
        for (const key of ['ie:fair:owners', 'ie:fair:served']) assert.ok((await redis.pttl(key)) > 0, `${key} expires`);
      } finally {
        await stop(worker);
      }
    });
  }

  it("takes B's job next when it arrives while the worker runs A's first job, ahead of A's 15 queued jobs", async () => {
    const worker = startServerProcess({ ...env, ROLE: 'worker', MERGE_JOBS: '0' });
    try {
      const lines = (): Line[] =>
        worker.output.flatMap((l) => {
          try {
            return [JSON.parse(l) as Line];
          } catch {
            return [];
          }
        });
      await waitFor(() => worker.output.some((l) => l.includes('image-edit worker ready')), 'worker ready');
      // A's first job is a long one (512×512, 30 steps), and running before the others are queued.
      const aFirst = await submit('alice', undefined, true);
      await waitFor(() => lines().some((l) => l.jobId === aFirst && l.msg === 'job running'), "A's first job to start");
      const aQueued: string[] = [];
      for (let i = 0; i < 15; i++) aQueued.push(await submit('alice'));
      const b = await submit('bob');
      // How many of A's queued jobs the worker had taken by the time B was queued (pops are atomic
      // in Redis, so at most those read here): they were legitimately ahead of B.
      const aOwner = (await redis.get(`ie:job:${aFirst}:owner`))!;
      const takenByThen = aQueued.length - (await redis.zcard(`ie:fair:queue:${aOwner}`));
      assert.ok(takenByThen < 10, `A's backlog had mostly been taken before B was queued (${takenByThen}): nothing to test`);
      const all = [aFirst, ...aQueued, b];
      await waitFor(() => all.every((id) => lines().some((l) => l.jobId === id && l.msg === 'job succeeded')), 'every job to succeed', 240_000);
      const order = lines()
        .filter((l) => l.msg === 'job running')
        .map((l) => l.jobId!);
      const aheadOfB = aQueued.filter((id) => order.indexOf(id) < order.indexOf(b));
      console.log(`# A's queued jobs taken when B was queued: ${takenByThen}; started before B: ${aheadOfB.length}`);
      // B is taken at the worker's first take after it is queued: A has been served, B never.
      // First-in first-out would start all 15 first.
      assert.ok(aheadOfB.length <= takenByThen, `${aheadOfB.length} of A's queued jobs ahead of B, ${takenByThen} taken before it came: ${order.join('\n')}`);
      assert.deepEqual(
        order.filter((id) => aQueued.includes(id)),
        aQueued,
      );
    } finally {
      await stop(worker);
    }
  });

  it('refuses a raised priority from a tenant that is not an admin, with REDIS_URL too', async () => {
    const res = await postMultipart(url, SUBMIT, { priority: 1 }, [{ bytes: img, name: 'a.png' }], {
      'apollo-require-preflight': 'true',
      authorization: `Bearer ${tokens.alice}`,
    });
    assert.equal(res.body.errors?.[0]?.extensions?.code, 'FORBIDDEN', JSON.stringify(res.body));
  });
});
