/**
 * GraphQL uploads and REST's /v1/images/edits read multipart bodies with one reader and one set of
 * limits (src/server/multipart.ts): each limit is refused while the body is still streaming. The
 * requests here keep their bodies open after the offending part, so an answer proves that the
 * server did not wait for (or buffer) the rest.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startTestServer, type TestServer } from './support/server.js';
import { solidPng } from './support/images.js';

const B = 'openboundary';
const KB = 1024;

let server: TestServer;

function field(name: string, value: string): Buffer {
  return Buffer.from(`--${B}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
}

function fileHead(name: string): Buffer {
  return Buffer.from(`--${B}\r\ncontent-disposition: form-data; name="${name}"; filename="a.png"\r\ncontent-type: image/png\r\n\r\n`);
}

/** Writes `head` and leaves the body open; resolves with the answer (the request is then destroyed). */
function answerWhileOpen(path: string, head: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${B}`, 'transfer-encoding': 'chunked', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
        });
      },
    );
    req.on('error', reject);
    for (const chunk of head) req.write(chunk);
  });
}

const GRAPHQL = { path: '/graphql', headers: { 'apollo-require-preflight': '1' } };
const REST = { path: '/v1/images/edits', headers: {} };

/** The code of a GraphQL or REST error body. */
function codeOf(body: Record<string, unknown>): unknown {
  const errors = body.errors as { extensions?: { code?: unknown } }[] | undefined;
  return errors?.[0]?.extensions?.code ?? (body.error as { code?: unknown } | undefined)?.code;
}

const operations = JSON.stringify({ query: 'mutation($i:[Upload!]!){editImages(images:$i,prompt:"invert"){id}}', variables: { i: [null] } });

describe('one multipart reader for GraphQL and REST', () => {
  let png: Buffer;
  before(async () => {
    server = await startTestServer({ MAX_FILE_BYTES: String(64 * KB), MAX_IMAGES_PER_JOB: '2' });
    png = await solidPng(8, 8, [10, 20, 30]);
  });
  after(async () => server.close());

  it('refuses a file past MAX_FILE_BYTES with 413 before the body ends, on both endpoints', async () => {
    const big = Buffer.alloc(65 * KB, 7);
    const graphql = await answerWhileOpen(
      GRAPHQL.path,
      [field('operations', operations), field('map', '{"0":["variables.i.0"]}'), fileHead('0'), big],
      GRAPHQL.headers,
    );
    const rest = await answerWhileOpen(REST.path, [field('prompt', 'invert'), fileHead('image'), big]);
    assert.deepEqual([graphql.status, codeOf(graphql.body)], [413, 'PAYLOAD_TOO_LARGE']);
    assert.deepEqual([rest.status, codeOf(rest.body)], [413, 'PAYLOAD_TOO_LARGE']);
    assert.equal((rest.body.error as { param?: unknown }).param, 'image');
  });

  it('refuses the 65th text field with 400 before the body ends, on both endpoints', async () => {
    const many = Array.from({ length: 65 }, () => field('prompt', 'x'));
    const graphql = await answerWhileOpen(GRAPHQL.path, [field('operations', operations), ...many], GRAPHQL.headers);
    const rest = await answerWhileOpen(REST.path, many);
    // GraphQL refuses the first unknown field already; REST counts them.
    assert.deepEqual([graphql.status, codeOf(graphql.body)], [400, 'BAD_USER_INPUT']);
    assert.deepEqual([rest.status, codeOf(rest.body)], [400, 'BAD_USER_INPUT']);
    assert.match(String((rest.body.error as { message?: unknown }).message), /more than 64 text fields/);
  });

  it('refuses a field over 1 MiB with 413, on both endpoints', async () => {
    const long = 'x'.repeat(1024 * KB + 1);
    const graphql = await answerWhileOpen(GRAPHQL.path, [field('operations', long), field('map', '{}')], GRAPHQL.headers);
    const rest = await answerWhileOpen(REST.path, [field('prompt', long), field('n', '1')]);
    assert.deepEqual([graphql.status, codeOf(graphql.body)], [413, 'PAYLOAD_TOO_LARGE']);
    assert.deepEqual([rest.status, codeOf(rest.body)], [413, 'PAYLOAD_TOO_LARGE']);
  });

  it('refuses more files than a mask per image allows, on both endpoints', async () => {
    // MAX_IMAGES_PER_JOB 2: four files (two images, two masks) at most.
    const files = Array.from({ length: 5 }, () => [fileHead('image[]'), png, Buffer.from('\r\n')]).flat();
    const rest = await answerWhileOpen(REST.path, [field('prompt', 'invert'), ...files]);
    assert.deepEqual([rest.status, codeOf(rest.body)], [400, 'BAD_USER_INPUT']);
    assert.match(String((rest.body.error as { message?: unknown }).message), /more than 4 files/);
    const map = JSON.stringify(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [String(i), [`variables.i.${i}`]])));
    const graphql = await answerWhileOpen(
      GRAPHQL.path,
      [
        field(
          'operations',
          JSON.stringify({ query: 'mutation($i:[Upload!]!){editImages(images:$i,prompt:"x"){id}}', variables: { i: [null, null, null, null, null] } }),
        ),
        field('map', map),
        // busboy hands a field over when the next part begins.
        fileHead('0'),
      ],
      GRAPHQL.headers,
    );
    assert.deepEqual([graphql.status, codeOf(graphql.body)], [400, 'BAD_USER_INPUT']);
  });

  it('keeps repeated REST file fields in order (image[] twice → two outputs)', async () => {
    const form = new FormData();
    form.append('prompt', 'invert');
    form.append('size', '32x32');
    form.append('num_inference_steps', '1');
    form.append('image[]', new Blob([new Uint8Array(await solidPng(32, 32, [255, 0, 0]))], { type: 'image/png' }), 'a.png');
    form.append('image[]', new Blob([new Uint8Array(await solidPng(32, 32, [0, 0, 255]))], { type: 'image/png' }), 'b.png');
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    const body = (await res.json()) as { data: { b64_json: string }[]; usage: { input_images: number } };
    assert.equal(res.status, 200);
    assert.equal(body.usage.input_images, 2);
    assert.equal(body.data.length, 2);
  });
});
