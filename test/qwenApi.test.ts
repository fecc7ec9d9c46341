/**
 * Qwen-Image-Edit through every way in, on the analytic `tiny-qwen-edit` (Edit layout, built in)
 * and its Plus-2511 sibling (models/qwenExports.ts): exact edits of several images × n in one
 * batch, per-image prompts, true CFG, the seed's REST fields, a GraphQL subscription with
 * previews, the CLI, the Lightning defaults, and what is refused.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { buildQwenEditFiles } from '../models/qwenExports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { PROJECT_ROOT } from '../src/config.js';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse, postMultipart } from './support/graphql.js';
import { maxChannelDiff, meanColour, reference, squaresPng } from './support/images.js';

const run = promisify(execFile);
const SIZE = 64;
type Word = keyof typeof reference;

/** The largest channel difference between `output` and the exact edit of `input`, pixel by pixel. */
async function editError(input: Buffer, output: Buffer, word: Word | null): Promise<number> {
  const a = await sharp(input).removeAlpha().raw().toBuffer();
  const b = await sharp(output).removeAlpha().raw().toBuffer();
  let max = 0;
  for (let p = 0; p < SIZE * SIZE; p++) {
    const rgb = [a[p * 3]! / 255, a[p * 3 + 1]! / 255, a[p * 3 + 2]! / 255];
    const want = word ? reference[word](rgb) : rgb;
    for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(Math.round(Math.min(1, Math.max(0, want[c]!)) * 255) - b[p * 3 + c]!));
  }
  return max;
}

const SUBMIT =
  'mutation($images: [Upload!]!, $prompt: String!, $prompts: [String!], $model: String, $n: Int, $negativePrompt: String, $trueCfgScale: Float, $previewEvery: Int) { editImages(images: $images, prompt: $prompt, prompts: $prompts, model: $model, n: $n, negativePrompt: $negativePrompt, trueCfgScale: $trueCfgScale, previewEvery: $previewEvery, seed: 3) { id } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditProgress { step totalSteps previews { b64Json } } ... on EditCompleted { result { images { b64Json inputIndex width } } } ... on EditFailed { error { code message } } } }';
type Ev = {
  editJobEvents: {
    __typename: string;
    step?: number;
    totalSteps?: number;
    previews?: { b64Json: string }[];
    result?: { images: { b64Json: string; inputIndex: number; width: number }[] };
    error?: { code: string; message: string };
  };
};

describe('Qwen-Image-Edit through GraphQL, REST and the CLI', () => {
  let root: string;
  let server: TestServer;
  let a: Buffer;
  let b: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'qwen-api-'));
    cpSync(join(PROJECT_ROOT, 'models', 'tiny-qwen-edit'), join(root, 'tiny-qwen-edit'), { recursive: true });
    writeModelFolder(join(root, 'tiny-qwen-edit-plus'), buildQwenEditFiles({ layout: 'plus-2511' }));
    // A Lightning merge: the Qwen-Image-Lightning scheduler config, nothing else changed.
    writeModelFolder(join(root, 'tiny-qwen-lightning'), buildQwenEditFiles({ layout: 'edit' }));
    writeFileSync(
      join(root, 'tiny-qwen-lightning', 'scheduler', 'scheduler_config.json'),
      readFileSync(join(PROJECT_ROOT, 'test', 'fixtures', 'qwen-image-edit', 'lightning', 'scheduler_config.json')),
    );
    const server0 = join(root, 'tiny-qwen-lightning', 'edit-server.json');
    const config = JSON.parse(readFileSync(server0, 'utf8')) as { defaults: Record<string, unknown> };
    delete config.defaults.steps;
    writeFileSync(server0, JSON.stringify(config));
    server = await startTestServer({ MODELS_DIR: root, DEFAULT_MODEL: 'tiny-qwen-edit' });
    a = await squaresPng(1);
    b = await squaresPng(2);
  });
  after(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function graphql(variables: Record<string, unknown>): Promise<Ev['editJobEvents'][]> {
    const res = await postMultipart<{ editImages: { id: string } }>(server.url, SUBMIT, variables, [
      { bytes: a, name: 'a.png' },
      { bytes: b, name: 'b.png' },
    ]);
    assert.ok(res.body.data?.editImages, JSON.stringify(res.body.errors));
    const { events } = await collectSse<Ev>(server.url, EVENTS, { id: res.body.data!.editImages.id });
    return events.map((e) => e.editJobEvents);
  }

  for (const model of ['tiny-qwen-edit', 'tiny-qwen-edit-plus']) {
    it(`${model}: 2 images × n 2 with per-image prompts in one batch, exact, ordered input by input, with previews`, async () => {
      const events = await graphql({ model, prompt: 'x', prompts: ['grayscale', 'make it sepia please'], n: 2, previewEvery: 4 });
      const done = events.find((e) => e.__typename === 'EditCompleted');
      assert.ok(done, JSON.stringify(events.at(-1)));
      const images = done.result!.images;
      assert.deepEqual(
        images.map((i) => i.inputIndex),
        [0, 0, 1, 1],
      );
      assert.ok(images.every((i) => i.width === SIZE));
      for (const [k, image] of images.entries()) {
        const [input, word] = k < 2 ? ([a, 'grayscale'] as const) : ([b, 'sepia'] as const);
        assert.ok((await editError(input, Buffer.from(image.b64Json, 'base64'), word)) <= 2, `${model} image ${k}`);
      }
      const progress = events.filter((e) => e.__typename === 'EditProgress' && (e.step ?? 0) > 0);
      assert.equal(progress.at(-1)!.step, progress.at(-1)!.totalSteps);
      const previews = progress.flatMap((e) => e.previews ?? []);
      assert.ok(previews.length >= 4, `${previews.length} previews`);
      // The last preview is the x₀ estimate: coloured like the output.
      const [preview, output] = await Promise.all([
        meanColour(Buffer.from(previews.at(-1)!.b64Json, 'base64')),
        meanColour(Buffer.from(images.at(-1)!.b64Json, 'base64')),
      ]);
      assert.ok(maxChannelDiff(preview, output) <= 8, `preview ${preview} vs output ${output}`);
    });
  }

  it('true CFG runs with a negative prompt (the same prompt as negative gives the plain edit)', async () => {
    const events = await graphql({ prompt: 'invert', negativePrompt: 'invert', trueCfgScale: 4 });
    const done = events.find((e) => e.__typename === 'EditCompleted');
    assert.ok(done, JSON.stringify(events.at(-1)));
    assert.ok((await editError(a, Buffer.from(done.result!.images[0]!.b64Json, 'base64'), 'invert')) <= 2);
  });

  async function rest(
    fields: Record<string, string>,
  ): Promise<{ status: number; body: { data?: { b64_json: string }[]; error?: { param: string | null; code: string; message: string } } }> {
    const form = new FormData();
    form.append('image[]', new Blob([new Uint8Array(a)], { type: 'image/png' }), 'a.png');
    form.append('image[]', new Blob([new Uint8Array(b)], { type: 'image/png' }), 'b.png');
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    return { status: res.status, body: (await res.json()) as never };
  }

  it("REST with the seed's fields (true_cfg_scale 4, max_sequence_length 512, negative prompt unset) gives the exact edit", async () => {
    const { status, body } = await rest({
      model: 'tiny-qwen-edit',
      prompt: 'warmer',
      true_cfg_scale: '4.0',
      max_sequence_length: '512',
      num_inference_steps: '50',
      size: '64x64',
      n: '2',
    });
    assert.equal(status, 200, JSON.stringify(body.error));
    assert.equal(body.data!.length, 4);
    assert.ok((await editError(a, Buffer.from(body.data![1]!.b64_json, 'base64'), 'warmer')) <= 2);
    assert.ok((await editError(b, Buffer.from(body.data![3]!.b64_json, 'base64'), 'warmer')) <= 2);
  });

  it('refuses max_sequence_length over 1024 (it is checked, not a truncation), masks, and sizes over the limit', async () => {
    const long = await rest({ model: 'tiny-qwen-edit', prompt: 'warmer', max_sequence_length: '1025' });
    assert.equal(long.status, 400);
    assert.equal(long.body.error!.param, 'max_sequence_length');
    const ok = await rest({ model: 'tiny-qwen-edit', prompt: 'invert', max_sequence_length: '1024', num_inference_steps: '2' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body.error));
    const form = new FormData();
    form.set('image', new Blob([new Uint8Array(a)], { type: 'image/png' }), 'a.png');
    form.set('mask', new Blob([new Uint8Array(a)], { type: 'image/png' }), 'm.png');
    form.set('prompt', 'invert');
    form.set('model', 'tiny-qwen-edit');
    const masked = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    assert.equal(masked.status, 400);
    assert.match(((await masked.json()) as { error: { message: string } }).error.message, /does not take masks/);
  });

  it('a Lightning merge takes 8 steps without true CFG from its scheduler config', async () => {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ models { id kind defaults { steps trueCfgScale maxSequenceLength } } }' }),
    });
    const body = (await res.json()) as {
      data: { models: { id: string; kind: string; defaults: { steps: number; trueCfgScale: number; maxSequenceLength: number } }[] };
    };
    const byId = Object.fromEntries(body.data.models.map((m) => [m.id, m]));
    assert.deepEqual(byId['tiny-qwen-lightning']!.defaults, { steps: 8, trueCfgScale: 1, maxSequenceLength: 512 });
    assert.equal(byId['tiny-qwen-edit']!.kind, 'qwen-image-edit');
    assert.equal(byId['tiny-qwen-edit-plus']!.kind, 'qwen-image-edit-plus');
    assert.equal(byId['tiny-qwen-edit']!.defaults.trueCfgScale, 4);
  });

  it('the CLI edits two images × n 2 with the built-in tiny-qwen-edit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qwen-cli-'));
    try {
      writeFileSync(join(dir, 'a.png'), a);
      writeFileSync(join(dir, 'b.png'), b);
      const out = join(dir, 'out');
      const { stdout } = await run(
        'npm',
        [
          'run',
          '--silent',
          'edit',
          '--',
          '--model',
          'tiny-qwen-edit',
          '--image',
          join(dir, 'a.png'),
          '--image',
          join(dir, 'b.png'),
          '--n',
          '2',
          '--prompt',
          'grayscale',
          '--out',
          out,
        ],
        { cwd: PROJECT_ROOT },
      );
      assert.match(stdout, /2 input\(s\) → 4 image\(s\)/);
      const files = readdirSync(out).sort();
      assert.deepEqual(files, ['a-0.png', 'a-1.png', 'b-0.png', 'b-1.png']);
      for (const f of files) assert.ok((await editError(f.startsWith('a') ? a : b, readFileSync(join(out, f)), 'grayscale')) <= 2, f);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
