/**
 * `tiny-flow-edit`'s SD3-layout variant: an analytic folder as optimum exports
 * StableDiffusion3 pipelines (SD3TransformerOnnxConfig, CLIPTextWithProjectionOnnxConfig with
 * `hidden_states.N` outputs, T5EncoderOnnxConfig), so that every correct feed converges to an
 * exact colour edit:
 *
 * - text_encoder (CLIP-L) and text_encoder_2 (CLIP-G), both CLIPTextModelWithProjection with
 *   `text_embeds`, `last_hidden_state` and `hidden_states.0..2`. The penultimate layer
 *   (`hidden_states.1`, what SD3 reads) holds the causal prefix products of the tokens' colour
 *   matrices (CLIP-L: M, CLIP-G: M − I); the last layer and `last_hidden_state` are zeros, so
 *   reading the wrong layer gives no edit. `text_embeds` is the whole prompt's matrix.
 * - text_encoder_3 (T5): tiny-flow-edit's T5 (per token M − I and an EOS flag), 40 wide.
 * - transformer: `hidden_states` [B, 16, h, w] (unpacked), `encoder_hidden_states`
 *   [B, 77 + L, 40] = (CLIP-L ‖ CLIP-G, zero-padded to 40) then T5, `pooled_projections`
 *   [B, 32] = L ‖ G, `timestep` in 0..1000 (SD3 feeds t itself). It returns the exact velocity
 *   toward x₀ = the edit of the fixed colour `FLOW_IMG2IMG_BASE_RGB` (the transformer does not see
 *   the input), with the prompt's matrix from CLIP-L's last position; every other part of the
 *   conditioning is checked and any mismatch (order, padding, pooled, EOS count) moves the output.
 * - vae: 16 channels, 8×, SD3's `scaling_factor` 1.5305 and `shift_factor` 0.0609.
 * - inpainting (`inpaint: 33`): `hidden_states` [B, 33, h, w] = [latents ‖ mask ‖ masked-image
 *   latents]; the target is the edit of the masked image's colour where the mask channel is 1
 *   and that colour unedited where it is 0.
 */
import { GraphBuilder } from './onnx/graph.js';
import { EDIT_WORDS, HIDDEN, MAX_LENGTH, json, slice } from './tinyEdit.js';
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from './tokenizerBuilder.js';
import { FLOW_IMG2IMG_BASE_RGB, FLOW_LATENT_CHANNELS, FLOW_VAE_FACTOR, buildT5TokenizerConfigJson, buildT5TokenizerJson } from './flowExports.js';

export const SD3_SCALING_FACTOR = 1.5305;
export const SD3_SHIFT_FACTOR = 0.0609;
/** joint_attention_dim of the fixture: CLIP-L (16) ‖ CLIP-G (16), padded to T5's 40. */
export const SD3_JOINT_DIM = 40;
const IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];

function clipWithProjectionGraph(vocab: Record<string, number>, delta: boolean): GraphBuilder {
  const vocabSize = Object.keys(vocab).length;
  const table = new Float32Array(vocabSize * HIDDEN);
  for (let id = 0; id < vocabSize; id++) table.set(IDENTITY, id * HIDDEN);
  for (const [word, matrix] of Object.entries(EDIT_WORDS)) table.set(matrix, vocab[`${word}</w>`]! * HIDDEN);
  const g = new GraphBuilder('tiny_sd3_clip');
  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const tokens = g.op1('Gather', [g.f32(table, [vocabSize, HIDDEN], 'token_embedding'), ids], { axis: 0 });
  const mats = g.op1('Reshape', [tokens, g.i64([0, MAX_LENGTH, 4, 4])]);
  const perPosition = g.op('Split', [mats], { axis: 1 }, MAX_LENGTH);
  const prefix: string[] = [perPosition[0]!];
  for (let t = 1; t < MAX_LENGTH; t++) prefix.push(g.op1('MatMul', [perPosition[t]!, prefix[t - 1]!]));
  let hidden = g.op1('Reshape', [g.op1('Concat', prefix, { axis: 1 }), g.i64([0, MAX_LENGTH, HIDDEN])]);
  let pooled = g.op1('Reshape', [prefix[MAX_LENGTH - 1]!, g.i64([0, HIDDEN])]);
  if (delta) {
    hidden = g.op1('Sub', [hidden, g.f32(IDENTITY, [HIDDEN])]);
    pooled = g.op1('Sub', [pooled, g.f32(IDENTITY, [HIDDEN])]);
  }
  const zeros = g.op1('Mul', [hidden, g.f32([0], [])]);
  const dims = ['batch_size', 'sequence_length', HIDDEN];
  g.output('text_embeds', pooled, 'float32', ['batch_size', HIDDEN]);
  g.output('last_hidden_state', zeros, 'float32', dims);
  g.output('hidden_states.0', g.op1('Identity', [zeros]), 'float32', dims);
  g.output('hidden_states.1', hidden, 'float32', dims);
  g.output('hidden_states.2', g.op1('Identity', [zeros]), 'float32', dims);
  return g;
}

function t5Graph(pieces: readonly [string, number][]): GraphBuilder {
  const table = new Float32Array(pieces.length * SD3_JOINT_DIM);
  pieces.forEach(([piece], id) => {
    const m = piece.startsWith('\u2581') ? EDIT_WORDS[piece.slice(1)] : undefined;
    if (m) for (let k = 0; k < 16; k++) table[id * SD3_JOINT_DIM + k] = m[k]! - IDENTITY[k]!;
    if (piece === '</s>') table[id * SD3_JOINT_DIM + SD3_JOINT_DIM - 1] = 1;
  });
  const g = new GraphBuilder('tiny_sd3_t5');
  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  g.output('last_hidden_state', g.op1('Gather', [g.f32(table, [pieces.length, SD3_JOINT_DIM], 't5_embedding'), ids], { axis: 0 }), 'float32', [
    'batch_size',
    'sequence_length',
    SD3_JOINT_DIM,
  ]);
  return g;
}

const meanAbs = (g: GraphBuilder, x: string): string => g.op1('ReduceMean', [g.op1('Abs', [x])], { axes: [1, 2], keepdims: 0 }); // [B] for [B, X, Y]

/** Input channels of the 33-channel inpainting transformer: [latents ‖ mask ‖ masked-image latents]. */
export const SD3_INPAINT_CHANNELS = 2 * FLOW_LATENT_CHANNELS + 1;

function transformerGraph(inpaint: boolean): GraphBuilder {
  const g = new GraphBuilder('tiny_sd3_transformer');
  const input = g.input('hidden_states', 'float32', ['batch_size', inpaint ? SD3_INPAINT_CHANNELS : FLOW_LATENT_CHANNELS, 'height', 'width']);
  const sample = inpaint ? slice(g, input, 0, FLOW_LATENT_CHANNELS, 1) : input;
  const text = g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', SD3_JOINT_DIM]);
  const pooled = g.input('pooled_projections', 'float32', ['batch_size', 2 * HIDDEN]);
  const timestep = g.input('timestep', 'float32', ['step']);
  const sigma = g.op1('Reshape', [g.op1('Div', [timestep, g.f32([1000], [])]), g.i64([-1, 1, 1, 1])]);

  const sliceAxis = (x: string, from: number, to: number, axis: number): string => slice(g, x, from, to, axis);
  const clipRows = sliceAxis(text, 0, MAX_LENGTH, 1); // [B,77,40]
  const last = sliceAxis(clipRows, MAX_LENGTH - 1, MAX_LENGTH, 1); // [B,1,40]
  const lastL = sliceAxis(last, 0, HIDDEN, 2);
  const lastG = sliceAxis(last, HIDDEN, 2 * HIDDEN, 2);
  const pooled3 = g.op1('Unsqueeze', [pooled, g.i64([1])]); // [B,1,32]
  const errors = [
    meanAbs(g, g.op1('Sub', [sliceAxis(pooled3, 0, HIDDEN, 2), lastL])), // pooled L = CLIP-L's matrix
    meanAbs(g, g.op1('Sub', [sliceAxis(pooled3, HIDDEN, 2 * HIDDEN, 2), lastG])), // pooled G = CLIP-G's
    meanAbs(g, g.op1('Sub', [lastG, g.op1('Sub', [lastL, g.f32(IDENTITY, [HIDDEN])])])), // L before G
    meanAbs(g, sliceAxis(clipRows, 2 * HIDDEN, SD3_JOINT_DIM, 2)), // zero padding
  ];
  const t5 = g.op1('Slice', [text, g.i64([MAX_LENGTH]), g.i64([1 << 30]), g.i64([1])]);
  const eos = g.op1('ReduceSum', [sliceAxis(t5, SD3_JOINT_DIM - 1, SD3_JOINT_DIM, 2), g.i64([1, 2])], { keepdims: 0 });
  errors.push(g.op1('Abs', [g.op1('Sub', [eos, g.f32([1], [])])]));
  const error = g.op1('Reshape', [errors.reduce((a, b) => g.op1('Add', [a, b])), g.i64([-1, 1, 1])]); // [B,1,1]

  const edit = g.op1('Reshape', [lastL, g.i64([-1, 4, 4])]);
  const linear = slice(g, slice(g, edit, 0, 3, 1), 0, 3, 2);
  const offset = slice(g, slice(g, edit, 0, 3, 1), 3, 4, 2); // [B,3,1]
  let flat: string; // the colour to edit, [B,3,hw] in 0..1
  let mask: string | null = null; // [B,1,hw]
  if (inpaint) {
    // The masked image's latents, unscaled: (x / scaling + shift) is the VAE's [-1,1] RGB.
    const masked = slice(g, input, FLOW_LATENT_CHANNELS + 1, FLOW_LATENT_CHANNELS + 4, 1);
    const z = g.op1('Add', [g.op1('Div', [masked, g.f32([SD3_SCALING_FACTOR], [])]), g.f32([SD3_SHIFT_FACTOR], [])]);
    flat = g.op1('Reshape', [g.op1('Mul', [g.op1('Add', [z, g.f32([1], [])]), g.f32([0.5], [])]), g.i64([0, 3, -1])]);
    mask = g.op1('Reshape', [slice(g, input, FLOW_LATENT_CHANNELS, FLOW_LATENT_CHANNELS + 1, 1), g.i64([0, 1, -1])]);
  } else {
    const base = g.f32(FLOW_IMG2IMG_BASE_RGB, [1, 3, 1], 'base_rgb');
    flat = g.op1('Add', [g.op1('Mul', [g.op1('Reshape', [slice(g, sample, 0, 3, 1), g.i64([0, 3, -1])]), g.f32([0], [])]), base]);
  }
  let edited = g.op1('Add', [g.op1('Clip', [g.op1('Add', [g.op1('MatMul', [linear, flat]), offset]), g.f32([0], []), g.f32([1], [])]), error]);
  // Inpainting: the edit where the mask channel is 1, the masked image where it is 0.
  if (mask) edited = g.op1('Add', [g.op1('Mul', [edited, mask]), g.op1('Mul', [flat, g.op1('Sub', [g.f32([1], []), mask])])]);
  const z = g.op1('Sub', [g.op1('Mul', [edited, g.f32([2], [])]), g.f32([1], [])]);
  const rgb = g.op1('Reshape', [z, g.op1('Shape', [slice(g, sample, 0, 3, 1)])]);
  const z0 = g.op1('Concat', [rgb, g.op1('Mul', [slice(g, sample, 3, FLOW_LATENT_CHANNELS, 1), g.f32([0], [])])], { axis: 1 });
  const x0 = g.op1('Mul', [g.op1('Sub', [z0, g.f32([SD3_SHIFT_FACTOR], [])]), g.f32([SD3_SCALING_FACTOR], [])]);
  const v = g.op1('Div', [g.op1('Sub', [sample, x0]), sigma]);
  g.output('out_hidden_states', v, 'float32', ['batch_size', FLOW_LATENT_CHANNELS, 'height', 'width']);
  return g;
}

function vaeEncoderGraph(): GraphBuilder {
  const g = new GraphBuilder('tiny_sd3_vae_encoder');
  const f = FLOW_VAE_FACTOR;
  const input = g.input('sample', 'float32', ['batch_size', 3, 'sample_height', 'sample_width']);
  const pooled = g.op1('AveragePool', [input], { kernel_shape: [f, f], strides: [f, f] });
  const zeros = g.op1('Tile', [g.op1('Mul', [slice(g, pooled, 0, 1, 1), g.f32([0], [])]), g.i64([1, FLOW_LATENT_CHANNELS - 3, 1, 1])]);
  const mean = g.op1('Concat', [pooled, zeros], { axis: 1 });
  const logvar = g.op1('Add', [g.op1('Mul', [mean, g.f32([0], [])]), g.f32([-30], [])]);
  g.output('latent_parameters', g.op1('Concat', [mean, logvar], { axis: 1 }), 'float32', [
    'batch_size',
    2 * FLOW_LATENT_CHANNELS,
    'latent_height',
    'latent_width',
  ]);
  return g;
}

function vaeDecoderGraph(): GraphBuilder {
  const g = new GraphBuilder('tiny_sd3_vae_decoder');
  const f = FLOW_VAE_FACTOR;
  const latent = g.input('latent_sample', 'float32', ['batch_size', FLOW_LATENT_CHANNELS, 'latent_height', 'latent_width']);
  g.output('sample', g.op1('Resize', [slice(g, latent, 0, 3, 1), '', g.f32([1, 1, f, f])], { mode: 'nearest' }), 'float32', [
    'batch_size',
    3,
    'height',
    'width',
  ]);
  return g;
}

/**
 * Every file of the SD3-layout tiny-flow-edit variant, path → bytes. `inpaint`: as optimum exports
 * StableDiffusion3InpaintPipeline (model_index `_class_name` StableDiffusion3InpaintPipeline) with a
 * 16-channel transformer (diffusers blends latents) or a 33-channel inpainting one, whose target
 * inside the mask is the edit of the masked image there (mid-grey), and the masked image elsewhere.
 */
export function buildSd3EditFiles(options: { inpaint?: 16 | 33 } = {}): Map<string, Uint8Array> {
  const inChannels = options.inpaint ?? FLOW_LATENT_CHANNELS;
  const words = Object.keys(EDIT_WORDS);
  const clip = buildBpeTokenizerJson(words) as { model: { vocab: Record<string, number> } };
  const t5 = buildT5TokenizerJson(words);
  const files = new Map<string, Uint8Array>();
  files.set(
    'model_index.json',
    json({
      _class_name: options.inpaint ? 'StableDiffusion3InpaintPipeline' : 'StableDiffusion3Img2ImgPipeline',
      _diffusers_version: '0.32.0',
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      text_encoder: ['transformers', 'CLIPTextModelWithProjection'],
      text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
      text_encoder_3: ['transformers', 'T5EncoderModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      tokenizer_2: ['transformers', 'CLIPTokenizer'],
      tokenizer_3: ['transformers', 'T5TokenizerFast'],
      transformer: ['diffusers', 'SD3Transformer2DModel'],
      vae_decoder: ['diffusers', 'AutoencoderKL'],
      vae_encoder: ['diffusers', 'AutoencoderKL'],
    }),
  );
  // SD3 medium's scheduler: static shift 3.
  files.set(
    'scheduler/scheduler_config.json',
    json({ _class_name: 'FlowMatchEulerDiscreteScheduler', _diffusers_version: '0.32.0', num_train_timesteps: 1000, shift: 3.0 }),
  );
  for (const dir of ['tokenizer', 'tokenizer_2']) {
    files.set(`${dir}/tokenizer.json`, json(clip));
    files.set(`${dir}/tokenizer_config.json`, json(buildTokenizerConfigJson()));
  }
  files.set('tokenizer_3/tokenizer.json', json(t5));
  files.set('tokenizer_3/tokenizer_config.json', json(buildT5TokenizerConfigJson()));
  files.set('text_encoder/model.onnx', clipWithProjectionGraph(clip.model.vocab, false).toBytes());
  files.set('text_encoder_2/model.onnx', clipWithProjectionGraph(clip.model.vocab, true).toBytes());
  files.set('text_encoder_3/model.onnx', t5Graph(t5.model.vocab).toBytes());
  files.set('transformer/model.onnx', transformerGraph(inChannels === SD3_INPAINT_CHANNELS).toBytes());
  files.set(
    'transformer/config.json',
    json({
      _class_name: 'SD3Transformer2DModel',
      in_channels: inChannels,
      patch_size: 2,
      joint_attention_dim: SD3_JOINT_DIM,
      pooled_projection_dim: 2 * HIDDEN,
      num_attention_heads: 1,
    }),
  );
  files.set('vae_encoder/model.onnx', vaeEncoderGraph().toBytes());
  files.set('vae_decoder/model.onnx', vaeDecoderGraph().toBytes());
  const vae = {
    _class_name: 'AutoencoderKL',
    latent_channels: FLOW_LATENT_CHANNELS,
    block_out_channels: [128, 256, 512, 512],
    scaling_factor: SD3_SCALING_FACTOR,
    shift_factor: SD3_SHIFT_FACTOR,
  };
  files.set('vae_encoder/config.json', json(vae));
  files.set('vae_decoder/config.json', json(vae));
  files.set(
    'edit-server.json',
    json({
      description: 'Analytic SD3-layout model (img2img of a fixed colour): exact colour edits.',
      defaults: { steps: 8, size: '64x64' },
      memory: { unetBytesPerLatentPixel: 1024, attentionHeads: 1, vaeBytesPerPixel: 64 },
    }),
  );
  return files;
}
