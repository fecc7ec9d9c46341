/**
 * Hardening (docs/security.md): GraphQL document limits over HTTP and graphql-ws, introspection,
 * suggestions and GraphiQL switches, websocket limits, per-credential rate limiting, and the
 * bound on non-multipart bodies.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { createSchema, createYoga } from 'graphql-yoga';
import { pino } from 'pino';
import type { Viewer } from '../src/jobs/access.js';
import { useAdmission } from '../src/server/useAdmission.js';
import { getIntrospectionQuery, print } from 'graphql';
import { startTestServer, type TestServer } from './support/server.js';
import { collect, postGraphQL, postMultipart, wsClient, type GraphQLResponse } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { ConfigError, loadConfig } from '../src/server/config.js';
import { createAdmission } from '../src/server/rateLimit.js';
import { createAuthenticator, parseAuthorization } from '../src/server/auth.js';
import { stripSuggestions } from '../src/server/hardening.js';
import {
  CancelEditJobDocument,
  EditImagesDocument,
  EditJobEventsDocument,
  ModelsDocument,
  type EditImagesMutation,
  type ModelsQuery,
} from './generated/graphql.js';

/** Transport, limits and admission need no inference: the engine reads the model catalogue only. */
const NO_INFERENCE = { inference: false };

const codeOf = (body: GraphQLResponse<unknown>): string | undefined => body.errors?.[0]?.extensions?.code;

/** A bare graphql-transport-ws connection, for checking exactly what the server sends and when it closes. */
class RawWs {
  readonly socket: WebSocket;
  readonly closed: Promise<number>;
  private readonly queue: Record<string, unknown>[] = [];
  private waiting: ((m: Record<string, unknown>) => void) | null = null;
  constructor(url: string, origin?: string) {
    this.socket = new WebSocket(url, 'graphql-transport-ws', origin ? { origin } : {});
    this.socket.on('message', (data) => {
      const m = JSON.parse(String(data)) as Record<string, unknown>;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(m);
      } else this.queue.push(m);
    });
    this.closed = new Promise((resolve) => this.socket.on('close', (code) => resolve(code)));
  }
  async open(payload?: Record<string, unknown>): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('error', reject);
    });
    this.send({ type: 'connection_init', ...(payload ? { payload } : {}) });
    assert.equal((await this.next()).type, 'connection_ack');
  }
  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }
  next(timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no websocket message in time')), timeoutMs);
      this.waiting = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }
  /** The next message for operation `id`, skipping others (queued for nobody). */
  async nextFor(id: string): Promise<Record<string, unknown>> {
    for (;;) {
      const m = await this.next();
      if (m.id === id) return m;
    }
  }
  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }
}

describe('configuration', () => {
  it('has documented defaults that follow NODE_ENV, and refuses bad values', () => {
    const dev = loadConfig({});
    assert.equal(dev.graphqlMaxDepth, 10);
    assert.equal(dev.graphqlMaxAliases, 15);
    assert.equal(dev.graphqlMaxTokens, 2000);
    assert.equal(dev.graphqlMaxCost, 5000);
    assert.equal(dev.graphqlMaxJsonBytes, 1024 * 1024);
    assert.equal(dev.wsInitTimeoutMs, 10_000);
    assert.equal(dev.wsMaxPayloadBytes, 1024 * 1024);
    assert.equal(dev.wsMaxSubscriptionsPerConnection, 20);
    assert.equal(dev.rateLimitPerMinute, 0);
    assert.deepEqual(
      [dev.authFailLimit, dev.authFailWindowSeconds, dev.authFailBlockSeconds, dev.tenantMaxQueuedJobs, dev.tenantMaxQueuedImages],
      [10, 600, 30, 20, 320],
    );
    assert.deepEqual([dev.authAdminTokens, dev.ownerHashSecret], [[], undefined]);
    assert.deepEqual(loadConfig({ AUTH_ADMIN_TOKENS: 'a, b' }).authAdminTokens, ['a', 'b']);
    assert.throws(() => loadConfig({ TENANT_MAX_QUEUED_JOBS: '-1' }), ConfigError);
    assert.throws(() => loadConfig({ AUTH_FAIL_LIMIT: 'x' }), ConfigError);
    assert.deepEqual([dev.introspection, dev.fieldSuggestions, dev.graphiql], [true, true, true]);
    const prod = loadConfig({ NODE_ENV: 'production' });
    assert.deepEqual([prod.introspection, prod.fieldSuggestions, prod.graphiql], [false, false, false]);
    const prodOn = loadConfig({ NODE_ENV: 'production', GRAPHQL_INTROSPECTION: 'true', GRAPHQL_SUGGESTIONS: '1', GRAPHIQL: 'on' });
    assert.deepEqual([prodOn.introspection, prodOn.fieldSuggestions, prodOn.graphiql], [true, true, true]);
    const limited = loadConfig({ RATE_LIMIT_PER_MINUTE: '60' });
    assert.equal(limited.rateLimitBurst, 60);
    assert.throws(() => loadConfig({ GRAPHQL_MAX_DEPTH: '0' }), ConfigError);
    assert.throws(() => loadConfig({ GRAPHQL_INTROSPECTION: 'maybe' }), ConfigError);
    assert.throws(() => loadConfig({ RATE_LIMIT_PER_MINUTE: '-1' }), ConfigError);
    assert.throws(() => loadConfig({ WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: 'lots' }), ConfigError);
    assert.equal(dev.pngCompressionLevel, 1);
    assert.equal(dev.ortAllowSpinning, false);
    assert.equal(loadConfig({ ORT_ALLOW_SPINNING: 'on' }).ortAllowSpinning, true);
    assert.equal(loadConfig({ PNG_COMPRESSION_LEVEL: '9' }).pngCompressionLevel, 9);
    assert.throws(() => loadConfig({ PNG_COMPRESSION_LEVEL: '10' }), ConfigError);
  });
});

describe('GraphQL document limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(
      {
        GRAPHQL_MAX_DEPTH: '4',
        GRAPHQL_MAX_ALIASES: '3',
        GRAPHQL_MAX_TOKENS: '120',
        GRAPHQL_MAX_COST: '20',
        GRAPHQL_MAX_DIRECTIVES: '2',
      },
      NO_INFERENCE,
    );
  });
  after(async () => server.close());

  const cases: [string, string, RegExp][] = [
    ['depth', '{ editJob(id: "x") { ... on EditJob { result { usage { steps } } } } }', /depth limit of 4/],
    ['aliases', '{ a: models { id } b: models { id } c: models { id } d: models { id } }', /Aliases limit of 3/],
    ['tokens', `{ models { ${'id '.repeat(200)} } }`, /Token limit of 120/],
    [
      'cost',
      '{ models { id kind description isDefault defaults { steps size scheduler guidanceScale } limits { maxN maxSteps maxPixels maxImagesPerJob } } }',
      /Cost limit of 20/,
    ],
    ['directives', '{ models @include(if: true) { id @include(if: true) kind @skip(if: false) } }', /Directives limit of 2/],
  ];

  it('refuses each over-limit document over HTTP with a coded error, and accepts ordinary ones', async () => {
    for (const [name, query, message] of cases) {
      const { status, body } = await postGraphQL(server.url, query);
      assert.ok(status === 200 || status === 400, `${name}: HTTP ${status}`);
      assert.equal(body.data ?? undefined, undefined, name);
      const error = body.errors?.find((e) => message.test(e.message));
      assert.ok(error, `${name}: ${JSON.stringify(body)}`);
      assert.ok(['BAD_USER_INPUT', 'GRAPHQL_PARSE_FAILED'].includes(error.extensions?.code ?? ''), `${name}: ${JSON.stringify(body)}`);
    }
    const strict = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({ query: cases[0]![1] }),
    });
    assert.equal(strict.status, 400, 'graphql-response+json gets 400 for an invalid document');
    assert.equal(codeOf((await strict.json()) as GraphQLResponse<unknown>), 'BAD_USER_INPUT');
    const ok = await postGraphQL<{ a: { id: string }[] }>(server.url, '{ a: models { id } editJob(id: "x") { result { usage { steps } } } }');
    assert.equal(ok.body.errors, undefined, JSON.stringify(ok.body.errors));
    assert.equal(ok.body.data!.a[0]!.id, 'tiny-edit');
  });

  it('refuses each over-limit document over graphql-ws with an error message, and the socket stays open', async () => {
    const ws = new RawWs(server.wsUrl);
    await ws.open();
    let id = 0;
    for (const [name, query, message] of cases) {
      const opId = String(++id);
      ws.send({ id: opId, type: 'subscribe', payload: { query } });
      const reply = await ws.nextFor(opId);
      assert.equal(reply.type, 'error', `${name}: ${JSON.stringify(reply)}`);
      const errors = reply.payload as { message: string; extensions?: { code?: string; http?: unknown } }[];
      assert.ok(
        errors.some((e) => message.test(e.message)),
        `${name}: ${JSON.stringify(errors)}`,
      );
      for (const e of errors) {
        assert.ok(e.extensions?.code, `${name}: no code`);
        assert.equal(e.extensions?.http, undefined, 'no HTTP-only extensions over ws');
      }
      assert.ok(ws.isOpen, `${name}: socket closed`);
    }
    ws.send({ id: 'ok', type: 'subscribe', payload: { query: '{ models { id } }' } });
    const next = await ws.nextFor('ok');
    assert.equal(next.type, 'next');
    assert.deepEqual((next.payload as { data: unknown }).data, { models: [{ id: 'tiny-edit' }, { id: 'tiny-flow-edit' }, { id: 'tiny-qwen-edit' }] });
    assert.equal((await ws.nextFor('ok')).type, 'complete');
    ws.socket.close(1000);
    assert.equal(await ws.closed, 1000);
  });

  it('keeps a graphql-ws client usable after a rejected operation', async () => {
    const closes: number[] = [];
    const client = wsClient(server.wsUrl, undefined, { onClose: (code) => closes.push(code) });
    await assert.rejects(collect(client, cases[0]![1], {}), /depth limit/);
    const models = await collect<ModelsQuery>(client, '{ models { id } }', {});
    assert.equal(models[0]!.models[0]!.id, 'tiny-edit');
    // A lazy client closes normally (1000) when idle; a rejected operation must not close it with 4500.
    assert.deepEqual(
      closes.filter((c) => c !== 1000),
      [],
    );
    await client.dispose();
  });
});

describe('default limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, NO_INFERENCE);
  });
  after(async () => server.close());

  it("let GraphiQL's full introspection query and the test operations through, and stop nested-introspection bombs", async () => {
    const full = await postGraphQL<{ __schema: { types: unknown[] } }>(
      server.url,
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }),
    );
    assert.equal(full.body.errors, undefined, JSON.stringify(full.body.errors));
    assert.ok(full.body.data!.__schema.types.length > 10);
    const models = await postGraphQL<ModelsQuery>(server.url, ModelsDocument);
    assert.equal(models.body.errors, undefined);
    const bomb = `{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }`;
    const refused = await postGraphQL(server.url, bomb);
    assert.equal(refused.body.data ?? undefined, undefined);
    assert.ok(codeOf(refused.body), JSON.stringify(refused.body));
  });

  it('shows suggestions and GraphiQL in development', async () => {
    const { body } = await postGraphQL(server.url, '{ modls { id } }');
    assert.match(body.errors![0]!.message, /Did you mean "models"\?/);
    const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /graphiql/i);
  });

  it('bounds non-multipart bodies by Content-Length and while streaming, but not uploads', async () => {
    const big = JSON.stringify({ query: '{ models { id } }', variables: { pad: 'x'.repeat(1024 * 1024 + 10) } });
    const sized = await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    assert.equal(sized.status, 413);
    assert.equal(codeOf((await sized.json()) as GraphQLResponse<unknown>), 'PAYLOAD_TOO_LARGE');
    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) controller.enqueue(bytes.subarray(i, i + 64 * 1024));
        controller.close();
      },
    });
    const chunked = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
    assert.equal(codeOf((await chunked.json()) as GraphQLResponse<unknown>), 'PAYLOAD_TOO_LARGE');
    // A 2 MB upload is over the JSON bound but well within the upload bounds: it is judged as an image.
    const noise = new Uint8Array(2 * 1024 * 1024).map((_, i) => (i * 7919) % 251);
    const upload = await postMultipart(server.url, EditImagesDocument, { prompt: 'invert' }, [{ bytes: noise, name: 'noise.png' }]);
    assert.equal(codeOf(upload.body), 'INVALID_IMAGE', JSON.stringify(upload.body));
  });

  it('refuses extra operations past WS_MAX_SUBSCRIPTIONS_PER_CONNECTION without closing the socket', async () => {
    // Uses its own server so the limit can be small.
    const small = await startTestServer({ WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: '2' });
    try {
      const big = await twoColourPng(256, 256, [200, 10, 10], [10, 10, 200]);
      const submitted = await postMultipart<EditImagesMutation>(
        small.url,
        EditImagesDocument,
        { prompt: 'sepia', size: '256x256', steps: 100 },
        [0, 1, 2, 3].map((i) => ({ bytes: big, name: `${i}.png` })),
      );
      const job = submitted.body.data!.editImages;
      const ws = new RawWs(small.wsUrl);
      await ws.open();
      const subscribe = (id: string) => ws.send({ id, type: 'subscribe', payload: { query: print(EditJobEventsDocument), variables: { id: job.id } } });
      subscribe('1');
      subscribe('2');
      subscribe('3');
      const third = await ws.nextFor('3');
      assert.equal(third.type, 'error', JSON.stringify(third));
      assert.equal((third.payload as { extensions: { code: string } }[])[0]!.extensions.code, 'BAD_USER_INPUT');
      assert.match((third.payload as { message: string }[])[0]!.message, /limit is 2/);
      assert.ok(ws.isOpen);
      await postGraphQL(small.url, CancelEditJobDocument, { id: job.id });
      // Both live subscriptions end (EditCancelled, then complete); then there is room again.
      for (const id of ['1', '2']) {
        for (;;) {
          const m = await ws.nextFor(id);
          if (m.type === 'complete') break;
          assert.equal(m.type, 'next');
        }
      }
      ws.send({ id: '4', type: 'subscribe', payload: { query: '{ models { id } }' } });
      assert.equal((await ws.nextFor('4')).type, 'next');
      ws.socket.close(1000);
      await ws.closed;
    } finally {
      await small.close();
    }
  });
});

describe('production switches', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ NODE_ENV: 'production', AUTH_TOKENS: 'tok' }, NO_INFERENCE);
  });
  after(async () => server.close());
  const auth = { authorization: 'Bearer tok' };

  it('turns introspection, suggestions and GraphiQL off', async () => {
    const schema = await postGraphQL(server.url, '{ __schema { queryType { name } } }', {}, auth);
    assert.match(schema.body.errors![0]!.message, /introspection has been disabled/);
    assert.ok(codeOf(schema.body));
    const type = await postGraphQL(server.url, '{ __type(name: "Query") { name } }', {}, auth);
    assert.match(type.body.errors![0]!.message, /introspection has been disabled/);
    const typename = await postGraphQL<{ __typename: string }>(server.url, '{ __typename }', {}, auth);
    assert.equal(typename.body.data!.__typename, 'Query');
    const field = await postGraphQL(server.url, '{ modls { id } }', {}, auth);
    assert.equal(field.body.errors![0]!.message, 'Cannot query field "modls" on type "Query".');
    // A coercion error (raised while executing, not validating) loses its suggestion too.
    const red = await twoColourPng(8, 8, [1, 2, 3], [1, 2, 3]);
    const coerced = await postMultipart(server.url, EditImagesDocument, { prompt: 'x', scheduler: 'EULER_ANCESTRL' }, [{ bytes: red, name: 'r.png' }], {
      'apollo-require-preflight': 'true',
      ...auth,
    });
    assert.equal(codeOf(coerced.body), 'BAD_USER_INPUT');
    assert.doesNotMatch(coerced.body.errors![0]!.message, /Did you mean/);
    const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
    assert.equal(page.status, 401, 'no GraphiQL page, so the request needs credentials like any other');
    await page.arrayBuffer();
    const pageAuthed = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html', ...auth } });
    assert.doesNotMatch(pageAuthed.headers.get('content-type') ?? '', /text\/html/);
    assert.doesNotMatch(await pageAuthed.text(), /graphiql/i);
  });

  it('strips every form of "Did you mean" that graphql-js writes', () => {
    assert.equal(stripSuggestions('Cannot query field "modls" on type "Query". Did you mean "models"?'), 'Cannot query field "modls" on type "Query".');
    assert.equal(stripSuggestions('Value "X" does not exist in "E" enum. Did you mean the enum value "Y" or "Z"?'), 'Value "X" does not exist in "E" enum.');
    assert.equal(stripSuggestions('Unknown argument "sze". Did you mean "size", "seed", or "steps"?'), 'Unknown argument "sze".');
  });
});

describe('websocket limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ WS_INIT_TIMEOUT_MS: '300', WS_MAX_PAYLOAD_BYTES: '4096' }, NO_INFERENCE);
  });
  after(async () => server.close());

  it('closes a socket that never sends connection_init after WS_INIT_TIMEOUT_MS (4408)', async () => {
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    // A socket that did init is not closed by the same timer (4408 is the init timeout's code alone).
    const initialised = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    const acked = new Promise<void>((resolve) => initialised.on('message', () => resolve()));
    initialised.on('open', () => initialised.send(JSON.stringify({ type: 'connection_init' })));
    const code = await new Promise<number>((resolve) => socket.on('close', (c) => resolve(c)));
    assert.equal(code, 4408);
    await acked;
    assert.equal(initialised.readyState, WebSocket.OPEN);
    initialised.close();
  });

  it('gives graphql-ws clients the HTTP codes without HTTP hints: variable errors, and documents with no single operation', async () => {
    const ws = new RawWs(server.wsUrl);
    await ws.open();
    ws.send({ id: '1', type: 'subscribe', payload: { query: 'subscription($id: ID!) { editJobEvents(id: $id) { __typename } }', variables: { id: {} } } });
    const coercion = (await ws.next()) as { payload: { errors: { extensions: Record<string, unknown> }[] } };
    assert.deepEqual(coercion.payload.errors[0]!.extensions, { code: 'BAD_USER_INPUT' });
    await ws.next(); // complete
    const unresolvable: [string, string | undefined][] = [
      ['{ models { id } } { models { id } }', undefined],
      ['query A { models { id } } query B { models { id } }', undefined],
      ['query A { models { id } } query B { models { id } }', 'C'],
    ];
    for (const [query, operationName] of unresolvable) {
      ws.send({ id: '2', type: 'subscribe', payload: { query, operationName } });
      const refused = (await ws.next()) as { type: string; payload: { extensions?: { code?: string } }[] };
      assert.equal(refused.type, 'error');
      assert.equal(refused.payload[0]!.extensions?.code, 'OPERATION_RESOLUTION_FAILURE', query);
      const http = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, operationName }),
      });
      const body = (await http.json()) as { errors: { extensions: { code: string } }[] };
      assert.deepEqual([http.status, body.errors[0]!.extensions.code], [400, 'OPERATION_RESOLUTION_FAILURE'], query);
    }
    ws.socket.close();
  });

  it('closes a socket that sends a message over WS_MAX_PAYLOAD_BYTES (1009)', async () => {
    const ws = new RawWs(server.wsUrl);
    await ws.open();
    ws.send({ id: '1', type: 'subscribe', payload: { query: `{ models { id } } # ${'x'.repeat(8192)}` } });
    assert.equal(await ws.closed, 1009);
  });
});

describe('cross-origin browsers', () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, apollo-require-preflight, authorization' },
    });
  /** Resolves with the HTTP status that refused the upgrade, or 101 when the socket opened. */
  const upgrade = (wsUrl: string, origin: string) =>
    new Promise<number>((resolve) => {
      const socket = new WebSocket(wsUrl, 'graphql-transport-ws', { origin });
      socket.on('open', () => {
        socket.close();
        resolve(101);
      });
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('error', () => undefined);
    });

  it('by default: no CORS grant to any origin, and websocket upgrades from other origins are refused', async () => {
    const server = await startTestServer({}, NO_INFERENCE);
    try {
      const pre = await preflight(server.url, 'https://evil.example');
      await pre.arrayBuffer();
      assert.equal(pre.headers.get('access-control-allow-origin'), null);
      assert.ok(pre.status >= 400);
      const post = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { origin: 'https://evil.example', 'content-type': 'application/json' },
        body: '{"query":"{ models { id } }"}',
      });
      await post.arrayBuffer();
      assert.equal(post.headers.get('access-control-allow-origin'), null);
      assert.equal(await upgrade(server.wsUrl, 'https://evil.example'), 401);
      assert.equal(await upgrade(server.wsUrl, server.url), 101, 'same origin (GraphiQL, the progress page) is fine');
      const ws = new RawWs(server.wsUrl);
      await ws.open();
      ws.socket.close(1000);
      await ws.closed;
    } finally {
      await server.close();
    }
  });

  it('CORS_ORIGINS grants the listed origins (preflight without credentials), and their websockets', async () => {
    const server = await startTestServer({ CORS_ORIGINS: 'https://app.example,https://other.example', AUTH_TOKENS: 'tok' }, NO_INFERENCE);
    try {
      const pre = await preflight(server.url, 'https://app.example');
      await pre.arrayBuffer();
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
      const evil = await preflight(server.url, 'https://evil.example');
      await evil.arrayBuffer();
      assert.notEqual(evil.headers.get('access-control-allow-origin'), 'https://evil.example');
      assert.equal(await upgrade(server.wsUrl, 'https://other.example'), 101);
      // Whatever the Origin (or none), responses say that they vary with it.
      for (const origin of ['https://app.example', 'https://evil.example', undefined]) {
        const res = await fetch(`${server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer tok', ...(origin ? { origin } : {}) },
          body: '{"query":"{ __typename }"}',
        });
        await res.arrayBuffer();
        assert.match(res.headers.get('vary') ?? '', /(^|, *)Origin($|,)/i, `Vary for origin ${origin}`);
      }
      assert.equal(await upgrade(server.wsUrl, 'https://evil.example'), 401);
    } finally {
      await server.close();
    }
  });
});

describe('rate limiting', () => {
  it('keys on the principal: every spelling of one credential is one bucket; anonymous clients by IP', async () => {
    const auth = createAuthenticator({
      authTokens: ['alice-token', 'bob-token'],
      authBasic: [{ user: 'carol', pass: 'pw' }],
      authAdminTokens: [],
      ownerHashSecret: undefined,
    });
    const admission = createAdmission({ auth, perMinute: 60, burst: 3, authFailLimit: 0, authFailWindowSeconds: 60, authFailBlockSeconds: 1 });
    const spellings = ['Bearer alice-token', 'bearer alice-token', 'BEARER  alice-token', 'Bearer\talice-token', ' Bearer alice-token '];
    const results = await Promise.all(spellings.map((a) => admission.admit(a, '10.0.0.1')));
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, true, true, false, false],
    );
    assert.equal((await admission.admit('Bearer bob-token', '10.0.0.1')).ok, true, 'another principal has its own bucket');
    const basic = ['Y2Fyb2w6cHc=', 'Y2Fyb2w6cHc', 'Y2Fyb2w6cHc==', ' Y2Fyb2w6cHc= '];
    const basicResults = [];
    for (const b of basic) basicResults.push((await admission.admit(`basic ${b}`, '10.0.0.2')).ok);
    assert.deepEqual(basicResults, [true, true, true, false]);
    const anon = createAdmission({
      auth: createAuthenticator({ authTokens: [], authBasic: [], authAdminTokens: [], ownerHashSecret: undefined }),
      perMinute: 2,
      authFailLimit: 5,
      authFailWindowSeconds: 60,
      authFailBlockSeconds: 1,
    });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await anon.admit(`Bearer made-up-${i}`, '10.0.0.3')).ok);
    assert.deepEqual(statuses, [true, true, false]);
    assert.equal((await anon.admit(undefined, '10.0.0.4')).ok, true, 'per IP');
  });

  it('parses the scheme case-insensitively with any whitespace, and Basic by its decoded value', () => {
    assert.deepEqual(parseAuthorization('bEaReR \t tok'), { scheme: 'bearer', token: 'tok' });
    assert.deepEqual(parseAuthorization('Basic YTpiOmM='), { scheme: 'basic', user: 'a', pass: 'b:c' });
    assert.deepEqual(parseAuthorization('Basic YTpiOmM'), { scheme: 'basic', user: 'a', pass: 'b:c' });
    assert.equal(parseAuthorization('Digest abc'), null);
    assert.equal(parseAuthorization('Bearer'), null);
    assert.equal(parseAuthorization(undefined), null);
    const auth = createAuthenticator({ authTokens: ['t1'], authBasic: [{ user: 'u', pass: 'p' }], authAdminTokens: ['root'], ownerHashSecret: undefined });
    const p = auth.identify('Bearer t1')!;
    assert.equal(p.admin, false);
    assert.equal(p.owner, auth.identify('bearer   t1')!.owner);
    assert.doesNotMatch(p.owner, /t1/);
    assert.equal(auth.identify('Bearer root')!.admin, true);
    assert.equal(auth.identify('Basic dTpw')!.owner, auth.identify('Basic dTpw==')!.owner);
    assert.equal(auth.identify('Basic dTpx'), null);
    // The owner id is keyed: another deployment secret gives other ids.
    const other = createAuthenticator({ authTokens: ['t1'], authBasic: [], authAdminTokens: [], ownerHashSecret: 's' });
    assert.notEqual(other.identify('Bearer t1')!.owner, p.owner);
  });

  it('blocks an IP after too many failed authentications, with a doubling backoff', async () => {
    const auth = createAuthenticator({ authTokens: ['good'], authBasic: [], authAdminTokens: [], ownerHashSecret: undefined });
    const admission = createAdmission({ auth, perMinute: 0, authFailLimit: 3, authFailWindowSeconds: 60, authFailBlockSeconds: 1 });
    const first = [];
    for (let i = 0; i < 5; i++) first.push(await admission.admit(`Bearer wrong-${i}`, '10.1.0.1'));
    assert.deepEqual(
      first.map((r) => (r.ok ? 200 : r.status)),
      [401, 401, 401, 429, 429],
    );
    const blocked = first[3]!;
    assert.ok(!blocked.ok && blocked.status === 429 && blocked.retryAfterSeconds === 1);
    const good = await admission.admit('Bearer good', '10.1.0.1');
    assert.ok(!good.ok && good.status === 429, 'a blocked IP is not answered, even with valid credentials');
    assert.equal((await admission.admit('Bearer good', '10.1.0.2')).ok, true, 'other IPs are unaffected');
    for (let i = 0; i < 5; i++) assert.ok(!(await admission.admit(undefined, '10.1.0.3')).ok);
    assert.equal((await admission.admit('Bearer good', '10.1.0.3')).ok, true, 'requests without credentials are not failures');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await admission.admit('Bearer good', '10.1.0.1')).ok, true, 'the block ends');
    const again = await admission.admit('Bearer wrong', '10.1.0.1');
    assert.ok(!again.ok && again.status === 429 && again.retryAfterSeconds === 2, 'one more failure doubles the block');
  });

  it('answers 429 with Retry-After per credential, shaped for /graphql, /v1/ and graphql-ws; /healthz and GraphiQL are free', async () => {
    const server = await startTestServer({ RATE_LIMIT_PER_MINUTE: '3', AUTH_TOKENS: 'alpha,beta' }, NO_INFERENCE);
    try {
      const alpha = { authorization: 'Bearer alpha' };
      for (let i = 0; i < 3; i++) assert.equal((await postGraphQL(server.url, '{ models { id } }', {}, alpha)).status, 200);
      const limited = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...alpha },
        body: '{"query":"{ models { id } }"}',
      });
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      const body = (await limited.json()) as GraphQLResponse<unknown>;
      assert.equal(codeOf(body), 'RATE_LIMITED');
      const rest = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', headers: alpha, body: new FormData() });
      assert.equal(rest.status, 429);
      assert.ok(rest.headers.get('retry-after'));
      const restBody = (await rest.json()) as { error: { message: string; type: string; code: string } };
      assert.equal(restBody.error.code, 'RATE_LIMITED');
      assert.equal(typeof restBody.error.message, 'string');
      assert.equal(typeof restBody.error.type, 'string');
      // Another credential has its own bucket; health checks and the GraphiQL page are not counted.
      assert.equal((await postGraphQL(server.url, '{ models { id } }', {}, { authorization: 'Bearer beta' })).status, 200);
      for (let i = 0; i < 5; i++) {
        const health = await fetch(`${server.url}/healthz`);
        assert.equal(health.status, 200);
        await health.arrayBuffer();
        const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
        assert.equal(page.status, 200);
        await page.arrayBuffer();
      }
      // Over graphql-ws, an operation past the limit is refused; the connection stays open.
      const ws = new RawWs(server.wsUrl);
      await ws.open({ authorization: 'Bearer alpha' });
      ws.send({ id: '1', type: 'subscribe', payload: { query: '{ models { id } }' } });
      const reply = await ws.nextFor('1');
      assert.equal(reply.type, 'error');
      assert.equal((reply.payload as { extensions: { code: string } }[])[0]!.extensions.code, 'RATE_LIMITED');
      assert.ok(ws.isOpen);
      ws.socket.close(1000);
      await ws.closed;
    } finally {
      await server.close();
    }
  });

  it('limits anonymous clients by IP, whatever Authorization header they send', async () => {
    const server = await startTestServer({ RATE_LIMIT_PER_MINUTE: '2' }, NO_INFERENCE);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await postGraphQL(server.url, '{ models { id } }', {}, { authorization: `Bearer random-${i}` })).status);
      assert.deepEqual(statuses, [200, 200, 429, 429]);
    } finally {
      await server.close();
    }
  });
});

describe('admission plugin', () => {
  /** useAdmission alone on a bare Yoga over real HTTP: no engine, no jobs, no routes. */
  async function bareYoga(admission: ReturnType<typeof createAdmission>, challenge: string) {
    let resolved = 0;
    const yoga = createYoga<{ req: IncomingMessage }, { principal: Viewer }>({
      schema: createSchema<{ req: IncomingMessage; principal: Viewer }>({
        typeDefs: 'type Query { owner: String! } type Subscription { owner: String! }',
        resolvers: {
          Query: {
            owner: (_: unknown, __: unknown, ctx: { principal: Viewer }) => {
              resolved++;
              return ctx.principal.owner;
            },
          },
          Subscription: {
            owner: {
              async *subscribe(_: unknown, __: unknown, ctx: { principal: Viewer }) {
                resolved++;
                yield { owner: ctx.principal.owner };
              },
            },
          },
        },
      }),
      plugins: [useAdmission({ admission, challenge, trustProxy: false, log: pino({ level: 'silent' }) })],
    });
    const http = createServer(yoga);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/graphql`;
    return { url, resolved: () => resolved, close: () => new Promise<void>((resolve) => http.close(() => resolve())) };
  }

  it('admits HTTP and SSE requests into context.principal, and answers refusals 401/429 in the GraphQL shape before executing', async () => {
    const auth = createAuthenticator({ authTokens: ['alpha'], authBasic: [], authAdminTokens: [], ownerHashSecret: 'k' });
    const admission = createAdmission({ auth, perMinute: 2, authFailLimit: 0, authFailWindowSeconds: 60, authFailBlockSeconds: 60 });
    const server = await bareYoga(admission, auth.challenge);
    try {
      const post = (headers: Record<string, string>, query = '{ owner }') =>
        fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ query }) });
      const anon = await post({});
      assert.equal(anon.status, 401);
      assert.equal(anon.headers.get('www-authenticate'), auth.challenge);
      assert.deepEqual(await anon.json(), { errors: [{ message: 'missing or invalid credentials', extensions: { code: 'UNAUTHENTICATED' } }] });
      const alpha = { authorization: 'Bearer alpha' };
      const owner = auth.identify('Bearer alpha')!.owner;
      assert.deepEqual(await (await post(alpha)).json(), { data: { owner } });
      const sse = await post({ ...alpha, accept: 'text/event-stream' }, 'subscription { owner }');
      assert.equal(sse.status, 200);
      assert.match(await sse.text(), new RegExp(`"owner":"${owner}"`));
      const limited = await post(alpha);
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      const body = (await limited.json()) as { errors: { extensions: { code: string; retryAfterSeconds: number } }[] };
      assert.equal(body.errors[0]!.extensions.code, 'RATE_LIMITED');
      assert.equal(body.errors[0]!.extensions.retryAfterSeconds, Number(limited.headers.get('retry-after')));
      assert.equal(server.resolved(), 2, 'refused requests execute nothing');
    } finally {
      await server.close();
    }
  });
});
