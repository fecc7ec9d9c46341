/**
 * The FLUX family on `tiny-flow-edit` (models/flowExports.ts), an analytic folder in optimum's
 * FLUX layout whose transformer returns the exact flow velocity toward the colour edit: Kontext
 * reference editing, img2img with strength, true CFG in one batch, the guidance input, both ids
 * layouts, T5 lengths, and what is refused.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../src/config.js';
import { FLOW_IMG2IMG_BASE_RGB, buildFlowEditFiles } from '../models/flowExports.js';
import type { FlowFixtureOptions } from '../models/flowExports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { GraphBuilder } from '../models/onnx/graph.js';
import { InferenceEngine } from '../src/inference/engine.js';
import type { InferenceError } from '../src/inference/errors.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import { imageIds, packLatents, unpackLatents } from '../src/inference/pipelines/flux.js';
import { loadTokenizer } from '../src/inference/tokenizer.js';
import { estimateBatchBytes, maxPixelsWithinBudget, perItemBytes, planMicroBatches } from '../src/inference/memory.js';
import { expectedColour, leftHalfMask, maxChannelDiff, meanColour, pixelAt, reference, twoColourPng } from './support/images.js';
import type { EditInput, ProgressUpdate } from '../src/inference/editRunner.js';
import type { Rgb } from './support/images.js';

const SIZE = 64;
const LEFT: Rgb = [200, 60, 30];
const RIGHT: Rgb = [40, 120, 220];
const BASE = FLOW_IMG2IMG_BASE_RGB.map((v) => Math.round(v * 255)) as Rgb;

/** x₀ under true CFG s against an identity negative: c + s·(edit(c) − c), in 0..255. */
function trueCfg(colour: Rgb, word: keyof typeof reference, s: number): Rgb {
  const c = colour.map((v) => v / 255);
  const e = reference[word](c);
  return c.map((v, i) => Math.round(Math.min(1, Math.max(0, v + s * (e[i]! - v))) * 255)) as Rgb;
}

const MODELS: Record<string, FlowFixtureOptions> = {
  'tiny-flow-edit': { layout: 'kontext', guidance: true },
  'flow-kontext-batched-ids': { layout: 'kontext', batchedIds: true, guidance: true },
  'flow-img2img-schnell': { layout: 'img2img', dynamicShifting: false },
  'flow-kontext-fp16': { layout: 'kontext', guidance: true, fp16: true },
};

describe('FLUX family on tiny-flow-edit', () => {
  let root: string;
  let engine: InferenceEngine;
  let input: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'flux-'));
    for (const [name, options] of Object.entries(MODELS)) writeModelFolder(join(root, name), buildFlowEditFiles(options));
    engine = await InferenceEngine.start({ modelsDir: root, modelIds: Object.keys(MODELS), threading: 'inline', intraOpThreads: 1 });
    input = await twoColourPng(SIZE, SIZE, LEFT, RIGHT);
  });
  after(async () => {
    await engine?.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function edit(model: string, options: Partial<EditOptions>): Promise<{ left: Rgb; right: Rgb }[]> {
    const spec = engine.model(model);
    const resolved = resolveEditOptions(spec, 1, { prompt: 'grayscale', size: `${SIZE}x${SIZE}`, seed: 7, ...options } as EditOptions);
    const out = await engine.edit(model, resolved, [{ bytes: input }]);
    return Promise.all(out.images.map(async (i) => ({ left: await pixelAt(i.bytes, 8, 40), right: await pixelAt(i.bytes, 56, 20) })));
  }

  function near(got: Rgb, want: Rgb, what: string): void {
    assert.ok(maxChannelDiff(got, want) <= 2, `${what}: ${got}, expected ${want}`);
  }

  it('is exact on 8×8-aligned squares of one colour and blocky elsewhere, as the README says', async () => {
    const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
    assert.match(readme, /tiny-flow-edit[\s\S]*?8×8 squares/, "the README says why tiny-flow-edit's output is made of 8×8 blocks");
    /** SIZE² RGB where pixel (x, y) is colour(x, y). */
    const image = (colour: (x: number, y: number) => Rgb): Promise<Buffer> => {
      const raw = Buffer.alloc(SIZE * SIZE * 3);
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) raw.set(colour(x, y), (y * SIZE + x) * 3);
      return sharp(raw, { raw: { width: SIZE, height: SIZE, channels: 3 } })
        .png()
        .toBuffer();
    };
    const run = async (bytes: Buffer): Promise<{ data: Buffer }> => {
      const resolved = resolveEditOptions(engine.model('tiny-flow-edit'), 1, { prompt: 'grayscale', size: `${SIZE}x${SIZE}`, seed: 7 });
      const out = await engine.edit('tiny-flow-edit', resolved, [{ bytes }]);
      return sharp(out.images[0]!.bytes).raw().toBuffer({ resolveWithObject: true });
    };
    const at = (data: Buffer, x: number, y: number): Rgb => [...data.subarray((y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3)] as Rgb;
    // Squares of 8×8 on the 8-pixel grid, each one colour: every pixel gets the exact edit.
    const squares = (x: number, y: number): Rgb => ((Math.floor(x / 8) + Math.floor(y / 8)) % 2 ? LEFT : RIGHT);
    const exact = await run(await image(squares));
    for (const [x, y] of [
      [0, 0],
      [7, 7],
      [8, 0],
      [15, 9],
      [63, 63],
      [33, 41],
    ] as const) {
      near(at(exact.data, x, y), expectedColour(squares(x, y), 'grayscale'), `square pixel ${x},${y}`);
    }
    // Detail finer than 8×8 (a one-pixel checkerboard): each square is the edit of its mean colour.
    const fine = await run(await image((x, y) => ((x + y) % 2 ? LEFT : RIGHT)));
    const mean = LEFT.map((v, i) => (v + RIGHT[i]!) / 2) as Rgb;
    for (const [x, y] of [
      [0, 0],
      [1, 0],
      [7, 6],
      [40, 17],
    ] as const)
      near(at(fine.data, x, y), expectedColour(mean, 'grayscale'), `fine pixel ${x},${y}`);
  });

  it('reads the folders as FLUX families with FLUX defaults', () => {
    const kontext = engine.model('tiny-flow-edit');
    assert.equal(kontext.kind, 'flux-kontext');
    assert.equal(kontext.defaults.scheduler, 'FLOW_MATCH_EULER');
    assert.equal(kontext.defaults.strength, null);
    assert.equal(kontext.defaults.guidanceScale, 3.5);
    assert.equal(kontext.defaults.maxSequenceLength, 512);
    assert.equal(kontext.defaults.trueCfgScale, 1);
    assert.equal(kontext.limits.maxSequenceLength, 512);
    assert.equal(kontext.shiftFactor, 0.1159);
    assert.match(kontext.export.generation, /diffusers ≥ 0\.31/);
    assert.equal(kontext.export.timestep, 'float32 [step]');
    assert.match(engine.model('flow-kontext-batched-ids').export.generation, /diffusers < 0\.31/);
    assert.deepEqual(kontext.warnings, []);
    assert.equal(kontext.export.precision, 'fp32');
    assert.equal(engine.model('flow-kontext-fp16').export.precision, 'fp16');
    const schnell = engine.model('flow-img2img-schnell');
    assert.equal(schnell.kind, 'flux-img2img');
    assert.equal(schnell.defaults.maxSequenceLength, 256, 'no guidance input: schnell defaults');
    assert.equal(schnell.defaults.strength, 0.6);
  });

  it('packs and unpacks 2×2 latents as diffusers does, and writes (first, row, col) ids', () => {
    const shape = { channels: 2, height: 4, width: 6 };
    const src = Float32Array.from({ length: 2 * 2 * 4 * 6 }, (_, i) => i);
    const packed = packLatents(src, 2, shape);
    // Token (0,1) of item 0, channel 1, patch offset (dy=1, dx=0) = latent (c=1, y=1, x=2).
    assert.equal(packed[1 * 8 + 1 * 4 + 2], src[(1 * 4 + 1) * 6 + 2]);
    assert.deepEqual(unpackLatents(packed, 2, shape), src);
    assert.deepEqual(Array.from(imageIds(2, 3, 1).subarray(9, 12)), [1, 1, 0]);
  });

  for (const model of ['tiny-flow-edit', 'flow-kontext-batched-ids', 'flow-kontext-fp16']) {
    it(`${model}: Kontext reference editing converges to the exact edit of each region`, async () => {
      for (const word of ['grayscale', 'sepia', 'invert'] as const) {
        const [out] = await edit(model, { prompt: word, steps: 6 });
        near(out!.left, expectedColour(LEFT, word), `${word} left`);
        near(out!.right, expectedColour(RIGHT, word), `${word} right`);
      }
    });
  }

  it('true CFG runs the negative prompt in the same batch: v = v_neg + s·(v_pos − v_neg)', async () => {
    const [cfg] = await edit('tiny-flow-edit', { prompt: 'grayscale', negativePrompt: 'blurry', trueCfgScale: 1.5, steps: 5 });
    near(cfg!.left, trueCfg(LEFT, 'grayscale', 1.5), 'against an identity negative, left');
    near(cfg!.right, trueCfg(RIGHT, 'grayscale', 1.5), 'against an identity negative, right');
    const [same] = await edit('tiny-flow-edit', { prompt: 'sepia', negativePrompt: 'sepia', trueCfgScale: 4, steps: 5 });
    near(same!.left, expectedColour(LEFT, 'sepia'), 'negative = positive gives the plain edit');
    // Without a negative prompt true CFG is off, as in diffusers.
    const [off] = await edit('tiny-flow-edit', { prompt: 'grayscale', trueCfgScale: 4, steps: 5, n: 2 });
    near(off!.left, expectedColour(LEFT, 'grayscale'), 'no negative prompt: no true CFG');
  });

  it("the seed's parameters: true_cfg_scale 4, max_sequence_length 512, 50 steps", async () => {
    const outs = await edit('tiny-flow-edit', { prompt: 'grayscale', trueCfgScale: 4, maxSequenceLength: 512, steps: 50 });
    near(outs[0]!.left, expectedColour(LEFT, 'grayscale'), 'left');
  });

  it('short T5 sequences still end with exactly one </s> (the fixture shifts the output otherwise)', async () => {
    const [out] = await edit('tiny-flow-edit', { prompt: 'please make this image grayscale now', maxSequenceLength: 8, steps: 4 });
    near(out!.left, expectedColour(LEFT, 'grayscale'), 'left');
    const t5 = loadTokenizer(join(root, 'tiny-flow-edit', 'tokenizer_2'));
    assert.deepEqual(Array.from(t5.encode('grayscale', 4)), [t5.encode('grayscale')[0], 1, 0, 0]);
    assert.equal(t5.encode('a b c d e f', 4)[3], 1, 'truncated, then </s>');
  });

  it('img2img with strength converges to the exact edit (of the fixed colour the transformer edits)', async () => {
    for (const strength of [1, 0.6, 0.25]) {
      const [out] = await edit('flow-img2img-schnell', { prompt: 'warmer', strength, steps: 8 });
      near(out!.left, expectedColour(BASE, 'warmer'), `strength ${strength}`);
    }
  });

  it('sends latent previews through a projection fitted to the VAE at load, resembling the output', async () => {
    const spec = engine.model('tiny-flow-edit');
    const updates: ProgressUpdate[] = [];
    const resolved = resolveEditOptions(spec, 1, { prompt: 'sepia', size: `${SIZE}x${SIZE}`, seed: 7, steps: 4, previewEvery: 2 } as EditOptions);
    const out = await engine.edit('tiny-flow-edit', resolved, [{ bytes: input }], { onProgress: (u) => updates.push(u) });
    assert.deepEqual(
      updates.map((u) => u.previews.length),
      [0, 1, 0, 1],
    );
    // The last step's x₀ estimate is the output's latents: the preview's colours are the output's.
    const preview = updates[3]!.previews[0]!.bytes;
    const [got, want] = [await meanColour(preview), await meanColour(out.images[0]!.bytes)];
    assert.ok(maxChannelDiff(got, want) <= 6, `preview mean ${got}, output mean ${want}`);
    // Unpacked before projecting: the left half previews the left colour's edit.
    assert.ok(maxChannelDiff(await pixelAt(preview, 1, 4), expectedColour(LEFT, 'sepia')) <= 12, `${await pixelAt(preview, 1, 4)}`);
  });

  it('FLUX img2img masks blend packed latents: the exact edit inside, the input outside, per image in one batch', async () => {
    const model = 'flow-img2img-schnell';
    const spec = engine.model(model);
    assert.equal(spec.family.maskMethod, 'latent-blend');
    const mask = await leftHalfMask(SIZE, SIZE);
    const run = async (inputs: EditInput[], n: number, strength: number): Promise<Uint8Array[]> => {
      const resolved = resolveEditOptions(spec, inputs.length, { prompt: 'sepia', size: `${SIZE}x${SIZE}`, seed: 4, steps: 6, n, strength } as EditOptions);
      return (await engine.edit(model, resolved, inputs)).images.map((i) => i.bytes);
    };
    for (const strength of [1, 0.6]) {
      const [out] = await run([{ bytes: input, mask }], 1, strength);
      near(await pixelAt(out!, 8, 40), expectedColour(BASE, 'sepia'), `strength ${strength} inside`);
      assert.ok(maxChannelDiff(await pixelAt(out!, 56, 20), RIGHT) <= 1, `strength ${strength} outside`);
    }
    const [alone] = await run([{ bytes: input }], 1, 1);
    const out = await run(
      [
        { bytes: input, mask },
        { bytes: input, mask: null },
      ],
      2,
      1,
    );
    for (const index of [0, 1]) {
      near(await pixelAt(out[index]!, 8, 40), expectedColour(BASE, 'sepia'), `image ${index} inside`);
      assert.ok(maxChannelDiff(await pixelAt(out[index]!, 56, 20), RIGHT) <= 1, `image ${index} outside`);
    }
    for (const index of [2, 3]) near(await pixelAt(out[index]!, 56, 20), expectedColour(BASE, 'sepia'), `unmasked image ${index}`);
    assert.deepEqual(out[2], alone, 'an unmasked image is the same as when it runs alone');
  });

  it('refuses masks on Kontext, UNet schedulers, and maxSequenceLength over 512; UNet models refuse FLOW_MATCH_EULER and the flow options', async () => {
    const spec = engine.model('tiny-flow-edit');
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'EULER' }), /samples with FLOW_MATCH_EULER only/);
    assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', maxSequenceLength: 513 }), /maxSequenceLength must be an integer from 1 to 512/);
    assert.equal(resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'FLOW_MATCH_EULER' }).scheduler, 'FLOW_MATCH_EULER');
    assert.throws(() => spec.family.checkEdit!(spec, { masks: true }), /model tiny-flow-edit \(FLUX Kontext\) does not take masks/);
    const resolved = resolveEditOptions(spec, 1, { prompt: 'grayscale', size: `${SIZE}x${SIZE}`, steps: 2 });
    await assert.rejects(
      engine.edit('tiny-flow-edit', resolved, [{ bytes: input, mask: input }]),
      (err: InferenceError) => err.code === 'BAD_USER_INPUT' && /does not take masks/.test(err.message),
    );
  });

  it('the memory model counts the joint sequence: 2×2-patch image tokens, T5 tokens and (Kontext) reference tokens', () => {
    const spec = engine.model('tiny-flow-edit');
    assert.equal(spec.memory.attentionDownscale, 2, 'the family default: 2×2 patches');
    const edit = resolveEditOptions(spec, 1, { prompt: 'x', size: '1024x1024' });
    const extra = spec.family.extraAttentionTokens!(spec, edit, 1024, 1024);
    assert.equal(extra, 512 + 4096);
    const g = {
      width: 1024,
      height: 1024,
      vaeScaleFactor: 8,
      branches: 1,
      extraTokens: (w: number, h: number) => spec.family.extraAttentionTokens!(spec, edit, w, h),
    };
    // edit-server.json: 1024 B per latent pixel, 1 head, 64 B per pixel for the VAE.
    assert.equal(perItemBytes(spec.memory, g), 128 * 128 * 1024 + (4096 + extra) ** 2 * 4 + 1024 * 1024 * 64);
    const schnell = engine.model('flow-img2img-schnell');
    assert.equal(schnell.family.extraAttentionTokens!(schnell, resolveEditOptions(schnell, 1, { prompt: 'x' }), 1024, 1024), 256, 'img2img: T5 tokens only');
    const per = perItemBytes(spec.memory, g);
    assert.throws(() => planMicroBatches(1, spec.memory, g, spec.memory.weightBytes + per / 2), /IMAGE_TOO_LARGE|largest .*that fits is \d+x\d+/);
    assert.deepEqual(planMicroBatches(3, spec.memory, g, spec.memory.weightBytes + 2 * per), [2, 1]);
    // The size IMAGE_TOO_LARGE names counts the reference tokens at that size: it fits, and a
    // square 64 px wider does not.
    const budget = spec.memory.weightBytes + per / 2;
    const side = Math.floor(Math.sqrt(maxPixelsWithinBudget(spec.memory, g, budget)));
    const at = (s: number) => estimateBatchBytes(spec.memory, { ...g, width: s, height: s }, 1);
    assert.ok(at(side) <= budget);
    assert.ok(at(side + 64) > budget);
  });

  it('a transformer declaring inputs the family does not feed is refused at load, naming them (state error; the engine serves the rest)', async () => {
    const dir = join(root, 'extra-input');
    writeModelFolder(dir, buildFlowEditFiles({ layout: 'kontext' }));
    const g = new GraphBuilder('transformer');
    const hidden = g.input('hidden_states', 'float32', ['batch_size', 'packed_height_width', 64]);
    for (const [name, dims] of [
      ['encoder_hidden_states', ['batch_size', 'sequence_length', 17]],
      ['pooled_projections', ['batch_size', 16]],
      ['timestep', ['step']],
      ['img_ids', ['packed_height_width', 3]],
      ['txt_ids', ['sequence_length', 3]],
      ['attention_mask', ['batch_size', 'sequence_length']],
    ] as const)
      g.input(name, 'float32', dims);
    g.output('out_hidden_states', hidden, 'float32', ['batch_size', 'packed_height_width', 64]);
    writeFileSync(join(dir, 'transformer', 'model.onnx'), g.toBytes());
    const engine = await InferenceEngine.start({ modelsDir: root, modelIds: ['extra-input'], threading: 'inline', intraOpThreads: 1 });
    try {
      assert.equal(engine.modelState('extra-input'), 'error');
      assert.match(
        engine.errorReason('extra-input') ?? '',
        /transformer\/model\.onnx needs inputs the FLUX Kontext pipeline does not provide \(attention_mask\)/,
      );
    } finally {
      await engine.close();
    }
  });

  it('runs in the worker-thread engine too', async () => {
    const worker = await InferenceEngine.start({ modelsDir: root, modelIds: ['tiny-flow-edit'], threading: 'worker', intraOpThreads: 1 });
    try {
      const spec = worker.model('tiny-flow-edit');
      const out = await worker.edit('tiny-flow-edit', resolveEditOptions(spec, 1, { prompt: 'invert', size: `${SIZE}x${SIZE}`, steps: 3, seed: 1 }), [
        { bytes: input },
      ]);
      near(await pixelAt(out.images[0]!.bytes, 56, 20), expectedColour(RIGHT, 'invert'), 'worker');
    } finally {
      await worker.close();
    }
  });

  it('the transformer graph fails on wrongly shaped ids and timesteps, as a traced export does', async () => {
    const session = await ort.InferenceSession.create(join(root, 'tiny-flow-edit', 'transformer', 'model.onnx'));
    const f = (data: Float32Array | number[], dims: number[]): ort.Tensor => new ort.Tensor('float32', Float32Array.from(data), dims);
    const feeds = (over: Record<string, ort.Tensor> = {}): Record<string, ort.Tensor> => ({
      hidden_states: f(new Float32Array(8 * 64), [1, 8, 64]),
      encoder_hidden_states: f(new Float32Array(4 * 17), [1, 4, 17]),
      pooled_projections: f(new Float32Array(16), [1, 16]),
      timestep: f([0.5], [1]),
      img_ids: f(new Float32Array(8 * 3), [8, 3]),
      txt_ids: f(new Float32Array(4 * 3), [4, 3]),
      guidance: f([3.5], [1]),
      ...over,
    });
    await session.run(feeds());
    await assert.rejects(session.run(feeds({ img_ids: f(new Float32Array(6 * 3), [6, 3]) })));
    await assert.rejects(session.run(feeds({ txt_ids: f(new Float32Array(5 * 3), [5, 3]) })));
    await assert.rejects(session.run(feeds({ timestep: f([0.5], []) })));
    await session.release();
  });
});
