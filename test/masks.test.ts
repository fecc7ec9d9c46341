/**
 * Masked edits through the engine: inside the mask the exact colour edit (within 2/255), outside
 * the input (within 1/255), with every scheduler, on InstructPix2Pix (tiny-edit) and img2img
 * (an optimum-layout fixture) UNets, which blend latents as diffusers does for 4-channel UNets.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import type { EditInput } from '../src/inference/editRunner.js';
import type { InferenceError } from '../src/inference/errors.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { defaultModelsDir } from '../src/config.js';
import { IMG2IMG_BASE_RGB, buildExportFixture } from '../models/exports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { expectedColour, leftHalfMask, maxChannelDiff, pixelAt, twoColourPng } from './support/images.js';
import type { Rgb } from './support/images.js';

const W = 64;
const H = 64;
const LEFT: Rgb = [200, 60, 30];
const RIGHT: Rgb = [20, 120, 220];

/** OpenAI's convention: transparent (alpha 0) on the left half edits, opaque keeps. */
async function leftHalfTransparent(): Promise<Buffer> {
  const raw = Buffer.alloc(W * H * 4, 255);
  for (let y = 0; y < H; y++) for (let x = 0; x < W / 2; x++) raw[(y * W + x) * 4 + 3] = 0;
  return sharp(raw, { raw: { width: W, height: H, channels: 4 } })
    .png()
    .toBuffer();
}

describe('masked edits', () => {
  let root: string;
  let engine: InferenceEngine;
  let image: Buffer;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'masks-'));
    writeModelFolder(join(root, 'fixture-img2img'), buildExportFixture({ generation: 'optimum-1.24', family: 'img2img' }));
    writeModelFolder(join(root, 'fixture-inpaint'), buildExportFixture({ generation: 'optimum-1.24', family: 'inpaint' }));
    image = await twoColourPng(W, H, LEFT, RIGHT);
    engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading: 'inline', intraOpThreads: 1 });
  });
  after(async () => {
    await engine.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function edit(model: InferenceEngine, id: string, options: Partial<EditOptions>, inputs: EditInput[]) {
    const spec = model.model(id);
    return model.edit(
      id,
      resolveEditOptions(spec, inputs.length, {
        prompt: 'sepia',
        size: `${W}x${H}`,
        seed: 5,
        steps: 8,
        guidanceScale: 1,
        imageGuidanceScale: 1,
        strength: 1,
        ...options,
      } as EditOptions),
      inputs,
    );
  }

  for (const scheduler of SCHEDULER_NAMES) {
    it(`InstructPix2Pix (4-channel blend) with ${scheduler}: exact edit inside, input outside`, async () => {
      const out = await edit(engine, 'tiny-edit', { scheduler }, [{ bytes: image, mask: await leftHalfMask(W, H) }]);
      const bytes = out.images[0]!.bytes;
      assert.ok(maxChannelDiff(await pixelAt(bytes, 8, 32), expectedColour(LEFT, 'sepia')) <= 2, 'inside');
      assert.ok(maxChannelDiff(await pixelAt(bytes, W - 8, 32), RIGHT) <= 1, 'outside');
    });
  }

  it('img2img with every scheduler: the edit inside, the input outside', async () => {
    const fixture = await InferenceEngine.start({ modelsDir: root, modelIds: ['fixture-img2img'], threading: 'inline', intraOpThreads: 1 });
    try {
      const base = IMG2IMG_BASE_RGB.map((v) => Math.round(v * 255)) as Rgb;
      for (const scheduler of SCHEDULER_NAMES) {
        const out = await edit(fixture, 'fixture-img2img', { scheduler }, [{ bytes: image, mask: await leftHalfMask(W, H) }]);
        const bytes = out.images[0]!.bytes;
        assert.ok(maxChannelDiff(await pixelAt(bytes, 8, 32), expectedColour(base, 'sepia')) <= 2, `${scheduler} inside`);
        assert.ok(maxChannelDiff(await pixelAt(bytes, W - 8, 32), RIGHT) <= 1, `${scheduler} outside`);
      }
    } finally {
      await fixture.close();
    }
  });

  it('a 9-channel inpainting UNet with every scheduler and strength: its fill inside, the input outside', async () => {
    const fixture = await InferenceEngine.start({ modelsDir: root, modelIds: ['fixture-inpaint'], threading: 'inline', intraOpThreads: 1 });
    try {
      assert.equal(fixture.model('fixture-inpaint').family.maskMethod, 'unet-mask-channels');
      // The UNet sees only the masked image: inside the mask, mid-grey, which it edits.
      const grey: Rgb = [127.5, 127.5, 127.5];
      for (const scheduler of SCHEDULER_NAMES) {
        // diffusers' PNDM restarts its warm-up where img2img begins, so it is not exact part-way
        // (pinned against diffusers in schedulers.test.ts); it is checked from strength 1 here.
        for (const strength of scheduler === 'PNDM' ? [1] : [1, 0.6]) {
          const out = await edit(fixture, 'fixture-inpaint', { scheduler, strength, guidanceScale: strength === 1 ? 1 : 2 }, [
            { bytes: image, mask: await leftHalfMask(W, H) },
            { bytes: image, mask: null },
          ]);
          const want =
            strength === 1
              ? expectedColour(grey, 'sepia')
              : (grey.map((v, i) => Math.round(Math.min(255, Math.max(0, v + 2 * (expectedColour(grey, 'sepia')[i]! - v))))) as Rgb);
          const [masked, whole] = out.images.map((i) => i.bytes);
          const tolerance = 2;
          assert.ok(
            maxChannelDiff(await pixelAt(masked!, 8, 32), want) <= tolerance,
            `${scheduler} ${strength} inside: ${await pixelAt(masked!, 8, 32)} vs ${want}`,
          );
          assert.ok(maxChannelDiff(await pixelAt(masked!, W - 8, 32), RIGHT) <= 1, `${scheduler} ${strength} outside`);
          assert.ok(maxChannelDiff(await pixelAt(whole!, W - 8, 32), want) <= tolerance, `${scheduler} ${strength}: no mask edits the whole image`);
        }
      }
    } finally {
      await fixture.close();
    }
  });

  it('takes per-image masks in one batch, unmasked images edited whole and unchanged by their neighbours', async () => {
    const alone = await edit(engine, 'tiny-edit', { prompt: 'invert' }, [{ bytes: image }]);
    const out = await edit(engine, 'tiny-edit', { prompt: 'invert', n: 2 }, [
      { bytes: image, mask: await leftHalfMask(W, H) },
      { bytes: image, mask: null },
      { bytes: image, mask: await leftHalfTransparent() },
    ]);
    assert.equal(out.images.length, 6);
    const inverted = (c: Rgb): Rgb => expectedColour(c, 'invert');
    for (const index of [0, 1, 4, 5]) {
      assert.ok(maxChannelDiff(await pixelAt(out.images[index]!.bytes, 8, 32), inverted(LEFT)) <= 2, `image ${index} inside`);
      assert.ok(maxChannelDiff(await pixelAt(out.images[index]!.bytes, W - 8, 32), RIGHT) <= 1, `image ${index} outside`);
    }
    for (const index of [2, 3]) assert.ok(maxChannelDiff(await pixelAt(out.images[index]!.bytes, W - 8, 32), inverted(RIGHT)) <= 2, `unmasked image ${index}`);
    assert.deepEqual(out.images[2]!.bytes, alone.images[0]!.bytes, 'an unmasked image is the same as when it runs alone');
  });

  it('grey mask values edit partially', async () => {
    const out = await edit(engine, 'tiny-edit', { prompt: 'invert' }, [{ bytes: image, mask: await leftHalfMask(W, H, 128) }]);
    const got = await pixelAt(out.images[0]!.bytes, 8, 32);
    const m = 128 / 255;
    const want = LEFT.map((c, i) => Math.round(m * expectedColour(LEFT, 'invert')[i]! + (1 - m) * c)) as Rgb;
    assert.ok(maxChannelDiff(got, want) <= 3, `${got} vs ${want}`);
  });

  it('maskBlur feathers the edge in output pixels and keeps the far side exact', async () => {
    const hard = await edit(engine, 'tiny-edit', { prompt: 'invert' }, [{ bytes: image, mask: await leftHalfMask(W, H) }]);
    const soft = await edit(engine, 'tiny-edit', { prompt: 'invert', maskBlur: 4 }, [{ bytes: image, mask: await leftHalfMask(W, H) }]);
    const edge = W / 2;
    // Right at the edge (first kept column) the hard result is the input; the feathered one is part-edited.
    assert.ok(maxChannelDiff(await pixelAt(hard.images[0]!.bytes, edge, 32), RIGHT) <= 1);
    assert.ok(maxChannelDiff(await pixelAt(soft.images[0]!.bytes, edge, 32), RIGHT) > 20);
    assert.ok(maxChannelDiff(await pixelAt(soft.images[0]!.bytes, W - 2, 32), RIGHT) <= 1);
    assert.ok(maxChannelDiff(await pixelAt(soft.images[0]!.bytes, 1, 32), expectedColour(LEFT, 'invert')) <= 2);
  });

  it('refuses a mask whose size differs from its image, naming both sizes', async () => {
    await assert.rejects(edit(engine, 'tiny-edit', {}, [{ bytes: image, mask: await leftHalfMask(32, 32) }]), (err: InferenceError) => {
      assert.equal(err.code, 'INVALID_IMAGE');
      assert.match(err.message, /masks\[0\]: the mask is 32x32 but its image is 64x64/);
      return true;
    });
  });
});
