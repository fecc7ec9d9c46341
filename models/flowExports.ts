/**
 * `tiny-flow-edit`: an analytic model folder in the layout optimum-onnx exports FLUX pipelines
 * (FluxTransformerOnnxConfig, T5EncoderOnnxConfig, CLIPTextOnnxConfig in
 * `optimum/exporters/onnx/model_configs.py`), so that every correct feed converges to an exact
 * colour edit:
 *
 * - tokenizer (CLIP-L): tiny-edit's BPE tokenizer and causal colour-matrix encoder; its
 *   `pooler_output` is the whole prompt's 4×4 colour matrix (→ `pooled_projections`).
 * - tokenizer_2 (T5): a SentencePiece Unigram `tokenizer.json` as T5TokenizerFast writes it
 *   (Metaspace, `$A </s>` template, `<pad>` = 0, `</s>` = 1, `<unk>` = 2), model_max_length 512.
 * - text_encoder_2 (T5): per token 17 values: the token's colour-matrix delta (M − I, zero for
 *   other words) and an end-of-sequence flag. The transformer checks through it that the prompt
 *   ends with exactly one `</s>` (a missing or repeated EOS shifts the output by ½ per EOS).
 * - vae: 16 latent channels, 8× (average-pool encoder, nearest-neighbour decoder of channels
 *   0..2), with FLUX's `scaling_factor` and `shift_factor`: z channels 0..2 are the image in
 *   [-1,1], the others 0; the pipeline's latents are (z − shift)·scale.
 * - transformer: packed latents [B, N, 64] (2×2 patches of 16 channels), `timestep` = σ (FLUX
 *   feeds t/1000), `img_ids` / `txt_ids` with or without the batch dimension (diffusers ≥ 0.31 or
 *   older exports), `guidance` for the guidance-distilled layout. It returns the exact flow
 *   velocity v = (x_σ − x₀)/σ (= ε − x₀) toward x₀ = the colour edit of the reference image:
 *   in the Kontext layout the reference is the second half of the sequence (the appended context
 *   tokens, used only where their first id column is 1), in the img2img layout (the transformer
 *   cannot see the input) the fixed colour `FLOW_IMG2IMG_BASE_RGB`. The sequence lengths of
 *   `img_ids` and `txt_ids` must match the hidden states, or broadcasting fails as a traced graph
 *   would; `timestep` and `guidance` must be rank 1.
 */
import { GraphBuilder } from './onnx/graph.js';
import { EDIT_WORDS, HIDDEN, json, slice, textEncoderGraph } from './tinyEdit.js';
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from './tokenizerBuilder.js';

export const FLUX_SCALING_FACTOR = 0.3611;
export const FLUX_SHIFT_FACTOR = 0.1159;
export const FLOW_LATENT_CHANNELS = 16;
export const FLOW_VAE_FACTOR = 8;
/** T5 hidden size of the fixture: 16 matrix values + the EOS flag. */
export const T5_HIDDEN = 17;
/** The colour the img2img layout edits (RGB in [0,1]). */
export const FLOW_IMG2IMG_BASE_RGB = [0.6, 0.3, 0.2] as const;

export interface FlowFixtureOptions {
  /** FluxKontextPipeline (reference tokens appended) or FluxImg2ImgPipeline. */
  layout: 'kontext' | 'img2img';
  /** `img_ids`/`txt_ids` [B, N, 3] (diffusers < 0.31 exports) instead of [N, 3]. */
  batchedIds?: boolean;
  /** A guidance-distilled transformer (FLUX.1-dev): a `guidance` input [B]. */
  guidance?: boolean;
  /** scheduler_config.json: FLUX.1-dev's dynamic shifting (default) or schnell's static shift 1. */
  dynamicShifting?: boolean;
  /** `--dtype fp16`: every float port (ids, timestep and guidance included) in float16. */
  fp16?: boolean;
}

type Float = 'float32' | 'float16';
const floatOf = (o: FlowFixtureOptions): Float => (o.fp16 ? 'float16' : 'float32');
/** An input declared as `type`, as float32 inside the graph. */
function floatInput(g: GraphBuilder, name: string, type: Float, dims: readonly (number | string)[]): string {
  const x = g.input(name, type, dims);
  return type === 'float32' ? x : g.op1('Cast', [x], { to: 1 });
}
function floatOutput(g: GraphBuilder, name: string, x: string, type: Float, dims: readonly (number | string)[]): void {
  g.output(name, type === 'float32' ? x : g.op1('Cast', [x], { to: 10 }), type, dims);
}

const IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];

/** A T5-style SentencePiece Unigram tokenizer.json holding the edit words as single pieces. */
export function buildT5TokenizerJson(words: readonly string[]): { model: { vocab: [string, number][] } } {
  const pieces: [string, number][] = [
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
    ['\u2581', -2],
  ];
  for (const c of 'abcdefghijklmnopqrstuvwxyz') pieces.push([c, -10], [`\u2581${c}`, -9]);
  for (const w of words) pieces.push([`\u2581${w}`, -1]);
  const special = (id: number, content: string): object => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<pad>'), special(1, '</s>'), special(2, '<unk>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] },
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 2, vocab: pieces, byte_fallback: false },
  } as { model: { vocab: [string, number][] } };
}

/** tokenizer_config.json as transformers writes it for T5TokenizerFast. */
export function buildT5TokenizerConfigJson(maxLength = 512): object {
  return {
    eos_token: '</s>',
    pad_token: '<pad>',
    unk_token: '<unk>',
    extra_ids: 0,
    model_max_length: maxLength,
    tokenizer_class: 'T5Tokenizer',
    clean_up_tokenization_spaces: true,
  };
}

function t5EncoderGraph(pieces: readonly [string, number][], float: Float): GraphBuilder {
  const table = new Float32Array(pieces.length * T5_HIDDEN);
  pieces.forEach(([piece], id) => {
    const word = piece.startsWith('\u2581') ? piece.slice(1) : null;
    const m = word ? EDIT_WORDS[word] : undefined;
    if (m) for (let k = 0; k < 16; k++) table[id * T5_HIDDEN + k] = m[k]! - IDENTITY[k]!;
    if (piece === '</s>') table[id * T5_HIDDEN + 16] = 1;
  });
  const g = new GraphBuilder('tiny_flow_t5_encoder');
  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const hidden = g.op1('Gather', [g.f32(table, [pieces.length, T5_HIDDEN], 't5_embedding'), ids], { axis: 0 });
  floatOutput(g, 'last_hidden_state', hidden, float, ['batch_size', 'sequence_length', T5_HIDDEN]);
  return g;
}

/** [x, 1] of a rank-2 or rank-3 ids tensor, summed over the 3 columns (keeps the sequence axis). */
const idsColumnSum = (g: GraphBuilder, ids: string): string => g.op1('ReduceSum', [ids, g.i64([-1])], { keepdims: 1 });
const zeroOf = (g: GraphBuilder, x: string): string => g.op1('Mul', [x, g.f32([0], [])]);

function transformerGraph(o: FlowFixtureOptions): GraphBuilder {
  const g = new GraphBuilder('tiny_flow_transformer');
  const packed = FLOW_LATENT_CHANNELS * 4;
  const f = floatOf(o);
  const hidden = floatInput(g, 'hidden_states', f, ['batch_size', 'packed_height_width', packed]);
  const text = floatInput(g, 'encoder_hidden_states', f, ['batch_size', 'sequence_length', T5_HIDDEN]);
  const pooled = floatInput(g, 'pooled_projections', f, ['batch_size', HIDDEN]);
  const timestep = floatInput(g, 'timestep', f, ['step']);
  const imgIds = floatInput(g, 'img_ids', f, o.batchedIds ? ['batch_size', 'packed_height_width', 3] : ['packed_height_width', 3]);
  const txtIds = floatInput(g, 'txt_ids', f, o.batchedIds ? ['batch_size', 'sequence_length', 3] : ['sequence_length', 3]);
  const guidance = o.guidance ? floatInput(g, 'guidance', f, ['batch_size']) : null;

  // Sequence-length checks: ids broadcast against the tensors they describe.
  const seqCheck = zeroOf(g, idsColumnSum(g, imgIds)); // [N,1] or [B,N,1]
  const checkedHidden = g.op1('Add', [hidden, seqCheck]);
  const checkedText = g.op1('Add', [text, zeroOf(g, idsColumnSum(g, txtIds))]);

  // Split the sequence: output tokens, then (Kontext) the reference tokens.
  const n = slice(g, g.op1('Shape', [hidden]), 1, 2, 0);
  const half = o.layout === 'kontext' ? g.op1('Div', [n, g.i64([2])]) : n;
  const sliceSeq = (x: string, from: string, to: string): string => g.op1('Slice', [x, from, to, g.i64([1])]);
  const outTokens = sliceSeq(checkedHidden, g.i64([0]), half);

  const sigma = g.op1('Reshape', [timestep, g.i64([-1, 1, 1])]);
  let refRgb: string; // z channels 0..2 of the reference in [-1,1], [B, S, 3, 4]
  if (o.layout === 'kontext') {
    const ref = sliceSeq(checkedHidden, half, n);
    // The reference counts only where its first id column is 1, as FluxKontextPipeline writes it.
    const firstColumn = g.op1('Slice', [imgIds, g.i64([0]), g.i64([1]), g.i64([-1])]);
    // [N, 1] or [B, N, 1]: the sequence is axis −2 in both layouts.
    const refGate = g.op1('Slice', [firstColumn, half, n, g.i64([-2])]);
    const gated = g.op1('Mul', [ref, refGate]);
    const z = g.op1('Add', [g.op1('Div', [gated, g.f32([FLUX_SCALING_FACTOR], [])]), g.f32([FLUX_SHIFT_FACTOR], [])]);
    refRgb = slice(g, g.op1('Reshape', [z, g.i64([0, 0, FLOW_LATENT_CHANNELS, 4])]), 0, 3, 2);
  } else {
    const base = g.f32(
      FLOW_IMG2IMG_BASE_RGB.map((v) => 2 * v - 1),
      [1, 1, 3, 1],
      'base_rgb',
    );
    refRgb = g.op1('Add', [zeroOf(g, slice(g, g.op1('Reshape', [outTokens, g.i64([0, 0, FLOW_LATENT_CHANNELS, 4])]), 0, 3, 2)), base]);
  }

  // The prompt's colour matrix from the CLIP pooled output; T5's EOS count must be exactly 1.
  const edit = g.op1('Reshape', [pooled, g.i64([0, 4, 4])]);
  const linear = slice(g, slice(g, edit, 0, 3, 1), 0, 3, 2); // [B,3,3]
  const offset = g.op1('Unsqueeze', [slice(g, slice(g, edit, 0, 3, 1), 3, 4, 2), g.i64([3])]); // [B,3,1,1]
  const eos = g.op1('ReduceSum', [slice(g, checkedText, 16, 17, 2), g.i64([1, 2])], { keepdims: 0 }); // [B]
  const eosError = g.op1('Reshape', [g.op1('Mul', [g.op1('Sub', [eos, g.f32([1], [])]), g.f32([0.5], [])]), g.i64([-1, 1, 1, 1])]);

  const rgbFirst = g.op1('Transpose', [refRgb], { perm: [0, 2, 1, 3] }); // [B,3,S,4]
  const rgb01 = g.op1('Add', [g.op1('Mul', [rgbFirst, g.f32([0.5], [])]), g.f32([0.5], [])]);
  const flat = g.op1('Reshape', [rgb01, g.i64([0, 3, -1])]);
  const editedFlat = g.op1('MatMul', [linear, flat]); // [B,3,S·4]
  const edited = g.op1('Add', [g.op1('Reshape', [editedFlat, g.op1('Shape', [rgb01])]), offset]);
  const clamped = g.op1('Add', [g.op1('Clip', [edited, g.f32([0], []), g.f32([1], [])]), eosError]);
  const targetRgb = g.op1('Transpose', [g.op1('Sub', [g.op1('Mul', [clamped, g.f32([2], [])]), g.f32([1], [])])], { perm: [0, 2, 1, 3] }); // [B,S,3,4]
  const outGrid = g.op1('Reshape', [outTokens, g.i64([0, 0, FLOW_LATENT_CHANNELS, 4])]);
  const rest = zeroOf(g, slice(g, outGrid, 3, FLOW_LATENT_CHANNELS, 2));
  const z0 = g.op1('Concat', [targetRgb, rest], { axis: 2 });
  const x0 = g.op1('Reshape', [
    g.op1('Mul', [g.op1('Sub', [z0, g.f32([FLUX_SHIFT_FACTOR], [])]), g.f32([FLUX_SCALING_FACTOR], [])]),
    g.op1('Shape', [outTokens]),
  ]);
  let v = g.op1('Div', [g.op1('Sub', [outTokens, x0]), sigma]);
  if (guidance) v = g.op1('Add', [v, g.op1('Reshape', [zeroOf(g, guidance), g.i64([-1, 1, 1])])]);
  const out = o.layout === 'kontext' ? g.op1('Concat', [v, zeroOf(g, sliceSeq(checkedHidden, half, n))], { axis: 1 }) : v;
  floatOutput(g, 'out_hidden_states', out, f, ['batch_size', 'packed_height_width', packed]);
  return g;
}

/** 8× average-pool encoder: mean = [pooled RGB in [-1,1], 0 × 13]; logvar −30. */
function vaeEncoderGraph(float: Float): GraphBuilder {
  const g = new GraphBuilder('tiny_flow_vae_encoder');
  const f = FLOW_VAE_FACTOR;
  const input = floatInput(g, 'sample', float, ['batch_size', 3, 'sample_height', 'sample_width']);
  const pooled = g.op1('AveragePool', [input], { kernel_shape: [f, f], strides: [f, f] });
  const zeros = g.op1('Tile', [zeroOf(g, slice(g, pooled, 0, 1, 1)), g.i64([1, FLOW_LATENT_CHANNELS - 3, 1, 1])]);
  const mean = g.op1('Concat', [pooled, zeros], { axis: 1 });
  const logvar = g.op1('Add', [zeroOf(g, mean), g.f32([-30], [])]);
  floatOutput(g, 'latent_parameters', g.op1('Concat', [mean, logvar], { axis: 1 }), float, [
    'batch_size',
    2 * FLOW_LATENT_CHANNELS,
    `sample_height / ${f}`,
    `sample_width / ${f}`,
  ]);
  return g;
}

function vaeDecoderGraph(float: Float): GraphBuilder {
  const g = new GraphBuilder('tiny_flow_vae_decoder');
  const f = FLOW_VAE_FACTOR;
  const latent = floatInput(g, 'latent_sample', float, ['batch_size', FLOW_LATENT_CHANNELS, 'latent_height', 'latent_width']);
  const up = g.op1('Resize', [slice(g, latent, 0, 3, 1), '', g.f32([1, 1, f, f])], { mode: 'nearest' });
  floatOutput(g, 'sample', up, float, ['batch_size', 3, `latent_height * ${f}`, `latent_width * ${f}`]);
  return g;
}

/** FLUX.1-dev's scheduler_config.json (schnell: no dynamic shifting, shift 1). */
/** model_index.json of a FLUX folder as optimum writes it (components in diffusers' order). */
export function fluxModelIndex(className: string): Uint8Array {
  return json({
    _class_name: className,
    _diffusers_version: '0.32.0',
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'T5EncoderModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'T5TokenizerFast'],
    transformer: ['diffusers', 'FluxTransformer2DModel'],
    vae_decoder: ['diffusers', 'AutoencoderKL'],
    vae_encoder: ['diffusers', 'AutoencoderKL'],
  });
}

export function fluxSchedulerConfig(dynamic: boolean): object {
  return dynamic
    ? {
        _class_name: 'FlowMatchEulerDiscreteScheduler',
        _diffusers_version: '0.32.0',
        base_image_seq_len: 256,
        base_shift: 0.5,
        max_image_seq_len: 4096,
        max_shift: 1.15,
        num_train_timesteps: 1000,
        shift: 3.0,
        use_dynamic_shifting: true,
      }
    : {
        _class_name: 'FlowMatchEulerDiscreteScheduler',
        _diffusers_version: '0.32.0',
        base_image_seq_len: 256,
        base_shift: 0.5,
        max_image_seq_len: 4096,
        max_shift: 1.15,
        num_train_timesteps: 1000,
        shift: 1.0,
        use_dynamic_shifting: false,
      };
}

/** Every file of one tiny-flow-edit folder, path → bytes. */
export function buildFlowEditFiles(o: FlowFixtureOptions = { layout: 'kontext' }): Map<string, Uint8Array> {
  const words = Object.keys(EDIT_WORDS);
  const clip = buildBpeTokenizerJson(words) as { model: { vocab: Record<string, number> } };
  const t5 = buildT5TokenizerJson(words);
  const files = new Map<string, Uint8Array>();
  files.set('model_index.json', fluxModelIndex(o.layout === 'kontext' ? 'FluxKontextPipeline' : 'FluxImg2ImgPipeline'));
  files.set('scheduler/scheduler_config.json', json(fluxSchedulerConfig(o.dynamicShifting ?? true)));
  files.set('tokenizer/tokenizer.json', json(clip));
  files.set('tokenizer/tokenizer_config.json', json(buildTokenizerConfigJson()));
  files.set('tokenizer_2/tokenizer.json', json(t5));
  files.set('tokenizer_2/tokenizer_config.json', json(buildT5TokenizerConfigJson()));
  files.set('text_encoder/model.onnx', textEncoderGraph(clip.model.vocab, { ids: 'int64', float: floatOf(o) }).toBytes());
  files.set(
    'text_encoder/config.json',
    json({ architectures: ['CLIPTextModel'], model_type: 'clip_text_model', hidden_size: HIDDEN, max_position_embeddings: 77 }),
  );
  files.set('text_encoder_2/model.onnx', t5EncoderGraph(t5.model.vocab, floatOf(o)).toBytes());
  files.set('text_encoder_2/config.json', json({ architectures: ['T5EncoderModel'], model_type: 't5', d_model: T5_HIDDEN }));
  files.set('transformer/model.onnx', transformerGraph(o).toBytes());
  files.set(
    'transformer/config.json',
    json({
      _class_name: 'FluxTransformer2DModel',
      _diffusers_version: '0.32.0',
      in_channels: FLOW_LATENT_CHANNELS * 4,
      patch_size: 1,
      joint_attention_dim: T5_HIDDEN,
      pooled_projection_dim: HIDDEN,
      guidance_embeds: !!o.guidance,
      num_attention_heads: 1,
      attention_head_dim: 8,
    }),
  );
  files.set('vae_encoder/model.onnx', vaeEncoderGraph(floatOf(o)).toBytes());
  files.set('vae_decoder/model.onnx', vaeDecoderGraph(floatOf(o)).toBytes());
  const vae = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.32.0',
    in_channels: 3,
    out_channels: 3,
    latent_channels: FLOW_LATENT_CHANNELS,
    block_out_channels: [128, 256, 512, 512],
    scaling_factor: FLUX_SCALING_FACTOR,
    shift_factor: FLUX_SHIFT_FACTOR,
    use_quant_conv: false,
    use_post_quant_conv: false,
  };
  files.set('vae_encoder/config.json', json(vae));
  files.set('vae_decoder/config.json', json(vae));
  files.set(
    'edit-server.json',
    json({
      description: `Analytic FLUX-layout model (${o.layout === 'kontext' ? 'Kontext reference editing' : 'img2img of a fixed colour'}): exact colour edits (grayscale, sepia, invert, brighter, darker, warmer, cooler).`,
      defaults: { steps: 8, size: '64x64' },
      memory: { unetBytesPerLatentPixel: 1024, attentionHeads: 1, vaeBytesPerPixel: 64 },
    }),
  );
  return files;
}
