/**
 * The generated bench models exercise what tiny-edit cannot: the 8× VAE latent path, img2img with
 * strength, noise that matters (variants differ by seed), and batch independence of results.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { ensureBenchModel, buildBenchFiles } from '../models/bench.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions, type EditOptions } from '../src/inference/request.js';
import type { ProgressUpdate } from '../src/inference/editRunner.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { rawPixels, twoColourPng } from './support/images.js';

describe('bench models', () => {
  let engine: InferenceEngine;
  let image: Buffer;
  let other: Buffer;

  before(async () => {
    const dir = await ensureBenchModel();
    await ensureBenchModel({ family: 'img2img' });
    await ensureBenchModel({ family: 'sdxl-img2img' });
    await ensureBenchModel({ family: 'flux-img2img' });
    engine = await InferenceEngine.start({ modelsDir: dirname(dir), modelIds: ['bench', 'bench-img2img', 'bench-sdxl', 'bench-flux'], threading: 'inline' });
    image = await twoColourPng(64, 64, [200, 60, 30], [20, 120, 220]);
    other = await twoColourPng(64, 64, [10, 200, 40], [250, 250, 10]);
  });
  after(async () => engine.close());

  const run = (model: string, count: number, options: Partial<EditOptions>, images: Buffer[], onProgress?: (u: ProgressUpdate) => void) => {
    const spec = engine.model(model);
    return engine.edit(
      model,
      resolveEditOptions(spec, count, { prompt: 'make it sepia', size: '64x64', steps: 4, seed: 42, ...options }),
      images.map((bytes) => ({ bytes })),
      { onProgress },
    );
  };

  it('generates byte-identical files every time', () => {
    for (const family of ['instruct-pix2pix', 'sdxl-img2img', 'flux-img2img'] as const) {
      const a = buildBenchFiles(family);
      const b = buildBenchFiles(family);
      assert.deepEqual([...a.keys()], [...b.keys()]);
      for (const [k, v] of a) assert.deepEqual(v, b.get(k), `${family} ${k}`);
    }
  });

  it('runs the 8× latent path: 64×64 images through 8×8 latents', async () => {
    assert.equal(engine.model('bench').vaeScaleFactor, 8);
    const out = await run('bench', 1, {}, [image]);
    assert.equal(out.images[0]!.width, 64);
    assert.equal(out.images[0]!.height, 64);
  });

  it('gives variants different noise, and an image the same result alone or in a batch of 4', async () => {
    const pair = await run('bench', 1, { n: 2 }, [image]);
    assert.notDeepEqual(pair.images[0]!.bytes, pair.images[1]!.bytes);
    const alone = await rawPixels((await run('bench', 1, {}, [image])).images[0]!.bytes);
    const batch = await run('bench', 4, {}, [image, other, other, image]);
    const first = await rawPixels(batch.images[0]!.bytes);
    const diff = Math.max(...alone.data.map((v, i) => Math.abs(v - first.data[i]!)));
    assert.ok(diff <= 1, `image 0 differs by ${diff}/255 between a batch of 1 and of 4`);
  });

  it('draws the noise of the generator a request names: TORCH by default, XOSHIRO on request', async () => {
    // bench is InstructPix2Pix (noise only), bench-img2img also samples the VAE posterior.
    for (const model of ['bench', 'bench-img2img']) {
      const pixels = async (options: Partial<EditOptions>) =>
        (await rawPixels((await run(model, 1, { scheduler: 'EULER_ANCESTRAL', ...options }, [image])).images[0]!.bytes)).data;
      const byDefault = await pixels({});
      assert.deepEqual(byDefault, await pixels({ generator: 'TORCH' }), model);
      assert.notDeepEqual(byDefault, await pixels({ generator: 'XOSHIRO' }), model);
    }
  });

  it('gives the same bytes when a job repeats on reused scratch memory, after other jobs', async () => {
    // Outputs of the random-weight model depend on every intermediate value, so anything left
    // over in a reused buffer would show.
    for (const model of ['bench', 'bench-img2img']) {
      const options = { n: 2, guidanceScale: 3 };
      const first = await run(model, 2, options, [image, other]);
      await run(model, 1, { size: '128x64', steps: 3 }, [other]);
      await run(model, 3, { steps: 2 }, [other, image, other]);
      const again = await run(model, 2, options, [image, other]);
      assert.deepEqual(
        again.images.map((i) => i.bytes),
        first.images.map((i) => i.bytes),
        model,
      );
    }
  });

  it('runs img2img from the step that strength selects', async () => {
    const updates: ProgressUpdate[] = [];
    const out = await run('bench-img2img', 1, { steps: 10, strength: 0.5, guidanceScale: 3 }, [image], (u) => updates.push(u));
    assert.equal(out.usage.steps, 5);
    assert.deepEqual(
      updates.map((u) => u.step),
      [1, 2, 3, 4, 5],
    );
    const weak = await rawPixels((await run('bench-img2img', 1, { steps: 10, strength: 0.1 }, [image])).images[0]!.bytes);
    const strong = await rawPixels((await run('bench-img2img', 1, { steps: 10, strength: 1 }, [image])).images[0]!.bytes);
    assert.notDeepEqual(weak.data, strong.data);
  });

  it('runs img2img with every scheduler from the begin index that strength selects', async () => {
    for (const scheduler of SCHEDULER_NAMES) {
      const out = await run('bench-img2img', 1, { steps: 10, strength: 0.5, scheduler }, [image]);
      // PNDM without skip_prk_steps (this config has none) visits 19 timesteps for 10 steps; img2img skips 5.
      assert.equal(out.usage.steps, scheduler === 'PNDM' ? 14 : 5, scheduler);
      const { data } = await rawPixels(out.images[0]!.bytes);
      assert.ok(data.some((v) => v > 0) && data.some((v) => v < 255), scheduler);
    }
  });

  it('runs the SDXL-layout bench model: two encoders, text_embeds and time_ids steering the UNet', async () => {
    const spec = engine.model('bench-sdxl');
    assert.equal(spec.kind, 'sdxl-img2img');
    assert.equal(spec.vaeScaleFactor, 8);
    assert.deepEqual([spec.defaults.size, spec.defaults.guidanceScale], ['1024x1024', 5]);
    const unet = await ort.InferenceSession.create(join(spec.dir, 'unet', 'model.onnx'));
    assert.deepEqual([...unet.inputNames].sort(), ['encoder_hidden_states', 'sample', 'text_embeds', 'time_ids', 'timestep']);
    const feeds = (textEmbed: number, size: number) => ({
      sample: new ort.Tensor(
        'float32',
        Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i)),
        [1, 4, 8, 8],
      ),
      timestep: new ort.Tensor('float32', Float32Array.of(500), [1]),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(77 * 160).fill(0.1), [1, 77, 160]),
      text_embeds: new ort.Tensor('float32', new Float32Array(96).fill(textEmbed), [1, 96]),
      time_ids: new ort.Tensor('float32', Float32Array.of(size, size, 0, 0, size, size), [1, 6]),
    });
    const eps = async (f: ReturnType<typeof feeds>) => (await unet.run(f)).out_sample!.data as Float32Array;
    const base = await eps(feeds(0.1, 64));
    assert.ok(base.every(Number.isFinite));
    assert.notDeepEqual(await eps(feeds(-0.1, 64)), base, 'text_embeds reaches the output');
    assert.notDeepEqual(await eps(feeds(0.1, 1024)), base, 'time_ids reach the output');
    await unet.release();

    const images = [image, other];
    const guided = await run('bench-sdxl', 2, { steps: 3, strength: 1 }, images);
    const unguided = await run('bench-sdxl', 2, { steps: 3, strength: 1, guidanceScale: 1 }, images);
    assert.equal(guided.images.length, 2);
    for (const out of [...guided.images, ...unguided.images]) {
      const px = await rawPixels(out.bytes);
      assert.deepEqual([px.width, px.height], [64, 64]);
      // Non-finite latents come out as flat 0 (NaN) or saturated pixels; these must vary.
      assert.ok(new Set(px.data).size > 16, 'outputs vary');
    }
    assert.equal(guided.usage.steps, 3);
    for (let i = 0; i < 2; i++) assert.notDeepEqual(guided.images[i]!.bytes, unguided.images[i]!.bytes, `guided and unguided differ (image ${i})`);
  });

  it('runs the FLUX-layout bench model: every transformer input steers the output; batching, true CFG and previews through the engine', async () => {
    const spec = engine.model('bench-flux');
    assert.equal(spec.kind, 'flux-img2img');
    assert.deepEqual([spec.latentChannels, spec.denoiserInChannels, spec.defaults.maxSequenceLength, spec.defaults.guidanceScale], [16, 64, 512, 3.5]);
    const transformer = await ort.InferenceSession.create(join(spec.dir, 'transformer', 'model.onnx'));
    assert.deepEqual([...transformer.inputNames].sort(), [
      'encoder_hidden_states',
      'guidance',
      'hidden_states',
      'img_ids',
      'pooled_projections',
      'timestep',
      'txt_ids',
    ]);
    const tokens = 16;
    const text = 8;
    const ids = (n: number, v: number) =>
      new ort.Tensor(
        'float32',
        Float32Array.from({ length: n * 3 }, (_, i) => (i % 3 ? v * Math.floor(i / 3) : 0)),
        [n, 3],
      );
    const feeds = (o: { pooled?: number; t?: number; guidance?: number; text?: number; ids?: number } = {}) => ({
      hidden_states: new ort.Tensor(
        'float32',
        Float32Array.from({ length: tokens * 64 }, (_, i) => Math.sin(i)),
        [1, tokens, 64],
      ),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(text * 128).fill(o.text ?? 0.1), [1, text, 128]),
      pooled_projections: new ort.Tensor('float32', new Float32Array(64).fill(o.pooled ?? 0.1), [1, 64]),
      timestep: new ort.Tensor('float32', Float32Array.of(o.t ?? 0.5), [1]),
      guidance: new ort.Tensor('float32', Float32Array.of(o.guidance ?? 3.5), [1]),
      img_ids: ids(tokens, o.ids ?? 1),
      txt_ids: ids(text, 0),
    });
    const velocity = async (f: ReturnType<typeof feeds>) => (await transformer.run(f)).out_hidden_states!.data as Float32Array;
    const base = await velocity(feeds());
    assert.ok(base.every(Number.isFinite));
    for (const [what, changed] of [
      ['pooled_projections', { pooled: -0.1 }],
      ['timestep', { t: 0.9 }],
      ['guidance', { guidance: 1 }],
      ['encoder_hidden_states', { text: -0.1 }],
      ['img_ids', { ids: 2 }],
    ] as const) {
      assert.notDeepEqual(await velocity(feeds(changed)), base, `${what} reaches the output`);
    }
    await transformer.release();

    const images = [image, other];
    const updates: ProgressUpdate[] = [];
    const batched = await run('bench-flux', 2, { steps: 3, strength: 1, maxSequenceLength: 32, previewEvery: 3 }, images, (u) => updates.push(u));
    assert.equal(batched.usage.steps, 3);
    for (const out of batched.images) {
      const px = await rawPixels(out.bytes);
      assert.deepEqual([px.width, px.height], [64, 64]);
      assert.ok(new Set(px.data).size > 16, 'outputs vary');
    }
    assert.equal(updates.at(-1)!.previews.length, 2, 'previews from the fitted 16-channel projection');
    // Item seeds follow the input index: the first image alone matches the batch's first.
    const alone = await run('bench-flux', 1, { steps: 3, strength: 1, maxSequenceLength: 32 }, [image]);
    const [a, b] = [await rawPixels(alone.images[0]!.bytes), await rawPixels(batched.images[0]!.bytes)];
    const diff = Math.max(...a.data.map((v, i) => Math.abs(v - b.data[i]!)));
    assert.ok(diff <= 1, `image 0 differs by ${diff}/255 between a batch of 1 and of 2`);
    const cfg = await run('bench-flux', 1, { steps: 3, strength: 1, maxSequenceLength: 32, trueCfgScale: 4, negativePrompt: 'blurry' }, [image]);
    assert.notDeepEqual(cfg.images[0]!.bytes, alone.images[0]!.bytes, 'true CFG changes the result');
  });
});
