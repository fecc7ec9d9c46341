/**
 * Model folders: the committed tiny-edit and tiny-flow-edit folders match their generators byte for
 * byte, tiny-edit reads as
 * the expected InstructPix2Pix spec, and each kind of broken folder is refused with a message that
 * names the problem — when the folder is read, or when its ONNX sessions open.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { buildTinyEditFiles } from '../models/tinyEdit.js';
import { BUILT_IN_MODELS, TINY_EDIT_DIR } from '../models/generate.js';
import { GraphBuilder } from '../models/onnx/graph.js';
import type { Dim } from '../models/onnx/graph.js';
import { listModelFolders, readModelFolder, ModelFolderError } from '../src/inference/modelFolder.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { parseDiffusersJson } from '../src/inference/diffusersJson.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { openModelSessions } from '../src/inference/sessions.js';

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

let tmpRoot: string;
let copies = 0;

/** A fresh copy of tiny-edit in the temp dir, after `mutate` has broken something in it. */
function brokenCopy(mutate: (dir: string) => void): string {
  copies += 1;
  const dir = join(tmpRoot, `copy-${copies}`);
  cpSync(TINY_EDIT_DIR, dir, { recursive: true });
  mutate(dir);
  return dir;
}

function editJson(dir: string, file: string, edit: (json: Record<string, unknown>) => void): void {
  const path = join(dir, file);
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(path, JSON.stringify(json, null, 2));
}

function assertFolderError(dir: string, pattern: RegExp): void {
  assert.throws(
    () => readModelFolder(dir, 'broken'),
    (err: unknown) => {
      assert.ok(err instanceof ModelFolderError, `expected a ModelFolderError, got ${String(err)}`);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

/** A minimal UNet-shaped ONNX graph: out_sample is the first 4 channels of the first input. */
function fakeUnet(inputNames: [string, string, string], sampleChannels: Dim): Uint8Array {
  const g = new GraphBuilder('fake_unet');
  const sample = g.input(inputNames[0], 'float32', ['batch_size', sampleChannels, 'height', 'width']);
  const timestep = g.input(inputNames[1], 'float32', ['batch_size']);
  const text = g.input(inputNames[2], 'float32', ['batch_size', 'sequence_length', 16]);
  const noisy = g.op1('Slice', [sample, g.i64([0]), g.i64([4]), g.i64([1])]);
  // Touch every input so no optimiser has a reason to drop one.
  const t = g.op1('Reshape', [g.op1('Mul', [timestep, g.f32([0], [])]), g.i64([-1, 1, 1, 1])]);
  const e = g.op1('ReduceSum', [g.op1('Mul', [text, g.f32([0], [])])], { keepdims: 0 });
  const out = g.op1('Add', [g.op1('Add', [noisy, t]), e]);
  g.output('out_sample', out, 'float32', ['batch_size', 4, 'height', 'width']);
  return g.toBytes('test: fake unet');
}

describe('tiny-edit model folder', () => {
  before(() => {
    tmpRoot = mkdtempSync(join(tmpdir(), 'model-folder-test-'));
  });
  after(() => {
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  for (const { dir, files } of BUILT_IN_MODELS) {
    const name = relative(join(dir, '..'), dir);
    it(`models/${name} is byte-identical to its generator, with no extra or missing files`, () => {
      const generated = files();
      assert.deepEqual(filesUnder(dir), [...generated.keys()].sort());
      for (const [path, bytes] of generated) {
        const onDisk = readFileSync(join(dir, path));
        assert.ok(Buffer.from(bytes).equals(onDisk), `models/${name}/${path} differs from the generator; run npm run generate:models`);
      }
    });
  }

  it('generates deterministically', () => {
    const a = buildTinyEditFiles();
    const b = buildTinyEditFiles();
    for (const [path, bytes] of a) assert.ok(Buffer.from(bytes).equals(Buffer.from(b.get(path)!)), path);
  });

  it('reads as an InstructPix2Pix spec with the defaults and limits of edit-server.json', () => {
    const spec = readModelFolder(TINY_EDIT_DIR, 'tiny-edit');
    const server = JSON.parse(readFileSync(join(TINY_EDIT_DIR, 'edit-server.json'), 'utf8')) as {
      description: string;
      defaults: Record<string, unknown>;
      limits: Record<string, number>;
      memory: Record<string, number>;
      latentRgbFactors: number[][];
      latentRgbBias: number[];
    };
    assert.equal(spec.id, 'tiny-edit');
    assert.equal(spec.dir, TINY_EDIT_DIR);
    assert.equal(spec.kind, 'instruct-pix2pix');
    assert.equal(spec.description, server.description);
    assert.equal(spec.vaeScaleFactor, 1);
    assert.equal(spec.latentChannels, 4);
    assert.equal(spec.denoiserInChannels, 8);
    assert.equal(spec.scalingFactor, 0.18215);
    assert.equal(spec.schedulerJson._class_name, 'EulerAncestralDiscreteScheduler');
    assert.deepEqual(spec.defaults, {
      steps: 8,
      guidanceScale: 1,
      imageGuidanceScale: 1,
      strength: null,
      scheduler: 'EULER_ANCESTRAL',
      size: '512x512',
    });
    assert.deepEqual(spec.defaults, { ...server.defaults, strength: null });
    assert.deepEqual(spec.limits, { maxImagesPerJob: 16, maxN: 8, maxSteps: 100, maxPixels: 1024 * 1024 });
    assert.deepEqual(spec.limits, server.limits);
    const { weightBytes, ...memory } = spec.memory;
    // Its own entries, and the entries it leaves out at the values its figures were fitted with.
    assert.deepEqual(memory, { runtimeBytes: 0, attentionBytesPerScore: 4, ...server.memory });
    // Not stated in edit-server.json: the size of the ONNX components.
    const onnxBytes = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']
      .flatMap((sub) => readdirSync(join(TINY_EDIT_DIR, sub)).map((f) => statSync(join(TINY_EDIT_DIR, sub, f)).size))
      .reduce((a, b) => a + b, 0);
    assert.equal(weightBytes, onnxBytes);
    assert.deepEqual(spec.preview, { factors: server.latentRgbFactors, bias: server.latentRgbBias });
    assert.equal(spec.paths.unet, join(TINY_EDIT_DIR, 'unet', 'model.onnx'));
    assert.equal(spec.paths.tokenizerDir, join(TINY_EDIT_DIR, 'tokenizer'));
  });

  it('is listed by listModelFolders', () => {
    assert.ok(listModelFolders(join(TINY_EDIT_DIR, '..')).includes('tiny-edit'));
    assert.deepEqual(listModelFolders(join(tmpRoot, 'does-not-exist')), []);
  });

  it('accepts a slow CLIP tokenizer (vocab.json + merges.txt) in place of tokenizer.json', () => {
    const dir = brokenCopy((d) => {
      const json = JSON.parse(readFileSync(join(d, 'tokenizer', 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number>; merges: string[] } };
      writeFileSync(join(d, 'tokenizer', 'vocab.json'), JSON.stringify(json.model.vocab));
      writeFileSync(join(d, 'tokenizer', 'merges.txt'), `#version: 0.2\n${json.model.merges.join('\n')}\n`);
      unlinkSync(join(d, 'tokenizer', 'tokenizer.json'));
    });
    assert.equal(readModelFolder(dir, 'slow-tokenizer').paths.tokenizerDir, join(dir, 'tokenizer'));
  });

  describe('broken copies are refused with the problem named', () => {
    it('missing unet/model.onnx', () => {
      assertFolderError(
        brokenCopy((d) => unlinkSync(join(d, 'unet', 'model.onnx'))),
        /missing unet\/model\.onnx/,
      );
    });

    it('missing tokenizer/tokenizer.json (and no vocab.json + merges.txt)', () => {
      assertFolderError(
        brokenCopy((d) => unlinkSync(join(d, 'tokenizer', 'tokenizer.json'))),
        /missing tokenizer\/tokenizer\.json/,
      );
    });

    it('invalid JSON in model_index.json', () => {
      assertFolderError(
        brokenCopy((d) => writeFileSync(join(d, 'model_index.json'), '{ "_class_name": "StableDiffusionInstructPix2PixPipeline",')),
        /model_index\.json is not valid JSON/,
      );
    });

    it('unknown _class_name', () => {
      assertFolderError(
        brokenCopy((d) => editJson(d, 'model_index.json', (j) => (j._class_name = 'KandinskyV22Pipeline'))),
        /_class_name "KandinskyV22Pipeline" is not a supported pipeline/,
      );
    });

    it('an InstructPix2Pix UNet with 4 input channels', () => {
      assertFolderError(
        brokenCopy((d) => editJson(d, 'unet/config.json', (j) => (j.in_channels = 4))),
        /is InstructPix2Pix, which needs a UNet with 8 input channels; this one has 4 \(unet\/config\.json in_channels\), which fits Stable Diffusion img2img \(img2img\) or SDXL img2img/,
      );
    });

    it('a scheduler_config.json with an unknown beta_schedule', () => {
      assertFolderError(
        brokenCopy((d) => editJson(d, 'scheduler/scheduler_config.json', (j) => (j.beta_schedule = 'cubic'))),
        /scheduler\/scheduler_config\.json.*"beta_schedule" is "cubic"/,
      );
    });

    it("an option of the default scheduler's class that is not implemented, named (another class's keys are ignored)", () => {
      assertFolderError(
        brokenCopy((d) => editJson(d, 'scheduler/scheduler_config.json', (j) => (j.rescale_betas_zero_snr = true))),
        /\(for EULER_ANCESTRAL\).*"rescale_betas_zero_snr" is true; only false is implemented/,
      );
      // DDIM's thresholding and PNDM's skip_prk_steps mean nothing to the default EULER_ANCESTRAL:
      // the folder loads, and a request for DDIM is refused with the key named.
      const dir = brokenCopy((d) =>
        editJson(d, 'scheduler/scheduler_config.json', (j) => Object.assign(j, { thresholding: true, skip_prk_steps: false, sample_max_value: 1 })),
      );
      const spec = readModelFolder(dir, 'thresholding');
      assert.equal(resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'PNDM', steps: 4 }).scheduler, 'PNDM');
      assert.throws(
        () => resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'DDIM' }),
        /scheduler DDIM cannot run 8 steps of model thresholding: .*"thresholding" is true/,
      );
      // PNDM's Runge–Kutta warm-up (skip_prk_steps false) needs 4 steps; LCM at most original_inference_steps.
      assert.throws(() => resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'PNDM', steps: 3 }), /at least 4 steps/);
      const plain = readModelFolder(TINY_EDIT_DIR, 'tiny-edit');
      assert.throws(() => resolveEditOptions(plain, 1, { prompt: 'x', scheduler: 'LCM', steps: 51 }), /original_inference_steps/);
    });

    it("parseDiffusersJson reads json.dumps' Infinity, -Infinity and NaN, and leaves strings alone", () => {
      const v = parseDiffusersJson('{"a": -Infinity, "b": [Infinity, NaN, 1], "c": "NaN -Infinity \\" Infinity", "d": {"e": -1.5e3}}') as Record<
        string,
        unknown
      >;
      assert.equal(v.a, -Infinity);
      assert.deepEqual(v.b, [Infinity, NaN, 1]);
      assert.equal(v.c, 'NaN -Infinity " Infinity');
      assert.deepEqual(v.d, { e: -1500 });
      assert.throws(() => parseDiffusersJson('{"a": Inf}'), SyntaxError);
    });

    it("reads Python's -Infinity in a diffusers DPM-Solver config (lambda_min_clipped), and DPMPP_2M runs from it", () => {
      const dir = brokenCopy((d) => {
        const path = join(d, 'scheduler', 'scheduler_config.json');
        const dpm = {
          ...JSON.parse(readFileSync(path, 'utf8')),
          _class_name: 'DPMSolverMultistepScheduler',
          algorithm_type: 'dpmsolver++',
          solver_order: 2,
          variance_type: null,
          lambda_min_clipped: 'LAMBDA',
        };
        writeFileSync(path, JSON.stringify(dpm, null, 2).replace('"LAMBDA"', '-Infinity'));
      });
      const spec = readModelFolder(dir, 'dpm');
      assert.equal(spec.schedulerJson.lambda_min_clipped, -Infinity);
      assert.equal(resolveEditOptions(spec, 1, { prompt: 'x', scheduler: 'DPMPP_2M' }).scheduler, 'DPMPP_2M');
    });

    it('malformed latentRgbFactors in edit-server.json', () => {
      assertFolderError(
        brokenCopy((d) =>
          editJson(
            d,
            'edit-server.json',
            (j) =>
              (j.latentRgbFactors = [
                [1, 0, 0],
                [0, 1, 0],
                [0, 0, 1],
              ]),
          ),
        ),
        /edit-server\.json: latentRgbFactors must be 4 rows of 3 numbers/,
      );
      assertFolderError(
        brokenCopy((d) =>
          editJson(
            d,
            'edit-server.json',
            (j) =>
              (j.latentRgbFactors = [
                [1, 0, 0],
                [0, 1, 0],
                [0, 0, 1],
                [0, 0, 'x'],
              ]),
          ),
        ),
        /latentRgbFactors must be 4 rows of 3 numbers/,
      );
    });

    it('an unknown default scheduler in edit-server.json', () => {
      assertFolderError(
        brokenCopy((d) => editJson(d, 'edit-server.json', (j) => ((j.defaults as Record<string, unknown>).scheduler = 'DPM'))),
        new RegExp(`defaults\\.scheduler must be one of ${SCHEDULER_NAMES.join(', ')}`),
      );
    });

    it('a folder that does not exist', () => {
      assertFolderError(join(tmpRoot, 'nope'), /does not exist/);
    });
  });

  describe('sessions', () => {
    it('refuse a UNet without a "sample" input', async () => {
      const dir = brokenCopy((d) => writeFileSync(join(d, 'unet', 'model.onnx'), fakeUnet(['x', 'timestep', 'encoder_hidden_states'], 8)));
      const spec = readModelFolder(dir, 'wrong-names');
      await assert.rejects(openModelSessions(spec, { provider: 'cpu', intraOpThreads: 1 }), (err: unknown) => {
        assert.ok(err instanceof ModelFolderError, String(err));
        assert.match(err.message, /unet\/model\.onnx has no input "sample" \(inputs: .*\bx\b/);
        return true;
      });
    });

    it('refuse a UNet whose "sample" has the wrong channel count', async () => {
      const dir = brokenCopy((d) => writeFileSync(join(d, 'unet', 'model.onnx'), fakeUnet(['sample', 'timestep', 'encoder_hidden_states'], 5)));
      const spec = readModelFolder(dir, 'wrong-channels');
      await assert.rejects(openModelSessions(spec, { provider: 'cpu', intraOpThreads: 1 }), (err: unknown) => {
        assert.ok(err instanceof ModelFolderError, String(err));
        assert.match(err.message, /input "sample" has 5 channels, expected 8 for instruct-pix2pix/);
        return true;
      });
    });

    it('accept the same stand-in UNet with a symbolic channel dim', async () => {
      const dir = brokenCopy((d) => writeFileSync(join(d, 'unet', 'model.onnx'), fakeUnet(['sample', 'timestep', 'encoder_hidden_states'], 'channels')));
      const sessions = await openModelSessions(readModelFolder(dir, 'symbolic'), { provider: 'cpu', intraOpThreads: 1 });
      try {
        assert.equal(sessions.provider, 'cpu');
        assert.ok(sessions.hasInput('unet', 'sample'));
      } finally {
        await sessions.release();
      }
    });

    it('fall back from cuda to cpu when CUDA is unavailable', async () => {
      const logs: string[] = [];
      const spec = readModelFolder(TINY_EDIT_DIR, 'tiny-edit');
      const sessions = await openModelSessions(spec, { provider: 'cuda', intraOpThreads: 1, log: (m, level) => level !== 'debug' && logs.push(m) });
      try {
        assert.equal(sessions.provider, 'cpu');
        assert.ok(logs.length >= 1, 'the fallback is logged');
        assert.match(logs[0]!, /execution provider "cuda" unavailable.*falling back to cpu/);
        assert.equal(sessions.vaeEncoderOutput, 'latent_parameters');
        // The sessions work: the decoder returns latent channels 0..2.
        const latent = Float32Array.from({ length: 4 * 2 * 2 }, (_, i) => i / 16);
        const rgb = await sessions.run('vaeDecoder', { latent_sample: { data: latent, dims: [1, 4, 2, 2] } }, 'sample');
        assert.deepEqual([...rgb], [...latent.subarray(0, 12)]);
        assert.equal(sessions.stats.runs, 1);
      } finally {
        await sessions.release();
      }
    });
  });
});
