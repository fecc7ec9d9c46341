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
import type { InferenceError } from '../src/inference/errors.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import { expectedColour, maxChannelDiff, pixelAt, reference, solidPng } from './support/images.js';
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
    assert.equal(spec.family, 'sd3-img2img');
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

  it('refuses masks, true CFG and UNet schedulers', async () => {
    const spec = engine.model('tiny-sd3-edit');
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', trueCfgScale: 4 }), /has no true CFG; use guidanceScale/);
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'DDIM' }), /samples with FLOW_MATCH_EULER only/);
    const resolved = resolveEditOptions(spec, 1, { prompt: 'grayscale', size: `${SIZE}x${SIZE}`, steps: 2 });
    await assert.rejects(
      engine.edit('tiny-sd3-edit', resolved, [{ bytes: input, mask: input }]),
      (err: InferenceError) => err.code === 'BAD_USER_INPUT' && /SD3 inpainting is not implemented/.test(err.message),
    );
  });
});
