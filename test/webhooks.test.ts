/**
 * Webhooks (in memory) with real HTTP receivers on loopback: Standard Webhooks signatures checked
 * by the `standardwebhooks` library's own verifier, retries after 500s and after a receiver that
 * is down and then comes back, attempts visible on the job, private targets refused.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { freePort } from './support/net.js';
import { postGraphQL } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { waitFor } from './support/processes.js';
import { startTestServer, type TestServer } from './support/server.js';
import { ConfigError, loadConfig } from '../src/server/config.js';

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const SUBMIT =
  'mutation($urls:[String!]!, $hook: String, $events: [WebhookEvent!]){ editImages(imageUrls:$urls, prompt:"sepia", size:"32x32", steps:2, webhookUrl:$hook, webhookEvents:$events){ id } }';
const DELIVERIES = 'query($id: ID!) { editJob(id: $id) { status webhookDeliveries { messageId type attempt status error delivered } } }';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}
type Attempt = { messageId: string; type: string; attempt: number; status: number | null; error: string | null; delivered: boolean };

/** A receiver that answers each request with the next of `statuses` (then 200). */
async function receiver(statuses: number[] = [], port = 0): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.statusCode = statuses.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

describe('webhooks', { timeout: 180_000 }, () => {
  let server: TestServer;
  let strict: TestServer;
  let urls: string[];
  const servers: Server[] = [];

  before(async () => {
    server = await startTestServer({ WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOW_PRIVATE: '1', WEBHOOK_RETRY_SECONDS: '1', WEBHOOK_MAX_ATTEMPTS: '6' });
    strict = await startTestServer({ WEBHOOK_SECRET: SECRET }, { inference: false });
    urls = [`data:image/png;base64,${(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220])).toString('base64')}`];
  });
  after(async () => {
    for (const s of servers) s.close();
    await server.close();
    await strict.close();
  });

  const submit = async (target: TestServer, hook: string, events?: string[]) => {
    const r = await postGraphQL<{ editImages: { id: string } | null }>(target.url, SUBMIT, { urls, hook, events });
    return { id: r.body.data?.editImages?.id, code: r.body.errors?.[0]?.extensions?.code, body: r.body };
  };
  const deliveries = async (id: string): Promise<Attempt[]> =>
    (await postGraphQL<{ editJob: { webhookDeliveries: Attempt[] } }>(server.url, DELIVERIES, { id })).body.data!.editJob.webhookDeliveries;

  it('sends the chosen events in order, signed (verified by standardwebhooks), with result URLs', async () => {
    const r = await receiver();
    servers.push(r.server);
    const { id, body } = await submit(server, r.url, ['QUEUED', 'RUNNING', 'PROGRESS', 'COMPLETED']);
    assert.ok(id, JSON.stringify(body));
    await waitFor(() => r.got.some((g) => g.body.includes('edit.completed')), 'the completed event', 120_000);
    const verifier = new Webhook(SECRET);
    const events = r.got.map(
      (g) => verifier.verify(g.body, g.headers as Record<string, string>) as { type: string; timestamp: string; data: Record<string, unknown> },
    );
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 2), ['edit.queued', 'edit.running']);
    assert.equal(types.at(-1), 'edit.completed');
    assert.ok(
      types.slice(2, -1).every((t) => t === 'edit.progress'),
      types.join(),
    );
    assert.equal(new Set(r.got.map((g) => g.headers['webhook-id'])).size, r.got.length, 'one message id per event');
    for (const e of events) assert.equal(e.data.id, id);
    const result = events.at(-1)!.data.result as { images: { url: string }[] };
    const image = await fetch(result.images[0]!.url);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get('content-type'), 'image/png');
    // A body changed in transit fails the library's verification.
    assert.throws(() => verifier.verify(r.got[0]!.body.replace('edit.', 'edix.'), r.got[0]!.headers as Record<string, string>));
    const seen = await deliveries(id);
    assert.deepEqual(
      seen.map((a) => [a.type, a.attempt, a.delivered]),
      types.map((t) => [t, 1, true]),
    );
  });

  it('retries after 500s with the same message id until delivered; the attempts are on the job', async () => {
    const r = await receiver([500, 500]);
    servers.push(r.server);
    const { id } = await submit(server, r.url);
    await waitFor(async () => (await deliveries(id!)).some((a) => a.delivered), 'the delivery', 120_000);
    const attempts = await deliveries(id!);
    assert.deepEqual(
      attempts.map((a) => [a.type, a.attempt, a.status, a.delivered]),
      [
        ['edit.completed', 1, 500, false],
        ['edit.completed', 2, 500, false],
        ['edit.completed', 3, 200, true],
      ],
    );
    assert.equal(r.got.length, 3);
    assert.equal(new Set(r.got.map((g) => g.headers['webhook-id'])).size, 1);
    for (const g of r.got) new Webhook(SECRET).verify(g.body, g.headers as Record<string, string>);
  });

  it('retries a receiver that is down until it comes back', async () => {
    const port = await freePort();
    const { id } = await submit(server, `http://127.0.0.1:${port}/hook`);
    await waitFor(async () => (await deliveries(id!)).some((a) => a.error !== null), 'a failed attempt', 120_000);
    const first = (await deliveries(id!))[0]!;
    assert.equal(first.status, null);
    assert.equal(first.delivered, false);
    const r = await receiver([], port);
    servers.push(r.server);
    await waitFor(async () => (await deliveries(id!)).some((a) => a.delivered), 'the delivery once the receiver is up', 60_000);
    assert.equal(r.got.length, 1);
    assert.equal((JSON.parse(r.got[0]!.body) as { type: string }).type, 'edit.completed');
  });

  it('refuses private, loopback and link-local targets without WEBHOOK_ALLOW_PRIVATE, and bad URLs and events', async () => {
    for (const target of [
      'http://127.0.0.1:9/hook',
      'http://localhost/hook',
      'http://10.1.2.3/',
      'http://169.254.169.254/latest',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
    ]) {
      const refused = await submit(strict, target);
      assert.equal(refused.code, 'BAD_USER_INPUT', `${target}: ${JSON.stringify(refused.body)}`);
    }
    for (const target of ['ftp://example.com/', 'not a url', 'http://user:pw@example.com/'])
      assert.equal((await submit(strict, target)).code, 'BAD_USER_INPUT', target);
    const form = new FormData();
    form.set('image', new Blob([Buffer.from(urls[0]!.split(',')[1]!, 'base64')]), 'a.png');
    form.set('prompt', 'sepia');
    form.set('webhook_url', 'http://192.168.1.1/hook');
    const rest = await fetch(`${strict.url}/v1/images/edits`, { method: 'POST', body: form });
    assert.equal(rest.status, 400);
    form.set('webhook_url', 'http://example.com/hook');
    form.set('webhook_events', 'completed,finished');
    const badEvents = await fetch(`${strict.url}/v1/images/edits`, { method: 'POST', body: form });
    assert.equal(badEvents.status, 400);
    assert.match(((await badEvents.json()) as { error: { message: string } }).error.message, /finished/);
  });
});

describe('per-tenant webhook secrets (WEBHOOK_SECRETS)', { timeout: 180_000 }, () => {
  const ALICE_SECRET = `whsec_${Buffer.alloc(32, 8).toString('base64')}`;
  const CAROL_SECRET = `whsec_${Buffer.alloc(24, 5).toString('base64')}`;

  it("signs a tenant's deliveries with its own secret and everyone else's with WEBHOOK_SECRET", async () => {
    const s = await startTestServer({
      AUTH_TOKENS: 'alice-token,bob-token',
      AUTH_BASIC: 'carol:pw',
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET}, basic:carol=${CAROL_SECRET}`,
      WEBHOOK_ALLOW_PRIVATE: '1',
    });
    const r = await receiver();
    try {
      const urls = [`data:image/png;base64,${(await twoColourPng(32, 32, [200, 60, 30], [20, 120, 220])).toString('base64')}`];
      const as = async (authorization: string): Promise<string> => {
        const res = await postGraphQL<{ editImages: { id: string } }>(s.url, SUBMIT, { urls, hook: r.url, events: ['QUEUED'] }, { authorization });
        assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
        return res.body.data!.editImages.id;
      };
      const jobs = {
        alice: await as('Bearer alice-token'),
        bob: await as('Bearer bob-token'),
        carol: await as(`Basic ${Buffer.from('carol:pw').toString('base64')}`),
      };
      await waitFor(() => r.got.length === 3, 'three queued events', 60_000);
      const from = (id: string): Received => r.got.find((g) => g.body.includes(id))!;
      const verify = (secret: string, g: Received): unknown => new Webhook(secret).verify(g.body, g.headers as Record<string, string>);
      assert.ok(verify(ALICE_SECRET, from(jobs.alice)));
      assert.ok(verify(CAROL_SECRET, from(jobs.carol)));
      assert.ok(verify(SECRET, from(jobs.bob)), 'a tenant without its own secret gets WEBHOOK_SECRET');
      assert.throws(() => verify(SECRET, from(jobs.alice)), /signature/i);
      assert.throws(() => verify(ALICE_SECRET, from(jobs.bob)), /signature/i);
      assert.throws(() => verify(ALICE_SECRET, from(jobs.carol)), /signature/i);
    } finally {
      r.server.close();
      await s.close();
    }
  });

  it('parses WEBHOOK_SECRETS strictly, naming entries by position (never their token or secret)', () => {
    const base = { AUTH_TOKENS: 'alice-token', AUTH_ADMIN_TOKENS: 'root-token', AUTH_BASIC: 'carol:pw', WEBHOOK_SECRET: SECRET };
    const parsed = loadConfig({ ...base, WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET},bearer:root-token=${SECRET},basic:carol=${CAROL_SECRET}` });
    assert.deepEqual(parsed.webhookTenantSecrets, [
      { identity: 'bearer:alice-token', secret: ALICE_SECRET },
      { identity: 'bearer:root-token', secret: SECRET },
      { identity: 'basic:carol', secret: CAROL_SECRET },
    ]);
    assert.deepEqual(loadConfig(base).webhookTenantSecrets, []);
    const refused: [Record<string, string>, RegExp][] = [
      [{ ...base, WEBHOOK_SECRET: '', WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET}` }, /extends WEBHOOK_SECRET/],
      [{ ...base, WEBHOOK_SECRETS: `alice-token=${ALICE_SECRET}` }, /entry 1 is not bearer:<token>=whsec_/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:alice-token:${ALICE_SECRET}` }, /entry 1 is not/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:=${ALICE_SECRET}` }, /entry 1 is not/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET},bearer:alice-token=whsec_c2hvcnQ=` }, /entry 2: the secret must be whsec_/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET}x` }, /entry 1: the secret must be whsec_/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:mallory-token=${ALICE_SECRET}` }, /entry 1 names a token that is not in AUTH_TOKENS/],
      [{ ...base, WEBHOOK_SECRETS: `basic:dave=${ALICE_SECRET}` }, /entry 1 names a user that is not in AUTH_BASIC/],
      [{ ...base, WEBHOOK_SECRETS: `bearer:carol=${ALICE_SECRET}` }, /entry 1 names a token/],
      [{ ...base, WEBHOOK_SECRETS: `basic:carol=${ALICE_SECRET},basic:carol=${CAROL_SECRET}` }, /entry 2 names the same credential as entry 1/],
      [{ WEBHOOK_SECRET: SECRET, WEBHOOK_SECRETS: `bearer:alice-token=${ALICE_SECRET}` }, /not in AUTH_TOKENS/],
    ];
    for (const [env, message] of refused) {
      assert.throws(
        () => loadConfig(env),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.match(err.message, message);
          for (const secret of [ALICE_SECRET, CAROL_SECRET, 'alice-token', 'mallory-token']) assert.ok(!err.message.includes(secret), err.message);
          return true;
        },
        env.WEBHOOK_SECRETS,
      );
    }
  });
});
