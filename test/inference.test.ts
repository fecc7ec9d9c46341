/**
 * The inference engine on the built-in analytic model: every correct scheduler and pipeline
 * converges to tiny-edit's exact colour edit, so these tests check the whole stack numerically.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import { InferenceError } from '../src/inference/errors.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import type { SchedulerName } from '../src/inference/schedulers/types.js';
import type { EditOutput, ProgressUpdate } from '../src/inference/editRunner.js';
import { defaultModelsDir } from '../src/config.js';
import { expectedColour, maxChannelDiff, pixelAt, twoColourPng } from './support/images.js';
import type { Rgb } from './support/images.js';

const LEFT: Rgb = [200, 60, 30];
const RIGHT: Rgb = [20, 120, 220];
const W = 32;
const H = 24;

let engine: InferenceEngine;
let image: Buffer;

async function edit(
  options: Partial<EditOptions> & { prompt: string },
  images: Uint8Array[] = [image],
  call: Parameters<InferenceEngine['edit']>[3] = {},
): Promise<EditOutput> {
  const spec = engine.model('tiny-edit');
  const resolved = resolveEditOptions(spec, images.length, { size: `${W}x${H}`, seed: 7, ...options });
  return engine.edit(
    spec.id,
    resolved,
    images.map((bytes) => ({ bytes })),
    call,
  );
}

async function assertEdited(bytes: Uint8Array, edits: Parameters<typeof expectedColour>[1][], label: string): Promise<void> {
  for (const [x, colour] of [
    [4, LEFT],
    [W - 4, RIGHT],
  ] as const) {
    const got = await pixelAt(bytes, x, H / 2);
    const want = expectedColour(colour, ...edits);
    assert.ok(maxChannelDiff(got, want) <= 2, `${label}: pixel ${x} is ${got}, expected ${want}`);
  }
}

describe('tiny-edit through the inference engine', () => {
  before(async () => {
    engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'worker' });
    image = await twoColourPng(W, H, LEFT, RIGHT);
  });
  after(async () => engine.close());

  // A sensible step count for each scheduler (LCM is a few-step sampler).
  const STEPS: Record<SchedulerName, number> = { EULER_ANCESTRAL: 6, EULER: 6, DDIM: 6, PNDM: 10, DPMPP_2M: 6, DPMPP_2M_KARRAS: 6, LCM: 4 };
  for (const scheduler of SCHEDULER_NAMES) {
    const steps = STEPS[scheduler];
    describe(`with ${scheduler}`, () => {
      it(`turns grayscale, invert and sepia into the exact transform within 2/255 (${steps} steps)`, async () => {
        for (const word of ['grayscale', 'invert', 'sepia'] as const) {
          const out = await edit({ prompt: `make it ${word}`, scheduler, steps });
          await assertEdited(out.images[0]!.bytes, [word], `${scheduler} ${word}`);
        }
      });

      it('composes several edit words in prompt order', async () => {
        const out = await edit({ prompt: 'sepia, then brighter', scheduler, steps });
        await assertEdited(out.images[0]!.bytes, ['sepia', 'brighter'], `${scheduler} sepia+brighter`);
        const reversed = await edit({ prompt: 'invert darker', scheduler, steps });
        await assertEdited(reversed.images[0]!.bytes, ['invert', 'darker'], `${scheduler} invert+darker`);
      });
    });
  }

  it('treats the empty prompt and unknown words as the identity', async () => {
    const out = await edit({ prompt: 'please do something nice' });
    await assertEdited(out.images[0]!.bytes, [], 'unknown words');
  });

  it('exaggerates the edit with more text guidance, as InstructPix2Pix does', async () => {
    const plain = await pixelAt((await edit({ prompt: 'darker', guidanceScale: 1 })).images[0]!.bytes, 4, H / 2);
    const strong = await pixelAt((await edit({ prompt: 'darker', guidanceScale: 2, imageGuidanceScale: 1 })).images[0]!.bytes, 4, H / 2);
    // g=2, s_I=1: ε_u + 2(ε_T − ε_I) + (ε_I − ε_u) → x₀ = 2·edit − image: darker by twice as much.
    const want = LEFT.map((c) => Math.round(Math.min(1, Math.max(0, 2 * 0.75 * (c / 255) - c / 255)) * 255));
    assert.ok(maxChannelDiff(strong, want) <= 2, `strong guidance ${strong}, expected ${want}`);
    assert.ok(strong[0] < plain[0]);
  });

  it('gives each image its own prompt in one batch, ordered image·n + variant', async () => {
    const out = await edit({ prompt: 'ignored', prompts: ['grayscale', 'invert', 'sepia'], n: 2 }, [image, image, image]);
    assert.equal(out.images.length, 6);
    assert.deepEqual(
      out.images.map((i) => [i.index, i.inputIndex, i.variant]),
      [
        [0, 0, 0],
        [1, 0, 1],
        [2, 1, 0],
        [3, 1, 1],
        [4, 2, 0],
        [5, 2, 1],
      ],
    );
    const words = ['grayscale', 'invert', 'sepia'] as const;
    for (const img of out.images) await assertEdited(img.bytes, [words[img.inputIndex]!], `image ${img.index}`);
    assert.equal(out.usage.inputImages, 3);
    assert.equal(out.usage.generatedImages, 6);
    assert.equal(out.usage.batches, 1);
  });

  it('derives seeds from (seed, image, variant) only, the base seed for the first output', async () => {
    const out = await edit({ prompt: 'sepia', n: 2, seed: 1234 }, [image, image]);
    assert.equal(out.images[0]!.seed, 1234);
    assert.equal(new Set(out.images.map((i) => i.seed)).size, 4);
    const alone = await edit({ prompt: 'sepia', n: 2, seed: 1234 });
    assert.deepEqual(
      alone.images.map((i) => i.seed),
      out.images.slice(0, 2).map((i) => i.seed),
    );
  });

  it('reports progress after every step over the whole job, with previews every k steps', async () => {
    const updates: ProgressUpdate[] = [];
    const out = await edit({ prompt: 'sepia', steps: 6, previewEvery: 2, n: 2 }, [image], { onProgress: (u) => updates.push(u) });
    assert.deepEqual(
      updates.map((u) => u.step),
      [1, 2, 3, 4, 5, 6],
    );
    assert.ok(updates.every((u) => u.totalSteps === 6));
    assert.deepEqual(
      updates.map((u) => u.previews.length),
      [0, 2, 0, 2, 0, 2],
    );
    const preview = updates[1]!.previews[0]!;
    assert.equal(preview.mimeType, 'image/jpeg');
    assert.deepEqual([...preview.bytes.subarray(0, 2)], [0xff, 0xd8]);
    assert.equal(out.usage.steps, 6);
  });

  it("counts PNDM's extra timesteps as steps (UNet evaluations)", async () => {
    // tiny-edit's config has no skip_prk_steps, so PNDM runs diffusers' class default: 12 Runge–Kutta
    // sub-steps, then PLMS: 5 steps are 14 evaluations (with skip_prk_steps, PLMS alone: 6).
    const updates: ProgressUpdate[] = [];
    const out = await edit({ prompt: 'sepia', steps: 5, scheduler: 'PNDM', previewEvery: 3 }, [image], { onProgress: (u) => updates.push(u) });
    assert.deepEqual(
      updates.map((u) => u.step),
      Array.from({ length: 14 }, (_, i) => i + 1),
    );
    assert.ok(updates.every((u) => u.totalSteps === 14));
    assert.deepEqual(
      updates.map((u) => u.previews.length),
      [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1],
    );
    assert.equal(out.usage.steps, 14);
    await assertEdited(out.images[0]!.bytes, ['sepia'], 'PNDM with PRK');
  });

  it('cancels through an AbortSignal before the next step', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    // Enough work that the job cannot finish in the moment the cancel message takes to arrive.
    await assert.rejects(
      edit({ prompt: 'sepia', steps: 100, size: '384x384' }, [image], {
        signal: controller.signal,
        onProgress: (u) => {
          steps.push(u.step);
          if (u.step === 2) controller.abort();
        },
      }),
      (err: unknown) => err instanceof InferenceError && err.code === 'CANCELLED',
    );
    assert.ok(steps.length < 100, `ran ${steps.length} steps after cancelling`);
  });

  it('keeps the main thread responsive while a job runs in the worker', async () => {
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 5);
    const big = await twoColourPng(512, 512, LEFT, RIGHT);
    const spec = engine.model('tiny-edit');
    await engine.edit(
      spec.id,
      resolveEditOptions(spec, 4, { prompt: 'sepia', size: '512x512', steps: 10, seed: 1 }),
      [big, big, big, big].map((bytes) => ({ bytes })),
    );
    clearInterval(timer);
    assert.ok(ticks >= 3, `timer fired only ${ticks} times during the job`);
  });

  it('refuses undecodable input with INVALID_IMAGE', async () => {
    await assert.rejects(
      edit({ prompt: 'sepia' }, [new TextEncoder().encode('not an image at all')]),
      (err: unknown) => err instanceof InferenceError && err.code === 'INVALID_IMAGE',
    );
  });
});

describe('memory-aware micro-batching', () => {
  it('splits work over the budget into micro-batches with identical results, and refuses one item that can never fit', async () => {
    const img = await twoColourPng(W, H, LEFT, RIGHT);
    const spec0 = (await import('../src/inference/modelFolder.js')).readModelFolder(join(defaultModelsDir(), 'tiny-edit'), 'tiny-edit');
    const { perItemBytes } = await import('../src/inference/memory.js');
    const per = perItemBytes(spec0.memory, { width: W, height: H, vaeScaleFactor: 1, branches: 1 });
    const { STAGE_THREAD_BYTES } = await import('../src/inference/stageThread.js');
    // Room for exactly two outputs per batch (the budget also reserves the stage thread's memory).
    const small = await InferenceEngine.start({
      modelsDir: defaultModelsDir(),
      modelIds: ['tiny-edit'],
      threading: 'inline',
      memoryBudgetBytes: STAGE_THREAD_BYTES + spec0.memory.weightBytes + 2.5 * per,
    });
    try {
      const spec = small.model();
      const updates: ProgressUpdate[] = [];
      const out = await small.edit(
        spec.id,
        resolveEditOptions(spec, 3, { prompt: 'invert', n: 2, size: `${W}x${H}`, steps: 4, seed: 3 }),
        [img, img, img].map((bytes) => ({ bytes })),
        { onProgress: (u) => updates.push(u) },
      );
      assert.equal(out.usage.batches, 3);
      assert.equal(out.usage.steps, 12);
      assert.deepEqual(
        updates.map((u) => u.step),
        Array.from({ length: 12 }, (_, i) => i + 1),
      );
      assert.ok(updates.every((u) => u.totalSteps === 12));
      assert.deepEqual(
        out.images.map((i) => i.index),
        [0, 1, 2, 3, 4, 5],
      );
      for (const i of out.images) await assertEdited(i.bytes, ['invert'], `micro-batched ${i.index}`);

      await assert.rejects(
        small.edit(spec.id, resolveEditOptions(spec, 1, { prompt: 'invert', size: '512x512', steps: 2 }), [{ bytes: img }]),
        (err: unknown) => err instanceof InferenceError && err.code === 'IMAGE_TOO_LARGE' && /max pixels \d+/.test(err.message),
      );
    } finally {
      await small.close();
    }
  });
});
