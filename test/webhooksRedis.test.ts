/**
 * Webhooks with REDIS_URL, on a real redis-server with an API process and worker processes: a
 * delivery outlives the worker that made its first attempt (SIGKILLed right after the receiver
 * answered 500): another worker delivers it, once; every message is signed (checked by the
 * `standardwebhooks` verifier, with the submitting tenant's own WEBHOOK_SECRETS secret) and
 * carries the job's metadata; attempts are on the job.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { Webhook } from 'standardwebhooks';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { postGraphQL } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { type Proc, startServerProcess, waitFor } from './support/processes.js';

const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
/** alice's own secret (WEBHOOK_SECRETS): her jobs' deliveries are signed with it, on whichever worker sends them. */
const ALICE_SECRET = `whsec_${Buffer.alloc(32, 11).toString('base64')}`;
const ALICE = { authorization: 'Bearer alice-token' };
const SUBMIT = `mutation($urls:[String!]!, $hook: String){ editImages(imageUrls:$urls, prompt:"sepia", size:"32x32", steps:2, webhookUrl:$hook,
  webhookEvents:[QUEUED, COMPLETED], metadata:{order:"o-9"}){ id } }`;
const DELIVERIES = 'query($id: ID!) { editJob(id: $id) { status webhookDeliveries { messageId type attempt status delivered } } }';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

describe('webhooks on Redis', { timeout: 300_000 }, () => {
  let redisServer: ChildProcess;
  const procs: Proc[] = [];
  let api: string;
  let env: Record<string, string>;
  let hook: Server;
  const got: Received[] = [];
  let onCompleted: () => void = () => undefined;

  before(async () => {
    const redisPort = await freePort();
    redisServer = startRedisServer(redisPort);
    env = {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      WEBHOOK_SECRET: SECRET,
      AUTH_TOKENS: 'alice-token,bob-token',
      WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET}`,
      WEBHOOK_ALLOW_PRIVATE: '1',
      WEBHOOK_RETRY_SECONDS: '3',
      JOB_STALL_SECONDS: '2',
      LOG_LEVEL: 'warn',
    };
    // The first completed event is answered 500 (and its worker killed at once); everything else 200.
    let failedOnce = false;
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const completed = body.includes('"edit.completed"');
        const answered = completed && !failedOnce ? 500 : 200;
        failedOnce ||= completed;
        got.push({ headers: req.headers, body, answered });
        res.statusCode = answered;
        res.end();
        if (completed && answered === 500) onCompleted();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    procs.push(startServerProcess({ ...env, ROLE: 'api', PORT: String(port) }));
    await waitFor(async () => (await fetch(`${api}/healthz`)).ok, 'api health', 120_000);
  });

  after(() => {
    hook?.close();
    for (const p of procs) p.child.kill('SIGKILL');
    redisServer?.kill('SIGKILL');
  });

  it('delivers each event once, signed, after a 500 and the SIGKILL of the worker that got it', async () => {
    const first = startServerProcess({ ...env, ROLE: 'worker' });
    procs.push(first);
    const killed = new Promise<void>((resolve) => {
      onCompleted = () => {
        first.child.kill('SIGKILL');
        resolve();
      };
    });
    const urls = [`data:image/png;base64,${(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220])).toString('base64')}`];
    const { port } = hook.address() as AddressInfo;
    const r = await postGraphQL<{ editImages: { id: string } }>(api, SUBMIT, { urls, hook: `http://127.0.0.1:${port}/hook` }, ALICE);
    assert.equal(r.body.errors, undefined, JSON.stringify(r.body));
    const id = r.body.data!.editImages.id;
    await killed;
    procs.push(startServerProcess({ ...env, ROLE: 'worker' }));
    await waitFor(() => got.some((g) => g.body.includes('"edit.completed"') && g.answered === 200), 'the completed event, delivered', 180_000);

    // Signed with alice's secret, not WEBHOOK_SECRET (the API process stored her owner id with the hook).
    assert.throws(() => new Webhook(SECRET).verify(got[0]!.body, got[0]!.headers as Record<string, string>), /signature/i);
    const verifier = new Webhook(ALICE_SECRET);
    const messages = got.map((g) => ({
      ...g,
      id: String(g.headers['webhook-id']),
      event: verifier.verify(g.body, g.headers as Record<string, string>) as { type: string; data: { id: string; metadata: unknown; result?: unknown } },
    }));
    // One 2xx per message; the completed one was sent twice (500, then 200) under one id.
    const delivered = messages.filter((m) => m.answered === 200);
    assert.equal(new Set(delivered.map((m) => m.id)).size, delivered.length, 'a message delivered twice');
    assert.deepEqual(delivered.map((m) => m.event.type).sort(), ['edit.completed', 'edit.queued']);
    const completed = messages.filter((m) => m.event.type === 'edit.completed');
    assert.deepEqual(
      completed.map((m) => m.answered),
      [500, 200],
    );
    assert.equal(completed[0]!.id, completed[1]!.id);
    for (const m of messages) {
      assert.equal(m.event.data.id, id);
      assert.deepEqual(m.event.data.metadata, { order: 'o-9' });
    }
    assert.ok(completed[1]!.event.data.result);

    const attempts = (
      await postGraphQL<{ editJob: { webhookDeliveries: { messageId: string; type: string; attempt: number; status: number; delivered: boolean }[] } }>(
        api,
        DELIVERIES,
        { id },
        ALICE,
      )
    ).body.data!.editJob.webhookDeliveries;
    const done = attempts.filter((a) => a.type === 'edit.completed' && a.delivered);
    assert.equal(done.length, 1, JSON.stringify(attempts));
    assert.equal(done[0]!.messageId, completed[0]!.id);
  });
});
