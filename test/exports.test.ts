/**
 * Real exporters' layouts run unchanged: folders generated to the port names, dtypes, ranks and
 * files of each export generation (models/exports.ts) are recognised at load and run 1–4 UNet
 * rows, guided and unguided, with every scheduler, to the exact colour edit. The fixtures' UNets
 * trace their time path as diffusers does, so a wrongly shaped timestep fails here as on a real
 * export.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import { EXPORT_GENERATIONS, IMG2IMG_BASE_RGB, buildExportFixture } from '../models/exports.js';
import type { ExportFixtureOptions, ExportGeneration, FixtureFamily } from '../models/exports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { GraphBuilder } from '../models/onnx/graph.js';
import { InferenceEngine } from '../src/inference/engine.js';
import type { InferenceError } from '../src/inference/errors.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { resolveEditOptions } from '../src/inference/request.js';
import type { EditOptions } from '../src/inference/request.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { PROJECT_ROOT } from '../src/config.js';
import { expectedColour, maxChannelDiff, pixelAt, rawPixels, reference, solidPng } from './support/images.js';
import type { Rgb } from './support/images.js';
import { freePort } from './support/net.js';

const run = promisify(execFile);
const SIZE = 64;
const INPUT: Rgb = [200, 60, 30];

let root: string;

function fixture(name: string, options: ExportFixtureOptions): string {
  const dir = join(root, name);
  writeModelFolder(dir, buildExportFixture(options));
  return dir;
}

const GENERATION_NAMES: Record<ExportGeneration, RegExp> = {
  'optimum-1.22': /optimum ≤ 1\.22/,
  'optimum-1.23': /optimum 1\.23/,
  'optimum-1.24': /optimum ≥ 1\.24/,
  'diffusers-onnx': /convert_stable_diffusion_checkpoint_to_onnx/,
};

/** x₀ under guidance g against the identity: base + g·(edit(base) − base), in 0..255. */
function guided(base: Rgb, word: keyof typeof reference, g: number): Rgb {
  const b = base.map((v) => v / 255);
  const e = reference[word](b);
  return b.map((v, i) => Math.round(Math.min(1, Math.max(0, v + g * (e[i]! - v))) * 255)) as Rgb;
}

async function meanColour(bytes: Uint8Array): Promise<Rgb> {
  const { data } = await rawPixels(bytes);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i++) sum[i % 3]! += data[i]!;
  return sum.map((v) => Math.round(v / (data.length / 3))) as Rgb;
}

const IMG2IMG_BASE = IMG2IMG_BASE_RGB.map((v) => Math.round(v * 255)) as Rgb;
/** What an inpainting UNet sees where it edits: the masked image's mid-grey (0 in the VAE's range). */
const MID_GREY: Rgb = [127.5, 127.5, 127.5];
const BASE: Record<FixtureFamily, Rgb> = {
  'instruct-pix2pix': INPUT,
  img2img: IMG2IMG_BASE,
  inpaint: MID_GREY,
  'sdxl-img2img': IMG2IMG_BASE,
  'sdxl-inpaint': MID_GREY,
};

interface Case {
  label: string;
  options: Partial<EditOptions>;
  /** Expected colour of every output pixel. */
  want(family: FixtureFamily): Rgb;
}

const CASES: Case[] = [
  {
    label: '1 row: one image, n=1, unguided',
    options: { prompt: 'sepia', guidanceScale: 1, imageGuidanceScale: 1 },
    want: (f) => expectedColour(BASE[f], 'sepia'),
  },
  {
    label: '4 rows: n=4, unguided',
    options: { prompt: 'grayscale', n: 4, guidanceScale: 1, imageGuidanceScale: 1 },
    want: (f) => expectedColour(BASE[f], 'grayscale'),
  },
  {
    label: '2–3 rows: one image, guided',
    options: { prompt: 'darker', guidanceScale: 1.5, imageGuidanceScale: 1 },
    // SDXL folders zero the empty negative prompt (force_zeros_for_empty_prompt): its branch is black.
    want: (f) =>
      f.startsWith('sdxl') ? (expectedColour(BASE[f], 'darker').map((v) => Math.min(255, Math.round(1.5 * v))) as Rgb) : guided(BASE[f], 'darker', 1.5),
  },
];

describe('exported pipelines as real exporters write them', () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'exports-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a scalar-timestep export rejects a [1] timestep inside its traced graph, and takes a scalar', async () => {
    const dir = fixture('trace-check', { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    const session = await ort.InferenceSession.create(join(dir, 'unet', 'model.onnx'));
    const feeds = (timestep: ort.Tensor): Record<string, ort.Tensor> => ({
      sample: new ort.Tensor('float32', new Float32Array(8 * 8 * 8), [1, 8, 8, 8]),
      timestep,
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(77 * 16), [1, 77, 16]),
    });
    await assert.rejects(session.run(feeds(new ort.Tensor('float32', Float32Array.of(500), [1]))));
    const out = await session.run(feeds(new ort.Tensor('float32', Float32Array.of(500), [])));
    assert.deepEqual(out.out_sample!.dims, [1, 4, 8, 8]);
    await session.release();
  });

  const variants: { name: string; options: ExportFixtureOptions }[] = [];
  for (const generation of EXPORT_GENERATIONS) {
    for (const family of ['instruct-pix2pix', 'img2img', 'inpaint'] as const)
      variants.push({ name: `${generation}-${family}`, options: { generation, family } });
  }
  for (const generation of ['optimum-1.22', 'optimum-1.23', 'optimum-1.24'] as const) {
    for (const family of ['sdxl-img2img', 'sdxl-inpaint'] as const) variants.push({ name: `${generation}-${family}`, options: { generation, family } });
  }
  variants.push({ name: 'optimum-1.24-fp16-external', options: { generation: 'optimum-1.24', family: 'instruct-pix2pix', fp16: true, externalData: true } });

  for (const { name, options } of variants) {
    describe(name, () => {
      let engine: InferenceEngine;
      let input: Buffer;
      before(async () => {
        fixture(name, options);
        engine = await InferenceEngine.start({ modelsDir: root, modelIds: [name], threading: 'inline', intraOpThreads: 1 });
        input = await solidPng(SIZE, SIZE, INPUT);
      });
      after(async () => engine.close());

      it('is recognised at load, with its precision and what it costs', () => {
        const spec = engine.model(name);
        assert.equal(spec.kind, options.family);
        assert.match(spec.export.generation, GENERATION_NAMES[options.generation]);
        assert.equal(spec.export.precision, options.fp16 ? 'fp16' : 'fp32');
        const latentSample = options.generation === 'optimum-1.22' || options.generation === 'diffusers-onnx';
        assert.equal(
          spec.warnings.some((w) => /latent_sample/.test(w) && /re-export/i.test(w)),
          latentSample,
        );
      });

      for (const scheduler of SCHEDULER_NAMES) {
        it(`runs 1–4 UNet rows, guided and unguided, with ${scheduler}`, async () => {
          const spec = engine.model(name);
          for (const c of CASES) {
            const edit = resolveEditOptions(spec, 1, { size: `${SIZE}x${SIZE}`, seed: 3, steps: 8, strength: 1, scheduler, ...c.options } as EditOptions);
            const out = await engine.edit(name, edit, [{ bytes: input }]);
            assert.equal(out.images.length, edit.n);
            const want = c.want(options.family);
            for (const image of out.images) {
              // SD 1.x's and SDXL's scheduler configs (the converter and SDXL fixtures') set set_alpha_to_one: false, so
              // diffusers' DDIM and PNDM end at ᾱ₀ = 0.99915 instead of x₀ and leave √(1−ᾱ₀)·ε̂ (per
              // pixel up to ~0.5 of the signed range after the 1/0.18215 VAE scale): only the image
              // mean is exact.
              const noisyEnd = (scheduler === 'DDIM' || scheduler === 'PNDM') && (options.generation === 'diffusers-onnx' || options.family.startsWith('sdxl'));
              // fp16 ports round the latents to 11-bit mantissas every step; PNDM's Runge–Kutta
              // start (this config has no skip_prk_steps) accumulates the most of it.
              const tolerance = noisyEnd ? 12 : options.fp16 ? 8 : 2;
              const got = noisyEnd ? await meanColour(image.bytes) : await pixelAt(image.bytes, SIZE / 2, SIZE / 2);
              assert.ok(maxChannelDiff(got, want) <= tolerance, `${name} ${scheduler} ${c.label}: ${got}, expected ${want}`);
            }
          }
        });
      }
    });
  }

  it('SDXL-Turbo folders (trailing spacing, Euler ancestral) default to 2 steps without guidance and run them exactly', async () => {
    const name = 'sdxl-turbo';
    const dir = fixture(name, { generation: 'optimum-1.24', family: 'sdxl-img2img' });
    const config = JSON.parse(readFileSync(join(dir, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(
      join(dir, 'scheduler', 'scheduler_config.json'),
      JSON.stringify({ ...config, _class_name: 'EulerAncestralDiscreteScheduler', timestep_spacing: 'trailing' }),
    );
    const engine = await InferenceEngine.start({ modelsDir: root, modelIds: [name], threading: 'inline' });
    try {
      const spec = engine.model(name);
      assert.deepEqual(
        { ...spec.defaults },
        { steps: 2, guidanceScale: 0, imageGuidanceScale: null, strength: 0.5, scheduler: 'EULER_ANCESTRAL', size: '512x512' },
      );
      const out = await engine.edit(name, resolveEditOptions(spec, 1, { prompt: 'sepia', size: `${SIZE}x${SIZE}`, seed: 1 }), [
        { bytes: await solidPng(SIZE, SIZE, INPUT) },
      ]);
      assert.ok(maxChannelDiff(await pixelAt(out.images[0]!.bytes, 8, 8), expectedColour(IMG2IMG_BASE, 'sepia')) <= 2);
    } finally {
      await engine.close();
    }
  });

  it('a graph that fails to run gives MODEL_ERROR naming the model and the component', async () => {
    const name = 'fixed-size-unet';
    const dir = fixture(name, { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    // A UNet exported with fixed 8×8 latents (no dynamic height/width): a 128² edit cannot run.
    const g = new GraphBuilder('unet');
    const sample = g.input('sample', 'float32', ['batch_size', 8, 8, 8]);
    g.input('timestep', 'float32', []);
    g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', 16]);
    g.output('out_sample', g.op1('Slice', [sample, g.i64([0]), g.i64([4]), g.i64([1])]), 'float32', ['batch_size', 4, 8, 8]);
    writeFileSync(join(dir, 'unet', 'model.onnx'), g.toBytes());
    const logged: string[] = [];
    const engine = await InferenceEngine.start({ modelsDir: root, modelIds: [name], threading: 'inline', log: (m) => logged.push(m) });
    try {
      const spec = engine.model(name);
      const edit = resolveEditOptions(spec, 1, { prompt: 'sepia', size: '128x128' });
      await assert.rejects(engine.edit(name, edit, [{ bytes: await solidPng(128, 128, INPUT) }]), (err: InferenceError) => {
        assert.equal(err.code, 'MODEL_ERROR');
        assert.match(err.message, /model fixed-size-unet: unet\/model\.onnx failed to run/);
        return true;
      });
      assert.ok(
        logged.some((m) => m.includes('unet/model.onnx failed') && /dimension/i.test(m)),
        'the full ONNX Runtime text is logged',
      );
    } finally {
      await engine.close();
    }
  });

  it('serves an optimum ≥ 1.24 folder through `npm start`: one image, n=1, unguided, over REST', async () => {
    const dir = join(root, 'served');
    writeModelFolder(join(dir, 'sd-edit'), buildExportFixture({ generation: 'optimum-1.24', family: 'instruct-pix2pix' }));
    const port = await freePort();
    const child = spawn('npm', ['start'], {
      cwd: PROJECT_ROOT,
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, MODELS_DIR: dir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    });
    try {
      const url = `http://127.0.0.1:${port}`;
      for (let i = 0; ; i++) {
        const up = await fetch(`${url}/healthz`).then(
          (r) => r.ok,
          () => false,
        );
        if (up) break;
        if (i > 600) throw new Error('the server did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
      const form = new FormData();
      form.set('image', new Blob([new Uint8Array(await solidPng(SIZE, SIZE, INPUT))], { type: 'image/png' }), 'in.png');
      for (const [k, v] of Object.entries({ prompt: 'invert', n: '1', guidance_scale: '1', image_guidance_scale: '1', size: `${SIZE}x${SIZE}` }))
        form.set(k, v);
      const res = await fetch(`${url}/v1/images/edits`, { method: 'POST', body: form });
      const body = (await res.json()) as { data: { b64_json: string }[] };
      assert.equal(res.status, 200, JSON.stringify(body));
      const got = await pixelAt(Buffer.from(body.data[0]!.b64_json, 'base64'), 8, 8);
      assert.ok(maxChannelDiff(got, expectedColour(INPUT, 'invert')) <= 2, `${got}`);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
    }
  });

  it('runs an optimum ≥ 1.24 folder through the CLI: one image, n=1, unguided', async () => {
    const dir = fixture('cli-model', { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    const input = join(root, 'in.png');
    writeFileSync(input, await solidPng(SIZE, SIZE, INPUT));
    const out = join(root, 'cli-out');
    await run(
      process.execPath,
      [
        '--import',
        'tsx',
        join(PROJECT_ROOT, 'src/cli/edit.ts'),
        '--models-dir',
        root,
        '--model',
        'cli-model',
        '--image',
        input,
        '--prompt',
        'invert',
        '--guidance',
        '1',
        '--image-guidance',
        '1',
        '--size',
        `${SIZE}x${SIZE}`,
        '--out',
        out,
      ],
      { cwd: PROJECT_ROOT },
    );
    const [file] = readdirSync(out);
    const { data } = await rawPixels(readFileSync(join(out, file!)));
    assert.ok(maxChannelDiff([data[0]!, data[1]!, data[2]!], expectedColour(INPUT, 'invert')) <= 2);
    assert.equal(readModelFolder(dir, 'cli-model').export.timestep, 'float32 scalar');
  });
});
