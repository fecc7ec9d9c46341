/**
 * Qwen-Image-Edit's pieces against diffusers and transformers (test/fixtures/qwen-image-edit:
 * SPEC.md and the real processor files): the prompt template's 64-token prefix, the Qwen2
 * tokenizer (ids from transformers' Qwen2Tokenizer, test/vectors/qwen-tokenizer.json), the Qwen2-VL
 * processor's sizes and patches (test/vectors/qwen-processor.json, qwen-smart-resize.json),
 * `calculate_dimensions`, the σ tables of SPEC §7, RoPE and true CFG with norm rescale.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { PROJECT_ROOT } from '../src/config.js';
import { buildQwenEditFiles } from '../models/qwenExports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { processImage, smartResize, parseVisionProcessorConfig } from '../src/inference/pipelines/qwen/processor.js';
import { editPlusPromptText, editPromptText, expandImagePads, loadQwenTokenizer, mropePositions, PROMPT_DROP } from '../src/inference/pipelines/qwen/prompt.js';
import { calculateDimensions } from '../src/inference/pipelines/qwen/sizing.js';
import { imageRope, textRope } from '../src/inference/pipelines/qwen/rope.js';
import { qwenImageEdit, trueCfgRescaled } from '../src/inference/pipelines/qwen/index.js';
import { FlowMatchEulerDiscreteScheduler, parseFlowMatchSchedulerConfig } from '../src/inference/schedulers/flowMatchEuler.js';

const FIXTURES = join(PROJECT_ROOT, 'test', 'fixtures', 'qwen-image-edit');
const PROCESSOR = join(FIXTURES, 'Qwen-Image-Edit', 'processor');
const vector = <T>(name: string): T => JSON.parse(readFileSync(join(PROJECT_ROOT, 'test', 'vectors', name), 'utf8')) as T;
const json = (path: string): Record<string, unknown> => JSON.parse(readFileSync(join(FIXTURES, path), 'utf8')) as Record<string, unknown>;

const SPEC_PREFIX =
  '151644 8948 198 74785 279 1376 4419 315 279 1946 2168 320 3423 11 6083 11 1379 11 10434 11 6171 11 4004 701 1221 10339 1246 279 1196 594 1467 7600 1265 11596 476 5602 279 2168 13 19813 264 501 2168 429 20027 279 1196 594 8502 1393 20337 28137 448 279 4024 1946 1380 8311 13 151645 198 151644 872 198'
    .split(' ')
    .map(Number);

describe('Qwen-Image-Edit prompts', () => {
  const tokenizer = loadQwenTokenizer(PROCESSOR);

  it('drops exactly the 64-token system prefix of SPEC §2; what is left is the vision block, the prompt and the tail', () => {
    const ids = tokenizer.encode(editPromptText('dance monkey'));
    assert.deepEqual(ids.slice(0, PROMPT_DROP), SPEC_PREFIX);
    assert.deepEqual(ids.slice(PROMPT_DROP), [151652, 151655, 151653, 98875, 38703, 151645, 198, 151644, 77091, 198]);
    const plus = tokenizer.encode(editPlusPromptText('dance monkey', 1));
    assert.deepEqual(plus.slice(0, PROMPT_DROP), SPEC_PREFIX);
    assert.deepEqual(plus.slice(PROMPT_DROP), [24669, 220, 16, 25, 220, 151652, 151655, 151653, 98875, 38703, 151645, 198, 151644, 77091, 198]);
  });

  it('tokenises as transformers Qwen2Tokenizer does (20 prompts: scripts, emoji, CRLF, specials, NFC)', () => {
    const { cases } = vector<{ cases: { text: string; ids: number[] }[] }>('qwen-tokenizer.json');
    for (const c of cases) assert.deepEqual(tokenizer.encode(c.text), c.ids, JSON.stringify(c.text));
  });

  it('expands each <|image_pad|> to its image token count and refuses a count mismatch', () => {
    const pad = tokenizer.idOf('<|image_pad|>');
    assert.deepEqual(expandImagePads([1, pad, 2, pad], pad, [3, 1]), [1, pad, pad, pad, 2, pad]);
    assert.throws(() => expandImagePads([pad], pad, []), /more <\|image_pad\|>/);
    assert.throws(() => expandImagePads([pad], pad, [1, 2]), /2 images for 1/);
  });
});

describe('Qwen2-VL processor', () => {
  const config = parseVisionProcessorConfig(json('Qwen-Image-Edit/processor/preprocessor_config.json'), 'preprocessor_config.json');

  it("reads the real preprocessor configs (Edit's and 2511's)", () => {
    assert.deepEqual(config, parseVisionProcessorConfig(json('Qwen-Image-Edit-2511/processor/preprocessor_config.json'), '2511'));
    assert.equal(config.minPixels, 3136);
    assert.equal(config.maxPixels, 12845056);
  });

  it("smart_resize gives transformers' sizes", () => {
    const { cases } = vector<{ cases: { height: number; width: number; resized: [number, number] }[] }>('qwen-smart-resize.json');
    for (const c of cases)
      assert.deepEqual(smartResize(c.height, c.width, 28, 3136, 12845056), { height: c.resized[0], width: c.resized[1] }, `${c.height}x${c.width}`);
  });

  it('gives the grids and token counts of SPEC §4 (384² → 28×28, 196 tokens; 1024² → 74×74, 1369 tokens)', () => {
    for (const [side, grid, tokens] of [
      [384, 28, 196],
      [1024, 74, 1369],
    ] as const) {
      const v = processImage(new Float32Array(3 * side * side).fill(0.5), side, side, config);
      assert.deepEqual(v.grid, [1, grid, grid]);
      assert.equal(v.tokens, tokens);
      assert.equal(v.pixelValues.length, grid * grid * 1176);
    }
  });

  it("lays out patches as transformers' processor does (84×56 image, no resize)", () => {
    const ref = vector<{ width: number; height: number; grid: number[]; patches: number; patch0: number[]; patch7: number[]; patchSums: number[] }>(
      'qwen-processor.json',
    );
    const { width: W, height: H } = ref;
    const rgb = new Float32Array(3 * W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const px = [(x * 3 + y * 7) % 256, (x * 11 + y * 5) % 256, (x * x + y) % 256];
        for (let c = 0; c < 3; c++) rgb[(c * H + y) * W + x] = px[c]! / 255;
      }
    }
    const v = processImage(rgb, W, H, config);
    assert.deepEqual(v.grid, ref.grid);
    const row = (i: number): number[] => Array.from(v.pixelValues.subarray(i * 1176, (i + 1) * 1176));
    const close = (a: number[], b: number[], tolerance: number, what: string): void =>
      a.forEach((x, k) => assert.ok(Math.abs(x - b[k]!) < tolerance, `${what}[${k}]: ${x} vs ${b[k]}`));
    close(row(0), ref.patch0, 2e-5, 'patch 0');
    close(row(7), ref.patch7, 2e-5, 'patch 7');
    // The sums are stored to 3 decimals.
    close(
      Array.from({ length: ref.patches }, (_, i) => row(i).reduce((a, b) => a + b, 0)),
      ref.patchSums,
      1e-3,
      'patch sums',
    );
  });
});

describe('Qwen-Image-Edit sizes and schedules', () => {
  it("calculate_dimensions gives SPEC §4's sizes (384² and 1024² areas at 1:1, 4:3, 16:9, 3:2)", () => {
    const cases: [number, number, number, number, number, number][] = [
      [1, 1, 384, 384, 1024, 1024],
      [4, 3, 448, 320, 1184, 896],
      [16, 9, 512, 288, 1376, 768],
      [3, 2, 480, 320, 1248, 832],
    ];
    for (const [a, b, cw, ch, vw, vh] of cases) {
      assert.deepEqual(calculateDimensions(384 * 384, a / b), { width: cw, height: ch });
      assert.deepEqual(calculateDimensions(1024 * 1024, a / b), { width: vw, height: vh });
    }
  });

  const sigmasFor = (schedulerJson: Record<string, unknown>, steps: number, size: number): number[] => {
    const spec = { schedulerJson, vaeScaleFactor: 8 };
    const s = new FlowMatchEulerDiscreteScheduler(parseFlowMatchSchedulerConfig(schedulerJson));
    s.setTimesteps(steps, qwenImageEdit.timestepOptions!(spec, steps, { width: size, height: size }));
    return Array.from(s.sigmas);
  };
  const close = (got: number[], want: number[]): void => want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 5e-6, `σ[${i}] ${got[i]} vs ${w}`));

  it("reproduces SPEC §7's σ at 1024² (exponential shift, shift_terminal 0.02), then 0", () => {
    const config = json('Qwen-Image/scheduler/scheduler_config.json');
    const eight = sigmasFor(config, 8, 1024);
    close(eight, [1.0, 0.916024, 0.820046, 0.709295, 0.580075, 0.427347, 0.244054, 0.02, 0]);
    const fifty = sigmasFor(config, 50, 1024);
    close(fifty.slice(0, 3), [1.0, 0.989701, 0.979191]);
    close(fifty.slice(47), [0.095499, 0.058476, 0.02, 0]);
  });

  it('reproduces the Lightning σ of SPEC §7 (mu = ln 3 at every size, no stretch) and takes 8 steps without true CFG', () => {
    const config = json('lightning/scheduler_config.json');
    for (const size of [512, 1024]) {
      close(sigmasFor(config, 4, size), [1.0, 0.9, 0.75, 0.5, 0]);
      close(sigmasFor(config, 8, size), [1.0, 0.954545, 0.9, 0.833333, 0.75, 0.642857, 0.5, 0.3, 0]);
    }
    const defaults = qwenImageEdit.defaultsFor!({ dir: FIXTURES, schedulerJson: config, modelIndex: {}, signatures: {} });
    assert.equal(defaults.steps, 8);
    assert.equal(defaults.trueCfgScale, 1);
    const base = qwenImageEdit.defaultsFor!({
      dir: FIXTURES,
      schedulerJson: json('Qwen-Image/scheduler/scheduler_config.json'),
      modelIndex: {},
      signatures: {},
    });
    assert.equal(base.steps, 50);
    assert.equal(base.trueCfgScale, 4);
    assert.equal(base.maxSequenceLength, 512);
  });
});

describe('Qwen-Image RoPE and guidance', () => {
  it('centres image positions, gives image j frame position j and starts text after the largest half-extent', () => {
    // One 3×4 noise grid and one 2×2 condition grid.
    const img = imageRope([
      [1, 3, 4],
      [1, 2, 2],
    ]);
    assert.equal(img.rows, 12 + 4);
    // Each axis's last (lowest) frequency θ^(−(d−2)/d) turns a position into a small angle:
    // columns 7 (frame, d 16), 35 (height, d 56) and 63 (width, d 56).
    const freq = (col: number): number => (col === 7 ? 10000 ** (-14 / 16) : 10000 ** (-54 / 56));
    const pos = (table: { cos: Float32Array; sin: Float32Array }, row: number, col: number): number =>
      Math.round(Math.atan2(table.sin[row * 64 + col]!, table.cos[row * 64 + col]!) / freq(col));
    assert.deepEqual(
      Array.from({ length: 12 }, (_, r) => [pos(img, r, 7), pos(img, r, 35), pos(img, r, 63)]),
      [-2, -1, 0].flatMap((y) => [-2, -1, 0, 1].map((x) => [0, y, x])),
    );
    assert.deepEqual(
      Array.from({ length: 4 }, (_, r) => [pos(img, 12 + r, 7), pos(img, 12 + r, 35), pos(img, 12 + r, 63)]),
      [
        [1, -1, -1],
        [1, -1, 0],
        [1, 0, -1],
        [1, 0, 0],
      ],
    );
    const txt = textRope(
      [
        [1, 3, 4],
        [1, 2, 2],
      ],
      3,
    );
    // offset = max(3//2, 4//2, 2//2) = 2.
    assert.deepEqual(
      [0, 1, 2].map((t) => [pos(txt, t, 7), pos(txt, t, 35), pos(txt, t, 63)]),
      [
        [2, 2, 2],
        [3, 3, 3],
        [4, 4, 4],
      ],
    );
  });

  // test/vectors/qwen-image-edit-tiny-edit.json: scripts/parity/qwen_parity.py's record of diffusers and transformers.
  const recorded = vector<{
    text_encoder_calls: { input_ids: number[]; image_grid_thw: [number, number, number][]; position_ids: number[][] }[];
    rope_example_real_axes: {
      img_shapes: [number, number, number][];
      text_tokens: number;
      img_rope_cos: number[][];
      img_rope_sin: number[][];
      txt_rope_cos: number[][];
      txt_rope_sin: number[][];
    };
  }>('qwen-image-edit-tiny-edit.json');

  it("gives the text encoder transformers' M-RoPE position ids (get_rope_index) for a 1 MP Edit prompt", () => {
    const call = recorded.text_encoder_calls[0]!;
    const ids = call.input_ids;
    const positions = mropePositions([ids], [call.image_grid_thw], 151655, ids.length);
    for (let axis = 0; axis < 3; axis++)
      assert.deepEqual(Array.from(positions.subarray(axis * ids.length, (axis + 1) * ids.length)), call.position_ids[axis], `axis ${axis}`);
  });

  it("builds the RoPE tables diffusers' QwenEmbedRope gives (real axes 16, 56, 56)", () => {
    const r = recorded.rope_example_real_axes;
    const img = imageRope(r.img_shapes);
    const txt = textRope(r.img_shapes, r.text_tokens);
    const near = (got: Float32Array, want: number[][], what: string): void =>
      want.flat().forEach((w, k) => assert.ok(Math.abs(got[k]! - w) < 1e-6, `${what}[${k}]: ${got[k]} vs ${w}`));
    near(img.cos, r.img_rope_cos, 'img cos');
    near(img.sin, r.img_rope_sin, 'img sin');
    near(txt.cos, r.txt_rope_cos, 'txt cos');
    near(txt.sin, r.txt_rope_sin, 'txt sin');
  });

  it('applies true CFG per token and rescales each token to the positive branch’s norm', () => {
    const neg = Float32Array.of(1, 0, 0, 2);
    const pos = Float32Array.of(0, 1, 0, 1);
    const out = trueCfgRescaled(neg, pos, 4, 2, new Float32Array(4));
    // Token 0: c = (1,0) + 4·((0,1) − (1,0)) = (−3, 4), ‖c‖ = 5, ‖p‖ = 1 → (−0.6, 0.8).
    assert.ok(Math.abs(out[0]! + 0.6) < 1e-6 && Math.abs(out[1]! - 0.8) < 1e-6);
    // Token 1: c = (0,2) + 4·((0,1) − (0,2)) = (0, −2), ‖p‖ = 1 → (0, −1).
    assert.ok(Math.abs(out[2]!) < 1e-6 && Math.abs(out[3]! + 1) < 1e-6);
  });
});

describe('Qwen-Image-Edit folders', () => {
  it('reads tiny-qwen-edit (z_dim, temperal_downsample, 1024-token limit) and refuses a bad edit-server.json `qwen` block', () => {
    const root = mkdtempSync(join(tmpdir(), 'qwen-folder-'));
    try {
      writeModelFolder(join(root, 'edit'), buildQwenEditFiles({ layout: 'edit' }));
      const spec = readModelFolder(join(root, 'edit'), 'edit');
      assert.equal(spec.kind, 'qwen-image-edit');
      assert.equal(spec.latentChannels, 16);
      assert.equal(spec.vaeScaleFactor, 8);
      assert.equal(spec.limits.maxSequenceLength, 1024);
      assert.equal(spec.family.sizeMultiple(spec), 16);
      for (const qwen of [{ conditionArea: 10 }, { conditionArea: 'big' }, { typo: 1 }, []]) {
        const dir = mkdtempSync(join(root, 'bad-'));
        writeModelFolder(dir, buildQwenEditFiles({ layout: 'edit' }));
        writeFileSync(join(dir, 'edit-server.json'), JSON.stringify({ qwen }));
        assert.throws(() => readModelFolder(dir, 'bad'), /qwen/, JSON.stringify(qwen));
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the analytic tiny-qwen-edit shows wrong feeds', () => {
  it('moves x₀ when the kept text has two <|im_start|> (a wrong drop) or the mask misses a present token, and fails on short RoPE tables', async () => {
    const files = buildQwenEditFiles({ layout: 'edit' });
    const session = await ort.InferenceSession.create(files.get('transformer/model.onnx')!);
    const shapes: [number, number, number][] = [
      [1, 2, 2],
      [1, 2, 2],
    ];
    const img = imageRope(shapes);
    const L = 3;
    const x0Of = async (text: Float32Array, mask: number[], txtRows = L): Promise<Float32Array> => {
      const hidden = Float32Array.from({ length: 8 * 64 }, (_, k) => Math.sin(k) * 0.5);
      const txt = textRope(shapes, txtRows);
      const out = await session.run({
        hidden_states: new ort.Tensor('float32', hidden, [1, 8, 64]),
        encoder_hidden_states: new ort.Tensor('float32', text, [1, L, 18]),
        encoder_hidden_states_mask: new ort.Tensor('int64', BigInt64Array.from(mask.map(BigInt)), [1, L]),
        timestep: new ort.Tensor('float32', Float32Array.of(0.5), [1]),
        img_rope_cos: new ort.Tensor('float32', img.cos, [8, 64]),
        img_rope_sin: new ort.Tensor('float32', img.sin, [8, 64]),
        txt_rope_cos: new ort.Tensor('float32', txt.cos, [txtRows, 64]),
        txt_rope_sin: new ort.Tensor('float32', txt.sin, [txtRows, 64]),
      });
      const v = out.out_hidden_states!.data as Float32Array;
      // x₀ = x − σ·v over the 4 noise tokens.
      return Float32Array.from({ length: 4 * 64 }, (_, k) => hidden[k]! - 0.5 * v[k]!);
    };
    // Three present tokens (channel 17), one <|im_start|> (channel 16): what a correct feed gives.
    const text = new Float32Array(L * 18);
    for (let t = 0; t < L; t++) text[t * 18 + 17] = 1;
    text[16] = 1;
    const good = await x0Of(text, [1, 1, 1]);
    const moved = (x: Float32Array): number => Math.max(...x.map((v, k) => Math.abs(v - good[k]!)));
    const twoStarts = Float32Array.from(text);
    twoStarts[18 + 16] = 1;
    assert.ok(moved(await x0Of(twoStarts, [1, 1, 1])) > 0.1, 'a second <|im_start|> moves x₀');
    assert.ok(moved(await x0Of(text, [1, 1, 0])) > 0.1, 'a mask that misses a present token moves x₀');
    await assert.rejects(x0Of(text, [1, 1, 1], L - 1), 'RoPE tables shorter than the text fail as a traced graph would');
  });
});
