/**
 * Output sizes: each family's own multiple (FLUX and SD3 16, SD UNets 8 × their VAE's factor, 8 for
 * full-resolution latents), `auto` by default, one rule for explicit sizes of another aspect ratio
 * (`fit`: pad by default, crop, stretch), and every change from the size asked for stated in the
 * result, the CLI and the REST response.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { postGraphQL, postMultipart } from './support/graphql.js';
import { startTestServer, type TestServer } from './support/server.js';
import { expectedColour, maxChannelDiff, pixelAt, rawPixels, solidPng, twoColourPng, type Rgb } from './support/images.js';

const LEFT: Rgb = [200, 60, 30];
const RIGHT: Rgb = [40, 120, 220];
const WHITE: Rgb = [255, 255, 255];

function near(got: Rgb, want: Rgb, what: string): void {
  assert.ok(maxChannelDiff(got, want) <= 2, `${what}: ${got}, expected ${want}`);
}

describe('sizes at each family’s multiple', () => {
  let engine: InferenceEngine;
  before(async () => {
    engine = await InferenceEngine.start({ modelsDir: join(PROJECT_ROOT, 'models'), threading: 'inline', intraOpThreads: 1 });
  });
  after(async () => engine.close());

  it('tiny-flow-edit (FLUX layout) honours 80x80, a multiple of 16, exactly on an 8×8-square input', async () => {
    const spec = engine.model('tiny-flow-edit');
    const edit = resolveEditOptions(spec, 1, { prompt: 'sepia', size: '80x80', steps: 6, seed: 1 });
    const out = await engine.edit(spec.id, edit, [{ bytes: await solidPng(80, 80, LEFT) }]);
    assert.deepEqual([out.images[0]!.width, out.images[0]!.height], [80, 80]);
    assert.deepEqual(out.warnings, []);
    near(await pixelAt(out.images[0]!.bytes, 40, 40), expectedColour(LEFT, 'sepia'), 'the exact edit');
  });

  it('snaps a size off the multiple down to it, and says so in the result', async () => {
    const spec = engine.model('tiny-flow-edit');
    const edit = resolveEditOptions(spec, 1, { prompt: 'sepia', size: '90x72', steps: 2, seed: 1 });
    const out = await engine.edit(spec.id, edit, [{ bytes: await solidPng(90, 72, LEFT) }]);
    assert.deepEqual([out.images[0]!.width, out.images[0]!.height], [80, 64]);
    assert.equal(out.warnings.length, 1);
    assert.match(out.warnings[0]!, /size 90x72 was changed to 80x64: .*multiples of 16/);
  });
});

describe('npm run edit --size', () => {
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sizes-cli-'));
    writeFileSync(join(dir, 'in.png'), await solidPng(96, 96, LEFT));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) =>
    spawnSync(
      process.execPath,
      ['--import', 'tsx', join(PROJECT_ROOT, 'src/cli/edit.ts'), '--image', join(dir, 'in.png'), '--out', dir, '--overwrite', ...args],
      {
        cwd: PROJECT_ROOT,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );

  it('--model tiny-flow-edit --size 80x80 writes 80x80 with no warning', async () => {
    const run = cli('--model', 'tiny-flow-edit', '--size', '80x80', '--prompt', 'sepia', '--steps', '2');
    assert.equal(run.status, 0, run.stderr);
    const { width, height } = await rawPixels(readFileSync(join(dir, 'in-0.png')));
    assert.deepEqual([width, height], [80, 80]);
    assert.doesNotMatch(run.stderr, /warning/);
  });

  it('prints a warning when the size is changed', () => {
    const run = cli('--model', 'tiny-edit', '--size', '300x200', '--prompt', 'sepia', '--steps', '2');
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /296x200/);
    assert.match(run.stderr, /warning: size 300x200 was changed to 296x200/);
  });
});

describe('sizes through the APIs', () => {
  let server: TestServer;
  let photo: Buffer;
  before(async () => {
    server = await startTestServer();
    photo = await twoColourPng(300, 200, LEFT, RIGHT);
  });
  after(async () => server.close());

  const EDIT = `mutation($images: [Upload!], $size: String, $fit: SizeFit) {
    editImages(images: $images, prompt: "invert", steps: 2, seed: 3, size: $size, fit: $fit) { id }
  }`;
  const RESULT = `query($id: ID!) { editJob(id: $id) { status result { warnings images { width height b64Json } } } }`;
  type Result = { warnings: string[]; images: { width: number; height: number; b64Json: string }[] };

  async function graphqlEdit(variables: Record<string, unknown>): Promise<Result> {
    const sent = await postMultipart<{ editImages: { id: string } }>(server.url, EDIT, variables, [{ bytes: photo, name: 'photo.png' }]);
    assert.equal(sent.body.errors, undefined, JSON.stringify(sent.body.errors));
    for (;;) {
      const { body } = await postGraphQL<{ editJob: { status: string; result: Result | null } }>(server.url, RESULT, { id: sent.body.data!.editImages.id });
      const job = body.data!.editJob;
      if (job.status === 'SUCCEEDED') return job.result!;
      assert.ok(['QUEUED', 'RUNNING'].includes(job.status), job.status);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('GraphQL: no size is auto, the input’s own size at the model’s multiple, and the change is a warning', async () => {
    const result = await graphqlEdit({});
    assert.deepEqual([result.images[0]!.width, result.images[0]!.height], [296, 200]);
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0]!, /image 0 is 300x200; size auto made it 296x200/);
  });

  it('GraphQL: an explicit square size pads a 300x200 photo by default, keeping the whole picture', async () => {
    const result = await graphqlEdit({ size: '64x64' });
    const bytes = Buffer.from(result.images[0]!.b64Json, 'base64');
    assert.deepEqual(result.warnings, []);
    near(await pixelAt(bytes, 32, 0), expectedColour(WHITE, 'invert'), 'a padded row');
    near(await pixelAt(bytes, 1, 32), expectedColour(LEFT, 'invert'), 'the left edge is there');
    near(await pixelAt(bytes, 62, 32), expectedColour(RIGHT, 'invert'), 'the right edge is there');
  });

  it('GraphQL: fit CROP and STRETCH fill the square with the picture', async () => {
    for (const fit of ['CROP', 'STRETCH']) {
      const bytes = Buffer.from((await graphqlEdit({ size: '64x64', fit })).images[0]!.b64Json, 'base64');
      near(await pixelAt(bytes, 1, 0), expectedColour(LEFT, 'invert'), `${fit}: top left`);
      near(await pixelAt(bytes, 62, 63), expectedColour(RIGHT, 'invert'), `${fit}: bottom right`);
    }
  });

  const rest = async (fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> => {
    const form = new FormData();
    form.set('image', new Blob([new Uint8Array(photo)]), 'photo.png');
    form.set('prompt', 'invert');
    form.set('num_inference_steps', '2');
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('REST: size defaults to auto, as OpenAI’s; the response states the size made and why', async () => {
    const { status, body } = await rest({});
    assert.equal(status, 200);
    assert.equal(body.size, '296x200');
    assert.match((body.warnings as string[])[0]!, /size auto made it 296x200/);
  });

  it('REST: fit applies to an explicit size; an unknown fit is refused naming the field', async () => {
    const ok = await rest({ size: '64x64', fit: 'stretch' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.size, '64x64');
    assert.equal(ok.body.warnings, undefined);
    const bad = await rest({ size: '64x64', fit: 'zoom' });
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { param: string }).param, 'fit');
  });
});
