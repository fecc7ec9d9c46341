/**
 * Messages that say what is wrong: a GraphQL POST with a content type no parser reads gets its own
 * 415 (not the CSRF refusal), and every REST field error names its field in `param`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './support/server.js';
import { solidPng } from './support/images.js';

describe('messages', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  it('answers a POST /graphql whose content type is not GraphQL with 415 naming it, not with the CSRF message', async () => {
    for (const [type, named] of [
      ['text/plain', /^Content-Type text\/plain is not a GraphQL request: send application\/json/],
      ['application/x-evil; charset=utf-8', /^Content-Type application\/x-evil is not/],
      [null, /^a POST without a Content-Type is not a GraphQL request/],
    ] as const) {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: type ? { 'content-type': type } : {},
        body: new Blob(['{"query":"{ models { id } }"}']).stream(),
        duplex: 'half',
      } as RequestInit);
      assert.equal(res.status, 415, String(type));
      const body = (await res.json()) as { errors: { message: string; extensions: { code: string } }[] };
      assert.equal(body.errors[0]!.extensions.code, 'BAD_REQUEST');
      assert.match(body.errors[0]!.message, named);
      assert.doesNotMatch(body.errors[0]!.message, /CSRF/);
    }
  });

  it('names the REST field of every field error in param', async () => {
    const png = await solidPng(16, 16, [200, 60, 30]);
    const cases: [Record<string, string>, string, string][] = [
      [{ n: '0' }, 'n', 'BAD_USER_INPUT'],
      [{ size: 'big' }, 'size', 'BAD_USER_INPUT'],
      [{ size: '99999x99999' }, 'size', 'IMAGE_TOO_LARGE'],
      [{ num_inference_steps: '100000' }, 'num_inference_steps', 'BAD_USER_INPUT'],
      [{ guidance_scale: '-1' }, 'guidance_scale', 'BAD_USER_INPUT'],
      [{ image_guidance_scale: '-1' }, 'image_guidance_scale', 'BAD_USER_INPUT'],
      [{ seed: '1.5' }, 'seed', 'BAD_USER_INPUT'],
      [{ strength: '2' }, 'strength', 'BAD_USER_INPUT'],
      [{ scheduler: 'NOPE' }, 'scheduler', 'BAD_USER_INPUT'],
      [{ output_format: 'bmp' }, 'output_format', 'BAD_USER_INPUT'],
      [{ model: 'nope' }, 'model', 'NOT_FOUND'],
      [{ prompt: '' }, 'prompt', 'BAD_USER_INPUT'],
      [{ image: 'not a file' }, 'image', 'BAD_USER_INPUT'],
      [{ notAnImage: '' }, 'image', 'INVALID_IMAGE'],
    ];
    for (const [fields, param, code] of cases) {
      const form = new FormData();
      form.set('prompt', 'invert');
      if ('notAnImage' in fields) form.set('image', new Blob(['plain text']), 'notes.png');
      else if (!('image' in fields)) form.set('image', new Blob([new Uint8Array(png)]), 'a.png');
      for (const [k, v] of Object.entries(fields)) if (k !== 'notAnImage') form.set(k, v);
      const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
      const body = (await res.json()) as { error: { code: string; param: string | null; message: string } };
      assert.ok(body.error, `${JSON.stringify(fields)}: status ${res.status}`);
      assert.equal(body.error.code, code, `${JSON.stringify(fields)}: ${body.error.message}`);
      assert.equal(body.error.param, param, `${JSON.stringify(fields)}: ${body.error.message}`);
    }
  });
});
