/**
 * The model doctor (`npm run models -- check|list`) as a real process: on the built-in tiny-edit,
 * on folders generated as each exporter generation writes them (models/exports.ts), and on broken
 * folders (exit 1, folder and problem named). The server's 'model loaded' line is the same summary.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXPORT_GENERATIONS, buildExportFixture } from '../models/exports.js';
import type { ExportFixtureOptions, ExportGeneration } from '../models/exports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { GraphBuilder } from '../models/onnx/graph.js';
import { buildQwenEditFiles } from '../models/qwenExports.js';
import { PROJECT_ROOT } from '../src/config.js';

const CLI = join(PROJECT_ROOT, 'src/cli/models.ts');
const TINY_EDIT_DIR = join(PROJECT_ROOT, 'models', 'tiny-edit');

function doctor(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const GENERATION_NAMES: Record<ExportGeneration, string> = {
  'optimum-1.22': 'optimum ≤ 1.22',
  'optimum-1.23': 'optimum 1.23',
  'optimum-1.24': 'optimum ≥ 1.24 / optimum-onnx',
  'diffusers-onnx': "diffusers' convert_stable_diffusion_checkpoint_to_onnx.py",
};

const TIMESTEPS: Record<ExportGeneration, string> = {
  'optimum-1.22': 'int64 [steps]',
  'optimum-1.23': 'int64 [steps]',
  'optimum-1.24': 'float32 scalar',
  'diffusers-onnx': 'float32 [batch]',
};

let root: string;

function fixture(name: string, options: ExportFixtureOptions): string {
  const dir = join(root, name);
  writeModelFolder(dir, buildExportFixture(options));
  return dir;
}

describe('model doctor', () => {
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'doctor-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('checks the built-in tiny-edit: family, ports, exporter, scheduler, tokenizer, VAE, memory, defaults, limits; sessions open', () => {
    const r = doctor(['check', TINY_EDIT_DIR]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout;
    assert.match(out, /^model tiny-edit \(/);
    assert.match(out, /family: instruct-pix2pix \(model_index\.json _class_name StableDiffusionInstructPix2PixPipeline\)/);
    assert.match(out, /exporter: /);
    assert.match(out, /precision: fp32/);
    assert.match(out, /unet\/model\.onnx \(opset \d+\)\n {6}in {2}sample: float32 \[batch_size, 8, height, width\] \(rank 4\)/);
    assert.match(out, /in {2}input_ids: int32 \[batch_size, 77\] \(rank 2\)/);
    assert.match(out, /out latent_parameters: float32 /);
    assert.match(
      out,
      /scheduler: folder class EulerAncestralDiscreteScheduler → EULER_ANCESTRAL; runs EULER_ANCESTRAL \(the folder's class\)\n {4}a request may pick: EULER_ANCESTRAL, EULER, DDIM, /,
    );
    assert.match(out, /tokenizer: tokenizer\.json, vocab size \d+, max length 77, pad token "<\|endoftext\|>" \(id \d+\)/);
    assert.match(out, /vae: scale factor 1, scaling factor 0\.18215, 4 latent channels; unet in channels 8/);
    assert.match(out, /memory at the default size \(512x512, 1 UNet row per output\): [\d.]+ MiB for one output/);
    assert.match(out, /defaults: steps 8, guidanceScale 1, imageGuidanceScale 1, scheduler EULER_ANCESTRAL, size 512x512/);
    assert.match(out, /limits: maxImagesPerJob 16, maxN 8, maxSteps 100, maxPixels 1048576/);
    assert.match(out, /warnings: none/);
    assert.match(out, /sessions: all 4 open on cpu\nok\n$/);
  });

  it('words the built-in FLUX-layout model as its family is: transformer, every tokenizer, five sessions, built in', () => {
    const r = doctor(['check', join(PROJECT_ROOT, 'models', 'tiny-flow-edit')]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout;
    assert.match(out, /exporter: built in \(written by models\/flowExports\.ts\)\n/);
    assert.match(out, /\n {2}transformer timestep: float32 /);
    assert.doesNotMatch(out, /unet/i);
    assert.match(out, /\n {2}tokenizer: tokenizer\.json, vocab size \d+, max length 77, /);
    assert.match(out, /\n {2}tokenizer_2: tokenizer\.json, vocab size \d+, max length 512, pad token "<pad>" \(id 0\)/);
    assert.match(
      out,
      /scheduler: folder class FlowMatchEulerDiscreteScheduler; runs FLOW_MATCH_EULER \(the only scheduler of [^)]+\)\n {4}a request may pick: FLOW_MATCH_EULER only\n/,
    );
    assert.match(out, /sessions: all 5 open on cpu\nok\n$/);
    const tiny = doctor(['check', TINY_EDIT_DIR]);
    assert.match(tiny.stdout, /exporter: built in \(written by models\/tinyEdit\.ts\)\n/);
  });

  it('--json gives the same summary as data', () => {
    const r = doctor(['check', TINY_EDIT_DIR, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.ok, true);
    assert.equal(result.sessionsOpened, true);
    assert.deepEqual(result.problems, []);
    const s = result.summary;
    assert.equal(s.id, 'tiny-edit');
    assert.equal(s.family, 'instruct-pix2pix');
    assert.equal(s.components.unet.inputs.find((p: { name: string }) => p.name === 'sample').rank, 4);
    assert.deepEqual(
      s.tokenizers.map((t: { folder: string; maxLength: number }) => [t.folder, t.maxLength]),
      [['tokenizer', 77]],
    );
    assert.equal(s.vae.scaleFactor, 1);
    assert.equal(s.memory.guidanceBranches, 1);
    // tiny-edit's profile: 512² latent pixels × 544 B + 512² × 64 B per output, plus its file sizes.
    assert.equal(s.memory.perItemBytes, 512 * 512 * 544 + 512 * 512 * 64);
    assert.equal(s.memory.oneItemBytes, s.memory.weightBytes + s.memory.perItemBytes);
    assert.equal(s.defaults.steps, 8);
  });

  const variants: { name: string; options: ExportFixtureOptions }[] = EXPORT_GENERATIONS.map((generation) => ({
    name: `${generation}-ip2p`,
    options: { generation, family: 'instruct-pix2pix' },
  }));
  variants.push({ name: 'optimum-1.22-img2img', options: { generation: 'optimum-1.22', family: 'img2img' } });
  variants.push({ name: 'optimum-1.24-fp16', options: { generation: 'optimum-1.24', family: 'instruct-pix2pix', fp16: true, externalData: true } });

  for (const { name, options } of variants) {
    it(`recognises a ${name} folder: generation, timestep port, precision, latent_sample warning`, () => {
      const dir = fixture(name, options);
      const r = doctor(['check', dir]);
      assert.equal(r.status, 0, r.stderr);
      const out = r.stdout;
      assert.ok(out.includes(`exporter: ${GENERATION_NAMES[options.generation]}\n`), out);
      const timestep = options.fp16 ? 'float16 scalar' : TIMESTEPS[options.generation];
      assert.ok(out.includes(`unet timestep: ${timestep};`), out);
      assert.ok(out.includes(`in  timestep: ${timestep} (rank ${timestep.endsWith('scalar') ? 0 : 1})`), out);
      assert.ok(out.includes(`precision: ${options.fp16 ? 'fp16' : 'fp32'}\n`), out);
      assert.ok(out.includes(`family: ${options.family} `), out);
      assert.match(out, /vae: scale factor 8, /);
      const latentSample = options.generation === 'optimum-1.22' || options.generation === 'diffusers-onnx';
      if (latentSample) {
        assert.match(out, /warnings \(1\):\n {4}- vae_encoder returns "latent_sample".*Re-export with optimum ≥ 1\.23/);
      } else {
        assert.match(out, /warnings: none/);
      }
      if (options.generation === 'diffusers-onnx') {
        assert.match(out, /scheduler: folder class PNDMScheduler → PNDM; runs PNDM \(the folder's class\)/);
        assert.match(out, /tokenizer: vocab\.json \+ merges\.txt, vocab size \d+, max length 77, pad token "<\|endoftext\|>"/);
      }
      assert.match(out, /\nok\n$/);
    });
  }

  it("names the folder's scheduler class, what it maps to, what runs and what a request may pick", () => {
    const dir = fixture('unipc', { generation: 'optimum-1.24', family: 'img2img' });
    const config = JSON.parse(readFileSync(join(dir, 'scheduler', 'scheduler_config.json'), 'utf8'));
    writeFileSync(
      join(dir, 'scheduler', 'scheduler_config.json'),
      JSON.stringify({ ...config, _class_name: 'UniPCMultistepScheduler', use_karras_sigmas: true }),
    );
    const r = doctor(['check', dir, '--skip-sessions']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /scheduler: folder class UniPCMultistepScheduler → DPMPP_2M; runs DPMPP_2M \(the closest to the folder's class, which is not implemented\)/,
    );
    assert.match(r.stdout, /\n {4}not with this config: EULER \(.*use_karras_sigmas/);
    assert.match(r.stdout, /warnings \(1\):\n {4}- scheduler class UniPCMultistepScheduler is not implemented; using DPMPP_2M/);
    writeFileSync(join(dir, 'edit-server.json'), JSON.stringify({ defaults: { scheduler: 'DPMPP_2M_KARRAS' } }));
    const overridden = JSON.parse(doctor(['check', dir, '--skip-sessions', '--json']).stdout).summary.scheduler;
    assert.equal(overridden.runs, 'DPMPP_2M_KARRAS');
    assert.equal(overridden.classMapsTo, 'DPMPP_2M');
    assert.match(overridden.note, /edit-server\.json defaults\.scheduler/);
    assert.ok(overridden.available.includes('DPMPP_2M_KARRAS'));
    assert.ok(overridden.unavailable.some((u: { name: string }) => u.name === 'EULER'));
  });

  it("refuses diffusers' converter's InstructPix2Pix folder (labelled OnnxStableDiffusionPipeline): channels from the first convolution, the family that fits", () => {
    // convert_stable_diffusion_checkpoint_to_onnx.py: OnnxStableDiffusionPipeline for every checkpoint, no unet/config.json,
    // `sample` exported with dynamic axes {0: batch, 1: channels, 2: height, 3: width}.
    const dir = fixture('converter-ip2p', {
      generation: 'diffusers-onnx',
      family: 'instruct-pix2pix',
      pipelineClass: 'OnnxStableDiffusionPipeline',
      externalData: true,
    });
    const r = doctor(['check', dir]);
    assert.equal(r.status, 1, r.stdout);
    assert.ok(
      r.stderr.includes(
        `problem: model folder ${dir}: model_index.json _class_name "OnnxStableDiffusionPipeline" is Stable Diffusion img2img, which needs a UNet with 4 input channels; ` +
          "this one has 8 (the UNet's first convolution weight), which fits InstructPix2Pix",
      ),
      r.stderr,
    );
    // Labelled as what it is, the same folder runs.
    const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'));
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, _class_name: 'OnnxStableDiffusionInstructPix2PixPipeline' }));
    const fixed = doctor(['check', dir]);
    assert.equal(fixed.status, 0, fixed.stderr);
    assert.match(fixed.stdout, /family: instruct-pix2pix /);
    assert.match(fixed.stdout, /unet in channels 8/);
  });

  it('counts the sessions it opens and describes every tokenizer (SDXL: two encoders, five sessions)', () => {
    const dir = fixture('sdxl', { generation: 'optimum-1.24', family: 'sdxl-img2img' });
    const r = doctor(['check', dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /\n {2}tokenizer: tokenizer\.json, vocab size \d+, max length 77, pad token "<\|endoftext\|>" \(id \d+\)\n {2}tokenizer_2: tokenizer\.json, vocab size \d+, max length 77, pad token "!" /,
    );
    assert.match(r.stdout, /sessions: all 5 open on cpu\nok\n$/);
  });

  it('a folder without unet/model.onnx: exit 1 naming the folder and the file', () => {
    const dir = fixture('no-unet', { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    rmSync(join(dir, 'unet', 'model.onnx'));
    const r = doctor(['check', dir]);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`problem: model folder ${dir}: missing unet/model.onnx`), r.stderr);
    assert.ok(r.stdout.includes(`broken: ${dir} (1 problem)`), r.stdout);
    const json = doctor(['check', dir, '--json']);
    assert.equal(json.status, 1);
    const result = JSON.parse(json.stdout);
    assert.equal(result.ok, false);
    assert.equal(result.summary, null);
    assert.deepEqual(result.problems, [`model folder ${dir}: missing unet/model.onnx`]);
  });

  it('a unet/model.onnx that is not ONNX: exit 1 naming the folder and the file', () => {
    const dir = fixture('not-onnx', { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    writeFileSync(join(dir, 'unet', 'model.onnx'), 'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 3438167534\n');
    const r = doctor(['check', dir]);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`problem: model folder ${dir}: unet/model.onnx is not a readable ONNX model (`), r.stderr);
  });

  it('a tokenizer.json that is not JSON: exit 1 naming the folder and the tokenizer file', () => {
    const dir = fixture('bad-tokenizer', { generation: 'optimum-1.23', family: 'img2img' });
    writeFileSync(join(dir, 'tokenizer', 'tokenizer.json'), '{"model": ');
    const r = doctor(['check', dir]);
    assert.equal(r.status, 1);
    assert.ok(
      r.stderr.includes(`problem: model folder ${dir}: tokenizer: Malformed JSON in tokenizer file ${join(dir, 'tokenizer', 'tokenizer.json')}`),
      r.stderr,
    );
  });

  it('a UNet whose ports read but whose session fails the checks: exit 1 from opening sessions; --skip-sessions does not open them', () => {
    const dir = fixture('no-timestep', { generation: 'optimum-1.24', family: 'instruct-pix2pix' });
    const g = new GraphBuilder('unet');
    const sample = g.input('sample', 'float32', ['batch_size', 8, 'height', 'width']);
    g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', 16]);
    g.output('out_sample', g.op1('Slice', [sample, g.i64([0]), g.i64([4]), g.i64([1])]), 'float32', ['batch_size', 4, 'height', 'width']);
    writeFileSync(join(dir, 'unet', 'model.onnx'), g.toBytes());
    const r = doctor(['check', dir]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /unet timestep: missing;/, 'the summary is still printed');
    assert.ok(r.stderr.includes(`problem: model folder ${dir}: model no-timestep: unet/model.onnx has no input "timestep"`), r.stderr);
    const skipped = doctor(['check', dir, '--skip-sessions']);
    assert.equal(skipped.status, 0, skipped.stderr);
    assert.match(skipped.stdout, /sessions: not opened \(--skip-sessions\)\nok\n$/);
  });

  it('lists the folders of a models directory with family and status; exit 1 when one is broken', () => {
    const models = join(root, 'listed');
    mkdirSync(models);
    writeModelFolder(join(models, 'a-good'), buildExportFixture({ generation: 'optimum-1.22', family: 'img2img' }));
    writeModelFolder(join(models, 'b-broken'), buildExportFixture({ generation: 'optimum-1.24', family: 'instruct-pix2pix' }));
    rmSync(join(models, 'b-broken', 'unet', 'model.onnx'));
    mkdirSync(join(models, 'c-notes', 'unet'), { recursive: true }); // a model's part without model_index.json
    mkdirSync(join(models, 'd-code')); // no component folder: not listed (as the repository's models/onnx)
    writeFileSync(join(models, 'd-code', 'graph.ts'), '');
    const r = doctor(['list', models]);
    assert.equal(r.status, 1, r.stderr);
    assert.ok(r.stdout.includes(`models in ${models}:`), r.stdout);
    assert.match(r.stdout, /\n {2}a-good {4}ok {2}img2img, optimum ≤ 1\.22, 1 warning\n/);
    assert.ok(r.stdout.includes(`  b-broken  broken: model folder ${join(models, 'b-broken')}: missing unet/model.onnx\n`), r.stdout);
    assert.match(r.stdout, /\n {2}c-notes {3}not a model: no model_index\.json \(the server skips it\)\n?$/);
    const json = JSON.parse(doctor(['list', models, '--json']).stdout);
    assert.deepEqual(
      json.models.map((m: { name: string; status: string; family: string | null }) => [m.name, m.status, m.family]),
      [
        ['a-good', 'ok', 'img2img'],
        ['b-broken', 'broken', null],
        ['c-notes', 'not a model', null],
      ],
    );
    rmSync(join(models, 'b-broken'), { recursive: true });
    const fine = doctor(['list'], { MODELS_DIR: models });
    assert.equal(fine.status, 0, fine.stderr);
    assert.ok(fine.stdout.includes(`models in ${models}:`), 'MODELS_DIR is the default');
    const flag = doctor(['list', '--models-dir', models]);
    assert.equal(flag.status, 0, flag.stderr);
    assert.ok(flag.stdout.includes(`models in ${models}:`), '--models-dir, as npm run edit takes it');
    const builtIn = doctor(['list'], { MODELS_DIR: '' });
    assert.equal(builtIn.status, 0, builtIn.stderr);
    assert.equal(
      builtIn.stdout,
      `models in ${join(PROJECT_ROOT, 'models')}:\n  tiny-edit       ok  instruct-pix2pix, built in (written by models/tinyEdit.ts)\n  tiny-flow-edit  ok  flux-kontext, built in (written by models/flowExports.ts)\n  tiny-qwen-edit  ok  qwen-image-edit, built in (written by models/qwenExports.ts)\n`,
    );
  });

  it('parses its arguments strictly: exit 2 with usage', () => {
    const cases: [string[], RegExp][] = [
      [[], /a command is required/],
      [['check'], /check takes one model folder \(got 0\)/],
      [['check', 'a', 'b'], /check takes one model folder \(got 2\)/],
      [['check', TINY_EDIT_DIR, '--bogus'], /Unknown option '--bogus'/],
      [['check', TINY_EDIT_DIR, '--json=yes'], /--json/],
      [['list', 'a', 'b'], /list takes one models directory, as an argument or --models-dir \(got 2\)/],
      [['list', 'a', '--models-dir', 'b'], /list takes one models directory, as an argument or --models-dir \(got 2\)/],
      [['check', TINY_EDIT_DIR, '--models-dir', 'x'], /--models-dir is for list/],
      [['list', join(root, 'nowhere')], /models directory .* does not exist/],
      [['doctor'], /unknown command "doctor"/],
    ];
    for (const [args, message] of cases) {
      const r = doctor(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /usage: npm run models/);
    }
  });

  it("the server's one 'model loaded' line agrees with the doctor", async () => {
    const doc = JSON.parse(doctor(['check', TINY_EDIT_DIR, '--json', '--skip-sessions']).stdout).summary;
    const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MODELS_DIR: join(PROJECT_ROOT, 'models'), LOG_LEVEL: 'info', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        let buffered = '';
        const timer = setTimeout(() => reject(new Error(`server did not start: ${buffered}`)), 60_000);
        child.on('exit', (code) => reject(new Error(`server exited ${code}: ${buffered}`)));
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          buffered += chunk;
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
            buffered = buffered.slice(nl + 1);
            lines.push(line);
            if (line.msg === 'image-edit-server listening') {
              clearTimeout(timer);
              resolve();
            }
          }
        });
      });
    } finally {
      child.kill('SIGTERM');
    }
    const loaded = lines.filter((l) => l.msg === 'model loaded');
    assert.deepEqual(
      loaded.map((l) => l.model),
      [doc.id],
      'one line for the model loaded at start (the default); the others load on first use',
    );
    const { level, time: _t, pid: _p, hostname: _h, msg: _m, ...logged } = loaded[0]!;
    assert.equal(level, 30, 'at info');
    assert.deepEqual(logged, { model: doc.id, family: doc.family, exporter: doc.export.generation, precision: doc.precision, provider: 'cpu' });
  });
});

describe('model doctor on Qwen-Image-Edit text encoders', () => {
  let qwenRoot: string;
  before(() => {
    qwenRoot = mkdtempSync(join(tmpdir(), 'doctor-qwen-'));
  });
  after(() => rmSync(qwenRoot, { recursive: true, force: true }));

  type Port = { name: string; type: 'float32' | 'int64'; dims: (number | string)[] };
  /** A Plus-2511 folder whose text encoder declares `inputs` and returns `last_hidden_state` (a constant: it never runs). */
  function withTextEncoder(
    name: string,
    inputs: Port[],
    output: Port = { name: 'last_hidden_state', type: 'float32', dims: ['batch', 'sequence', 18] },
  ): string {
    const files = buildQwenEditFiles({ layout: 'plus-2511' });
    const g = new GraphBuilder('broken_text_encoder');
    for (const p of inputs) g.input(p.name, p.type, p.dims);
    g.output(output.name, g.f32([0], []), output.type, output.dims);
    files.set('text_encoder/model.onnx', g.toBytes());
    const dir = join(qwenRoot, name);
    writeModelFolder(dir, files);
    return dir;
  }
  const ids: Port = { name: 'input_ids', type: 'int64', dims: ['batch', 'sequence'] };
  const mask: Port = { name: 'attention_mask', type: 'int64', dims: ['batch', 'sequence'] };
  const pixels: Port = { name: 'pixel_values', type: 'float32', dims: ['patches', 1176] };
  const grid: Port = { name: 'image_grid_thw', type: 'int64', dims: ['images', 3] };

  const cases: { name: string; inputs: Port[]; output?: Port; problem: string }[] = [
    {
      name: 'text-only',
      inputs: [ids, mask],
      problem: 'has no input "pixel_values" (inputs: input_ids int64 [batch, sequence]; attention_mask int64 [batch, sequence])',
    },
    {
      name: 'float-mask',
      inputs: [ids, { ...mask, type: 'float32' }, pixels, grid],
      problem: 'input "attention_mask" has dtype float32; expected int64 or int32',
    },
    {
      name: 'flat-positions',
      inputs: [ids, mask, pixels, grid, { name: 'position_ids', type: 'int64', dims: ['batch', 'sequence'] }],
      problem: 'input "position_ids" has rank 2 ([batch, sequence]); expected rank 3',
    },
    {
      name: 'extra-input',
      inputs: [ids, mask, pixels, grid, { name: 'video_grid_thw', type: 'int64', dims: ['videos', 3] }],
      problem: 'needs inputs the Qwen-Image-Edit Plus (2509/2511) pipeline does not provide (video_grid_thw int64 [videos, 3])',
    },
    {
      name: 'pooled-output',
      inputs: [ids, mask, pixels, grid],
      output: { name: 'last_hidden_state', type: 'float32', dims: ['batch', 18] },
      problem: 'output "last_hidden_state" has rank 2 ([batch, 18]); expected rank 3',
    },
  ];
  for (const c of cases) {
    it(`refuses a ${c.name} text encoder before any session opens, naming the port`, () => {
      const dir = withTextEncoder(c.name, c.inputs, c.output);
      const r = doctor(['check', dir, '--skip-sessions']);
      assert.equal(r.status, 1, r.stdout);
      assert.ok(r.stderr.includes(`problem: model folder ${dir}: text_encoder/model.onnx`), r.stderr);
      assert.ok(r.stderr.includes(c.problem), r.stderr);
    });
  }

  it('accepts the layout with and without position_ids', () => {
    const positions: Port = { name: 'position_ids', type: 'int64', dims: [3, 'batch', 'sequence'] };
    const layouts: [string, Port[]][] = [
      ['no-positions', [ids, mask, pixels, grid]],
      ['positions', [ids, mask, pixels, grid, positions]],
    ];
    for (const [name, inputs] of layouts) {
      const r = doctor(['check', withTextEncoder(name, inputs), '--skip-sessions']);
      assert.equal(r.status, 0, r.stderr);
    }
  });
});
