/**
 * Scale-out on a real redis-server: two API processes and two workers. Jobs submitted on one API
 * are watched on the other; a worker SIGKILLed mid-job loses the job to the other worker, and the
 * subscriber sees EditQueued again, progress from step 1, then EditCompleted.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { collectSse, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';

/** Five server processes can take over a minute to start on a loaded 2-core machine. */
const START_MS = 120_000;

const SUBMIT = 'mutation($images:[Upload!]!,$size:String,$steps:Int){ editImages(images:$images, prompt:"sepia", size:$size, steps:$steps){ id status } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditProgress { step totalSteps } ... on EditCompleted { result { images { index } usage { generatedImages } } } ... on EditFailed { error { code } } } }';
type Ev = { editJobEvents: { __typename: string; step?: number; error?: { code: string }; result?: { images: { index: number }[] } } };

describe('scale-out on Redis', { timeout: 180_000 }, () => {
  let redis: ChildProcess;
  const procs: Proc[] = [];
  let apis: string[] = [];
  let workers: Proc[] = [];
  let smallQueueApi = '';

  before(async () => {
    const redisPort = await freePort();
    redis = startRedisServer(redisPort);
    const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, JOB_STALL_SECONDS: '2', JOB_ATTEMPTS: '3' };
    const ports = [await freePort(), await freePort()];
    const smallQueuePort = await freePort();
    smallQueueApi = `http://127.0.0.1:${smallQueuePort}`;
    procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(smallQueuePort), MAX_QUEUED_JOBS: '1' }));
    apis = ports.map((p) => `http://127.0.0.1:${p}`);
    for (const port of ports) procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }));
    workers = [startServerProcess({ ...env, ROLE: 'worker' }), startServerProcess({ ...env, ROLE: 'worker' })];
    procs.push(...workers);
    for (const api of [...apis, smallQueueApi]) await waitFor(async () => (await fetch(`${api}/healthz`)).ok, `${api} health`, START_MS);
    for (const w of workers) await waitFor(() => w.output.some((l) => l.includes('image-edit worker ready')), 'worker ready', START_MS);
  });

  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    redis?.kill('SIGKILL');
  });

  it('runs a job submitted on one API and watched on the other, with late subscribers getting the final event', async () => {
    const img = await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220]);
    const res = await postMultipart<{ editImages: { id: string } }>(apis[0]!, SUBMIT, { size: '32x32', steps: 4 }, [
      { bytes: img, name: 'a.png' },
      { bytes: img, name: 'b.png' },
    ]);
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    const id = res.body.data!.editImages.id;
    const events = (await collectSse<Ev>(apis[1]!, EVENTS, { id })).events.map((e) => e.editJobEvents);
    assert.equal(events.at(-1)!.__typename, 'EditCompleted');
    assert.equal(events.at(-1)!.result!.images.length, 2);
    const late = (await collectSse<Ev>(apis[0]!, EVENTS, { id })).events.map((e) => e.editJobEvents.__typename);
    assert.deepEqual(late, ['EditCompleted']);
  });

  it('refuses work beyond the shared queue bound with QUEUE_FULL, and cancels across processes', async () => {
    const img = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
    const files = [0, 1, 2, 3].map((i) => ({ bytes: img, name: `${i}.png` }));
    const busy: string[] = [];
    // Keep both workers busy (step counts that differ: the jobs cannot share a pipeline call), then
    // fill the one queue slot this API allows.
    for (let i = 0; i < 2; i++) {
      const res = await postMultipart<{ editImages: { id: string } }>(apis[0]!, SUBMIT, { size: '512x512', steps: 100 - i }, files);
      assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
      busy.push(res.body.data!.editImages.id);
    }
    await waitFor(async () => (await fetch(`${apis[0]}/metrics`).then((r) => r.text())).includes('image_edit_running_jobs 2'), 'both workers busy');
    const waiting = (await postMultipart<{ editImages: { id: string; status: string } }>(smallQueueApi, SUBMIT, { size: '32x32', steps: 2 }, [files[0]!])).body
      .data!.editImages;
    assert.equal(waiting.status, 'QUEUED');
    const refused = await postMultipart(smallQueueApi, SUBMIT, { size: '32x32', steps: 2 }, [files[0]!]);
    assert.equal(refused.body.errors?.[0]?.extensions?.code, 'QUEUE_FULL');
    // Cancel the long jobs from another API process than the one that took them.
    const cancel = 'mutation($id: ID!) { cancelEditJob(id: $id) { status } }';
    for (const id of busy)
      await fetch(`${apis[1]}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: cancel, variables: { id } }),
      });
    for (const id of busy) {
      const types = (await collectSse<Ev>(apis[1]!, EVENTS, { id })).events.map((e) => e.editJobEvents.__typename);
      assert.equal(types.at(-1), 'EditCancelled', types.join(','));
    }
    const rest = (await collectSse<Ev>(apis[0]!, EVENTS, { id: waiting.id })).events.map((e) => e.editJobEvents.__typename);
    assert.equal(rest.at(-1), 'EditCompleted');
  });

  it('completes a job on the other worker after its worker is SIGKILLed mid-job', async () => {
    // Long enough (several seconds) that the kill lands mid-job.
    const img = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
    const res = await postMultipart<{ editImages: { id: string } }>(
      apis[0]!,
      SUBMIT,
      { size: '512x512', steps: 100 },
      [0, 1, 2, 3].map((i) => ({ bytes: img, name: `${i}.png` })),
    );
    const id = res.body.data!.editImages.id;
    const stream = collectSse<Ev>(apis[1]!, EVENTS, { id });
    // Kill whichever worker logged that it is running this job, once it has made progress.
    let victim: Proc | undefined;
    await waitFor(
      () => (victim = workers.find((w) => w.output.some((l) => l.includes(id) && l.includes('job running')))) !== undefined,
      'a worker to take the job',
    );
    await new Promise((r) => setTimeout(r, 300));
    victim!.child.kill('SIGKILL');
    const events = (await stream).events.map((e) => e.editJobEvents);
    const types = events.map((e) => e.__typename);
    assert.equal(types.at(-1), 'EditCompleted', types.join(','));
    const requeued = types.lastIndexOf('EditQueued');
    assert.ok(requeued > 0, `no EditQueued after the worker was lost: ${types.join(',')}`);
    const after = events.slice(requeued + 1).filter((e) => e.__typename === 'EditProgress');
    assert.equal(after[0]?.step, 1);
    const survivor = workers.find((w) => w !== victim)!;
    // The survivor logs after publishing the result; its log line may still be in the pipe.
    await waitFor(() => survivor.output.some((l) => l.includes(id) && l.includes('job succeeded')), 'the other worker to log the job as succeeded', 5000);
  });
});

describe('scale-out on Redis: the last attempt', { timeout: 120_000 }, () => {
  it('fails a job with a clear code, exactly once, when its last allowed worker is lost', async () => {
    const redisPort = await freePort();
    const redis = startRedisServer(redisPort);
    const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, JOB_STALL_SECONDS: '2', JOB_ATTEMPTS: '1' };
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const procs = [
      startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }),
      startServerProcess({ ...env, ROLE: 'worker' }),
      startServerProcess({ ...env, ROLE: 'worker' }),
    ];
    try {
      await waitFor(async () => (await fetch(`${api}/healthz`)).ok, 'api health');
      for (const w of procs.slice(1)) await waitFor(() => w.output.some((l) => l.includes('image-edit worker ready')), 'worker ready', START_MS);
      const img = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
      const res = await postMultipart<{ editImages: { id: string } }>(
        api,
        SUBMIT,
        { size: '512x512', steps: 100 },
        [0, 1, 2, 3].map((i) => ({ bytes: img, name: `${i}.png` })),
      );
      const id = res.body.data!.editImages.id;
      const stream = collectSse<Ev>(api, EVENTS, { id });
      let victim: Proc | undefined;
      await waitFor(
        () => (victim = procs.slice(1).find((w) => w.output.some((l) => l.includes(id) && l.includes('job running')))) !== undefined,
        'a worker to take the job',
      );
      await new Promise((r) => setTimeout(r, 300));
      victim!.child.kill('SIGKILL');
      const events = (await stream).events.map((e) => e.editJobEvents);
      const terminal = events.filter((e) => ['EditCompleted', 'EditFailed', 'EditCancelled'].includes(e.__typename));
      assert.equal(terminal.length, 1, events.map((e) => e.__typename).join(','));
      assert.equal(terminal[0]!.__typename, 'EditFailed');
      assert.equal(terminal[0]!.error!.code, 'INTERNAL');
    } finally {
      for (const p of procs) p.child.kill('SIGKILL');
      redis.kill('SIGKILL');
    }
  });
});
