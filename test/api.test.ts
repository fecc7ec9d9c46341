/**
 * The GraphQL API end to end over real sockets: multipart uploads (fetch/FormData and
 * apollo-upload-client), graphql-ws and SSE subscriptions, polling, cancel, errors and auth.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ApolloClient, InMemoryCache } from '@apollo/client/core/index.js';
import createUploadLink from 'apollo-upload-client/createUploadLink.mjs';
import WebSocket from 'ws';
import { print } from 'graphql';
import { startTestServer, type TestServer } from './support/server.js';
import { collect, collectSse, postGraphQL, postMultipart, wsClient } from './support/graphql.js';
import { expectedColour, maxChannelDiff, pixelAt, twoColourPng, type Rgb } from './support/images.js';
import {
  CancelEditJobDocument,
  EditImagesDocument,
  EditJobDocument,
  EditJobEventsDocument,
  ModelsDocument,
  type EditImagesMutation,
  type EditJobEventsSubscription,
  type EditJobQuery,
  type ModelsQuery,
} from './generated/graphql.js';

type Event = EditJobEventsSubscription['editJobEvents'];
const RED: Rgb = [200, 60, 30];
const BLUE: Rgb = [20, 120, 220];

async function submit(server: TestServer, variables: Record<string, unknown>, files: Uint8Array[], headers?: Record<string, string>) {
  const res = await postMultipart<EditImagesMutation>(
    server.url,
    EditImagesDocument,
    variables,
    files.map((bytes, i) => ({ bytes, name: `in${i}.png` })),
    headers,
  );
  assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
  return res.body.data!.editImages;
}

function assertOneTerminalAtEnd(events: Event[]): void {
  const terminal = events.filter((e) => ['EditCompleted', 'EditFailed', 'EditCancelled'].includes(e.__typename));
  assert.equal(terminal.length, 1, `terminal events: ${events.map((e) => e.__typename).join(',')}`);
  assert.equal(events[events.length - 1], terminal[0]);
}

describe('GraphQL API', () => {
  let server: TestServer;
  let red: Buffer;
  let blue: Buffer;
  let big: Buffer;

  before(async () => {
    server = await startTestServer();
    red = await twoColourPng(32, 32, RED, RED);
    blue = await twoColourPng(32, 32, BLUE, BLUE);
    big = await twoColourPng(512, 512, RED, BLUE);
  });
  after(async () => server.close());

  it('lists the built-in model with its defaults and limits', async () => {
    const { body } = await postGraphQL<ModelsQuery>(server.url, ModelsDocument);
    const model = body.data!.models.find((m) => m.id === 'tiny-edit')!;
    assert.equal(model.kind, 'instruct-pix2pix');
    assert.equal(model.isDefault, true);
    assert.equal(model.defaults.scheduler, 'EULER_ANCESTRAL');
    assert.ok(model.limits.maxN >= 2);
  });

  it('edits three images with n=2 into six outputs, input by input, streamed over graphql-ws', async () => {
    const job = await submit(server, { prompt: 'sepia', prompts: ['sepia', 'invert', 'grayscale'], n: 2, size: '32x32', steps: 6, previewEvery: 3, seed: 11 }, [
      red,
      blue,
      red,
    ]);
    assert.ok(['QUEUED', 'RUNNING'].includes(job.status));
    assert.equal(job.inputImages, 3);
    const client = wsClient(server.wsUrl);
    const events = (await collect<EditJobEventsSubscription>(client, EditJobEventsDocument, { id: job.id })).map((e) => e.editJobEvents);
    await client.dispose();
    assertOneTerminalAtEnd(events);
    const done = events[events.length - 1]!;
    assert.equal(done.__typename, 'EditCompleted');
    if (done.__typename !== 'EditCompleted') return;
    const { images, usage } = done.result;
    assert.deepEqual(
      images.map((i) => [i.index, i.inputIndex, i.variant]),
      [
        [0, 0, 0],
        [1, 0, 1],
        [2, 1, 0],
        [3, 1, 1],
        [4, 2, 0],
        [5, 2, 1],
      ],
    );
    assert.equal(usage.inputImages, 3);
    assert.equal(usage.generatedImages, 6);
    assert.equal(images[0]!.seed, 11);
    const wants = [expectedColour(RED, 'sepia'), expectedColour(BLUE, 'invert'), expectedColour(RED, 'grayscale')];
    for (const img of images) {
      const got = await pixelAt(Buffer.from(img.b64Json, 'base64'), 16, 16);
      assert.ok(maxChannelDiff(got, wants[img.inputIndex]!) <= 2, `image ${img.index}: ${got} vs ${wants[img.inputIndex]}`);
    }
    const progress = events.filter((e) => e.__typename === 'EditProgress');
    const steps = progress.map((e) => (e.__typename === 'EditProgress' ? e.step : 0));
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      'steps never go backwards',
    );
    assert.equal(steps[steps.length - 1], 6);
    const withPreviews = progress.filter((e) => e.__typename === 'EditProgress' && e.previews.length > 0);
    assert.ok(withPreviews.length >= 1);
    for (const e of withPreviews) if (e.__typename === 'EditProgress') assert.equal(e.previews.length, 6);
  });

  it('streams the same job over SSE, and a late subscriber after completion gets just the final event', async () => {
    const job = await submit(server, { prompt: 'invert', size: '32x32', steps: 4 }, [red]);
    const live = await collectSse<EditJobEventsSubscription>(server.url, EditJobEventsDocument, { id: job.id });
    assert.equal(live.status, 200);
    assertOneTerminalAtEnd(live.events.map((e) => e.editJobEvents));
    const late = await collectSse<EditJobEventsSubscription>(server.url, EditJobEventsDocument, { id: job.id });
    assert.deepEqual(
      late.events.map((e) => e.editJobEvents.__typename),
      ['EditCompleted'],
    );
    const client = wsClient(server.wsUrl);
    const lateWs = await collect<EditJobEventsSubscription>(client, EditJobEventsDocument, { id: job.id });
    await client.dispose();
    assert.deepEqual(
      lateWs.map((e) => e.editJobEvents.__typename),
      ['EditCompleted'],
    );
    const polled = await postGraphQL<EditJobQuery>(server.url, EditJobDocument, { id: job.id });
    assert.equal(polled.body.data!.editJob!.status, 'SUCCEEDED');
    assert.equal(polled.body.data!.editJob!.result!.images.length, 1);
  });

  it('uploads through Apollo Client with apollo-upload-client', async () => {
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: createUploadLink({ uri: `${server.url}/graphql`, headers: { 'apollo-require-preflight': 'true' } }),
    });
    const file = new File([new Uint8Array(red)], 'red.png', { type: 'image/png' });
    const result = await client.mutate({ mutation: EditImagesDocument, variables: { images: [file, file], prompt: 'invert', size: '32x32', steps: 3 } });
    const job = result.data!.editImages;
    assert.equal(job.inputImages, 2);
    const events = await collectSse<EditJobEventsSubscription>(server.url, EditJobEventsDocument, { id: job.id });
    const last = events.events[events.events.length - 1]!.editJobEvents;
    assert.equal(last.__typename, 'EditCompleted');
  });

  it('queues jobs with positions and cancels a running job before its next step, leaving others unaffected', async () => {
    const running = await submit(server, { prompt: 'sepia', size: '512x512', steps: 100 }, [big, big, big, big]);
    const queued = await submit(server, { prompt: 'invert', size: '32x32', steps: 2 }, [red]);
    assert.equal(queued.status, 'QUEUED');
    assert.equal(queued.queuePosition, 1);
    const client = wsClient(server.wsUrl);
    const seen: Event[] = [];
    const done = new Promise<void>((resolve, reject) => {
      client.subscribe<EditJobEventsSubscription>(
        { query: print(EditJobEventsDocument), variables: { id: running.id } },
        {
          next: (v) => {
            const e = v.data!.editJobEvents;
            seen.push(e);
            if (e.__typename === 'EditProgress' && e.step === 2) void postGraphQL(server.url, CancelEditJobDocument, { id: running.id });
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    await done;
    assertOneTerminalAtEnd(seen);
    assert.equal(seen[seen.length - 1]!.__typename, 'EditCancelled');
    const maxStep = Math.max(...seen.map((e) => (e.__typename === 'EditProgress' ? e.step : 0)));
    assert.ok(maxStep < 100, `ran to step ${maxStep} after cancel`);
    const other = await collect<EditJobEventsSubscription>(client, EditJobEventsDocument, { id: queued.id });
    await client.dispose();
    assert.equal(other[other.length - 1]!.editJobEvents.__typename, 'EditCompleted');
    const again = await postGraphQL<{ cancelEditJob: { status: string } }>(server.url, CancelEditJobDocument, { id: running.id });
    assert.equal(again.body.data!.cancelEditJob.status, 'CANCELLED');
  });

  it('refuses bad input with stable codes before queueing anything', async () => {
    const cases: [Record<string, unknown>, Uint8Array[], string][] = [
      [{ prompt: 'x', n: 0 }, [red], 'BAD_USER_INPUT'],
      [{ prompt: 'x', n: 1000 }, [red], 'BAD_USER_INPUT'],
      [{ prompt: 'x', size: 'huge' }, [red], 'BAD_USER_INPUT'],
      [{ prompt: 'x', size: '8192x8192' }, [red], 'IMAGE_TOO_LARGE'],
      [{ prompt: 'x', prompts: ['a', 'b'] }, [red], 'BAD_USER_INPUT'],
      [{ prompt: 'x', model: '../../etc/passwd' }, [red], 'NOT_FOUND'],
      [{ prompt: 'x' }, [new TextEncoder().encode('this is text, not a PNG')], 'INVALID_IMAGE'],
    ];
    for (const [variables, files, code] of cases) {
      const res = await postMultipart(
        server.url,
        EditImagesDocument,
        variables,
        files.map((bytes) => ({ bytes, name: 'x.png' })),
      );
      assert.equal(res.body.errors?.[0]?.extensions?.code, code, `${JSON.stringify(variables)} → ${JSON.stringify(res.body)}`);
      assert.ok(res.status < 500);
    }
    const unknownJob = await postGraphQL<{ editJob: null }>(server.url, EditJobDocument, { id: 'no-such-job' });
    assert.equal(unknownJob.body.data!.editJob, null);
    const noCsrf = await postMultipart(server.url, EditImagesDocument, { prompt: 'x' }, [{ bytes: red, name: 'r.png' }], {});
    assert.equal(noCsrf.status, 403);
  });

  it('decodes every upload in full at submission: a truncated PNG is refused by index and name, and no job is made', async () => {
    const truncated = big.subarray(0, Math.floor(big.length * 0.6));
    const res = await postMultipart(server.url, EditImagesDocument, { prompt: 'x', size: '32x32' }, [
      { bytes: red, name: 'ok.png' },
      { bytes: truncated, name: 'cat.png' },
    ]);
    assert.equal(res.body.errors?.[0]?.extensions?.code, 'INVALID_IMAGE', JSON.stringify(res.body));
    assert.match(res.body.errors![0]!.message, /^images\[1\] "cat\.png": /);
    assert.equal((res.body.data as { editImages?: unknown } | null | undefined)?.editImages ?? null, null);
  });
});

describe('GraphQL API with auth', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ AUTH_TOKENS: 'secret-token', AUTH_BASIC: 'alice:wonderland' });
  });
  after(async () => server.close());

  it('refuses HTTP and SSE without credentials with 401 and WWW-Authenticate, and accepts Bearer and Basic', async () => {
    const anon = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query":"{ models { id } }"}',
    });
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.equal(((await anon.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code, 'UNAUTHENTICATED');
    const sse = await collectSse(server.url, EditJobEventsDocument, { id: 'x' });
    assert.equal(sse.status, 401);
    const bearer = await postGraphQL<ModelsQuery>(server.url, ModelsDocument, {}, { authorization: 'Bearer secret-token' });
    assert.equal(bearer.status, 200);
    assert.ok(bearer.body.data!.models.length > 0);
    const basic = await postGraphQL<ModelsQuery>(
      server.url,
      ModelsDocument,
      {},
      { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` },
    );
    assert.equal(basic.status, 200);
    const wrong = await postGraphQL(server.url, ModelsDocument, {}, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  });

  it('closes an unauthenticated websocket with 4401 and serves an authenticated one', async () => {
    const code = await new Promise<number>((resolve) => {
      const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
      socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: 'Bearer wrong' } })));
      socket.on('close', (c) => resolve(c));
    });
    assert.equal(code, 4401);
    const client = wsClient(server.wsUrl, 'Bearer secret-token');
    const result = await collect<ModelsQuery>(client, ModelsDocument, {});
    await client.dispose();
    assert.ok(result[0]!.models.length > 0);
  });
});
