/**
 * A real redis-server restarted mid-job, with and without AOF persistence, under an API process
 * (ROLE=api) and a worker (ROLE=worker). During the outage /healthz is 503 with the reason and API
 * calls that need Redis fail fast with UNAVAILABLE and Retry-After; the processes log structured
 * lines, never ioredis' "Unhandled error event". After the restart: with AOF the job completes
 * (exactly one terminal event); without it the watcher gets exactly one EditFailed JOB_LOST, the job
 * is gone, the service works again, and nothing refused during the outage runs later.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './support/net.js';
import { collectSse, postGraphQL, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { startServerProcess, waitFor } from './support/processes.js';

const SUBMIT = 'mutation($images:[Upload!]!,$size:String,$steps:Int){ editImages(images:$images, prompt:"sepia", size:$size, steps:$steps){ id status } }';
const EVENTS = 'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditProgress { step } ... on EditFailed { error { code message } } } }';
const JOB = 'query($id: ID!) { editJob(id: $id) { id status } }';
type Ev = { editJobEvents: { __typename: string; step?: number; error?: { code: string; message: string } } };

function redisServer(port: number, dir: string, aof: boolean): ChildProcess {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    aof ? 'yes' : 'no',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
  ];
  return spawn('redis-server', args, { stdio: 'ignore' });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function restartMidJob(aof: boolean): Promise<void> {
  assert.equal(spawnSync('redis-server', ['--version']).status, 0, 'redis-server is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'redis-faults-'));
  const redisPort = await freePort();
  let redis = redisServer(redisPort, dir, aof);
  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, JOB_STALL_SECONDS: '2', JOB_ATTEMPTS: '3' };
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const apiProc = startServerProcess({ ...env, ROLE: 'api', PORT: String(port) });
  const worker = startServerProcess({ ...env, ROLE: 'worker' });
  try {
    await waitFor(async () => (await fetch(`${api}/healthz`)).ok, 'api health');
    await waitFor(() => worker.output.some((l) => l.includes('image-edit worker ready')), 'worker ready');
    // The settings check at start: only the server without AOF is warned about.
    await waitFor(() => apiProc.output.some((l) => l.includes('maxmemory-policy') || l.includes('appendonly')) || aof, 'settings warning');
    assert.equal(
      apiProc.output.some((l) => l.includes('appendonly no')),
      !aof,
      apiProc.output.join('\n'),
    );

    const img = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
    const res = await postMultipart<{ editImages: { id: string } }>(
      api,
      SUBMIT,
      { size: '512x512', steps: 40 },
      [0, 1].map((i) => ({ bytes: img, name: `${i}.png` })),
    );
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    const id = res.body.data!.editImages.id;
    const stream = collectSse<Ev>(api, EVENTS, { id });
    await waitFor(() => worker.output.some((l) => l.includes(id) && l.includes('job running')), 'the worker to take the job');
    await new Promise((r) => setTimeout(r, 1500));

    // Outage.
    await stop(redis);
    const health = await fetch(`${api}/healthz`);
    const healthBody = (await health.json()) as { status: string; reason?: string };
    assert.equal(health.status, 503);
    assert.equal(healthBody.status, 'redis-unavailable');
    assert.ok(healthBody.reason, 'a reason');
    // Answered while Redis is still down (it is restarted only below): requests fail fast with
    // UNAVAILABLE instead of waiting in a reconnect queue, which would hang them until the restart.
    const query = await fetch(`${api}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: JOB, variables: { id } }),
    });
    const queryBody = (await query.json()) as { errors?: { extensions?: { code?: string; retryAfterSeconds?: number; http?: unknown } }[] };
    assert.ok(redis.exitCode !== null || redis.signalCode !== null, 'redis-server is still down');
    assert.equal(queryBody.errors?.[0]?.extensions?.code, 'UNAVAILABLE');
    assert.equal(queryBody.errors?.[0]?.extensions?.retryAfterSeconds, 5);
    assert.equal(queryBody.errors?.[0]?.extensions?.http, undefined, 'Yoga keeps http hints out of the body');
    assert.equal(query.headers.get('retry-after'), '5');
    const refused = await postMultipart<{ editImages: { id: string } }>(api, SUBMIT, { size: '32x32', steps: 2 }, [{ bytes: img, name: 'late.png' }]);
    assert.equal(refused.body.errors?.[0]?.extensions?.code, 'UNAVAILABLE');
    const rest = await fetch(`${api}/v1/images/edits`, {
      method: 'POST',
      body: (() => {
        const f = new FormData();
        f.set('prompt', 'sepia');
        f.set('image', new Blob([new Uint8Array(img)]), 'a.png');
        return f;
      })(),
    });
    assert.equal(rest.status, 503);
    assert.equal(rest.headers.get('retry-after'), '5');
    await new Promise((r) => setTimeout(r, 1000));

    // Back.
    const runningBefore = worker.output.filter((l) => l.includes('job running')).length;
    redis = redisServer(redisPort, dir, aof);
    await waitFor(async () => (await fetch(`${api}/healthz`)).ok, 'api health after the restart');
    const events = (await stream).events.map((e) => e.editJobEvents);
    const types = events.map((e) => e.__typename);
    const terminal = events.filter((e) => ['EditCompleted', 'EditFailed', 'EditCancelled'].includes(e.__typename));
    assert.equal(terminal.length, 1, types.join(','));
    const job = await postGraphQL<{ editJob: { status: string } | null }>(api, JOB, { id });
    if (aof) {
      assert.equal(terminal[0]!.__typename, 'EditCompleted', types.join(','));
      assert.equal(job.body.data!.editJob!.status, 'SUCCEEDED');
    } else {
      assert.equal(terminal[0]!.__typename, 'EditFailed', types.join(','));
      assert.equal(terminal[0]!.error!.code, 'JOB_LOST');
      assert.deepEqual(job.body, { data: { editJob: null } });
    }
    console.log(`# AOF ${aof ? 'on' : 'off'}: watcher saw ${types.join(',').replace(/(EditProgress,)+/g, 'EditProgress×n,')}`);
    // The service works again, and the submission refused during the outage never runs.
    const after = await postMultipart<{ editImages: { id: string } }>(api, SUBMIT, { size: '32x32', steps: 2 }, [{ bytes: img, name: 'after.png' }]);
    assert.equal(after.body.errors, undefined, JSON.stringify(after.body.errors));
    const done = (await collectSse<Ev>(api, EVENTS, { id: after.body.data!.editImages.id })).events.map((e) => e.editJobEvents.__typename);
    assert.equal(done.at(-1), 'EditCompleted');
    const ran = worker.output
      .slice(0)
      .filter((l) => l.includes('job running'))
      .slice(runningBefore)
      .map((l) => (JSON.parse(l) as { jobId: string }).jobId);
    for (const r of ran) assert.ok(r === id || r === after.body.data!.editImages.id, `an unexpected job ran: ${r}`);
    // Structured logs only.
    for (const p of [apiProc, worker]) {
      assert.ok(!p.output.some((l) => l.includes('Unhandled error event')), p.output.filter((l) => l.includes('Unhandled')).join('\n'));
      assert.ok(
        p.output.some((l) => l.includes('redis connection error')),
        'a structured connection error line',
      );
      for (const l of p.output) assert.doesNotThrow(() => JSON.parse(l), `not a JSON log line: ${l}`);
    }
  } finally {
    apiProc.child.kill('SIGKILL');
    worker.child.kill('SIGKILL');
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Redis restarted mid-job', { timeout: 240_000 }, () => {
  it('without persistence (appendonly no): 503 and UNAVAILABLE during the outage, then exactly one EditFailed JOB_LOST', () => restartMidJob(false));
  it('with AOF (appendonly yes, everysec): 503 and UNAVAILABLE during the outage, then the job completes', () => restartMidJob(true));
});
