/**
 * Reference images on Qwen-Image-Edit Plus (QwenImageEditPlusPipeline's image list), on the
 * analytic Plus-2511 folder (models/qwenExports.ts): its transformer gives each noise token the
 * colour edit of the average of the condition tokens at its position, so an input edited with a
 * reference of its size comes out as the edit of the two images' mean, exactly (8×8 squares under
 * an 8× average-pool VAE). Through GraphQL (uploads and data: URLs), REST (OpenAI's image[] list),
 * the CLI and Redis workers; what is refused (references on Qwen-Image-Edit, too many, guidanceScale
 * on Qwen models); and the batching rule: outputs whose condition images have one token layout run
 * in one transformer call, other layouts apart.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { buildQwenEditFiles } from '../models/qwenExports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { PROJECT_ROOT } from '../src/config.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions, resolveReferences } from '../src/inference/request.js';
import { RedisJobBackend } from '../src/jobs/redisJobs.js';
import { startRedisWorker } from '../src/jobs/redisWorker.js';
import type { JobEvent } from '../src/jobs/types.js';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse, postGraphQL } from './support/graphql.js';
import { reference, solidPng, squaresPng } from './support/images.js';
import { freePort } from './support/net.js';
import { startRedisServer } from './support/redis.js';
import { waitFor } from './support/processes.js';

const run = promisify(execFile);
type Word = keyof typeof reference;
const PLUS = 'tiny-qwen-edit-plus';

/** The largest channel difference between `output` and the edit of the pixel mean of `images` (one size). */
async function meanEditError(images: Buffer[], output: Uint8Array, word: Word): Promise<number> {
  const raws = await Promise.all(images.map((i) => sharp(i).removeAlpha().raw().toBuffer({ resolveWithObject: true })));
  const out = await sharp(output).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { width, height } = raws[0]!.info;
  assert.deepEqual([out.info.width, out.info.height], [width, height], 'output size');
  let max = 0;
  for (let p = 0; p < width * height; p++) {
    const rgb = [0, 1, 2].map((c) => raws.reduce((n, r) => n + r.data[p * 3 + c]! / 255, 0) / raws.length);
    const want = reference[word](rgb);
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(Math.round(Math.min(1, Math.max(0, want[c]!)) * 255) - out.data[p * 3 + c]!));
  }
  return max;
}

const SUBMIT =
  'mutation($images: [Upload!], $references: [Upload!], $imageUrls: [String!], $referenceUrls: [String!], $prompt: String!, $prompts: [String!], $model: String, $n: Int, $size: String, $guidanceScale: Float, $idempotencyKey: String) { editImages(images: $images, referenceImages: $references, imageUrls: $imageUrls, referenceImageUrls: $referenceUrls, prompt: $prompt, prompts: $prompts, model: $model, n: $n, size: $size, guidanceScale: $guidanceScale, idempotencyKey: $idempotencyKey, seed: 3) { id } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditCompleted { result { images { b64Json inputIndex width height } usage { batches mergedJobs generatedImages } } } ... on EditFailed { error { code message } } } }';
interface Completed {
  images: { b64Json: string; inputIndex: number; width: number; height: number }[];
  usage: { batches: number; mergedJobs: number; generatedImages: number };
}
type Ev = { editJobEvents: { __typename: string; result?: Completed; error?: { code: string; message: string } } };
type Errors = { message: string; extensions?: { code?: string } }[] | undefined;

describe('Qwen-Image-Edit Plus reference images', { timeout: 240_000 }, () => {
  let root: string;
  let server: TestServer;
  let a: Buffer;
  let b: Buffer;
  let r: Buffer;
  let wide: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'qwen-refs-'));
    cpSync(join(PROJECT_ROOT, 'models', 'tiny-qwen-edit'), join(root, 'tiny-qwen-edit'), { recursive: true });
    writeModelFolder(join(root, PLUS), buildQwenEditFiles({ layout: 'plus-2511' }));
    server = await startTestServer({ MODELS_DIR: root, DEFAULT_MODEL: PLUS });
    [a, b, r, wide] = await Promise.all([squaresPng(1), squaresPng(2), squaresPng(5), squaresPng(3, 128, 64)]);
  });
  after(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** editImages as a multipart request: `images` and `references` as uploads. */
  async function submit(variables: Record<string, unknown>, images: Buffer[], references: Buffer[] = []): Promise<{ id?: string; errors: Errors }> {
    const form = new FormData();
    const vars = { ...variables, images: images.map(() => null), ...(references.length ? { references: references.map(() => null) } : {}) };
    form.set('operations', JSON.stringify({ query: SUBMIT, variables: vars }));
    const map: Record<string, string[]> = {};
    images.forEach((_, i) => (map[`i${i}`] = [`variables.images.${i}`]));
    references.forEach((_, i) => (map[`r${i}`] = [`variables.references.${i}`]));
    form.set('map', JSON.stringify(map));
    images.forEach((bytes, i) => form.set(`i${i}`, new Blob([new Uint8Array(bytes)]), `image-${i}.png`));
    references.forEach((bytes, i) => form.set(`r${i}`, new Blob([new Uint8Array(bytes)]), `reference-${i}.png`));
    const res = await fetch(`${server.url}/graphql`, { method: 'POST', body: form, headers: { 'apollo-require-preflight': 'true' } });
    const body = (await res.json()) as { data?: { editImages: { id: string } } | null; errors?: Errors };
    return { id: body.data?.editImages.id, errors: body.errors };
  }

  async function completed(id: string): Promise<Completed> {
    const { events } = await collectSse<Ev>(server.url, EVENTS, { id });
    const last = events.at(-1)!.editJobEvents;
    assert.equal(last.__typename, 'EditCompleted', JSON.stringify(last));
    return last.result!;
  }

  const bytesOf = (image: { b64Json: string }): Buffer => Buffer.from(image.b64Json, 'base64');

  it('edits each input with [reference, input]: 2 inputs sharing one layout run in one transformer call, exactly', async () => {
    const { id, errors } = await submit({ prompt: 'x', prompts: ['grayscale', 'sepia'], size: '64x64' }, [a, b], [r]);
    assert.equal(errors, undefined, JSON.stringify(errors));
    const result = await completed(id!);
    assert.deepEqual(result.usage, { batches: 1, mergedJobs: 1, generatedImages: 2 });
    assert.deepEqual(
      result.images.map((i) => i.inputIndex),
      [0, 1],
    );
    assert.ok((await meanEditError([r, a], bytesOf(result.images[0]!), 'grayscale')) <= 2);
    assert.ok((await meanEditError([r, b], bytesOf(result.images[1]!), 'sepia')) <= 2);
    // The reference shows: the output is not the plain edit of the input.
    assert.ok((await meanEditError([a], bytesOf(result.images[0]!), 'grayscale')) > 20);
  });

  it('takes referenceImageUrls (data: URLs) as it takes uploads', async () => {
    const url = (png: Buffer): string => `data:image/png;base64,${png.toString('base64')}`;
    const res = await postGraphQL<{ editImages: { id: string } }>(server.url, SUBMIT, {
      imageUrls: [url(a)],
      referenceUrls: [url(r)],
      prompt: 'invert',
      size: '64x64',
    });
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    const result = await completed(res.body.data!.editImages.id);
    assert.ok((await meanEditError([r, a], bytesOf(result.images[0]!), 'invert')) <= 2);
    const bad = await postGraphQL(server.url, SUBMIT, { imageUrls: [url(a)], referenceUrls: ['https://example.com/r.png'], prompt: 'invert' });
    assert.equal(bad.body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(bad.body.errors![0]!.message, /^referenceImageUrls\[0\]: only data: URLs/);
  });

  it('a reference of another aspect ratio conditions at its own size (a layout of its own); the output keeps the input size', async () => {
    const { id, errors } = await submit({ prompt: 'grayscale', size: '64x64' }, [a], [wide]);
    assert.equal(errors, undefined, JSON.stringify(errors));
    const result = await completed(id!);
    assert.deepEqual([result.images[0]!.width, result.images[0]!.height], [64, 64]);
    // 128x64 at the 64² condition area is 96x32: 2 token rows over the middle of the 4 output rows.
    // Outside them only the input conditions the output: its top and bottom rows are the plain edit.
    const out = await sharp(bytesOf(result.images[0]!)).removeAlpha().raw().toBuffer();
    const plain = await sharp(a).removeAlpha().raw().toBuffer();
    for (const y of [0, 15, 48, 63])
      for (let x = 0; x < 64; x++) {
        const p = (y * 64 + x) * 3;
        const want = reference.grayscale([plain[p]! / 255, plain[p + 1]! / 255, plain[p + 2]! / 255]);
        for (let c = 0; c < 3; c++) assert.ok(Math.abs(Math.round(want[c]! * 255) - out[p + c]!) <= 2, `(${x}, ${y})`);
      }
  });

  it('a reference far larger than its condition (512² for a 64² condition) is scaled down first and conditions as its mean colour', async () => {
    const big = await solidPng(512, 512, [200, 40, 120]);
    const { id, errors } = await submit({ prompt: 'darker', size: '64x64' }, [a], [big]);
    assert.equal(errors, undefined, JSON.stringify(errors));
    const result = await completed(id!);
    assert.ok((await meanEditError([await solidPng(64, 64, [200, 40, 120]), a], bytesOf(result.images[0]!), 'darker')) <= 2);
  });

  it("refuses references on Qwen-Image-Edit (one image per output) and past Plus's 3 images per output", async () => {
    const edit = await submit({ prompt: 'invert', model: 'tiny-qwen-edit' }, [a], [r]);
    assert.equal(edit.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(edit.errors![0]!.message, /model tiny-qwen-edit \(Qwen-Image-Edit\) takes no reference images/);
    const many = await submit({ prompt: 'invert' }, [a], [r, r, r]);
    assert.equal(many.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(many.errors![0]!.message, /3 reference images is over model tiny-qwen-edit-plus's limit of 2/);
    const res = await postGraphQL<{ models: { id: string; maxReferenceImages: number }[] }>(server.url, '{ models { id maxReferenceImages } }', {});
    assert.deepEqual(Object.fromEntries(res.body.data!.models.map((m) => [m.id, m.maxReferenceImages])), { 'tiny-qwen-edit': 0, [PLUS]: 2 });
  });

  it('refuses an explicit guidanceScale on Qwen models (no guidance input), pointing to true CFG', async () => {
    for (const model of ['tiny-qwen-edit', PLUS]) {
      const { errors } = await submit({ prompt: 'invert', model, guidanceScale: 3.5 }, [a]);
      assert.equal(errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', model);
      assert.match(errors![0]!.message, /guidanceScale does not apply to model .*trueCfgScale \(REST true_cfg_scale\) above 1 with a negativePrompt/);
    }
    const form = new FormData();
    form.set('image', new Blob([new Uint8Array(a)], { type: 'image/png' }), 'a.png');
    form.set('prompt', 'invert');
    form.set('guidance_scale', '3.5');
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    const body = (await res.json()) as { error: { param: string; code: string } };
    assert.equal(res.status, 400);
    assert.equal(body.error.param, 'guidance_scale');
  });

  it('the idempotency fingerprint covers the reference bytes', async () => {
    const key = `refs-${Date.now()}`;
    const first = await submit({ prompt: 'invert', size: '64x64', idempotencyKey: key }, [a], [r]);
    assert.equal(first.errors, undefined, JSON.stringify(first.errors));
    const again = await submit({ prompt: 'invert', size: '64x64', idempotencyKey: key }, [a], [r]);
    assert.equal(again.id, first.id);
    const other = await submit({ prompt: 'invert', size: '64x64', idempotencyKey: key }, [a], [b]);
    assert.equal(other.errors?.[0]?.extensions?.code, 'IDEMPOTENCY_CONFLICT');
    await completed(first.id!);
  });

  async function rest(model: string, images: Buffer[], fields: Record<string, string> = {}): Promise<{ status: number; data: { b64_json: string }[] }> {
    const form = new FormData();
    images.forEach((png, i) => form.append('image[]', new Blob([new Uint8Array(png)], { type: 'image/png' }), `${i}.png`));
    form.set('model', model);
    form.set('prompt', 'warmer');
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    const body = (await res.json()) as { data: { b64_json: string }[]; error?: unknown };
    assert.equal(res.status, 200, JSON.stringify(body.error));
    return { status: res.status, data: body.data };
  }

  it("REST on Plus: image[] is one output's image list (× n), the last image edited and setting the size", async () => {
    const { data } = await rest(PLUS, [r, a], { n: '2' });
    assert.equal(data.length, 2);
    for (const d of data) assert.ok((await meanEditError([r, a], Buffer.from(d.b64_json, 'base64'), 'warmer')) <= 2);
    // The last image's aspect ratio: a 128x64 last image gives a 128x64 output.
    const last = await rest(PLUS, [a, wide]);
    assert.equal(last.data.length, 1);
    const meta = await sharp(Buffer.from(last.data[0]!.b64_json, 'base64')).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 64]);
    // Qwen-Image-Edit (one image per output): each image is an input, as before.
    assert.equal((await rest('tiny-qwen-edit', [r, a])).data.length, 2);
  });

  it('the CLI takes --reference (repeatable) and refuses it on models without references', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qwen-refs-cli-'));
    try {
      writeFileSync(join(dir, 'a.png'), a);
      writeFileSync(join(dir, 'r.png'), r);
      const out = join(dir, 'out');
      const cli = (model: string) =>
        run(
          'npm',
          [
            'run',
            '--silent',
            'edit',
            '--',
            '--models-dir',
            root,
            '--model',
            model,
            '--image',
            join(dir, 'a.png'),
            '--reference',
            join(dir, 'r.png'),
            '--prompt',
            'cooler',
            '--out',
            out,
          ],
          { cwd: PROJECT_ROOT },
        );
      await cli(PLUS);
      assert.deepEqual(readdirSync(out), ['a-0.png']);
      assert.ok((await meanEditError([r, a], readFileSync(join(out, 'a-0.png')), 'cooler')) <= 2);
      await assert.rejects(cli('tiny-qwen-edit'), (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, /takes no reference images/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Redis workers: references travel with the stored inputs; jobs whose references share a layout merge, another layout runs apart', async () => {
    const port = await freePort();
    const redisServer: ChildProcess = startRedisServer(port);
    const redisUrl = `redis://127.0.0.1:${port}`;
    const engine = await InferenceEngine.start({ modelsDir: root, modelIds: [PLUS], threading: 'inline' });
    const jobs = new RedisJobBackend({ redisUrl, retentionMs: 60_000, maxQueuedJobs: 100, attempts: 1, maxInputBytes: 100_000_000 });
    try {
      const probe = new Redis(redisUrl, { lazyConnect: true });
      probe.on('error', () => undefined);
      await waitFor(async () => (await probe.ping()) === 'PONG', 'redis-server');
      probe.disconnect();
      await waitFor(async () => (await jobs.health()) === null, 'the job backend');
      const spec = engine.model(PLUS);
      const queue = async (prompt: string, ref: Buffer): Promise<string> => {
        const { width, height } = await sharp(ref).metadata();
        const edit = resolveReferences(spec, resolveEditOptions(spec, 1, { prompt, size: '64x64', steps: 4, seed: 1 }), [{ width: width!, height: height! }]);
        return (await jobs.submit(PLUS, edit, [{ bytes: new Uint8Array(a), pixels: 64 * 64, references: [new Uint8Array(ref)] }], 'owner')).id;
      };
      const ids = [await queue('grayscale', r), await queue('sepia', b), await queue('invert', wide)];
      const streams = ids.map(async (id) => {
        const seen: JobEvent[] = [];
        for await (const e of await jobs.subscribe(id)) seen.push(e);
        return seen.at(-1)!;
      });
      const worker = await startRedisWorker(engine, { redisUrl, retentionMs: 60_000, jobTimeoutMs: 0, attempts: 1, stallMs: 2_000 });
      try {
        const results = (await Promise.all(streams)).map((e) => {
          assert.equal(e.type, 'completed', JSON.stringify(e).slice(0, 300));
          return (e as Extract<JobEvent, { type: 'completed' }>).result;
        });
        assert.deepEqual(
          results.map((x) => x.usage.mergedJobs),
          [2, 2, 1],
        );
        // Buffer.from: with the engine inline, image bytes come back from Redis as Buffer's JSON form.
        assert.ok((await meanEditError([r, a], Buffer.from(results[0]!.images[0]!.bytes), 'grayscale')) <= 2);
        assert.ok((await meanEditError([b, a], Buffer.from(results[1]!.images[0]!.bytes), 'sepia')) <= 2);
      } finally {
        await worker.close();
      }
    } finally {
      await jobs.shutdown();
      await engine.close();
      redisServer.kill('SIGKILL');
    }
  });
});
