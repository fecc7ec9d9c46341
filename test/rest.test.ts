/** POST /v1/images/edits with the seed's curl examples, the official openai SDK, errors and auth. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI, { toFile } from 'openai';
import { startTestServer, type TestServer } from './support/server.js';
import { expectedColour, maxChannelDiff, pixelAt, solidPng, type Rgb } from './support/images.js';

const run = promisify(execFile);
const RED: Rgb = [200, 60, 30];

interface EditsResponse {
  created: number;
  data: { b64_json: string }[];
  usage: { processing_time_seconds: number; input_images: number; generated_images: number };
  error?: { message: string; type: string; code: string; param: string | null };
}

async function curl(args: string[]): Promise<{ status: number; body: EditsResponse }> {
  const { stdout } = await run('curl', ['-s', '-w', '\n%{http_code}', ...args]);
  const lines = stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join('\n')) as EditsResponse };
}

describe('POST /v1/images/edits', () => {
  let server: TestServer;
  let dir: string;
  let a: string;
  let bad: string;

  before(async () => {
    server = await startTestServer();
    dir = mkdtempSync(join(tmpdir(), 'rest-'));
    a = join(dir, 'a.png');
    writeFileSync(a, await solidPng(32, 32, RED));
    bad = join(dir, 'notes.png');
    writeFileSync(bad, 'just some text');
  });
  after(async () => server.close());

  const endpoint = (): string => `${server.url}/v1/images/edits`;

  it('edits one image with the seed curl example and returns the exact edit', async () => {
    const { status, body } = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=invert', '-F', 'size=32x32', '-F', 'num_inference_steps=4']);
    assert.equal(status, 200);
    assert.equal(body.data.length, 1);
    assert.equal(body.usage.input_images, 1);
    assert.equal(body.usage.generated_images, 1);
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 60);
    const got = await pixelAt(Buffer.from(body.data[0]!.b64_json, 'base64'), 16, 16);
    assert.ok(maxChannelDiff(got, expectedColour(RED, 'invert')) <= 2, `${got}`);
  });

  it('edits three images with n=2 into six outputs (input_images 3, generated_images 6)', async () => {
    const { status, body } = await curl([
      endpoint(),
      '-F',
      `images=@${a}`,
      '-F',
      `images=@${a}`,
      '-F',
      `images=@${a}`,
      '-F',
      'n=2',
      '-F',
      'prompt=sepia',
      '-F',
      'size=32x32',
      '-F',
      'num_inference_steps=3',
    ]);
    assert.equal(status, 200);
    assert.equal(body.data.length, 6);
    assert.equal(body.usage.input_images, 3);
    assert.equal(body.usage.generated_images, 6);
  });

  it('accepts the old single `image` field', async () => {
    const { status, body } = await curl([endpoint(), '-F', `image=@${a}`, '-F', 'prompt=grayscale', '-F', 'size=32x32', '-F', 'num_inference_steps=3']);
    assert.equal(status, 200);
    assert.equal(body.data.length, 1);
  });

  it('works with the official openai client, plain and streamed', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused-without-auth' });
    const png = await solidPng(32, 32, RED);
    const files = await Promise.all([toFile(png, 'a.png', { type: 'image/png' }), toFile(png, 'b.png', { type: 'image/png' })]);
    const plain = await client.images.edit({
      model: 'gpt-image-1',
      image: files,
      prompt: 'invert',
      n: 1,
      size: '32x32' as never,
      num_inference_steps: 3,
    } as never);
    assert.equal(plain.data?.length, 2);
    const files2 = await Promise.all([toFile(png, 'a.png', { type: 'image/png' }), toFile(png, 'b.png', { type: 'image/png' })]);
    const stream = await client.images.edit({
      model: 'tiny-edit',
      image: files2,
      prompt: 'sepia',
      stream: true,
      partial_images: 2,
      size: '32x32' as never,
      num_inference_steps: 6,
    } as never);
    const types: string[] = [];
    for await (const event of stream as unknown as AsyncIterable<{ type: string; b64_json: string }>) {
      types.push(event.type);
      assert.ok(event.b64_json.length > 0);
    }
    assert.ok(types.includes('image_edit.partial_image'), types.join(','));
    assert.equal(types.filter((t) => t === 'image_edit.completed').length, 2);
    assert.equal(types[types.length - 1], 'image_edit.completed');
  });

  it('answers bad input with OpenAI-style 4xx errors', async () => {
    const url = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=x', '-F', 'response_format=link']);
    assert.equal(url.status, 400);
    assert.equal(url.body.error!.type, 'invalid_request_error');
    const notImage = await curl([endpoint(), '-F', `images=@${bad}`, '-F', 'prompt=x']);
    assert.equal(notImage.status, 400);
    assert.equal(notImage.body.error!.code, 'INVALID_IMAGE');
    const zero = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=x', '-F', 'n=0']);
    assert.equal(zero.status, 400);
    assert.equal(zero.body.error!.code, 'BAD_USER_INPUT');
    // Numbers as decimal integers and plain decimals only; the error names the field.
    for (const [name, value] of [
      ['n', '0x2'],
      ['n', '2e0'],
      ['n', '+2'],
      ['n', '2.0'],
      ['seed', '1e3'],
      ['num_inference_steps', 'Infinity'],
      ['guidance_scale', '1e1'],
      ['strength', '0x1'],
      ['strength', ''],
    ]) {
      const strict = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=x', '-F', `${name}=${value}`]);
      assert.ok(strict.body.error, `${name}=${value} was accepted`);
      assert.deepEqual([strict.status, strict.body.error!.code, strict.body.error!.param], [400, 'BAD_USER_INPUT', name], `${name}=${value}`);
    }
    const generator = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=x', '-F', 'generator=numpy']);
    assert.equal(generator.status, 400);
    assert.equal(generator.body.error!.param, 'generator');
    const noPrompt = await curl([endpoint(), '-F', `images=@${a}`]);
    assert.equal(noPrompt.status, 400);
    const json = await fetch(endpoint(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(json.status, 400);
    const unknownModel = await curl([endpoint(), '-F', `images=@${a}`, '-F', 'prompt=x', '-F', 'model=nope']);
    assert.equal(unknownModel.status, 404);
  });

  it('refuses a body over the limit with 413', async () => {
    const small = await startTestServer({ MAX_TOTAL_BYTES: '20000', MAX_FILE_BYTES: '20000' });
    try {
      const big = join(dir, 'big.bin');
      writeFileSync(big, Buffer.alloc(200_000, 7));
      const { status, body } = await curl([`${small.url}/v1/images/edits`, '-F', `images=@${big}`, '-F', 'prompt=x']);
      assert.equal(status, 413);
      assert.equal(body.error!.code, 'PAYLOAD_TOO_LARGE');
    } finally {
      await small.close();
    }
  });
});

describe('POST /v1/images/edits with auth', () => {
  it('answers 401 with WWW-Authenticate without credentials, and accepts Bearer and Basic', async () => {
    const server = await startTestServer({ AUTH_TOKENS: 'sk-test', AUTH_BASIC: 'bob:builder' });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'rest-auth-'));
      const a = join(dir, 'a.png');
      writeFileSync(a, await solidPng(32, 32, RED));
      const url = `${server.url}/v1/images/edits`;
      const form = ['-F', `images=@${a}`, '-F', 'prompt=invert', '-F', 'size=32x32', '-F', 'num_inference_steps=2'];
      const { stdout } = await run('curl', ['-s', '-i', url, ...form]);
      assert.match(stdout, /^HTTP\/1\.1 401/);
      assert.match(stdout, /www-authenticate: Bearer/i);
      assert.equal((await curl([url, '-u', 'bob:builder', ...form])).status, 200);
      assert.equal((await curl([url, '-H', 'Authorization: Bearer sk-test', ...form])).status, 200);
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-test' });
      const out = await client.images.edit({
        model: 'tiny-edit',
        image: await toFile(await solidPng(32, 32, RED), 'a.png', { type: 'image/png' }),
        prompt: 'invert',
        size: '32x32' as never,
      } as never);
      assert.equal(out.data?.length, 1);
      const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
      await assert.rejects(
        wrong.images.edit({ model: 'tiny-edit', image: await toFile(await solidPng(32, 32, RED), 'a.png', { type: 'image/png' }), prompt: 'x' } as never),
        (err: { status?: number }) => err.status === 401,
      );
    } finally {
      await server.close();
    }
  });
});
