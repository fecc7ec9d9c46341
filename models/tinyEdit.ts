/**
 * The built-in `tiny-edit` model: a genuine InstructPix2Pix-format ONNX folder whose networks are
 * analytic instead of trained, so every correct pipeline converges to a known colour edit.
 *
 * - tokenizer: CLIP-style byte-level BPE whose merges make each edit word a single token.
 * - text_encoder: each token embeds a 4×4 homogeneous colour matrix on RGB in [0,1] (identity for
 *   every other token); position t of `last_hidden_state` holds the product of the matrices of
 *   tokens 0..t (a causal encoder, like CLIP), so the last position is the whole prompt's edit,
 *   words composed in prompt order. The empty prompt is the identity.
 * - vae: full resolution (no 8× blocks). Latent channels 0..2 are the image in [-1,1], channel 3 is 0.
 *   The encoder reports `latent_parameters` (mean ‖ logvar) as current optimum exports do.
 * - unet: returns the exact noise prediction ε = (x_t − √ᾱ_t·x₀)/√(1−ᾱ_t) for the target
 *   x₀ = scaling_factor · edit(image latents), with σ(t) interpolated linearly at fractional
 *   timesteps as Euler schedulers interpolate it.
 */
import { GraphBuilder } from './onnx/graph.js';
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from './tokenizerBuilder.js';

type Mat4 = number[]; // row-major 4×4, acting on [r, g, b, 1]

const identity = (): Mat4 => [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
const linear3 = (m: number[][], offset: number[] = [0, 0, 0]): Mat4 => [...m[0]!, offset[0]!, ...m[1]!, offset[1]!, ...m[2]!, offset[2]!, 0, 0, 0, 1];
const scale = (k: number): Mat4 =>
  linear3([
    [k, 0, 0],
    [0, k, 0],
    [0, 0, k],
  ]);
const LUMA = [0.299, 0.587, 0.114];
const grayscale = linear3([LUMA, LUMA, LUMA]);

/** The edit vocabulary, as colour transforms on RGB in [0,1]. */
export const EDIT_WORDS: Readonly<Record<string, Mat4>> = {
  grayscale,
  greyscale: grayscale,
  gray: grayscale,
  grey: grayscale,
  monochrome: grayscale,
  invert: linear3(
    [
      [-1, 0, 0],
      [0, -1, 0],
      [0, 0, -1],
    ],
    [1, 1, 1],
  ),
  negative: linear3(
    [
      [-1, 0, 0],
      [0, -1, 0],
      [0, 0, -1],
    ],
    [1, 1, 1],
  ),
  sepia: linear3([
    [0.393, 0.769, 0.189],
    [0.349, 0.686, 0.168],
    [0.272, 0.534, 0.131],
  ]),
  brighter: scale(1.25),
  darker: scale(0.75),
  warmer: linear3(
    [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    [0.1, 0, -0.1],
  ),
  cooler: linear3(
    [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    [-0.1, 0, 0.1],
  ),
};

export const TINY_EDIT_SCALING_FACTOR = 0.18215;
export const HIDDEN = 16;
export const MAX_LENGTH = 77;
const NUM_TRAIN_TIMESTEPS = 1000;
const BETA_START = 0.00085;
const BETA_END = 0.012;

export const tinyEditSchedulerConfig = {
  _class_name: 'EulerAncestralDiscreteScheduler',
  _diffusers_version: '0.30.0',
  num_train_timesteps: NUM_TRAIN_TIMESTEPS,
  beta_start: BETA_START,
  beta_end: BETA_END,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 1,
  // The analytic UNet is exact, so DDIM's last step can land exactly on x₀.
  set_alpha_to_one: true,
  clip_sample: false,
  trained_betas: null,
};

/** σ_t = √((1−ᾱ_t)/ᾱ_t) for the scaled_linear schedule, in float64 then rounded once. */
export function trainSigmas(): Float32Array {
  const sigmas = new Float32Array(NUM_TRAIN_TIMESTEPS);
  const a = Math.sqrt(BETA_START);
  const b = Math.sqrt(BETA_END);
  let cumprod = 1;
  for (let t = 0; t < NUM_TRAIN_TIMESTEPS; t++) {
    const beta = (a + ((b - a) * t) / (NUM_TRAIN_TIMESTEPS - 1)) ** 2;
    cumprod *= 1 - beta;
    sigmas[t] = Math.sqrt((1 - cumprod) / cumprod);
  }
  return sigmas;
}

/** The causal colour-matrix text encoder; `io` sets the port dtypes an exporter declares. */
export interface TextEncoderIo {
  ids: 'int32' | 'int64';
  float: 'float32' | 'float16';
  /**
   * SDXL's layout (optimum exports its encoders with `hidden_states.0..2`): the colour matrices
   * (their first `width` values) are in the penultimate `hidden_states.1` only; the other layers
   * and `last_hidden_state` hold a constant 5, so reading the wrong layer fails. With
   * `projection`, `text_embeds` (CLIPTextModelWithProjection) is the last position of layer 1.
   */
  sdxl?: { width: number; projection: boolean };
}

export function textEncoderGraph(vocab: Record<string, number>, io: TextEncoderIo = { ids: 'int32', float: 'float32' }): GraphBuilder {
  const vocabSize = Object.keys(vocab).length;
  const table = new Float32Array(vocabSize * HIDDEN);
  for (let id = 0; id < vocabSize; id++) table.set(identity(), id * HIDDEN);
  for (const [word, matrix] of Object.entries(EDIT_WORDS)) {
    const id = vocab[`${word}</w>`];
    if (id === undefined) throw new Error(`tokenizer has no single token for "${word}"`);
    table.set(matrix, id * HIDDEN);
  }
  const g = new GraphBuilder('tiny_edit_text_encoder');
  const ids = g.input('input_ids', io.ids, ['batch_size', MAX_LENGTH]);
  const emb = g.f32(table, [vocabSize, HIDDEN], 'token_embedding');
  const tokens = g.op1('Gather', [emb, ids], { axis: 0 }); // [B, L, 16]
  const mats = g.op1('Reshape', [tokens, g.i64([0, MAX_LENGTH, 4, 4])]); // [B, 77, 4, 4]
  const perPosition = g.op('Split', [mats], { axis: 1 }, MAX_LENGTH); // 77 × [B, 1, 4, 4]
  const prefix: string[] = [perPosition[0]!];
  for (let t = 1; t < MAX_LENGTH; t++) prefix.push(g.op1('MatMul', [perPosition[t]!, prefix[t - 1]!]));
  const all = g.op1('Concat', prefix, { axis: 1 });
  const hidden = g.op1('Reshape', [all, g.i64([0, MAX_LENGTH, HIDDEN])]);
  const out = (x: string): string => (io.float === 'float16' ? g.op1('Cast', [x], { to: 10 }) : x);
  if (io.sdxl) {
    const { width, projection } = io.sdxl;
    const layer = g.op1('Slice', [hidden, g.i64([0]), g.i64([width]), g.i64([2])]);
    const constant = g.op1('Add', [g.op1('Mul', [layer, g.f32([0], [])]), g.f32([5], [])]);
    const dims = ['batch_size', MAX_LENGTH, width];
    g.output('last_hidden_state', out(constant), io.float, dims);
    for (let k = 0; k < 3; k++) g.output(`hidden_states.${k}`, out(k === 1 ? layer : g.op1('Identity', [constant])), io.float, dims);
    const last = g.op1('Reshape', [g.op1('Gather', [layer, g.i64([MAX_LENGTH - 1], [])], { axis: 1 }), g.i64([0, width])]);
    g.output(projection ? 'text_embeds' : 'pooler_output', out(last), io.float, ['batch_size', width]);
    return g;
  }
  g.output('last_hidden_state', out(hidden), io.float, ['batch_size', MAX_LENGTH, HIDDEN]);
  const pooled = g.op1('Reshape', [prefix[MAX_LENGTH - 1]!, g.i64([0, HIDDEN])]);
  g.output('pooler_output', out(pooled), io.float, ['batch_size', HIDDEN]);
  return g;
}

function textEncoderOnnx(vocab: Record<string, number>): Uint8Array {
  return textEncoderGraph(vocab).toBytes('tiny-edit text encoder: prefix products of per-token colour matrices');
}

export const slice = (g: GraphBuilder, x: string, from: number, to: number, axis: number): string =>
  g.op1('Slice', [x, g.i64([from]), g.i64([to]), g.i64([axis])]);

/**
 * x₀ = scaling_factor · edit(image) as 4 latent channels (the 4th zero, shaped like channel 3 of
 * `sample`), where edit is the prompt's colour matrix from the last position of `text`.
 */
export function editedTarget(g: GraphBuilder, imageRgb: string, text: string, sample: string, scalingFactor = TINY_EDIT_SCALING_FACTOR): string {
  // The whole prompt's edit sits at the last sequence position.
  const edit = g.op1('Reshape', [g.op1('Gather', [text, g.i64([-1], [])], { axis: 1 }), g.i64([0, 4, 4])]);
  const linear = slice(g, slice(g, edit, 0, 3, 1), 0, 3, 2); // [B,3,3]
  const offset = slice(g, slice(g, edit, 0, 3, 1), 3, 4, 2); // [B,3,1]
  const rgb01 = g.op1('Add', [g.op1('Mul', [imageRgb, g.f32([0.5], [])]), g.f32([0.5], [])]);
  const flat = g.op1('Reshape', [rgb01, g.i64([0, 3, -1])]);
  const edited = g.op1('Add', [g.op1('MatMul', [linear, flat]), offset]);
  const clamped = g.op1('Clip', [edited, g.f32([0], []), g.f32([1], [])]);
  const targetFlat = g.op1('Mul', [g.op1('Sub', [g.op1('Mul', [clamped, g.f32([2], [])]), g.f32([1], [])]), g.f32([scalingFactor], [])]);
  const targetRgb = g.op1('Reshape', [targetFlat, g.op1('Shape', [imageRgb])]);
  const zeroChannel = g.op1('Mul', [slice(g, sample, 3, 4, 1), g.f32([0], [])]);
  return g.op1('Concat', [targetRgb, zeroChannel], { axis: 1 });
}

/** The exact ε for `target` at float timesteps `timestep` [B] (σ interpolated as Euler does). */
export function exactEpsilon(g: GraphBuilder, noisy: string, target: string, timestep: string): string {
  // σ(t) by linear interpolation over the training sigmas, as Euler schedulers interpolate.
  const sigmaTable = g.f32(trainSigmas(), [NUM_TRAIN_TIMESTEPS], 'train_sigmas');
  const t = g.op1('Clip', [timestep, g.f32([0], []), g.f32([NUM_TRAIN_TIMESTEPS - 1], [])]);
  const lowF = g.op1('Floor', [t]);
  const frac = g.op1('Sub', [t, lowF]);
  const low = g.op1('Cast', [lowF], { to: 7 });
  const high = g.op1('Min', [g.op1('Add', [low, g.i64([1], [])]), g.i64([NUM_TRAIN_TIMESTEPS - 1], [])]);
  const sLow = g.op1('Gather', [sigmaTable, low], { axis: 0 });
  const sHigh = g.op1('Gather', [sigmaTable, high], { axis: 0 });
  const sigma = g.op1('Add', [sLow, g.op1('Mul', [frac, g.op1('Sub', [sHigh, sLow])])]);
  const sigma4 = g.op1('Reshape', [sigma, g.i64([-1, 1, 1, 1])]);
  // With ᾱ = 1/(1+σ²): ε = (x_t·√(1+σ²) − x₀)/σ, the same as (x_t − √ᾱ·x₀)/√(1−ᾱ).
  const rootOnePlus = g.op1('Sqrt', [g.op1('Add', [g.op1('Mul', [sigma4, sigma4]), g.f32([1], [])])]);
  return g.op1('Div', [g.op1('Sub', [g.op1('Mul', [noisy, rootOnePlus]), target]), sigma4]);
}

function unetOnnx(): Uint8Array {
  const g = new GraphBuilder('tiny_edit_unet');
  const sample = g.input('sample', 'float32', ['batch_size', 8, 'height', 'width']);
  const timestep = g.input('timestep', 'float32', ['batch_size']);
  const text = g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', HIDDEN]);
  const noisy = slice(g, sample, 0, 4, 1);
  const imageRgb = slice(g, sample, 4, 7, 1);
  const target = editedTarget(g, imageRgb, text, sample);
  const eps = exactEpsilon(g, noisy, target, timestep);
  g.output('out_sample', eps, 'float32', ['batch_size', 4, 'height', 'width']);
  return g.toBytes('tiny-edit unet: exact epsilon for the prompt-edited image latents');
}

function vaeEncoderOnnx(): Uint8Array {
  const g = new GraphBuilder('tiny_edit_vae_encoder');
  const sample = g.input('sample', 'float32', ['batch_size', 3, 'sample_height', 'sample_width']);
  const zero = g.op1('Mul', [g.op1('Slice', [sample, g.i64([0]), g.i64([1]), g.i64([1])]), g.f32([0], [])]);
  const mean = g.op1('Concat', [sample, zero], { axis: 1 });
  // A near-zero variance: sampling and the mode agree to ~1e-7.
  const logvar = g.op1('Add', [g.op1('Mul', [mean, g.f32([0], [])]), g.f32([-30], [])]);
  const params = g.op1('Concat', [mean, logvar], { axis: 1 });
  g.output('latent_parameters', params, 'float32', ['batch_size', 8, 'sample_height', 'sample_width']);
  return g.toBytes('tiny-edit vae encoder: identity latents at full resolution');
}

function vaeDecoderOnnx(): Uint8Array {
  const g = new GraphBuilder('tiny_edit_vae_decoder');
  const latent = g.input('latent_sample', 'float32', ['batch_size', 4, 'latent_height', 'latent_width']);
  const rgb = g.op1('Slice', [latent, g.i64([0]), g.i64([3]), g.i64([1])]);
  g.output('sample', rgb, 'float32', ['batch_size', 3, 'latent_height', 'latent_width']);
  return g.toBytes('tiny-edit vae decoder: latent channels 0..2 are the image');
}

export const json = (value: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);

/** Every file of the tiny-edit folder, path → bytes, deterministically. */
export function buildTinyEditFiles(): Map<string, Uint8Array> {
  const tokenizer = buildBpeTokenizerJson(Object.keys(EDIT_WORDS)) as { model: { vocab: Record<string, number> } };
  const vocab = tokenizer.model.vocab;
  const vaeConfig = {
    _class_name: 'AutoencoderKL',
    in_channels: 3,
    out_channels: 3,
    latent_channels: 4,
    // One block: no downsampling, latents at full resolution.
    block_out_channels: [4],
    scaling_factor: TINY_EDIT_SCALING_FACTOR,
  };
  const s = TINY_EDIT_SCALING_FACTOR;
  const files = new Map<string, Uint8Array>();
  files.set(
    'model_index.json',
    json({
      _class_name: 'StableDiffusionInstructPix2PixPipeline',
      _diffusers_version: '0.30.0',
      requires_safety_checker: false,
      scheduler: ['diffusers', 'EulerAncestralDiscreteScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae_decoder: ['diffusers', 'AutoencoderKL'],
      vae_encoder: ['diffusers', 'AutoencoderKL'],
    }),
  );
  files.set('scheduler/scheduler_config.json', json(tinyEditSchedulerConfig));
  files.set('tokenizer/tokenizer.json', json(tokenizer));
  files.set('tokenizer/tokenizer_config.json', json(buildTokenizerConfigJson()));
  files.set(
    'text_encoder/config.json',
    json({
      architectures: ['CLIPTextModel'],
      model_type: 'clip_text_model',
      hidden_size: HIDDEN,
      max_position_embeddings: MAX_LENGTH,
      vocab_size: Object.keys(vocab).length,
    }),
  );
  files.set('text_encoder/model.onnx', textEncoderOnnx(vocab));
  files.set(
    'unet/config.json',
    json({
      _class_name: 'UNet2DConditionModel',
      in_channels: 8,
      out_channels: 4,
      sample_size: 64,
      cross_attention_dim: HIDDEN,
    }),
  );
  files.set('unet/model.onnx', unetOnnx());
  files.set('vae_encoder/config.json', json(vaeConfig));
  files.set('vae_encoder/model.onnx', vaeEncoderOnnx());
  files.set('vae_decoder/config.json', json(vaeConfig));
  files.set('vae_decoder/model.onnx', vaeDecoderOnnx());
  files.set(
    'edit-server.json',
    json({
      description: 'Built-in analytic InstructPix2Pix model: exact colour edits (grayscale, sepia, invert, brighter, darker, warmer, cooler).',
      defaults: { steps: 8, guidanceScale: 1, imageGuidanceScale: 1, scheduler: 'EULER_ANCESTRAL', size: '512x512' },
      limits: { maxImagesPerJob: 16, maxN: 8, maxSteps: 100, maxPixels: 1024 * 1024 },
      // Fitted to RSS measured with ONNX Runtime's CPU arena on (bench/memoryChild.ts, 512², 2026-12-02):
      // jobs of 1 and 4 images needed 135 and 449 MB. The weights (53 kB) leave the fixed part (~30 MB:
      // sessions, the arenas' first blocks) to the per-output term, ~15% over a lone output. No attention.
      memory: { unetBytesPerLatentPixel: 544, attentionHeads: 0, attentionDownscale: 1, vaeBytesPerPixel: 64 },
      // Latent → RGB in [-1,1] for previews (ComfyUI's convention): undo the scaling factor.
      latentRgbFactors: [
        [1 / s, 0, 0],
        [0, 1 / s, 0],
        [0, 0, 1 / s],
        [0, 0, 0],
      ],
      latentRgbBias: [0, 0, 0],
    }),
  );
  return files;
}
