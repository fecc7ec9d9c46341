/**
 * Test fixtures laid out as real exporters write Stable Diffusion pipelines, each generation with
 * its own port names, dtypes, ranks and files (read from optimum-onnx's
 * `exporters/onnx/model_configs.py` (UNetOnnxConfig, VaeEncoderOnnxConfig, CLIPTextOnnxConfig),
 * optimum's history, and diffusers' `scripts/convert_stable_diffusion_checkpoint_to_onnx.py`):
 *
 * | generation      | unet `timestep`           | text `input_ids` | vae_encoder output  | model_index `_class_name`        | files                  |
 * |-----------------|---------------------------|------------------|---------------------|----------------------------------|------------------------|
 * | optimum-1.22    | int64 [steps]             | int64            | latent_sample       | ORTStableDiffusion…Pipeline      | config.json per part   |
 * | optimum-1.23    | int64 [steps]             | int64            | latent_parameters   | StableDiffusion…Pipeline         | config.json per part   |
 * | optimum-1.24    | float scalar [] (fp16 too)| int64            | latent_parameters   | StableDiffusion…Pipeline         | config.json per part   |
 * | diffusers-onnx  | float32 [batch]           | int32            | latent_sample       | OnnxStableDiffusion…Pipeline     | no part configs, weights.pb, PNDM, vocab.json + merges.txt |
 *
 * The UNet's time path is wired as diffusers' trace is — (Unsqueeze when scalar) → Expand to the
 * batch → Cast → sinusoidal embedding with Concat on axis 1 → MatMul — so a timestep of the wrong
 * rank fails inside the graph exactly as on a real export. The networks are tiny-edit's analytic
 * ones behind an 8× VAE (average-pool encoder, nearest-neighbour decoder), so every correct feed
 * converges to the exact colour edit of an 8×8-block image. The img2img UNet cannot see the
 * input image, so its exact target is the edit of a fixed colour, `IMG2IMG_BASE_RGB`; the
 * inpainting UNet sees only the masked image, so inside the mask its target is the edit of the
 * mid-grey that masking leaves there.
 */
import { GraphBuilder } from './onnx/graph.js';
import type { ElemType } from './onnx/graph.js';
import {
  EDIT_WORDS,
  HIDDEN,
  MAX_LENGTH,
  TINY_EDIT_SCALING_FACTOR,
  editedTarget,
  exactEpsilon,
  json,
  slice,
  textEncoderGraph,
  tinyEditSchedulerConfig,
} from './tinyEdit.js';
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from './tokenizerBuilder.js';

export const EXPORT_GENERATIONS = ['optimum-1.22', 'optimum-1.23', 'optimum-1.24', 'diffusers-onnx'] as const;
export type ExportGeneration = (typeof EXPORT_GENERATIONS)[number];
export type FixtureFamily = 'instruct-pix2pix' | 'img2img' | 'inpaint' | 'sdxl-img2img' | 'sdxl-inpaint';

const UNET_CHANNELS: Record<FixtureFamily, number> = { 'instruct-pix2pix': 8, img2img: 4, inpaint: 9, 'sdxl-img2img': 4, 'sdxl-inpaint': 9 };
const isSdxl = (f: FixtureFamily): boolean => f.startsWith('sdxl');
/** SDXL's VAE scaling factor (its folders ship 0.13025). */
export const SDXL_SCALING_FACTOR = 0.13025;
/** Widths of the fixture's two SDXL encoders' hidden states (CLIP-L 768 and bigG 1280 in SDXL). */
const SDXL_WIDTHS = [HIDDEN, 8] as const;

export interface ExportFixtureOptions {
  generation: ExportGeneration;
  family: FixtureFamily;
  /** `--dtype fp16`: float ports in float16 (optimum-1.24 only, as optimum-cli offers it). */
  fp16?: boolean;
  /** Weights in a separate file (`model.onnx_data`; diffusers' converter: `weights.pb`). */
  externalData?: boolean;
  /**
   * model_index.json `_class_name` in place of the generation's own: diffusers' converter writes
   * OnnxStableDiffusionPipeline whatever the checkpoint (an InstructPix2Pix one included).
   */
  pipelineClass?: string;
}

/** The colour the img2img fixture edits (RGB in [0,1]). */
export const IMG2IMG_BASE_RGB = [0.6, 0.3, 0.2] as const;
export const FIXTURE_VAE_FACTOR = 8;

interface Io {
  timestep: { type: ElemType; rank: 0 | 1 };
  ids: 'int32' | 'int64';
  float: 'float32' | 'float16';
  vaeOutput: 'latent_parameters' | 'latent_sample';
}

function ioOf(o: ExportFixtureOptions): Io {
  const float = o.fp16 ? 'float16' : 'float32';
  switch (o.generation) {
    case 'optimum-1.22':
      return { timestep: { type: 'int64', rank: 1 }, ids: 'int64', float, vaeOutput: 'latent_sample' };
    case 'optimum-1.23':
      return { timestep: { type: 'int64', rank: 1 }, ids: 'int64', float, vaeOutput: 'latent_parameters' };
    case 'optimum-1.24':
      return { timestep: { type: float, rank: 0 }, ids: 'int64', float, vaeOutput: 'latent_parameters' };
    case 'diffusers-onnx':
      return { timestep: { type: 'float32', rank: 1 }, ids: 'int32', float, vaeOutput: 'latent_sample' };
  }
}

const toFloat32 = (g: GraphBuilder, x: string, type: ElemType): string => (type === 'float32' ? x : g.op1('Cast', [x], { to: 1 }));
const fromFloat32 = (g: GraphBuilder, x: string, type: 'float32' | 'float16'): string => (type === 'float32' ? x : g.op1('Cast', [x], { to: 10 }));

/**
 * diffusers' UNet2DConditionModel time path as traced: returns the per-row float timesteps [B]
 * and adds to `eps` a zero derived from the embedding's MatMul, so the path is always evaluated.
 */
function tracedTimesteps(g: GraphBuilder, timestep: string, io: Io, sample: string): { rows: string; use: (eps: string) => string } {
  const ts = io.timestep.rank === 0 ? g.op1('Unsqueeze', [timestep, g.i64([0])]) : timestep;
  const batch = slice(g, g.op1('Shape', [sample]), 0, 1, 0);
  const rows = g.op1('Cast', [g.op1('Expand', [ts, batch])], { to: 1 }); // [B]
  const half = 4;
  const freqs = g.f32(
    Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half)),
    [1, half],
    'freqs',
  );
  const args = g.op1('Mul', [g.op1('Unsqueeze', [rows, g.i64([1])]), freqs]); // [B, half]
  const emb = g.op1('Concat', [g.op1('Sin', [args]), g.op1('Cos', [args])], { axis: 1 }); // [B, 2·half]
  const hidden = g.op1('MatMul', [emb, g.f32(new Float32Array(2 * half * HIDDEN).fill(0.01), [2 * half, HIDDEN], 'time_linear')]); // [B, D]
  const zero = g.op1('Reshape', [g.op1('Mul', [g.op1('ReduceSum', [hidden, g.i64([1])], { keepdims: 1 }), g.f32([0], [])]), g.i64([-1, 1, 1, 1])]);
  return { rows, use: (eps) => g.op1('Add', [eps, zero]) };
}

function unetGraph(o: ExportFixtureOptions, io: Io): GraphBuilder {
  const g = new GraphBuilder('unet');
  const diffusers = o.generation === 'diffusers-onnx';
  const sdxl = isSdxl(o.family);
  const channels = UNET_CHANNELS[o.family];
  const sf = sdxl ? SDXL_SCALING_FACTOR : TINY_EDIT_SCALING_FACTOR;
  const textWidth = sdxl ? SDXL_WIDTHS[0] + SDXL_WIDTHS[1] : HIDDEN;
  const sampleIn = g.input('sample', io.float, diffusers ? ['batch', 'channels', 'height', 'width'] : ['batch_size', channels, 'height', 'width']);
  const timestep = g.input('timestep', io.timestep.type, io.timestep.rank === 0 ? [] : [diffusers ? 'batch' : 'steps']);
  const textIn = g.input('encoder_hidden_states', io.float, diffusers ? ['batch', 'sequence', textWidth] : ['batch_size', 'sequence_length', textWidth]);
  const sample = toFloat32(g, sampleIn, io.float);
  const text = toFloat32(g, textIn, io.float);
  const time = tracedTimesteps(g, timestep, io, sample);
  // conv_in as a real UNet has it, [out, in, 3, 3] on `sample`; zero weights, its output adds 0.
  const convIn = g.op1('Conv', [sample, g.f32(new Float32Array(4 * channels * 9), [4, channels, 3, 3], 'conv_in.weight')], { pads: [1, 1, 1, 1] });
  const convZero = g.op1('ReduceSum', [convIn, g.i64([1, 2, 3])], { keepdims: 1 });
  const noisy = slice(g, sample, 0, 4, 1);
  let imageRgb: string;
  if (o.family === 'instruct-pix2pix') imageRgb = slice(g, sample, 4, 7, 1);
  // [noisy ‖ mask ‖ masked-image latents]: the masked image is all the inpainting UNet sees.
  else if (channels === 9) imageRgb = g.op1('Div', [slice(g, sample, 5, 8, 1), g.f32([sf], [])]);
  else {
    const base = g.f32(
      IMG2IMG_BASE_RGB.map((v) => 2 * v - 1),
      [1, 3, 1, 1],
      'base_rgb',
    );
    imageRgb = g.op1('Add', [g.op1('Mul', [slice(g, sample, 0, 3, 1), g.f32([0], [])]), base]);
  }
  const target = editedTarget(g, imageRgb, sdxl ? slice(g, text, 0, HIDDEN, 2) : text, sample, sf);
  let eps = g.op1('Add', [time.use(exactEpsilon(g, noisy, target, time.rows)), convZero]);
  if (sdxl) eps = g.op1('Add', [eps, sdxlConditioningPenalty(g, io, sample, text)]);
  g.output('out_sample', fromFloat32(g, eps, io.float), io.float, diffusers ? ['batch', 4, 'height', 'width'] : ['batch_size', 4, 'height', 'width']);
  return g;
}

/**
 * SDXL's extra inputs, checked: `text_embeds` must be the second encoder's last-position state,
 * the two encoders' parts of `encoder_hidden_states` must agree, and `time_ids` must be
 * [H, W, 0, 0, H, W] for the output size. Any difference adds 1000× itself to ε (a ruined image).
 */
function sdxlConditioningPenalty(g: GraphBuilder, io: Io, sample: string, text: string): string {
  const [w1, w2] = SDXL_WIDTHS;
  const textEmbeds = toFloat32(g, g.input('text_embeds', io.float, ['batch_size', w2]), io.float);
  const timeIds = toFloat32(g, g.input('time_ids', io.float, ['batch_size', 6]), io.float);
  const last = g.op1('Reshape', [g.op1('Gather', [text, g.i64([-1], [])], { axis: 1 }), g.i64([0, w1 + w2])]);
  const second = slice(g, last, w1, w1 + w2, 1);
  const gap = (a: string, b: string): string => g.op1('ReduceSum', [g.op1('Abs', [g.op1('Sub', [a, b])]), g.i64([1])], { keepdims: 1 });
  const shape = g.op1('Cast', [g.op1('Shape', [sample])], { to: 1 });
  const side = (axis: number): string => g.op1('Mul', [slice(g, shape, axis, axis + 1, 0), g.f32([FIXTURE_VAE_FACTOR], [])]);
  const zero = g.f32([0]);
  const expected = g.op1('Concat', [side(2), side(3), zero, zero, side(2), side(3)], { axis: 0 });
  const total = g.op1('Add', [g.op1('Add', [gap(textEmbeds, second), gap(second, slice(g, last, 0, w2, 1))]), gap(timeIds, expected)]);
  return g.op1('Reshape', [g.op1('Mul', [total, g.f32([1000], [])]), g.i64([-1, 1, 1, 1])]);
}

/** 8× average-pool encoder: mean = [pooled RGB in [-1,1], 0]; logvar −30. */
function vaeEncoderGraph(o: ExportFixtureOptions, io: Io): GraphBuilder {
  const g = new GraphBuilder('vae_encoder');
  const f = FIXTURE_VAE_FACTOR;
  const input = g.input(
    'sample',
    io.float,
    o.generation === 'diffusers-onnx' ? ['batch', 'channels', 'height', 'width'] : ['batch_size', 3, 'sample_height', 'sample_width'],
  );
  const pooled = g.op1('AveragePool', [toFloat32(g, input, io.float)], { kernel_shape: [f, f], strides: [f, f] });
  const mean = g.op1('Concat', [pooled, g.op1('Mul', [slice(g, pooled, 0, 1, 1), g.f32([0], [])])], { axis: 1 });
  const logvar = g.op1('Add', [g.op1('Mul', [mean, g.f32([0], [])]), g.f32([-30], [])]);
  if (io.vaeOutput === 'latent_parameters') {
    const params = g.op1('Concat', [mean, logvar], { axis: 1 });
    g.output('latent_parameters', fromFloat32(g, params, io.float), io.float, ['batch_size', 8, `sample_height / ${f}`, `sample_width / ${f}`]);
  } else {
    // DiagonalGaussianDistribution.sample() traced: mean + std·N(0,1), drawn inside the graph.
    const std = g.op1('Exp', [g.op1('Mul', [logvar, g.f32([0.5], [])])]);
    const drawn = g.op1('Add', [mean, g.op1('Mul', [std, g.op1('RandomNormalLike', [mean], { dtype: 1 })])]);
    g.output('latent_sample', fromFloat32(g, drawn, io.float), io.float, ['batch_size', 4, `sample_height / ${f}`, `sample_width / ${f}`]);
  }
  return g;
}

/** Nearest-neighbour 8× decoder of latent channels 0..2. */
function vaeDecoderGraph(o: ExportFixtureOptions, io: Io): GraphBuilder {
  const g = new GraphBuilder('vae_decoder');
  const f = FIXTURE_VAE_FACTOR;
  const latent = g.input(
    'latent_sample',
    io.float,
    o.generation === 'diffusers-onnx' ? ['batch', 'channels', 'height', 'width'] : ['batch_size', 4, 'latent_height', 'latent_width'],
  );
  const rgb = slice(g, toFloat32(g, latent, io.float), 0, 3, 1);
  const up = g.op1('Resize', [rgb, '', g.f32([1, 1, f, f])], { mode: 'nearest' });
  g.output('sample', fromFloat32(g, up, io.float), io.float, ['batch_size', 3, `latent_height * ${f}`, `latent_width * ${f}`]);
  return g;
}

const PIPELINE_CLASS: Record<ExportGeneration, Record<FixtureFamily, string>> = {
  'optimum-1.22': {
    'instruct-pix2pix': 'ORTStableDiffusionInstructPix2PixPipeline',
    img2img: 'ORTStableDiffusionImg2ImgPipeline',
    inpaint: 'ORTStableDiffusionInpaintPipeline',
    'sdxl-img2img': 'ORTStableDiffusionXLImg2ImgPipeline',
    'sdxl-inpaint': 'ORTStableDiffusionXLInpaintPipeline',
  },
  'optimum-1.23': {
    'instruct-pix2pix': 'StableDiffusionInstructPix2PixPipeline',
    img2img: 'StableDiffusionImg2ImgPipeline',
    inpaint: 'StableDiffusionInpaintPipeline',
    'sdxl-img2img': 'StableDiffusionXLImg2ImgPipeline',
    'sdxl-inpaint': 'StableDiffusionXLInpaintPipeline',
  },
  'optimum-1.24': {
    'instruct-pix2pix': 'StableDiffusionInstructPix2PixPipeline',
    img2img: 'StableDiffusionPipeline',
    inpaint: 'StableDiffusionInpaintPipeline',
    'sdxl-img2img': 'StableDiffusionXLPipeline',
    'sdxl-inpaint': 'StableDiffusionXLInpaintPipeline',
  },
  'diffusers-onnx': {
    'instruct-pix2pix': 'OnnxStableDiffusionInstructPix2PixPipeline',
    img2img: 'OnnxStableDiffusionPipeline',
    inpaint: 'OnnxStableDiffusionInpaintPipeline',
    'sdxl-img2img': '',
    'sdxl-inpaint': '',
  },
};

/** SDXL base 1.0's EulerDiscreteScheduler config, keys of other schedulers included, as it ships. */
export const SDXL_SCHEDULER_CONFIG = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.19.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
  use_karras_sigmas: false,
};

/** SD 1.x's PNDM config as every SD 1.x folder ships it (diffusers-onnx fixtures). */
export const SD15_PNDM_SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.24.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
};

/** transformers' saved CLIP tokenizer files (slow vocab.json + merges.txt, and the maps). */
function clipSlowTokenizerFiles(tokenizer: { model: { vocab: Record<string, number>; merges: (string | [string, string])[] } }): [string, Uint8Array][] {
  const merges = tokenizer.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const special = (content: string): object => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });
  return [
    ['tokenizer/vocab.json', json(tokenizer.model.vocab)],
    ['tokenizer/merges.txt', new TextEncoder().encode(`#version: 0.2\n${merges.join('\n')}\n`)],
    [
      'tokenizer/special_tokens_map.json',
      json({ bos_token: special('<|startoftext|>'), eos_token: special('<|endoftext|>'), pad_token: '<|endoftext|>', unk_token: special('<|endoftext|>') }),
    ],
  ];
}

/** Every file of one fixture folder, path → bytes. */
export function buildExportFixture(o: ExportFixtureOptions): Map<string, Uint8Array> {
  if (o.fp16 && o.generation !== 'optimum-1.24') throw new Error('fp16 fixtures are made for optimum-1.24');
  if (isSdxl(o.family) && o.generation === 'diffusers-onnx') throw new Error("diffusers' ONNX converter does not export SDXL");
  const sdxl = isSdxl(o.family);
  const io = ioOf(o);
  const diffusers = o.generation === 'diffusers-onnx';
  const tokenizer = buildBpeTokenizerJson(Object.keys(EDIT_WORDS)) as { model: { vocab: Record<string, number>; merges: (string | [string, string])[] } };
  const files = new Map<string, Uint8Array>();
  const component = diffusers ? ['diffusers', 'OnnxRuntimeModel'] : null;
  files.set(
    'model_index.json',
    json({
      _class_name: o.pipelineClass ?? PIPELINE_CLASS[o.generation][o.family],
      ...(sdxl
        ? {
            force_zeros_for_empty_prompt: true,
            requires_aesthetics_score: false,
            text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
            tokenizer_2: ['transformers', 'CLIPTokenizer'],
          }
        : {}),
      _diffusers_version: diffusers ? '0.24.0' : '0.30.0',
      feature_extractor: ['transformers', 'CLIPImageProcessor'],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', diffusers ? 'PNDMScheduler' : 'EulerAncestralDiscreteScheduler'],
      text_encoder: component ?? ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: component ?? ['diffusers', 'UNet2DConditionModel'],
      vae_decoder: component ?? ['diffusers', 'AutoencoderKL'],
      vae_encoder: component ?? ['diffusers', 'AutoencoderKL'],
    }),
  );
  files.set('scheduler/scheduler_config.json', json(diffusers ? SD15_PNDM_SCHEDULER_CONFIG : sdxl ? SDXL_SCHEDULER_CONFIG : tinyEditSchedulerConfig));
  files.set('tokenizer/tokenizer_config.json', json(buildTokenizerConfigJson()));
  if (diffusers) for (const [path, bytes] of clipSlowTokenizerFiles(tokenizer)) files.set(path, bytes);
  else files.set('tokenizer/tokenizer.json', json(tokenizer));

  const dataFile = diffusers ? 'weights.pb' : 'model.onnx_data';
  const put = (part: string, g: GraphBuilder, external: boolean): void => {
    if (!external) return void files.set(`${part}/model.onnx`, g.toBytes());
    const { model, data } = g.toExternalData(dataFile);
    files.set(`${part}/model.onnx`, model);
    files.set(`${part}/${dataFile}`, data);
  };
  if (sdxl) {
    put('text_encoder', textEncoderGraph(tokenizer.model.vocab, { ids: io.ids, float: io.float, sdxl: { width: SDXL_WIDTHS[0], projection: false } }), false);
    put('text_encoder_2', textEncoderGraph(tokenizer.model.vocab, { ids: io.ids, float: io.float, sdxl: { width: SDXL_WIDTHS[1], projection: true } }), false);
    // SDXL's second tokenizer pads with "!".
    files.set('tokenizer_2/tokenizer.json', json(tokenizer));
    files.set('tokenizer_2/tokenizer_config.json', json({ ...buildTokenizerConfigJson(), pad_token: '!' }));
    files.set(
      'tokenizer_2/special_tokens_map.json',
      json({ bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '!', unk_token: '<|endoftext|>' }),
    );
  } else put('text_encoder', textEncoderGraph(tokenizer.model.vocab, { ids: io.ids, float: io.float }), false);
  // diffusers' converter always splits the UNet's weights out (it is > 2 GB in fp32).
  put('unet', unetGraph(o, io), diffusers || !!o.externalData);
  put('vae_encoder', vaeEncoderGraph(o, io), false);
  put('vae_decoder', vaeDecoderGraph(o, io), false);

  if (!diffusers) {
    const vae = {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.30.0',
      in_channels: 3,
      out_channels: 3,
      latent_channels: 4,
      block_out_channels: [128, 256, 512, 512],
      down_block_types: Array(4).fill('DownEncoderBlock2D'),
      up_block_types: Array(4).fill('UpDecoderBlock2D'),
      sample_size: sdxl ? 1024 : 512,
      scaling_factor: sdxl ? SDXL_SCALING_FACTOR : TINY_EDIT_SCALING_FACTOR,
      ...(sdxl ? { force_upcast: true } : {}),
    };
    files.set(
      'text_encoder/config.json',
      json({
        architectures: ['CLIPTextModel'],
        model_type: 'clip_text_model',
        hidden_size: HIDDEN,
        max_position_embeddings: MAX_LENGTH,
        vocab_size: Object.keys(tokenizer.model.vocab).length,
      }),
    );
    files.set(
      'unet/config.json',
      json({
        _class_name: 'UNet2DConditionModel',
        _diffusers_version: '0.30.0',
        in_channels: UNET_CHANNELS[o.family],
        out_channels: 4,
        sample_size: sdxl ? 128 : 64,
        cross_attention_dim: sdxl ? SDXL_WIDTHS[0] + SDXL_WIDTHS[1] : HIDDEN,
        time_cond_proj_dim: null,
        ...(sdxl ? { addition_embed_type: 'text_time', addition_time_embed_dim: 256, projection_class_embeddings_input_dim: SDXL_WIDTHS[1] + 6 * 256 } : {}),
      }),
    );
    if (sdxl)
      files.set(
        'text_encoder_2/config.json',
        json({
          architectures: ['CLIPTextModelWithProjection'],
          model_type: 'clip_text_model',
          hidden_size: SDXL_WIDTHS[1],
          projection_dim: SDXL_WIDTHS[1],
          max_position_embeddings: MAX_LENGTH,
          vocab_size: Object.keys(tokenizer.model.vocab).length,
        }),
      );
    files.set('vae_encoder/config.json', json(vae));
    files.set('vae_decoder/config.json', json(vae));
  }
  return files;
}
