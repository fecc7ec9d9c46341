/**
 * Qwen-Image-Edit (diffusers' QwenImageEditPipeline) and Qwen-Image-Edit-2509/2511
 * (QwenImageEditPlusPipeline) on the project's ONNX layout (docs/models.md, "Qwen-Image-Edit: the
 * ONNX layout"):
 *
 * - prompts: the chat template with the condition images' vision blocks (Plus: "Picture i: " before
 *   each), tokenised by the processor's Qwen2 tokenizer, `<|image_pad|>` expanded to each image's
 *   merged patches; Qwen2.5-VL's last hidden state with the first 64 tokens (the system prefix)
 *   dropped, right-padded with zeros to the batch's longest and masked. The negative prompt is
 *   encoded with the same images. Prompts are not cut to `max_sequence_length` (it is only
 *   checked, ≤ 1024, as diffusers does).
 * - the condition images (`conditionsOf`): Plus's references, then the input; each at
 *   `calculate_dimensions(1024², its aspect)` (Edit: that image is also the vision input; Plus:
 *   the vision input is at 384² at its aspect), VAE-encoded (the mode), normalised per channel
 *   with `latents_mean`/`latents_std`, packed 2×2 and appended image by image to every row's tokens.
 * - latents: noise [B, 16, h, w] from each item's generator, packed to [B, (h/2)(w/2), 64].
 * - timesteps: FLOW_MATCH_EULER, σ = linspace(1, 1/n, n), `mu` from the noise token count (the
 *   folder's exponential shift and `shift_terminal`); `timestep` fed as σ.
 * - RoPE as inputs (rope.ts): the noise grid as image 0, the condition images as 1, 2, ….
 * - true CFG (`trueCfgScale` > 1 and a negative prompt): the negative rows in the same transformer
 *   call, v = v⁻ + s·(v⁺ − v⁻) rescaled per token to ‖v⁺‖.
 * - 2511 (`zero_cond_t`): `modulate_index` marks the condition tokens.
 * - decode: unpack, z·std + mean, the VAE decoder.
 *
 * Every row of one transformer call shares the token layout (RoPE is per call), which holds
 * because a micro-batch has one output size and one reference layout (editRunner's planBatches).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InferenceError } from '../../errors.js';
import type { ModelDefaults, ModelSpec } from '../../modelTypes.js';
import { calculateShift, fluxSigmas, imageSeqLen, parseFlowMatchSchedulerConfig } from '../../schedulers/flowMatchEuler.js';
import type { LatentShape, PipelineContext, PipelineItem, PipelineParams, StepInfo } from '../common.js';
import { decodeUnscaled, drawNoise, latentShapeFor } from '../common.js';
import type { FamilyStages, PipelineFamilyDef, PreparedLatents } from '../family.js';
import { patchSizeMultiple, transformerRole } from '../family.js';
import { packLatents, trueCfgActive, unpackLatents } from '../flux.js';
import { parseVisionProcessorConfig, processImage, QWEN2VL_PROCESSOR, smartResize, type VisionProcessorConfig } from './processor.js';
import {
  editPlusPromptText,
  editPromptText,
  expandImagePads,
  IMAGE_PAD,
  loadQwenTokenizer,
  MAX_SEQUENCE_LENGTH,
  mropePositions,
  PROMPT_DROP,
  type QwenTokenizer,
} from './prompt.js';
import { resizePlanar } from './resize.js';
import { type ImageShape, imageRope, ROPE_AXES, textRope } from './rope.js';
import { CONDITION_IMAGE_AREA, calculateDimensions, type Dimensions, VAE_IMAGE_AREA } from './sizing.js';

const PACK = 2;

/** diffusers' QwenImageEditPipeline.__call__ defaults: 50 steps, true_cfg_scale 4 (with a negative prompt), 1 MP. */
const QWEN_DEFAULTS: ModelDefaults = {
  steps: 50,
  guidanceScale: 1,
  imageGuidanceScale: null,
  strength: null,
  scheduler: 'FLOW_MATCH_EULER',
  size: '1024x1024',
  trueCfgScale: 4,
  maxSequenceLength: 512,
};
/** Qwen-Image-Lightning merges (their scheduler shifts by ln 3 at every size, no terminal stretch): 8 steps, no true CFG. */
const LIGHTNING_DEFAULTS: ModelDefaults = { ...QWEN_DEFAULTS, steps: 8, trueCfgScale: 1 };

type Json = Record<string, unknown>;

/** What the family reads of a folder besides its ONNX files: the processor, the VAE's statistics, the areas. */
interface QwenFolder {
  tokenizer: QwenTokenizer;
  vision: VisionProcessorConfig;
  latentsMean: Float32Array;
  latentsStd: Float32Array;
  /** The VAE condition's area (diffusers: 1024²); edit-server.json `qwen.conditionArea`. */
  conditionArea: number;
  /** Plus: the vision input's area (384²); edit-server.json `qwen.visionArea`. */
  visionArea: number;
  /** transformer/config.json `axes_dims_rope`. */
  ropeAxes: readonly [number, number, number];
}

function readJson(path: string): Json {
  return JSON.parse(readFileSync(path, 'utf8')) as Json;
}

/** edit-server.json's `qwen` block: positive integer areas in pixels. */
function parseAreas(server: Json | undefined, where: string): { conditionArea: number; visionArea: number } {
  const raw = server?.qwen;
  if (raw === undefined) return { conditionArea: VAE_IMAGE_AREA, visionArea: CONDITION_IMAGE_AREA };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: "qwen" must be an object`);
  const r = raw as Json;
  for (const key of Object.keys(r)) if (key !== 'conditionArea' && key !== 'visionArea') throw new Error(`${where}: unknown key qwen.${key}`);
  const area = (key: string, fallback: number): number => {
    const v = r[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 32 * 32 || v > 4096 * 4096)
      throw new Error(`${where}: qwen.${key} must be an integer number of pixels from 1024 to 16777216 (got ${JSON.stringify(v)})`);
    return v;
  };
  return { conditionArea: area('conditionArea', VAE_IMAGE_AREA), visionArea: area('visionArea', CONDITION_IMAGE_AREA) };
}

/** The folder's condition and vision areas (edit-server.json `qwen`). */
function readAreas(dir: string): { conditionArea: number; visionArea: number } {
  const serverPath = join(dir, 'edit-server.json');
  return parseAreas(existsSync(serverPath) ? readJson(serverPath) : undefined, serverPath);
}

/** Per model as read (a reloaded folder is a new spec): its areas, and what the run reads of its folder. */
const areas = new WeakMap<ModelSpec, { conditionArea: number; visionArea: number }>();
const folders = new WeakMap<ModelSpec, QwenFolder>();

function areasOf(spec: ModelSpec): { conditionArea: number; visionArea: number } {
  let known = areas.get(spec);
  if (!known) {
    known = readAreas(spec.dir);
    areas.set(spec, known);
  }
  return known;
}

/** transformer/config.json `axes_dims_rope` (three even numbers), else Qwen-Image's. */
function ropeAxesOf(dir: string): readonly [number, number, number] {
  const path = join(dir, 'transformer', 'config.json');
  const v = existsSync(path) ? readJson(path).axes_dims_rope : undefined;
  if (v === undefined) return ROPE_AXES;
  if (!Array.isArray(v) || v.length !== 3 || !v.every((d) => Number.isInteger(d) && d > 0 && d % 2 === 0))
    throw new InferenceError('MODEL_ERROR', `${path}: axes_dims_rope must be three positive even numbers`);
  return v as [number, number, number];
}

function channelStats(config: Json, key: string, channels: number, fallback: number): Float32Array {
  const v = config[key];
  if (v === undefined || v === null) return new Float32Array(channels).fill(fallback);
  if (!Array.isArray(v) || v.length !== channels || !v.every((x) => typeof x === 'number'))
    throw new Error(`VAE config: ${key} must be ${channels} numbers (z_dim)`);
  return Float32Array.from(v as number[]);
}

function qwenFolder(spec: ModelSpec): QwenFolder {
  const known = folders.get(spec);
  if (known) return known;
  const processorDir = join(spec.dir, 'processor');
  const vaePath = [join(spec.dir, 'vae_decoder', 'config.json'), join(spec.dir, 'vae_encoder', 'config.json')].find((p) => existsSync(p));
  const vae = vaePath ? readJson(vaePath) : {};
  const preprocessor = join(processorDir, 'preprocessor_config.json');
  const folder: QwenFolder = {
    tokenizer: loadQwenTokenizer(processorDir),
    vision: parseVisionProcessorConfig(existsSync(preprocessor) ? readJson(preprocessor) : {}, preprocessor),
    latentsMean: channelStats(vae, 'latents_mean', spec.latentChannels, 0),
    latentsStd: channelStats(vae, 'latents_std', spec.latentChannels, 1),
    ...areasOf(spec),
    ropeAxes: ropeAxesOf(spec.dir),
  };
  folders.set(spec, folder);
  return folder;
}

/** The condition image's size for an output of width × height (diffusers' 1 MP at the input's aspect). */
function conditionSize(folder: Pick<QwenFolder, 'conditionArea'>, width: number, height: number): { width: number; height: number } {
  return calculateDimensions(folder.conditionArea, width / height);
}

/** Planar RGB at another size (Pillow's LANCZOS, as diffusers' VaeImageProcessor.resize); the same array when the size holds. */
function resized(image: Float32Array, width: number, height: number, to: { width: number; height: number }): Float32Array {
  return to.width === width && to.height === height ? image : resizePlanar(image, width, height, to.width, to.height, 'lanczos');
}

/** Ids for images within one run (variants of an input share their array), for the embedding cache. */
const imageIds = new WeakMap<Float32Array, number>();
let nextImageId = 0;
function imageId(image: Float32Array): number {
  let id = imageIds.get(image);
  if (id === undefined) {
    id = nextImageId++;
    imageIds.set(image, id);
  }
  return id;
}

interface QwenConditioning {
  /** [rows, length, hidden], zero-padded. */
  embeds: Float32Array;
  /** [rows, length]: 1 kept, 0 padding. */
  mask: Int32Array;
  rows: number;
  length: number;
  hidden: number;
}

interface QwenLatents extends PreparedLatents {
  vaeShape: LatentShape;
  /** Per item: its condition images' packed tokens, one after another. */
  condition: Float32Array[];
  conditionTokens: number;
  noiseTokens: number;
  shapes: ImageShape[];
}

/**
 * One condition image of an output: its pixels (planar [0,1]) and their size, and the sizes the
 * VAE and the vision encoder see it at (diffusers resizes each image of the list on its own).
 */
interface Condition {
  image: Float32Array;
  width: number;
  height: number;
  vae: Dimensions;
  vision: Dimensions;
}

/**
 * An item's condition images in diffusers' list order: the references, then the input (the last
 * image, whose aspect ratio the output has, as diffusers sizes its output by the last image).
 * The input's sizes follow the output's aspect ratio (the input is decoded at the output size);
 * a reference's follow its own, as diffusers resizes each image of its list from the image
 * itself: the condition area (`referenceSize`) and the vision area at its aspect ratio (Plus;
 * Edit takes no references).
 */
function conditionsOf(folder: QwenFolder, item: PipelineItem, params: PipelineParams, plus: boolean): Condition[] {
  const vae = conditionSize(folder, params.width, params.height);
  const input: Condition = {
    image: item.image,
    width: params.width,
    height: params.height,
    vae,
    vision: plus ? calculateDimensions(folder.visionArea, params.width / params.height) : vae,
  };
  const references = (item.references ?? []).map(
    (r): Condition => ({
      image: r.data,
      width: r.width,
      height: r.height,
      vae: referenceSize(folder, r.source),
      vision: calculateDimensions(folder.visionArea, r.source.width / r.source.height),
    }),
  );
  return [...references, input];
}

/** A reference image's condition size: the condition area at its own aspect ratio (at least 32 pixels a side, where diffusers' rounding would give 0). */
function referenceSize(folder: Pick<QwenFolder, 'conditionArea'>, source: Dimensions): Dimensions {
  const size = calculateDimensions(folder.conditionArea, source.width / source.height);
  return { width: Math.max(32, size.width), height: Math.max(32, size.height) };
}

function embeddingKey(prompt: string, conditions: readonly Condition[], plus: boolean): string {
  return `qwen${plus ? '+' : ''}\u0000${conditions.map((c) => imageId(c.image)).join(',')}\u0000${prompt}`;
}

/** Encodes every (prompt, condition images) pair not cached yet in one text encoder call. */
async function encodePairs(ctx: PipelineContext, folder: QwenFolder, pairs: { prompt: string; conditions: Condition[] }[], plus: boolean): Promise<void> {
  const missing = new Map<string, { prompt: string; conditions: Condition[] }>();
  for (const p of pairs) {
    const key = embeddingKey(p.prompt, p.conditions, plus);
    if (!ctx.embeddings.has(key) && !missing.has(key)) missing.set(key, p);
  }
  if (missing.size === 0) return;
  const { tokenizer } = folder;
  const padId = tokenizer.idOf(IMAGE_PAD);
  const visionOf = new Map<Float32Array, ReturnType<typeof processImage>>();
  const vision = (c: Condition): ReturnType<typeof processImage> => {
    let v = visionOf.get(c.image);
    if (!v) {
      v = processImage(resized(c.image, c.width, c.height, c.vision), c.vision.width, c.vision.height, folder.vision);
      visionOf.set(c.image, v);
    }
    return v;
  };
  const rows = [...missing.values()].map(({ prompt, conditions }) => {
    const vs = conditions.map(vision);
    const text = plus ? editPlusPromptText(prompt, conditions.length) : editPromptText(prompt);
    const ids = expandImagePads(
      tokenizer.encode(text),
      padId,
      vs.map((v) => v.tokens),
    );
    return { ids, vs };
  });
  const length = Math.max(...rows.map((r) => r.ids.length));
  const inputIds = new Int32Array(rows.length * length).fill(tokenizer.padId);
  const attention = new Int32Array(rows.length * length);
  rows.forEach((r, i) => {
    inputIds.set(r.ids, i * length);
    attention.fill(1, i * length, i * length + r.ids.length);
  });
  // Each row's images, in row order, each row's in list order (rows never share an entry: the processor takes one image per vision block).
  const images = rows.flatMap((r) => r.vs);
  const first = images[0]!;
  const patchRow = first.pixelValues.length / (first.grid[0] * first.grid[1] * first.grid[2]);
  const pixelValues = new Float32Array(images.reduce((n, v) => n + v.pixelValues.length, 0));
  const grids = new Int32Array(images.length * 3);
  let o = 0;
  images.forEach((v, i) => {
    pixelValues.set(v.pixelValues, o);
    o += v.pixelValues.length;
    grids.set(v.grid, i * 3);
  });
  const feeds: Record<string, { data: Float32Array | Int32Array; dims: number[] }> = {
    input_ids: { data: inputIds, dims: [rows.length, length] },
    attention_mask: { data: attention, dims: [rows.length, length] },
    pixel_values: { data: pixelValues, dims: [pixelValues.length / patchRow, patchRow] },
    image_grid_thw: { data: grids, dims: [images.length, 3] },
  };
  // Exports that take Qwen2.5-VL's M-RoPE positions as an input (get_rope_index is data-dependent).
  if (ctx.sessions.hasInput('textEncoder', 'position_ids')) {
    const positions = mropePositions(
      rows.map((r) => r.ids),
      rows.map((r) => r.vs.map((v) => v.grid)),
      padId,
      length,
      folder.vision.mergeSize,
    );
    feeds.position_ids = { data: positions, dims: [3, rows.length, length] };
  }
  const hidden = await ctx.sessions.run('textEncoder', feeds, 'last_hidden_state');
  const width = hidden.length / (rows.length * length);
  [...missing.keys()].forEach((key, i) => {
    const valid = rows[i]!.ids.length;
    if (valid <= PROMPT_DROP) throw new InferenceError('MODEL_ERROR', `the prompt template gave ${valid} tokens, not more than the ${PROMPT_DROP} dropped`);
    ctx.embeddings.set(key, hidden.slice((i * length + PROMPT_DROP) * width, (i * length + valid) * width));
  });
  ctx.embeddings.set(HIDDEN_KEY, Float32Array.of(width));
}

/** The cache entry holding the text encoder's hidden width. */
const HIDDEN_KEY = 'qwen\u0000hidden';

function qwenStages(plus: boolean): FamilyStages<QwenConditioning, QwenLatents> {
  return {
    async encodePrompt(ctx, items, params) {
      const folder = qwenFolder(ctx.sessions.spec);
      const cfg = trueCfgActive(params);
      const conditions = items.map((i) => conditionsOf(folder, i, params, plus));
      const pairs = items.map((i, k) => ({ prompt: i.prompt, conditions: conditions[k]! }));
      const negatives = cfg ? items.map((_, k) => ({ prompt: params.negativePrompt, conditions: conditions[k]! })) : [];
      await encodePairs(ctx, folder, [...negatives, ...pairs], plus);
      // Rows: [negative × B,] positive × B.
      const keys = [...negatives, ...pairs].map((p) => embeddingKey(p.prompt, p.conditions, plus));
      return stackRows(
        keys.map((k) => ctx.embeddings.get(k)!),
        ctx.embeddings.get(HIDDEN_KEY)![0]!,
      );
    },

    async prepareLatents(ctx, items, params, _schedule, generators) {
      const spec = ctx.sessions.spec;
      const folder = qwenFolder(spec);
      if (items.some((i) => i.mask)) throw new InferenceError('BAD_USER_INPUT', `model ${spec.id} (${spec.family.describe}) does not take masks; send no mask`);
      const batch = items.length;
      const shape = latentShapeFor(ctx, params);
      const f = spec.vaeScaleFactor;
      const itemSize = shape.channels * shape.height * shape.width;
      // Every item's condition images; one transformer call has one token layout (RoPE is per call).
      const conditions = items.map((i) => conditionsOf(folder, i, params, plus));
      const layout = conditions[0]!.map((c) => c.vae);
      const layoutKey = (cs: readonly Condition[]): string => cs.map((c) => `${c.vae.width}x${c.vae.height}`).join(',');
      if (conditions.some((cs) => layoutKey(cs) !== layoutKey(conditions[0]!)))
        throw new InferenceError('INTERNAL', 'the items of one micro-batch have condition images of different sizes');
      const condShapes: LatentShape[] = layout.map((size) => ({ channels: shape.channels, height: size.height / f, width: size.width / f }));
      if (shape.height % PACK || shape.width % PACK || condShapes.some((c) => c.height % PACK || c.width % PACK))
        throw new InferenceError('BAD_USER_INPUT', `Qwen-Image sizes must be multiples of ${f * PACK} pixels (got ${params.width}x${params.height})`);
      // The condition latents of each distinct image: the VAE's mode, normalised per channel,
      // packed; one VAE call per size.
      const distinct = new Map<Float32Array, Condition>();
      for (const cs of conditions) for (const c of cs) distinct.set(c.image, c);
      const bySize = new Map<string, Condition[]>();
      for (const c of distinct.values()) {
        const key = `${c.vae.width}x${c.vae.height}`;
        bySize.set(key, [...(bySize.get(key) ?? []), c]);
      }
      const packed = new Map<Float32Array, Float32Array>();
      for (const group of bySize.values()) {
        const { vae: size } = group[0]!;
        const condShape: LatentShape = { channels: shape.channels, height: size.height / f, width: size.width / f };
        const condSize = condShape.channels * condShape.height * condShape.width;
        const pixels = 3 * size.width * size.height;
        const images = new Float32Array(group.length * pixels);
        group.forEach((c, i) => {
          const rgb = resized(c.image, c.width, c.height, size);
          for (let k = 0; k < pixels; k++) images[i * pixels + k] = 2 * rgb[k]! - 1;
        });
        const encoded = await ctx.sessions.run(
          'vaeEncoder',
          { sample: { data: images, dims: [group.length, 3, size.height, size.width] } },
          ctx.sessions.vaeEncoderOutput,
        );
        const perImage = (ctx.sessions.vaeEncoderOutput === 'latent_parameters' ? 2 : 1) * condSize;
        const plane = condShape.height * condShape.width;
        group.forEach((c, i) => {
          const z = encoded.slice(i * perImage, i * perImage + condSize);
          for (let ch = 0; ch < condShape.channels; ch++) {
            const m = folder.latentsMean[ch]!;
            const s = folder.latentsStd[ch]!;
            for (let p = 0; p < plane; p++) z[ch * plane + p] = (z[ch * plane + p]! - m) / s;
          }
          packed.set(c.image, packLatents(z, 1, condShape));
        });
      }
      const condition = conditions.map((cs) => {
        const parts = cs.map((c) => packed.get(c.image)!);
        if (parts.length === 1) return parts[0]!;
        const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          all.set(p, o);
          o += p.length;
        }
        return all;
      });
      // Noise [B, 16, h, w] (diffusers draws [B, 1, 16, h, w]: the same order), packed.
      const latents = packLatents(drawNoise(generators, itemSize, ctx.scratch.floats(batch * itemSize)), batch, shape, ctx.scratch.floats(batch * itemSize));
      const noiseTokens = (shape.height / PACK) * (shape.width / PACK);
      const conditionTokens = condShapes.reduce((n, c) => n + (c.height / PACK) * (c.width / PACK), 0);
      const unpacked = ctx.scratch.floats(batch * itemSize);
      const { scalingFactor, shiftFactor } = spec;
      const planeOut = shape.height * shape.width;
      return {
        latents,
        shape: { channels: shape.channels * PACK * PACK, height: noiseTokens, width: 1 },
        blend: null,
        // Previews see the x₀ estimate in the VAE's scale, as the preview projection was fitted.
        preview: (info: StepInfo): StepInfo => {
          const z = unpackLatents(info.predOriginal, batch, shape, unpacked);
          for (let b = 0; b < batch; b++) {
            for (let c = 0; c < shape.channels; c++) {
              const o = (b * shape.channels + c) * planeOut;
              const m = folder.latentsMean[c]!;
              const s = folder.latentsStd[c]!;
              for (let p = 0; p < planeOut; p++) z[o + p] = (z[o + p]! * s + m - shiftFactor) * scalingFactor;
            }
          }
          return { ...info, predOriginal: z, latentChannels: shape.channels, latentHeight: shape.height, latentWidth: shape.width };
        },
        vaeShape: shape,
        condition,
        conditionTokens,
        noiseTokens,
        shapes: [[1, shape.height / PACK, shape.width / PACK], ...condShapes.map((c): ImageShape => [1, c.height / PACK, c.width / PACK])],
      };
    },

    predict(ctx, items, params, text, latents) {
      const batch = items.length;
      const { rows } = text;
      const cfg = rows > batch;
      const cp = latents.shape.channels;
      const seq = latents.noiseTokens + latents.conditionTokens;
      const noiseRow = latents.noiseTokens * cp;
      const hidden = ctx.scratch.floats(rows * seq * cp);
      for (let r = 0; r < rows; r++) hidden.set(latents.condition[r % batch]!, r * seq * cp + noiseRow);
      const { ropeAxes } = qwenFolder(ctx.sessions.spec);
      const img = imageRope(latents.shapes, ropeAxes);
      const txt = textRope(latents.shapes, text.length, ropeAxes);
      const feeds: Record<string, { data: Float32Array | Int32Array; dims: number[] }> = {
        hidden_states: { data: hidden, dims: [rows, seq, cp] },
        encoder_hidden_states: { data: text.embeds, dims: [rows, text.length, text.hidden] },
        encoder_hidden_states_mask: { data: text.mask, dims: [rows, text.length] },
        img_rope_cos: { data: img.cos, dims: [img.rows, img.cos.length / img.rows] },
        img_rope_sin: { data: img.sin, dims: [img.rows, img.sin.length / img.rows] },
        txt_rope_cos: { data: txt.cos, dims: [txt.rows, txt.cos.length / Math.max(1, txt.rows)] },
        txt_rope_sin: { data: txt.sin, dims: [txt.rows, txt.sin.length / Math.max(1, txt.rows)] },
      };
      if (ctx.sessions.hasInput('transformer', 'modulate_index')) {
        const index = new Int32Array(rows * seq);
        for (let r = 0; r < rows; r++) index.fill(1, r * seq + latents.noiseTokens, (r + 1) * seq);
        feeds.modulate_index = { data: index, dims: [rows, seq] };
      }
      const velocity = ctx.scratch.floats(batch * noiseRow);
      const s = params.trueCfgScale;
      return async (x, t) => {
        for (let r = 0; r < rows; r++) hidden.set(x.subarray((r % batch) * noiseRow, ((r % batch) + 1) * noiseRow), r * seq * cp);
        feeds.timestep = { data: new Float32Array(rows).fill(Math.fround(t) / 1000), dims: [rows] };
        const out = await ctx.sessions.run('transformer', feeds, 'out_hidden_states');
        const rowOut = (r: number): Float32Array => out.subarray(r * seq * cp, r * seq * cp + noiseRow);
        if (!cfg) {
          for (let b = 0; b < batch; b++) velocity.set(rowOut(b), b * noiseRow);
          return velocity;
        }
        for (let b = 0; b < batch; b++) trueCfgRescaled(rowOut(b), rowOut(batch + b), s, cp, velocity.subarray(b * noiseRow, (b + 1) * noiseRow));
        return velocity;
      };
    },

    decode(ctx, final, items, { vaeShape: shape }, hooks) {
      const folder = qwenFolder(ctx.sessions.spec);
      const batch = items.length;
      const z = unpackLatents(final, batch, shape, ctx.scratch.floats(final.length));
      const plane = shape.height * shape.width;
      for (let b = 0; b < batch; b++) {
        for (let c = 0; c < shape.channels; c++) {
          const o = (b * shape.channels + c) * plane;
          const m = folder.latentsMean[c]!;
          const s = folder.latentsStd[c]!;
          for (let p = 0; p < plane; p++) z[o + p] = z[o + p]! * s + m;
        }
      }
      return decodeUnscaled(ctx, z, batch, shape, hooks);
    },
  };
}

/** Stacks per-row embeddings ([tokens, hidden] each) into [rows, max tokens, hidden] with a 0/1 mask. */
function stackRows(parts: readonly Float32Array[], hidden: number): QwenConditioning {
  const rows = parts.length;
  const length = Math.max(...parts.map((p) => p.length / hidden));
  const embeds = new Float32Array(rows * length * hidden);
  const mask = new Int32Array(rows * length);
  parts.forEach((p, r) => {
    embeds.set(p, r * length * hidden);
    mask.fill(1, r * length, r * length + p.length / hidden);
  });
  return { embeds, mask, rows, length, hidden };
}

/**
 * diffusers' true CFG with norm rescale, per token over its `width` values:
 * c = n + s·(p − n), out = c · ‖p‖ / ‖c‖.
 */
export function trueCfgRescaled(neg: Float32Array, pos: Float32Array, scale: number, width: number, out: Float32Array): Float32Array {
  for (let o = 0; o < out.length; o += width) {
    let pp = 0;
    let cc = 0;
    for (let k = o; k < o + width; k++) {
      const c = Math.fround(neg[k]! + Math.fround(scale * Math.fround(pos[k]! - neg[k]!)));
      out[k] = c;
      pp += pos[k]! * pos[k]!;
      cc += c * c;
    }
    const ratio = cc === 0 ? 0 : Math.sqrt(pp) / Math.sqrt(cc);
    for (let k = o; k < o + width; k++) out[k] = Math.fround(out[k]! * ratio);
  }
  return out;
}

/** Qwen2.5-VL's ports in this project's layout (docs/models.md, "Qwen-Image-Edit: the ONNX layout"): what encodePairs feeds and reads. */
const TEXT_ENCODER_PORTS = {
  inputs: [
    { name: 'input_ids', dtypes: ['int64', 'int32'], rank: 2 },
    { name: 'attention_mask', dtypes: ['int64', 'int32'], rank: 2 },
    { name: 'pixel_values', dtypes: ['float32'], rank: 2 },
    { name: 'image_grid_thw', dtypes: ['int64', 'int32'], rank: 2 },
    { name: 'position_ids', dtypes: ['int64', 'int32'], rank: 3, optional: true },
  ],
  outputs: [{ name: 'last_hidden_state', dtypes: ['float32', 'float16'], rank: 3 }],
} as const;

/** Template tokens of one "Picture i: <|vision_start|>…<|vision_end|>" block besides its image pads (at most). */
const PICTURE_TOKENS = 8;

/** The vision encoder's tokens (merged 28-pixel patches) for an image resized to `size`. */
function visionTokens(size: Dimensions): number {
  const seen = smartResize(size.height, size.width, 28, QWEN2VL_PROCESSOR.minPixels, QWEN2VL_PROCESSOR.maxPixels);
  return (seen.width / 28) * (seen.height / 28);
}

const isLightning = (schedulerJson: Json): boolean =>
  schedulerJson.use_dynamic_shifting === true &&
  typeof schedulerJson.base_shift === 'number' &&
  schedulerJson.base_shift === schedulerJson.max_shift &&
  (schedulerJson.shift_terminal === null || schedulerJson.shift_terminal === undefined);

function qwenFamily(kind: string, describe: string, pipelineClasses: RegExp, plus: boolean): PipelineFamilyDef {
  return {
    kind,
    describe,
    pipelineClasses,
    maskMethod: 'latent-blend',
    components: ['textEncoder', 'transformer', 'vaeEncoder', 'vaeDecoder'],
    componentPorts: { textEncoder: TEXT_ENCODER_PORTS },
    denoiser: transformerRole(
      [
        'hidden_states',
        'encoder_hidden_states',
        'encoder_hidden_states_mask',
        'timestep',
        'img_rope_cos',
        'img_rope_sin',
        'txt_rope_cos',
        'txt_rope_sin',
        'modulate_index',
      ],
      ['modulate_index'],
    ),
    // The processor folder is read by the family itself (prompt.ts).
    tokenizers: [],
    denoiserInChannels: (latentChannels) => latentChannels * PACK * PACK,
    // diffusers: vae_scale_factor × 2, so that latents pack into 2×2 patches.
    sizeMultiple: patchSizeMultiple,
    exporter: "this project's layout (scripts/export/qwen_image_edit.py)",
    latentSampleCost: 'the condition latents are the VAE mode, so an export giving only a sampled latent makes results depend on the export',
    timestepOptions: (spec, steps, size) => {
      const config = parseFlowMatchSchedulerConfig(spec.schedulerJson);
      const tokens = imageSeqLen(size.height, size.width, spec.vaeScaleFactor, PACK);
      return { sigmas: fluxSigmas(steps), mu: config.use_dynamic_shifting ? calculateShift(tokens, config) : undefined };
    },
    defaults: QWEN_DEFAULTS,
    defaultsFor: ({ dir, schedulerJson }) => {
      // edit-server.json's `qwen` areas are checked with the folder.
      readAreas(dir);
      return isLightning(schedulerJson) ? LIGHTNING_DEFAULTS : QWEN_DEFAULTS;
    },
    limits: { maxSequenceLength: MAX_SEQUENCE_LENGTH },
    scheduler: 'FLOW_MATCH_EULER',
    // QwenImageTransformer2DModel: 60 blocks of 24 heads over 3072-wide 2×2-patch tokens (FLUX's
    // width), the condition and text tokens in every attention (`extraAttentionTokens`).
    memoryDefaults: { unetBytesPerLatentPixel: 48 * 1024, attentionHeads: 24, attentionDownscale: PACK, vaeBytesPerPixel: 4 * 1024 },
    guidanceBranches: (edit) => (trueCfgActive(edit) ? 2 : 1),
    startIndex: () => null,
    checkEdit: (spec, edit) => {
      if (edit.masks) throw new InferenceError('BAD_USER_INPUT', `model ${spec.id} (${spec.family.describe}) does not take masks; send no mask`);
    },
    extraAttentionTokens: (spec, edit, width, height) => {
      const { conditionArea, visionArea } = areasOf(spec);
      const cond = calculateDimensions(conditionArea, width / height);
      const vision = plus ? calculateDimensions(visionArea, width / height) : cond;
      // Each reference: its condition tokens, its vision tokens and its "Picture i: " block in the text.
      const references = (edit.references ?? []).reduce((n, source) => {
        const size = referenceSize(areasOf(spec), source);
        return (
          n +
          imageSeqLen(size.height, size.width, spec.vaeScaleFactor, PACK) +
          visionTokens(calculateDimensions(visionArea, source.width / source.height)) +
          PICTURE_TOKENS
        );
      }, 0);
      // Condition tokens, then the text: the image's vision tokens and at most max_sequence_length of prompt.
      const text = visionTokens(vision) + (edit.maxSequenceLength ?? spec.defaults.maxSequenceLength ?? MAX_SEQUENCE_LENGTH);
      return imageSeqLen(cond.height, cond.width, spec.vaeScaleFactor, PACK) + text + references;
    },
    // QwenImageEditPlusPipeline takes a list of images; Qwen-Image-Edit-2509's card recommends 1 to 3.
    ...(plus
      ? { referenceImages: { maxConditionImages: 3, conditionSize: (spec: ModelSpec, source: Dimensions) => referenceSize(areasOf(spec), source) } }
      : {}),
    // No guidance embedding (transformer config guidance_embeds false): text guidance is true CFG.
    noGuidanceScale: true,
    stages: qwenStages(plus),
  };
}

export const qwenImageEdit = qwenFamily('qwen-image-edit', 'Qwen-Image-Edit', /^QwenImageEditPipeline$/, false);
export const qwenImageEditPlus = qwenFamily('qwen-image-edit-plus', 'Qwen-Image-Edit Plus (2509/2511)', /^QwenImageEditPlusPipeline$/, true);
