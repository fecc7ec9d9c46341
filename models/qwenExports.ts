/**
 * `tiny-qwen-edit`: an analytic model folder in the project's Qwen-Image-Edit ONNX layout
 * (docs/models.md), with the real Qwen processor files, so that every correct feed converges to an
 * exact colour edit and wrong feeds show:
 *
 * - text_encoder (Qwen2.5-VL's ports): per token 18 values. 0..15: the colour-matrix delta (M − I)
 *   of an edit word, at the word's last token (the words are several Qwen tokens: each is matched
 *   with its previous token, as it tokenises at the prompt's start and after a space); 16: 1 for
 *   `<|im_start|>`; 17: presence, the attention mask, plus, on `<|image_pad|>` tokens, the excess
 *   of image pads × merge² over the rows of `pixel_values` (0 when the processor's expansion and
 *   patches agree). Every value is multiplied by the attention mask.
 * - transformer: reads the noise and condition tokens apart by the frame angle of `img_rope_cos`
 *   (image 0 has frame position 0, condition image j position j), and each token's height and
 *   width positions from the lowest RoPE frequencies, then takes for each noise token the condition
 *   tokens at the same centred position (the average where several match, e.g. a reference and
 *   the input of one size; none: zero). It returns
 *   the exact flow velocity v = (x − x₀)/σ toward x₀ = the colour edit of that condition, in the
 *   normalised latent space ((z − latents_mean)/latents_std), and zeros for the condition tokens.
 *   Wrong feeds shift x₀ by ½ per error: the kept text must hold exactly one `<|im_start|>` (the
 *   64-token drop), the mask must cover exactly the present tokens, and (2511 layout)
 *   `modulate_index` must be 1 exactly on the condition tokens.
 * - vae: 16 latent channels, 8× (average-pool encoder, nearest-neighbour decoder of channels 0..2),
 *   with per-channel `latents_mean`/`latents_std` that the pipeline must undo.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { loadQwenTokenizer } from '../src/inference/pipelines/qwen/prompt.js';
import { GraphBuilder } from './onnx/graph.js';
import { EDIT_WORDS, json, slice } from './tinyEdit.js';

const FIXTURES = join(PROJECT_ROOT, 'test', 'fixtures', 'qwen-image-edit');
/** The real processor files (Qwen/Qwen-Image-Edit's `processor/`), copied into the folder. */
export const QWEN_PROCESSOR_DIR = join(FIXTURES, 'Qwen-Image-Edit', 'processor');
export const QWEN_TINY_HIDDEN = 18;
const Z = 16;
const VAE_FACTOR = 8;
const PACKED = Z * 4;
/** Per-channel statistics of the tiny VAE (not 0/1, so that a pipeline that skips them is off). */
export const TINY_QWEN_LATENTS_MEAN = Array.from({ length: Z }, (_, c) => Math.round((0.1 * c - 0.3) * 1000) / 1000);
export const TINY_QWEN_LATENTS_STD = Array.from({ length: Z }, (_, c) => Math.round((0.5 + 0.1 * c) * 1000) / 1000);
const IM_START = 151644;
const IMAGE_PAD = 151655;
/** The edit words the text encoder knows (tinyEdit's matrices). */
const WORDS = ['grayscale', 'sepia', 'invert', 'brighter', 'darker', 'warmer', 'cooler'] as const;
/** ROPE columns of each axis's lowest frequency, and the frequencies: frame (d 16), height and width (d 56). */
const LOW_HEIGHT = 8 + 27;
const LOW_WIDTH = 8 + 28 + 27;
const LOW_FREQ = 10000 ** (-54 / 56);

const IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
const zeroOf = (g: GraphBuilder, x: string): string => g.op1('Mul', [x, g.f32([0], [])]);

/** Token patterns (previous id or −1, last id) → 18-wide rows. */
function patterns(): { prev: number[]; last: number[]; rows: Float32Array } {
  const tokenizer = loadQwenTokenizer(QWEN_PROCESSOR_DIR);
  const prev: number[] = [];
  const last: number[] = [];
  const rows: number[][] = [];
  const add = (ids: number[], row: number[]): void => {
    if (ids.length > 2) throw new Error(`edit word tokenises to ${ids.length} tokens`);
    prev.push(ids.length === 2 ? ids[0]! : -1);
    last.push(ids[ids.length - 1]!);
    rows.push(row);
  };
  for (const word of WORDS) {
    const m = EDIT_WORDS[word]!;
    const row = [...m.map((v, k) => v - IDENTITY[k]!), 0, 0];
    add(tokenizer.encode(word), row);
    add(tokenizer.encode(` ${word}`), row);
  }
  add([IM_START], [...new Array(16).fill(0), 1, 0]);
  return { prev, last, rows: Float32Array.from(rows.flat()) };
}

function textEncoderGraph(): GraphBuilder {
  const { prev, last, rows } = patterns();
  const k = last.length;
  const g = new GraphBuilder('tiny_qwen_text_encoder');
  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const mask = g.input('attention_mask', 'int64', ['batch_size', 'sequence_length']);
  const pixels = g.input('pixel_values', 'float32', ['patches', 1176]);
  const grid = g.input('image_grid_thw', 'int64', ['images', 3]);
  // Previous ids (−2 before the first).
  const first = g.op1('Sub', [g.op1('Mul', [slice(g, ids, 0, 1, 1), g.i64([0], [])]), g.i64([2], [])]);
  const previous = g.op1('Concat', [first, slice(g, ids, 0, -1, 1)], { axis: 1 });
  const lastHit = g.op1('Equal', [g.op1('Unsqueeze', [ids, g.i64([2])]), g.i64(last, [k])]);
  const prevHit = g.op1('Or', [
    g.op1('Equal', [g.op1('Unsqueeze', [previous, g.i64([2])]), g.i64(prev, [k])]),
    g.op1('Equal', [g.i64(prev, [k]), g.i64([-1], [])]),
  ]);
  const hits = g.op1('Cast', [g.op1('And', [lastHit, prevHit])], { to: 1 }); // [B,L,K]
  const values = g.op1('MatMul', [hits, g.f32(rows, [k, QWEN_TINY_HIDDEN], 'word_rows')]); // [B,L,18]
  // Presence: the mask, plus on image pads (pads·4 − patches), the processor's agreement.
  const maskF = g.op1('Cast', [mask], { to: 1 });
  const isPad = g.op1('Cast', [g.op1('Equal', [ids, g.i64([IMAGE_PAD], [])])], { to: 1 });
  const pads = g.op1('ReduceSum', [g.op1('Mul', [isPad, maskF]), g.i64([0, 1])], { keepdims: 0 });
  const patches = g.op1('Cast', [slice(g, g.op1('Shape', [pixels]), 0, 1, 0)], { to: 1 });
  // The grid's patch count must be the rows of pixel_values too (t·h·w summed).
  const gridPatches = g.op1('Cast', [g.op1('ReduceSum', [g.op1('ReduceProd', [grid], { axes: [1], keepdims: 0 }), g.i64([0])], { keepdims: 0 })], { to: 1 });
  const excess = g.op1('Add', [
    g.op1('Sub', [g.op1('Mul', [pads, g.f32([4], [])]), g.op1('Reshape', [patches, g.i64([], [0])])]),
    g.op1('Sub', [gridPatches, g.op1('Reshape', [patches, g.i64([], [0])])]),
  ]);
  const presence = g.op1('Unsqueeze', [g.op1('Add', [maskF, g.op1('Mul', [isPad, excess])]), g.i64([2])]);
  const padded = g.op1('Pad', [presence, g.i64([0, 0, QWEN_TINY_HIDDEN - 1, 0, 0, 0])]);
  const hidden = g.op1('Mul', [g.op1('Add', [values, padded]), g.op1('Unsqueeze', [maskF, g.i64([2])])]);
  g.output('last_hidden_state', hidden, 'float32', ['batch_size', 'sequence_length', QWEN_TINY_HIDDEN]);
  return g;
}

/** A [S, 1] column of a [S, 64] table. */
const column = (g: GraphBuilder, table: string, col: number): string => slice(g, table, col, col + 1, 1);

function transformerGraph(zeroCondT: boolean): GraphBuilder {
  const g = new GraphBuilder('tiny_qwen_transformer');
  const hidden = g.input('hidden_states', 'float32', ['batch_size', 'image_sequence_length', PACKED]);
  const text = g.input('encoder_hidden_states', 'float32', ['batch_size', 'text_sequence_length', QWEN_TINY_HIDDEN]);
  const mask = g.input('encoder_hidden_states_mask', 'int64', ['batch_size', 'text_sequence_length']);
  const timestep = g.input('timestep', 'float32', ['batch_size']);
  const imgCos = g.input('img_rope_cos', 'float32', ['image_sequence_length', 64]);
  const imgSin = g.input('img_rope_sin', 'float32', ['image_sequence_length', 64]);
  const txtCos = g.input('txt_rope_cos', 'float32', ['text_sequence_length', 64]);
  const txtSin = g.input('txt_rope_sin', 'float32', ['text_sequence_length', 64]);
  const modulate = zeroCondT ? g.input('modulate_index', 'int64', ['batch_size', 'image_sequence_length']) : null;

  // The RoPE tables must be as long as the sequences they describe (broadcast as a traced graph would).
  const check = (x: string, table: string): string =>
    g.op1('Add', [x, zeroOf(g, g.op1('Unsqueeze', [g.op1('ReduceSum', [table, g.i64([1])], { keepdims: 1 }), g.i64([0])]))]);
  const h = check(check(hidden, imgCos), imgSin);
  const t = slice(g, check(check(text, txtCos), txtSin), 0, QWEN_TINY_HIDDEN, 2);

  // Image j's frame angle is j: cos 1 for the noise (image 0), below 0.97 for the condition images 1..6.
  const isCond = g.op1('Cast', [g.op1('Less', [column(g, imgCos, 0), g.f32([0.999], [])])], { to: 1 }); // [S,1]
  const noiseCount = g.op1('Cast', [g.op1('ReduceSum', [g.op1('Sub', [g.f32([1], []), isCond]), g.i64([0])], { keepdims: 0 })], { to: 7 }); // [1]
  const position = (col: number): string => g.op1('Round', [g.op1('Div', [g.op1('Asin', [column(g, imgSin, col)]), g.f32([LOW_FREQ], [])])]);
  const hp = position(LOW_HEIGHT);
  const wp = position(LOW_WIDTH);
  const sliceSeq = (x: string, from: string, to: string, axis: number): string => g.op1('Slice', [x, from, to, g.i64([axis])]);
  const end = g.i64([2 ** 31]);
  const zero = g.i64([0]);
  const noise = sliceSeq(h, zero, noiseCount, 1);
  const cond = sliceSeq(h, noiseCount, end, 1);
  const same = (p: string): string =>
    g.op1('Equal', [sliceSeq(p, zero, noiseCount, 0), g.op1('Transpose', [sliceSeq(p, noiseCount, end, 0)], { perm: [1, 0] })]);
  const match = g.op1('Cast', [g.op1('And', [same(hp), same(wp)])], { to: 1 }); // [Sn, Sc]
  const count = g.op1('Max', [g.op1('ReduceSum', [match, g.i64([1])], { keepdims: 1 }), g.f32([1], [])]);
  const ref = g.op1('Div', [g.op1('MatMul', [match, cond]), count]); // [B,Sn,64]

  const mean = g.f32(
    TINY_QWEN_LATENTS_MEAN.flatMap((m) => [m, m, m, m]),
    [PACKED],
    'latents_mean',
  );
  const std = g.f32(
    TINY_QWEN_LATENTS_STD.flatMap((s) => [s, s, s, s]),
    [PACKED],
    'latents_std',
  );
  const z = g.op1('Add', [g.op1('Mul', [ref, std]), mean]);
  const refRgb = slice(g, g.op1('Reshape', [z, g.i64([0, 0, Z, 4])]), 0, 3, 2); // [B,Sn,3,4]

  // The prompt's colour matrix: I + Σ masked deltas; the error terms.
  const maskF = g.op1('Unsqueeze', [g.op1('Cast', [mask], { to: 1 }), g.i64([2])]); // [B,L,1]
  const sums = g.op1('ReduceSum', [g.op1('Mul', [t, maskF]), g.i64([1])], { keepdims: 0 }); // [B,18]
  const edit = g.op1('Add', [g.op1('Reshape', [slice(g, sums, 0, 16, 1), g.i64([0, 4, 4])]), g.f32(IDENTITY, [4, 4])]);
  const linear = slice(g, slice(g, edit, 0, 3, 1), 0, 3, 2);
  const offset = g.op1('Unsqueeze', [slice(g, slice(g, edit, 0, 3, 1), 3, 4, 2), g.i64([3])]);
  const imStart = g.op1('Sub', [slice(g, sums, 16, 17, 1), g.f32([1], [])]); // [B,1]
  const present = g.op1('ReduceSum', [g.op1('Mul', [slice(g, t, 17, 18, 2), g.f32([1], [])]), g.i64([1])], { keepdims: 0 }); // [B,1] (unmasked)
  const masked = g.op1('ReduceSum', [maskF, g.i64([1])], { keepdims: 0 }); // [B,1]
  let error = g.op1('Add', [imStart, g.op1('Sub', [masked, present])]);
  if (modulate) {
    const wrong = g.op1('Abs', [g.op1('Sub', [g.op1('Cast', [modulate], { to: 1 }), g.op1('Transpose', [isCond], { perm: [1, 0] })])]); // [B,S]
    error = g.op1('Add', [error, g.op1('ReduceSum', [wrong, g.i64([1])], { keepdims: 1 })]);
  }
  const shift = g.op1('Reshape', [g.op1('Mul', [error, g.f32([0.5], [])]), g.i64([-1, 1, 1, 1])]);

  const rgbFirst = g.op1('Transpose', [refRgb], { perm: [0, 2, 1, 3] }); // [B,3,Sn,4]
  const rgb01 = g.op1('Add', [g.op1('Mul', [rgbFirst, g.f32([0.5], [])]), g.f32([0.5], [])]);
  const flat = g.op1('Reshape', [rgb01, g.i64([0, 3, -1])]);
  const edited = g.op1('Add', [g.op1('Reshape', [g.op1('MatMul', [linear, flat]), g.op1('Shape', [rgb01])]), offset]);
  const clamped = g.op1('Add', [g.op1('Clip', [edited, g.f32([0], []), g.f32([1], [])]), shift]);
  const targetRgb = g.op1('Transpose', [g.op1('Sub', [g.op1('Mul', [clamped, g.f32([2], [])]), g.f32([1], [])])], { perm: [0, 2, 1, 3] });
  const rest = zeroOf(g, slice(g, g.op1('Reshape', [noise, g.i64([0, 0, Z, 4])]), 3, Z, 2));
  const z0 = g.op1('Reshape', [g.op1('Concat', [targetRgb, rest], { axis: 2 }), g.op1('Shape', [noise])]);
  const x0 = g.op1('Div', [g.op1('Sub', [z0, mean]), std]);
  const sigma = g.op1('Reshape', [timestep, g.i64([-1, 1, 1])]);
  const v = g.op1('Div', [g.op1('Sub', [noise, x0]), sigma]);
  g.output('out_hidden_states', g.op1('Concat', [v, zeroOf(g, cond)], { axis: 1 }), 'float32', ['batch_size', 'image_sequence_length', PACKED]);
  return g;
}

function vaeEncoderGraph(): GraphBuilder {
  const g = new GraphBuilder('tiny_qwen_vae_encoder');
  const input = g.input('sample', 'float32', ['batch_size', 3, 'sample_height', 'sample_width']);
  const pooled = g.op1('AveragePool', [input], { kernel_shape: [VAE_FACTOR, VAE_FACTOR], strides: [VAE_FACTOR, VAE_FACTOR] });
  const zeros = g.op1('Tile', [zeroOf(g, slice(g, pooled, 0, 1, 1)), g.i64([1, Z - 3, 1, 1])]);
  const mean = g.op1('Concat', [pooled, zeros], { axis: 1 });
  const logvar = g.op1('Add', [zeroOf(g, mean), g.f32([-30], [])]);
  g.output('latent_parameters', g.op1('Concat', [mean, logvar], { axis: 1 }), 'float32', ['batch_size', 2 * Z, 'latent_height', 'latent_width']);
  return g;
}

function vaeDecoderGraph(): GraphBuilder {
  const g = new GraphBuilder('tiny_qwen_vae_decoder');
  const latent = g.input('latent_sample', 'float32', ['batch_size', Z, 'latent_height', 'latent_width']);
  const up = g.op1('Resize', [slice(g, latent, 0, 3, 1), '', g.f32([1, 1, VAE_FACTOR, VAE_FACTOR])], { mode: 'nearest' });
  g.output('sample', up, 'float32', ['batch_size', 3, 'sample_height', 'sample_width']);
  return g;
}

/** model_index.json of a folder in the project's Qwen-Image-Edit layout (vae_encoder/vae_decoder as optimum names them). */
export function qwenModelIndex(className: 'QwenImageEditPipeline' | 'QwenImageEditPlusPipeline'): Uint8Array {
  return json({
    _class_name: className,
    _diffusers_version: '0.36.0',
    processor: ['transformers', 'Qwen2VLProcessor'],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'Qwen2_5_VLForConditionalGeneration'],
    tokenizer: ['transformers', 'Qwen2Tokenizer'],
    transformer: ['diffusers', 'QwenImageTransformer2DModel'],
    vae_decoder: ['diffusers', 'AutoencoderKLQwenImage'],
    vae_encoder: ['diffusers', 'AutoencoderKLQwenImage'],
  });
}

/** The real processor files and Qwen-Image's scheduler_config.json, into `files`. */
export function addQwenProcessorAndScheduler(files: Map<string, Uint8Array>): void {
  for (const name of readdirSync(QWEN_PROCESSOR_DIR).sort()) files.set(`processor/${name}`, readFileSync(join(QWEN_PROCESSOR_DIR, name)));
  files.set('scheduler/scheduler_config.json', readFileSync(join(FIXTURES, 'Qwen-Image', 'scheduler', 'scheduler_config.json')));
}

export interface QwenFixtureOptions {
  /** QwenImageEditPipeline (Qwen-Image-Edit) or QwenImageEditPlusPipeline with `zero_cond_t` (2511). */
  layout: 'edit' | 'plus-2511';
}

/** Every file of one tiny Qwen folder, path → bytes. */
export function buildQwenEditFiles(o: QwenFixtureOptions = { layout: 'edit' }): Map<string, Uint8Array> {
  const plus = o.layout === 'plus-2511';
  const files = new Map<string, Uint8Array>();
  files.set('model_index.json', qwenModelIndex(plus ? 'QwenImageEditPlusPipeline' : 'QwenImageEditPipeline'));
  addQwenProcessorAndScheduler(files);
  files.set('text_encoder/model.onnx', textEncoderGraph().toBytes());
  files.set(
    'text_encoder/config.json',
    json({ architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', hidden_size: QWEN_TINY_HIDDEN }),
  );
  files.set('transformer/model.onnx', transformerGraph(plus).toBytes());
  files.set(
    'transformer/config.json',
    json({
      _class_name: 'QwenImageTransformer2DModel',
      _diffusers_version: '0.36.0',
      attention_head_dim: 128,
      axes_dims_rope: [16, 56, 56],
      guidance_embeds: false,
      in_channels: PACKED,
      joint_attention_dim: QWEN_TINY_HIDDEN,
      num_attention_heads: 1,
      num_layers: 0,
      out_channels: Z,
      patch_size: 2,
      ...(plus ? { zero_cond_t: true } : {}),
    }),
  );
  const vae = {
    _class_name: 'AutoencoderKLQwenImage',
    _diffusers_version: '0.36.0',
    attn_scales: [],
    base_dim: 96,
    dim_mult: [1, 2, 4, 4],
    dropout: 0.0,
    latents_mean: TINY_QWEN_LATENTS_MEAN,
    latents_std: TINY_QWEN_LATENTS_STD,
    num_res_blocks: 2,
    temperal_downsample: [false, true, true],
    z_dim: Z,
  };
  files.set('vae_encoder/model.onnx', vaeEncoderGraph().toBytes());
  files.set('vae_decoder/model.onnx', vaeDecoderGraph().toBytes());
  files.set('vae_encoder/config.json', json(vae));
  files.set('vae_decoder/config.json', json(vae));
  files.set(
    'edit-server.json',
    json({
      description: `Analytic Qwen-Image-Edit${plus ? ' Plus (2511)' : ''}-layout model with the real Qwen tokenizer: exact colour edits (grayscale, sepia, invert, brighter, darker, warmer, cooler) where the output and the condition have one size (64x64 inputs at the default size).`,
      defaults: { steps: 8, size: '64x64' },
      // The condition at 64² (diffusers: 1024²), so that 64² outputs meet their condition token for token.
      qwen: { conditionArea: 64 * 64, visionArea: 64 * 64 },
      limits: { maxPixels: 256 * 256 },
      memory: { unetBytesPerLatentPixel: 1024, attentionHeads: 1, vaeBytesPerPixel: 64 },
    }),
  );
  return files;
}
