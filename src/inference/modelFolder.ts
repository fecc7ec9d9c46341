/**
 * Reading and validating a model folder in the layout optimum's ONNX export writes for diffusers
 * pipelines, plus an optional `edit-server.json` with this server's defaults and limits.
 * Validation names the exact problem (missing file, bad JSON, unknown pipeline, channel counts);
 * the ONNX input/output names and dtypes are checked when sessions open (see `sessions.ts`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseSchedulerConfig, schedulerForClassName } from './schedulers/index.js';
import { parseDiffusersJson } from './diffusersJson.js';
import type { EditSchedulerName } from './schedulers/types.js';
import { EDIT_SCHEDULER_NAMES } from './schedulers/types.js';
import { parseFlowMatchSchedulerConfig } from './schedulers/flowMatchEuler.js';
import { PIPELINE_FAMILIES, familyForPipelineClass, familyForPipelineClassAndChannels } from './pipelines/index.js';
import type { PipelineFamilyDef } from './pipelines/index.js';
import { readFirstConvInChannels, readOnnxSignature } from './onnxSignature.js';
import { COMPONENTS, componentFile } from './components.js';
import type { Component } from './components.js';
import type { OnnxSignature } from './onnxSignature.js';
import { recogniseExport } from './exportGeneration.js';
import type { ExportInfo } from './exportGeneration.js';

/** A pipeline family's `kind` (see pipelines/index.ts). */
export type PipelineFamily = string;

export interface ModelDefaults {
  steps: number;
  guidanceScale: number;
  imageGuidanceScale: number | null;
  strength: number | null;
  scheduler: EditSchedulerName;
  size: string;
  /** Flow families: true CFG scale (1 = off); absent or null where it does not apply. */
  trueCfgScale?: number | null;
  /** Families with a T5 encoder: its token count; absent or null where it does not apply. */
  maxSequenceLength?: number | null;
}

export interface ModelLimits {
  maxImagesPerJob: number;
  maxN: number;
  maxSteps: number;
  maxPixels: number;
  /** Families with a T5 encoder: the most T5 tokens a request may ask for; absent elsewhere. */
  maxSequenceLength?: number;
}

/** Inputs of the batch memory estimate (see `memory.ts`). */
export interface MemoryProfile {
  /** Bytes the weights and sessions hold regardless of batch size. */
  weightBytes: number;
  /** UNet activation bytes per latent pixel per batch item (convolutions, norms, skips). */
  unetBytesPerLatentPixel: number;
  /** Attention heads at the highest-resolution attention level; 0 for models without attention. */
  attentionHeads: number;
  /** Latent downsampling before that attention level (1 for SD 1.5's first block). */
  attentionDownscale: number;
  /** VAE decoder activation bytes per output pixel per item. */
  vaeBytesPerPixel: number;
}

export interface PreviewProjection {
  /** [latentChannels][3]: latent → RGB in [-1, 1], as ComfyUI's latent_rgb_factors. */
  factors: number[][];
  bias: number[];
}

export interface ModelSpec {
  id: string;
  dir: string;
  /** The family's kind, e.g. instruct-pix2pix. */
  family: PipelineFamily;
  /** The family object that plans and runs this model's edits. */
  pipeline: PipelineFamilyDef;
  /** model_index.json `_class_name`. */
  pipelineClass: string;
  /** model_index.json as on disk (pipeline flags such as force_zeros_for_empty_prompt). */
  modelIndex: Record<string, unknown>;
  /** Which exporter wrote the folder, its precision, and what that costs (warnings). */
  export: ExportInfo;
  /** The ONNX ports of each component, read from the files without loading weights. */
  signatures: Partial<Record<Component, OnnxSignature>>;
  /** Everything an operator should know about this folder (logged at start, in /healthz and Model.warnings). */
  warnings: string[];
  description: string;
  /** scheduler_config.json as on disk; parsed per scheduler, since diffusers' defaults differ by class. */
  schedulerJson: Record<string, unknown>;
  /** VAE latent scaling factor (0.18215 for SD 1.x). */
  scalingFactor: number;
  /** VAE latent shift (FLUX, SD3: latents = (z − shift)·scale); 0 for SD 1.x/2.x. */
  shiftFactor: number;
  /** Pixels per latent pixel along each axis (8 for SD). */
  vaeScaleFactor: number;
  latentChannels: number;
  unetInChannels: number;
  defaults: ModelDefaults;
  limits: ModelLimits;
  memory: MemoryProfile;
  /**
   * Latent→RGB factors for previews: edit-server.json's, SD 1.5's for 4 channels, else null until
   * the model loads, when they are fitted to its VAE encoder (previewFit.ts, in the loading thread).
   */
  preview: PreviewProjection | null;
  /** Each component's model.onnx, and the tokenizer folders in text-encoder order. */
  paths: Partial<Record<Component, string>> & { tokenizerDir: string; tokenizerDirs: string[] };
}

export class ModelFolderError extends Error {
  override readonly name = 'ModelFolderError';
}

const SERVER_CONFIG_FILE = 'edit-server.json';

function readJson(dir: string, relative: string, required = true): Record<string, unknown> | null {
  const path = join(dir, relative);
  if (!existsSync(path)) {
    if (required) throw new ModelFolderError(`model folder ${dir}: missing ${relative}`);
    return null;
  }
  try {
    const value: unknown = parseDiffusersJson(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ModelFolderError(`model folder ${dir}: ${relative} is not valid JSON (${(err as Error).message})`);
  }
}

function requireFile(dir: string, relative: string): string {
  const path = join(dir, relative);
  if (!existsSync(path) || !statSync(path).isFile()) throw new ModelFolderError(`model folder ${dir}: missing ${relative}`);
  return path;
}

function num(obj: Record<string, unknown> | null, key: string, fallback: number): number {
  const v = obj?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/**
 * The family serving `index._class_name`, checked against the UNet's input channels (read from
 * `channelsFrom`); a mismatch names the family those channels would fit.
 */
export function familyFromModelIndex(index: Record<string, unknown>, unetInChannels: number, latentChannels: number, channelsFrom: string): PipelineFamilyDef {
  const className = String(index._class_name ?? '');
  const family = familyForPipelineClass(className);
  if (!family) {
    throw new ModelFolderError(
      `model_index.json _class_name "${className}" is not a supported pipeline (${PIPELINE_FAMILIES.map((f) => f.describe).join(', ')})`,
    );
  }
  const byChannels = familyForPipelineClassAndChannels(className, unetInChannels, latentChannels);
  if (!byChannels) {
    const fits = PIPELINE_FAMILIES.filter((f) => f.unetInChannels(latentChannels) === unetInChannels).map((f) => `${f.describe} (${f.kind})`);
    throw new ModelFolderError(
      `model_index.json _class_name "${className}" is ${family.describe}, which needs a denoiser with ${family.unetInChannels(latentChannels)} input channels; ` +
        `this one has ${unetInChannels} (${channelsFrom}), which fits ${fits.length ? fits.join(' or ') : 'no family this server runs'}. ` +
        "Fix _class_name if the folder is mislabelled (diffusers' ONNX converter labels every folder OnnxStableDiffusionPipeline).",
    );
  }
  return byChannels;
}

function parseDefaults(raw: unknown, base: ModelDefaults, dir: string): ModelDefaults {
  if (raw === undefined) return base;
  if (typeof raw !== 'object' || raw === null) throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: "defaults" must be an object`);
  const r = raw as Record<string, unknown>;
  const scheduler = r.scheduler ?? base.scheduler;
  if (!EDIT_SCHEDULER_NAMES.includes(scheduler as EditSchedulerName)) {
    throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: defaults.scheduler must be one of ${EDIT_SCHEDULER_NAMES.join(', ')}`);
  }
  return {
    steps: num(r, 'steps', base.steps),
    guidanceScale: num(r, 'guidanceScale', base.guidanceScale),
    imageGuidanceScale: base.imageGuidanceScale === null ? null : num(r, 'imageGuidanceScale', base.imageGuidanceScale),
    strength: base.strength === null ? null : num(r, 'strength', base.strength),
    scheduler: scheduler as EditSchedulerName,
    size: typeof r.size === 'string' ? r.size : base.size,
    ...(base.trueCfgScale != null ? { trueCfgScale: num(r, 'trueCfgScale', base.trueCfgScale) } : {}),
    ...(base.maxSequenceLength != null ? { maxSequenceLength: num(r, 'maxSequenceLength', base.maxSequenceLength) } : {}),
  };
}

/** Reads and validates one model folder. `id` defaults to the folder name. Every error names the folder. */
export function readModelFolder(dir: string, id: string): ModelSpec {
  try {
    return readFolder(dir, id);
  } catch (err) {
    if (err instanceof ModelFolderError && !err.message.includes(dir)) throw new ModelFolderError(`model folder ${dir}: ${err.message}`);
    throw err;
  }
}

function readSignature(dir: string, path: string, relative: string): OnnxSignature {
  try {
    return readOnnxSignature(path);
  } catch (err) {
    throw new ModelFolderError(`model folder ${dir}: ${relative} is not a readable ONNX model (${(err as Error).message})`);
  }
}

function readFolder(dir: string, id: string): ModelSpec {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFolderError(`model folder ${dir} does not exist`);
  const index = readJson(dir, 'model_index.json')!;
  const schedulerJson = readJson(dir, 'scheduler/scheduler_config.json')!;
  const pipelineClass = String(index._class_name ?? '');
  const byClass = familyForPipelineClass(pipelineClass);
  if (!byClass) {
    throw new ModelFolderError(
      `model_index.json _class_name "${pipelineClass}" is not a supported pipeline (${PIPELINE_FAMILIES.map((f) => f.describe).join(', ')})`,
    );
  }
  const tokenizerDirs = byClass.tokenizers.map((t) => join(dir, t));
  const paths: ModelSpec['paths'] = { tokenizerDir: tokenizerDirs[0]!, tokenizerDirs };
  for (const c of byClass.components) paths[c] = requireFile(dir, componentFile(c));
  // A fast tokenizer.json, or the slow CLIP tokenizer's files that diffusers pipelines ship.
  for (const t of byClass.tokenizers) {
    const files = [`${t}/tokenizer.json`, `${t}/vocab.json`, `${t}/merges.txt`].map((f) => existsSync(join(dir, f)));
    if (!files[0] && !(files[1] && files[2]))
      throw new ModelFolderError(`model folder ${dir}: missing ${t}/tokenizer.json (or ${t}/vocab.json with ${t}/merges.txt)`);
  }
  const signatures: ModelSpec['signatures'] = {};
  for (const c of byClass.components) signatures[c] = readSignature(dir, paths[c]!, componentFile(c));
  // diffusers' ONNX converter writes no config.json per component: fall back to the graphs' own
  // fixed dims, then SD 1.x's values.
  const unetConfig = readJson(dir, 'unet/config.json', false);
  const vaeConfig = readJson(dir, 'vae_decoder/config.json', false) ?? readJson(dir, 'vae_encoder/config.json', false);
  const fixedDim = (sig: OnnxSignature, port: string, axis: number): number | null => {
    const d = sig.inputs.find((p) => p.name === port)?.shape[axis];
    return typeof d === 'number' ? d : null;
  };
  const latentChannels = num(vaeConfig, 'latent_channels', fixedDim(signatures.vaeDecoder!, 'latent_sample', 1) ?? 4);
  const blocks = Array.isArray(vaeConfig?.block_out_channels) ? (vaeConfig.block_out_channels as unknown[]).length : 4;
  // UNets: config.json's `in_channels`, else the `sample` port's channel axis, else (symbolic, as
  // diffusers' converter writes it) the first convolution's weight. Transformers: their config's
  // `in_channels` (SD3 inpainting: 16 or 33; FLUX: packed 64).
  const transformerConfig = signatures.unet ? null : readJson(dir, 'transformer/config.json', false);
  const inChannels = ((): { value: number; from: string } => {
    const config = signatures.unet ? unetConfig : transformerConfig;
    const part = signatures.unet ? 'unet' : 'transformer';
    if (typeof config?.in_channels === 'number') return { value: config.in_channels, from: `${part}/config.json in_channels` };
    if (signatures.unet) {
      const port = fixedDim(signatures.unet, 'sample', 1);
      if (port !== null) return { value: port, from: 'the unet\'s "sample" port' };
      const conv = readFirstConvInChannels(paths.unet!, 'sample');
      if (conv !== null) return { value: conv, from: "the unet's first convolution weight" };
    }
    return { value: byClass.unetInChannels(latentChannels), from: `assumed for ${byClass.describe}` };
  })();
  const unetInChannels = inChannels.value;
  const pipeline = familyFromModelIndex(index, unetInChannels, latentChannels, inChannels.from);
  const exportInfo = recogniseExport(pipelineClass, pipeline, signatures);
  const family = pipeline.kind;

  const server = readJson(dir, SERVER_CONFIG_FILE, false) ?? {};
  // The folder's own scheduler class is its default (a fallback is named in the warnings).
  // Flow families sample with their own scheduler (FLOW_MATCH_EULER), whatever the folder names.
  const own = pipeline.scheduler ? { name: pipeline.scheduler, warning: null } : schedulerForClassName(String(schedulerJson._class_name ?? ''), schedulerJson);
  const warnings = [...exportInfo.warnings];
  if (own.warning) warnings.push(own.warning);
  const familyDefaults = pipeline.defaultsFor?.({ schedulerJson, modelIndex: index, signatures }) ?? pipeline.defaults;
  const defaults = parseDefaults(server.defaults, { ...familyDefaults, scheduler: own.name }, dir);
  if (pipeline.scheduler ? defaults.scheduler !== pipeline.scheduler : defaults.scheduler === 'FLOW_MATCH_EULER') {
    throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: defaults.scheduler ${defaults.scheduler} cannot drive ${pipeline.describe}`);
  }
  // The default scheduler must run; requests for another one are checked when they come (request.ts).
  try {
    if (defaults.scheduler === 'FLOW_MATCH_EULER') parseFlowMatchSchedulerConfig(schedulerJson);
    else parseSchedulerConfig(schedulerJson, defaults.scheduler);
  } catch (err) {
    throw new ModelFolderError(`model folder ${dir}: scheduler/scheduler_config.json (for ${defaults.scheduler}): ${(err as Error).message}`);
  }
  const limitsRaw = (server.limits ?? {}) as Record<string, unknown>;
  const memoryRaw = (server.memory ?? {}) as Record<string, unknown>;
  const weightBytes = onnxBytes(dir);
  const factors = server.latentRgbFactors;
  const bias = server.latentRgbBias;
  let preview: PreviewProjection | null = latentChannels === 4 ? SD15_PREVIEW : null;
  if (factors !== undefined) {
    const valid =
      Array.isArray(factors) &&
      factors.length === latentChannels &&
      factors.every((row) => Array.isArray(row) && row.length === 3 && row.every((v) => typeof v === 'number'));
    if (!valid) throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: latentRgbFactors must be ${latentChannels} rows of 3 numbers`);
    preview = { factors: factors as number[][], bias: Array.isArray(bias) && bias.length === 3 ? (bias as number[]) : [0, 0, 0] };
  }
  return {
    id,
    dir,
    family,
    pipeline,
    pipelineClass,
    modelIndex: index,
    export: exportInfo,
    signatures,
    warnings,
    description: typeof server.description === 'string' ? server.description : `${family} pipeline from ${dir}`,
    schedulerJson,
    scalingFactor: num(vaeConfig, 'scaling_factor', 0.18215),
    shiftFactor: num(vaeConfig, 'shift_factor', 0),
    vaeScaleFactor: 2 ** Math.max(0, blocks - 1),
    latentChannels,
    unetInChannels,
    defaults,
    limits: {
      maxImagesPerJob: num(limitsRaw, 'maxImagesPerJob', 8),
      maxN: num(limitsRaw, 'maxN', 4),
      maxSteps: num(limitsRaw, 'maxSteps', 100),
      maxPixels: num(limitsRaw, 'maxPixels', pipeline.limits?.maxPixels ?? 1024 * 1024),
      ...(defaults.maxSequenceLength != null ? { maxSequenceLength: num(limitsRaw, 'maxSequenceLength', 512) } : {}),
    },
    memory: {
      weightBytes: num(memoryRaw, 'weightBytes', weightBytes),
      // SD 1.5-sized defaults (fp32, unfused attention) unless the family states its own; a model
      // folder can state its own.
      unetBytesPerLatentPixel: num(memoryRaw, 'unetBytesPerLatentPixel', pipeline.memoryDefaults?.unetBytesPerLatentPixel ?? 320 * 1024),
      attentionHeads: num(memoryRaw, 'attentionHeads', pipeline.memoryDefaults?.attentionHeads ?? 8),
      attentionDownscale: num(memoryRaw, 'attentionDownscale', pipeline.memoryDefaults?.attentionDownscale ?? 1),
      vaeBytesPerPixel: num(memoryRaw, 'vaeBytesPerPixel', pipeline.memoryDefaults?.vaeBytesPerPixel ?? 4 * 1024),
    },
    preview,
    paths,
  };
}

/** ComfyUI's SD 1.5 latent→RGB factors, for 4-channel models that do not ship their own. */
const SD15_PREVIEW: PreviewProjection = {
  factors: [
    [0.3512, 0.2297, 0.3227],
    [0.325, 0.4974, 0.235],
    [-0.2829, 0.1762, 0.2721],
    [-0.212, -0.2616, -0.7177],
  ],
  bias: [0, 0, 0],
};

function onnxBytes(dir: string): number {
  let total = 0;
  for (const sub of Object.values(COMPONENTS).map((c) => c.dir)) {
    const folder = join(dir, sub);
    if (!existsSync(folder)) continue;
    for (const f of readdirSync(folder)) total += statSync(join(folder, f)).size;
  }
  return total;
}

/** Every model folder directly under `modelsDir` (folders holding a model_index.json). */
export function listModelFolders(modelsDir: string): string[] {
  if (!existsSync(modelsDir)) return [];
  return readdirSync(modelsDir)
    .filter((name) => existsSync(join(modelsDir, name, 'model_index.json')))
    .sort();
}
