/**
 * The SD3 family on tiny-flow-edit's SD3-layout variant (models/sd3Exports.ts): CLIP-L and CLIP-G
 * penultimate hidden states concatenated and padded to T5's width, T5 appended, pooled L ‖ G,
 * unpacked 16-channel latents with SD3's scaling and shift, timestep t, classifier-free guidance
 * with the negative prompt, strength; converging to the exact edit of the fixture's fixed colour.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLOW_IMG2IMG_BASE_RGB } from '../models/flowExports.js';
import { buildSd3EditFiles } from '../models/sd3Exports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { InferenceEngine } from '../src/inference/engine.js';
import type { EditInput, ProgressUpdate } from '../src/inference/editRunner.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import { expectedColour, leftHalfMask, maxChannelDiff, meanColour, pixelAt, reference, solidPng, twoColourPng } from './support/images.js';
import type { Rgb } from './support/images.js';

const SIZE = 64;
const BASE = FLOW_IMG2IMG_BASE_RGB.map((v) => Math.round(v * 255)) as Rgb;

/** x₀ under guidance g against an identity negative: c + g·(edit(c) − c), in 0..255. */
function guided(colour: Rgb, word: keyof typeof reference, g: number): Rgb {
  const c = colour.map((v) => v / 255);
  const e = reference[word](c);
  return c.map((v, i) => Math.round(Math.min(1, Math.max(0, v + g * (e[i]! - v))) * 255)) as Rgb;
}

describe('SD3 family on the SD3-layout tiny-flow-edit', () => {
  let root: string;
  let engine: InferenceEngine;
  let input: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'sd3-'));
    writeModelFolder(join(root, 'tiny-sd3-edit'), buildSd3EditFiles());
    engine = await InferenceEngine.start({ modelsDir: root, modelIds: ['tiny-sd3-edit'], threading: 'inline', intraOpThreads: 1 });
    input = await solidPng(SIZE, SIZE, [200, 60, 30]);
  });
  after(async () => {
    await engine?.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function edit(options: Partial<EditOptions>): Promise<Rgb> {
    const spec = engine.model('tiny-sd3-edit');
    const out = await engine.edit(
      'tiny-sd3-edit',
      resolveEditOptions(spec, 1, { prompt: 'grayscale', size: `${SIZE}x${SIZE}`, seed: 2, steps: 6, ...options } as EditOptions),
      [{ bytes: input }],
    );
    return pixelAt(out.images[0]!.bytes, 20, 20);
  }

  it('reads the folder as SD3 with its defaults', () => {
    const spec = engine.model('tiny-sd3-edit');
    assert.equal(spec.kind, 'sd3-img2img');
    assert.equal(spec.defaults.scheduler, 'FLOW_MATCH_EULER');
    assert.equal(spec.defaults.guidanceScale, 7);
    assert.equal(spec.defaults.maxSequenceLength, 256);
    assert.equal(spec.defaults.trueCfgScale, undefined);
    assert.equal(spec.shiftFactor, 0.0609);
    assert.equal(spec.memory.attentionDownscale, 2);
  });

  it('converges to the exact edit, unguided, at several strengths and T5 lengths', async () => {
    for (const [word, strength, maxSequenceLength] of [
      ['grayscale', 1, 256],
      ['sepia', 0.5, 16],
      ['invert', 0.8, 512],
    ] as const) {
      const got = await edit({ prompt: word, guidanceScale: 1, strength, maxSequenceLength });
      assert.ok(maxChannelDiff(got, expectedColour(BASE, word)) <= 2, `${word} strength ${strength}: ${got}`);
    }
  });

  it('classifier-free guidance runs the negative prompt ("" when none) in the same batch', async () => {
    const got = await edit({ prompt: 'warmer', guidanceScale: 2 });
    assert.ok(maxChannelDiff(got, guided(BASE, 'warmer', 2)) <= 2, `${got}`);
    const same = await edit({ prompt: 'sepia', negativePrompt: 'sepia', guidanceScale: 5 });
    assert.ok(maxChannelDiff(same, expectedColour(BASE, 'sepia')) <= 2, `${same}`);
  });

  it('sends latent previews through a projection fitted to the VAE at load, resembling the output', async () => {
    const spec = engine.model('tiny-sd3-edit');
    const updates: ProgressUpdate[] = [];
    const resolved = resolveEditOptions(spec, 1, {
      prompt: 'invert',
      size: `${SIZE}x${SIZE}`,
      seed: 2,
      steps: 4,
      strength: 1,
      guidanceScale: 1,
      previewEvery: 2,
    } as EditOptions);
    const out = await engine.edit('tiny-sd3-edit', resolved, [{ bytes: input }], { onProgress: (u) => updates.push(u) });
    assert.deepEqual(
      updates.map((u) => u.previews.length),
      [0, 1, 0, 1],
    );
    const [got, want] = [await meanColour(updates[3]!.previews[0]!.bytes), await meanColour(out.images[0]!.bytes)];
    assert.ok(maxChannelDiff(got, want) <= 6, `preview mean ${got}, output mean ${want}`);
    // The fixture's VAE keeps RGB in channels 0..2 unscaled: RGB = x/scaling + shift, the rest 0.
    const { factors, bias } = spec.preview!;
    assert.equal(factors.length, 16);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(factors[c]![c]! - 1 / 1.5305) < 1e-3, `factor ${c}: ${factors[c]}`);
      assert.ok(Math.abs(bias[c]! - 0.0609) < 1e-3, `bias ${c}: ${bias[c]}`);
    }
    assert.ok(factors.slice(3).every((row) => row.every((v) => Math.abs(v) < 1e-6)));
  });

  it('refuses true CFG and UNet schedulers', async () => {
    const spec = engine.model('tiny-sd3-edit');
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', trueCfgScale: 4 }), /has no true CFG; use guidanceScale/);
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'DDIM' }), /samples with FLOW_MATCH_EULER only/);
  });
});

describe('SD3 inpainting (diffusers StableDiffusion3InpaintPipeline): 16-channel latent blending, 33-channel transformers', () => {
  const LEFT: Rgb = [200, 60, 30];
  const RIGHT: Rgb = [20, 120, 220];
  const GREY: Rgb = [127.5, 127.5, 127.5];
  let root: string;
  let engine: InferenceEngine;
  let image: Buffer;
  let mask: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'sd3-masks-'));
    writeModelFolder(join(root, 'sd3-img2img'), buildSd3EditFiles());
    writeModelFolder(join(root, 'sd3-inpaint-16'), buildSd3EditFiles({ inpaint: 16 }));
    writeModelFolder(join(root, 'sd3-inpaint-33'), buildSd3EditFiles({ inpaint: 33 }));
    engine = await InferenceEngine.start({ modelsDir: root, threading: 'inline', intraOpThreads: 1 });
    image = await twoColourPng(SIZE, SIZE, LEFT, RIGHT);
    mask = await leftHalfMask(SIZE, SIZE);
  });
  after(async () => {
    await engine?.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function edit(id: string, options: Partial<EditOptions>, inputs: EditInput[]) {
    const spec = engine.model(id);
    const out = await engine.edit(
      id,
      resolveEditOptions(spec, inputs.length, { prompt: 'sepia', size: `${SIZE}x${SIZE}`, seed: 3, steps: 6, guidanceScale: 1, ...options } as EditOptions),
      inputs,
    );
    return out.images.map((i) => i.bytes);
  }
  /** x₀ under guidance g against the empty negative prompt (identity): c + g·(edit(c) − c). */
  const want = (colour: Rgb, g: number): Rgb => (g === 1 ? expectedColour(colour, 'sepia') : guided(colour, 'sepia', g));

  it('chooses the family by the transformer: StableDiffusion3InpaintPipeline with 16 channels blends, with 33 takes mask channels', () => {
    assert.equal(engine.model('sd3-img2img').family.maskMethod, 'latent-blend');
    assert.equal(engine.model('sd3-inpaint-16').kind, 'sd3-img2img');
    assert.equal(engine.model('sd3-inpaint-16').pipelineClass, 'StableDiffusion3InpaintPipeline');
    assert.equal(engine.model('sd3-inpaint-33').kind, 'sd3-inpaint');
    assert.equal(engine.model('sd3-inpaint-33').denoiserInChannels, 33);
    assert.equal(engine.model('sd3-inpaint-33').family.maskMethod, 'unet-mask-channels');
  });

  it('16 channels: the exact edit inside the mask, the input outside, at several strengths, guided or not', async () => {
    for (const id of ['sd3-img2img', 'sd3-inpaint-16']) {
      for (const [strength, g] of [
        [1, 1],
        [0.6, 2],
        [0.5, 1],
      ] as const) {
        const [out] = await edit(id, { strength, guidanceScale: g }, [{ bytes: image, mask }]);
        const inside = await pixelAt(out!, 8, 32);
        assert.ok(maxChannelDiff(inside, want(BASE, g)) <= 2, `${id} ${strength} inside: ${inside} vs ${want(BASE, g)}`);
        assert.ok(maxChannelDiff(await pixelAt(out!, SIZE - 8, 32), RIGHT) <= 1, `${id} ${strength} outside`);
      }
    }
  });

  it('33 channels: the edit of the masked image (mid-grey) inside, the input outside; no mask edits the whole image', async () => {
    for (const [strength, g] of [
      [1, 1],
      [0.6, 2],
    ] as const) {
      const [masked, whole] = await edit('sd3-inpaint-33', { strength, guidanceScale: g }, [
        { bytes: image, mask },
        { bytes: image, mask: null },
      ]);
      const inside = await pixelAt(masked!, 8, 32);
      assert.ok(maxChannelDiff(inside, want(GREY, g)) <= 2, `${strength} inside: ${inside} vs ${want(GREY, g)}`);
      assert.ok(maxChannelDiff(await pixelAt(masked!, SIZE - 8, 32), RIGHT) <= 1, `${strength} outside`);
      assert.ok(maxChannelDiff(await pixelAt(whole!, SIZE - 8, 32), want(GREY, g)) <= 2, `${strength}: no mask edits the whole image`);
    }
  });

  it('per-image masks in one batch: masked images edited inside only, unmasked ones whole and as when alone', async () => {
    for (const id of ['sd3-img2img', 'sd3-inpaint-33']) {
      const fill = id === 'sd3-img2img' ? BASE : GREY;
      const [alone] = await edit(id, { n: 1 }, [{ bytes: image }]);
      const out = await edit(id, { n: 2 }, [
        { bytes: image, mask },
        { bytes: image, mask: null },
        { bytes: image, mask },
      ]);
      assert.equal(out.length, 6);
      for (const index of [0, 1, 4, 5]) {
        assert.ok(maxChannelDiff(await pixelAt(out[index]!, 8, 32), want(fill, 1)) <= 2, `${id} image ${index} inside`);
        assert.ok(maxChannelDiff(await pixelAt(out[index]!, SIZE - 8, 32), RIGHT) <= 1, `${id} image ${index} outside`);
      }
      for (const index of [2, 3]) assert.ok(maxChannelDiff(await pixelAt(out[index]!, SIZE - 8, 32), want(fill, 1)) <= 2, `${id} unmasked ${index}`);
      assert.deepEqual(out[2], alone, `${id}: an unmasked image is the same as when it runs alone`);
    }
  });
});
