/**
 * Masks through every way in: GraphQL `masks` / `maskBlur` (refused at submission when wrong),
 * merged jobs, REST `mask` and `mask[]` (curl and the official openai client), and the CLI.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI, { toFile } from 'openai';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse, postMultipart } from './support/graphql.js';
import { expectedColour, leftHalfMask, maxChannelDiff, pixelAt, twoColourPng, type Rgb } from './support/images.js';
import { PROJECT_ROOT } from '../src/config.js';

const run = promisify(execFile);
const LEFT: Rgb = [200, 60, 30];
const RIGHT: Rgb = [20, 120, 220];
const SIZE = 64;
const SUBMIT =
  'mutation($images: [Upload!]!, $masks: [Upload], $prompt: String!, $maskBlur: Int, $seed: Int, $size: String = "64x64", $steps: Int = 6) { editImages(images: $images, masks: $masks, prompt: $prompt, maskBlur: $maskBlur, seed: $seed, size: $size, steps: $steps) { id } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditCompleted { result { images { index b64Json } usage { mergedJobs } } } ... on EditFailed { error { code message } } } }';
type Ev = {
  editJobEvents: { __typename: string; result?: { images: { index: number; b64Json: string }[]; usage: { mergedJobs: number } }; error?: { code: string } };
};

async function assertMasked(bytes: Buffer, word: 'invert' | 'sepia', label: string): Promise<void> {
  assert.ok(maxChannelDiff(await pixelAt(bytes, 8, 32), expectedColour(LEFT, word)) <= 2, `${label}: inside`);
  assert.ok(maxChannelDiff(await pixelAt(bytes, SIZE - 8, 32), RIGHT) <= 1, `${label}: outside`);
}

describe('masks through the API, REST and CLI', () => {
  let server: TestServer;
  let image: Buffer;
  let mask: Buffer;
  let dir: string;
  before(async () => {
    server = await startTestServer();
    image = await twoColourPng(SIZE, SIZE, LEFT, RIGHT);
    mask = await leftHalfMask(SIZE, SIZE);
    dir = mkdtempSync(join(tmpdir(), 'masks-api-'));
  });
  after(async () => server.close());

  const submit = (vars: Record<string, unknown>, images: Buffer[], masks: (Buffer | null)[]) =>
    postMultipart<{ editImages: { id: string } }>(
      server.url,
      SUBMIT,
      vars,
      images.map((bytes, i) => ({ bytes, name: `${i}.png` })),
      undefined,
      masks,
    );
  const finished = async (id: string) => {
    const { events } = await collectSse<Ev>(server.url, EVENTS, { id });
    return events[events.length - 1]!.editJobEvents;
  };

  it('GraphQL: per-image masks, null for the whole image, in one job', async () => {
    const res = await submit({ prompt: 'invert', seed: 1 }, [image, image], [mask, null]);
    assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
    const done = await finished(res.body.data!.editImages.id);
    const [first, second] = done.result!.images.map((i) => Buffer.from(i.b64Json, 'base64'));
    await assertMasked(first!, 'invert', 'masked image');
    assert.ok(maxChannelDiff(await pixelAt(second!, SIZE - 8, 32), expectedColour(RIGHT, 'invert')) <= 2, 'unmasked image is edited whole');
  });

  it('GraphQL: merged jobs keep their own masks', async () => {
    const big = await twoColourPng(512, 512, LEFT, RIGHT);
    const blocker = await submit({ prompt: 'sepia', seed: 2, size: '512x512', steps: 40 }, [big, big, big], []);
    const a = await submit({ prompt: 'invert', seed: 3 }, [image], [mask]);
    const b = await submit({ prompt: 'invert', seed: 4 }, [image], []);
    const [doneA, doneB] = await Promise.all([finished(a.body.data!.editImages.id), finished(b.body.data!.editImages.id)]);
    await finished(blocker.body.data!.editImages.id);
    assert.equal(doneA.result!.usage.mergedJobs, 2);
    await assertMasked(Buffer.from(doneA.result!.images[0]!.b64Json, 'base64'), 'invert', 'merged masked job');
    assert.ok(maxChannelDiff(await pixelAt(Buffer.from(doneB.result!.images[0]!.b64Json, 'base64'), SIZE - 8, 32), expectedColour(RIGHT, 'invert')) <= 2);
  });

  it('GraphQL: a mask of the wrong size, or more masks than images, is refused at submission with a coded error', async () => {
    const wrong = await submit({ prompt: 'invert' }, [image], [await leftHalfMask(32, 32)]);
    assert.equal(wrong.body.errors?.[0]?.extensions?.code, 'INVALID_IMAGE');
    assert.match(wrong.body.errors![0]!.message, /masks\[0\].*32x32.*64x64/);
    const many = await submit({ prompt: 'invert' }, [image], [mask, mask]);
    assert.equal(many.body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    const blur = await submit({ prompt: 'invert', maskBlur: 1000 }, [image], [mask]);
    assert.equal(blur.body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
  });

  it('REST: `mask` applies to the first image (curl), `background=transparent` is refused', async () => {
    const a = join(dir, 'a.png');
    const m = join(dir, 'm.png');
    writeFileSync(a, image);
    writeFileSync(m, mask);
    const { stdout } = await run('curl', [
      '-s',
      `${server.url}/v1/images/edits`,
      '-F',
      `image=@${a}`,
      '-F',
      `mask=@${m}`,
      '-F',
      'prompt=sepia',
      '-F',
      `size=${SIZE}x${SIZE}`,
      '-F',
      'num_inference_steps=6',
    ]);
    const body = JSON.parse(stdout) as { data: { b64_json: string }[] };
    await assertMasked(Buffer.from(body.data[0]!.b64_json, 'base64'), 'sepia', 'REST mask');
    const refused = await run('curl', [
      '-s',
      '-w',
      '\n%{http_code}',
      `${server.url}/v1/images/edits`,
      '-F',
      `image=@${a}`,
      '-F',
      'background=transparent',
      '-F',
      'prompt=sepia',
    ]);
    assert.match(refused.stdout, /background must be auto or opaque[\s\S]*\n400$/);
  });

  it("REST: the official openai client's images.edit({ image, mask, prompt })", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused-without-auth' });
    const out = await client.images.edit({
      model: 'tiny-edit',
      image: await toFile(image, 'a.png', { type: 'image/png' }),
      mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
      prompt: 'invert',
      size: `${SIZE}x${SIZE}` as never,
    });
    await assertMasked(Buffer.from(out.data![0]!.b64_json!, 'base64'), 'invert', 'openai client');
  });

  it('CLI: --mask per --image, and --mask-blur', async () => {
    const a = join(dir, 'cli.png');
    const m = join(dir, 'cli-mask.png');
    writeFileSync(a, image);
    writeFileSync(m, mask);
    const out = join(dir, 'out');
    await run(
      process.execPath,
      [
        '--import',
        'tsx',
        join(PROJECT_ROOT, 'src/cli/edit.ts'),
        '--image',
        a,
        '--mask',
        m,
        '--mask-blur',
        '0',
        '--prompt',
        'invert',
        '--size',
        `${SIZE}x${SIZE}`,
        '--steps',
        '6',
        '--out',
        out,
      ],
      { cwd: PROJECT_ROOT },
    );
    const [file] = readdirSync(out);
    await assertMasked(readFileSync(join(out, file!)), 'invert', 'CLI');
  });
});
