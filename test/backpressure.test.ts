/** A bounded queue answers QUEUE_FULL at once with a retry hint; a job over its time limit ends with TIMEOUT. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse, postMultipart } from './support/graphql.js';
import { twoColourPng } from './support/images.js';

const SUBMIT = 'mutation($images:[Upload!]!,$size:String,$steps:Int){ editImages(images:$images, prompt:"sepia", size:$size, steps:$steps){ id status } }';
const EVENTS = 'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditFailed { error { code message } } } }';

describe('backpressure and time limits', () => {
  let server: TestServer;
  let big: Buffer;
  before(async () => {
    server = await startTestServer({ MAX_QUEUED_JOBS: '1', JOB_TIMEOUT_SECONDS: '1' });
    big = await twoColourPng(512, 512, [200, 60, 30], [20, 120, 220]);
  });
  after(async () => server.close());

  it('refuses a job beyond the queue bound with QUEUE_FULL (GraphQL and REST), and times out a long job', async () => {
    const files = [big, big, big, big].map((bytes, i) => ({ bytes, name: `${i}.png` }));
    const running = await postMultipart<{ editImages: { id: string } }>(server.url, SUBMIT, { size: '512x512', steps: 100 }, files);
    const runningId = running.body.data!.editImages.id;
    await new Promise((r) => setTimeout(r, 200)); // let it leave the queue
    const queued = await postMultipart<{ editImages: { id: string; status: string } }>(server.url, SUBMIT, { size: '64x64', steps: 2 }, [files[0]!]);
    assert.equal(queued.body.data!.editImages.status, 'QUEUED');
    const refused = await postMultipart(server.url, SUBMIT, { size: '64x64', steps: 2 }, [files[0]!]);
    assert.equal(refused.body.errors?.[0]?.extensions?.code, 'QUEUE_FULL');
    assert.ok(Number((refused.body.errors?.[0]?.extensions as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds) > 0);
    const form = new FormData();
    form.set('images', new Blob([new Uint8Array(big)]), 'a.png');
    form.set('prompt', 'sepia');
    form.set('size', '64x64');
    const rest = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    assert.equal(rest.status, 503);
    assert.ok(Number(rest.headers.get('retry-after')) > 0);
    assert.equal(((await rest.json()) as { error: { code: string } }).error.code, 'QUEUE_FULL');

    const events = (await collectSse<{ editJobEvents: { __typename: string; error?: { code: string } } }>(server.url, EVENTS, { id: runningId })).events;
    const last = events.at(-1)!.editJobEvents;
    assert.equal(last.__typename, 'EditFailed');
    assert.equal(last.error!.code, 'TIMEOUT');
    const after = (await collectSse<{ editJobEvents: { __typename: string } }>(server.url, EVENTS, { id: queued.body.data!.editImages.id })).events;
    assert.equal(after.at(-1)!.editJobEvents.__typename, 'EditCompleted');
  });
});
