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
import { COMPONENTS, type Component, componentFile } from './components.js';
import type { OnnxSignature, PortSignature } from './onnxSignature.js';
import type { ComponentPorts } from './pipelines/family.js';
import { recogniseExport } from './exportGeneration.js';
import type { MemoryProfile, ModelDefaults, ModelSpec, PreviewProjection } from './modelTypes.js';
import { builtInGenerator } from '../config.js';

export type { MemoryProfile, ModelDefaults, ModelLimits, ModelSpec, PreviewProjection } from './modelTypes.js';

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
 * The family serving `index._class_name`, checked against the denoiser's input channels (read from
 * `channelsFrom`); a mismatch names the family those channels would fit.
 */
export function familyFromModelIndex(
  index: Record<string, unknown>,
  denoiserInChannels: number,
  latentChannels: number,
  channelsFrom: string,
): PipelineFamilyDef {
  const className = String(index._class_name ?? '');
  const family = familyForPipelineClass(className);
  if (!family) {
    throw new ModelFolderError(
      `model_index.json _class_name "${className}" is not a supported pipeline (${PIPELINE_FAMILIES.map((f) => f.describe).join(', ')})`,
    );
  }
  const byChannels = familyForPipelineClassAndChannels(className, denoiserInChannels, latentChannels);
  if (!byChannels) {
    const fits = PIPELINE_FAMILIES.filter((f) => f.denoiserInChannels(latentChannels) === denoiserInChannels).map((f) => `${f.describe} (${f.kind})`);
    throw new ModelFolderError(
      `model_index.json _class_name "${className}" is ${family.describe}, which needs a ${family.denoiser.name} with ${family.denoiserInChannels(latentChannels)} input channels; ` +
        `this one has ${denoiserInChannels} (${channelsFrom}), which fits ${fits.length ? fits.join(' or ') : 'no family this server runs'}. ` +
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

/** The family's port rules (`componentPorts`) against the signatures: each port's presence, dtype and rank; inputs it does not feed. */
function checkComponentPorts(dir: string, family: PipelineFamilyDef, signatures: ModelSpec['signatures']): void {
  for (const [component, rules] of Object.entries(family.componentPorts ?? {}) as [Component, ComponentPorts][]) {
    const sig = signatures[component];
    if (!sig) continue;
    const where = `model folder ${dir}: ${componentFile(component)}`;
    const layout = `not ${family.describe}'s layout (docs/models.md)`;
    const describe = (p: PortSignature): string => `${p.name} ${p.type} [${p.shape.join(', ')}]`;
    for (const [kind, declared, wanted] of [
      ['input', sig.inputs, rules.inputs],
      ['output', sig.outputs, rules.outputs],
    ] as const) {
      for (const rule of wanted) {
        const port = declared.find((p) => p.name === rule.name);
        if (!port) {
          if (rule.optional) continue;
          throw new ModelFolderError(`${where} has no ${kind} "${rule.name}" (${kind}s: ${declared.map(describe).join('; ')}): ${layout}`);
        }
        if (!rule.dtypes.includes(port.type))
          throw new ModelFolderError(`${where}: ${kind} "${rule.name}" has dtype ${port.type}; expected ${rule.dtypes.join(' or ')}: ${layout}`);
        if (port.shape.length !== rule.rank)
          throw new ModelFolderError(
            `${where}: ${kind} "${rule.name}" has rank ${port.shape.length} ([${port.shape.join(', ')}]); expected rank ${rule.rank}: ${layout}`,
          );
      }
    }
    const extra = sig.inputs.filter((p) => !rules.inputs.some((r) => r.name === p.name));
    if (extra.length)
      throw new ModelFolderError(
        `${where} needs inputs the ${family.describe} pipeline does not provide (${extra.map(describe).join('; ')}); it feeds ${rules.inputs.map((r) => r.name).join(', ')}`,
      );
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
  const role = byClass.denoiser;
  const denoiserConfig = readJson(dir, role.config, false);
  const vaeConfig = readJson(dir, 'vae_decoder/config.json', false) ?? readJson(dir, 'vae_encoder/config.json', false);
  const fixedDim = (sig: OnnxSignature, port: string, axis: number): number | null => {
    const d = sig.inputs.find((p) => p.name === port)?.shape[axis];
    return typeof d === 'number' ? d : null;
  };
  // AutoencoderKL's `latent_channels`, or the video VAEs' `z_dim` (Qwen-Image).
  const latentChannels = num(vaeConfig, 'latent_channels', num(vaeConfig, 'z_dim', fixedDim(signatures.vaeDecoder!, 'latent_sample', 1) ?? 4));
  // diffusers' vae_scale_factor: 2^(len(block_out_channels) − 1), or 2^len(temperal_downsample) (sic) for Qwen-Image's VAE.
  const scaleExponent = Array.isArray(vaeConfig?.temperal_downsample)
    ? (vaeConfig.temperal_downsample as unknown[]).length
    : (Array.isArray(vaeConfig?.block_out_channels) ? (vaeConfig.block_out_channels as unknown[]).length : 4) - 1;
  // The denoiser's input channels: its config.json's `in_channels`, else its checked port's channel
  // axis, else (symbolic, as diffusers' converter writes it) the first convolution's weight.
  const inChannels = ((): { value: number; from: string } => {
    if (typeof denoiserConfig?.in_channels === 'number') return { value: denoiserConfig.in_channels, from: `${role.config} in_channels` };
    if (role.channelsInput !== null) {
      const port = fixedDim(signatures[role.component]!, role.channelsInput, 1);
      if (port !== null) return { value: port, from: `the ${role.name}'s "${role.channelsInput}" port` };
      const conv = readFirstConvInChannels(paths[role.component]!, role.channelsInput);
      if (conv !== null) return { value: conv, from: `the ${role.name}'s first convolution weight` };
    }
    return { value: byClass.denoiserInChannels(latentChannels), from: `assumed for ${byClass.describe}` };
  })();
  const denoiserInChannels = inChannels.value;
  const family = familyFromModelIndex(index, denoiserInChannels, latentChannels, inChannels.from);
  checkComponentPorts(dir, family, signatures);
  const generator = builtInGenerator(dir);
  const recognised = recogniseExport(pipelineClass, family.denoiser.component, family.latentSampleCost, signatures);
  // The built-ins are written by this repository, in no exporter's layout of ports.
  const exportInfo = generator
    ? { ...recognised, generation: `built in (written by ${generator})` }
    : family.exporter
      ? { ...recognised, generation: family.exporter }
      : recognised;

  const server = readJson(dir, SERVER_CONFIG_FILE, false) ?? {};
  // The folder's own scheduler class is its default (a fallback is named in the warnings).
  // Flow families sample with their own scheduler (FLOW_MATCH_EULER), whatever the folder names.
  const own = family.scheduler ? { name: family.scheduler, warning: null } : schedulerForClassName(String(schedulerJson._class_name ?? ''), schedulerJson);
  const warnings = [...exportInfo.warnings];
  if (own.warning) warnings.push(own.warning);
  const familyDefaults = family.defaultsFor?.({ dir, schedulerJson, modelIndex: index, signatures }) ?? family.defaults;
  const defaults = parseDefaults(server.defaults, { ...familyDefaults, scheduler: own.name }, dir);
  if (family.scheduler ? defaults.scheduler !== family.scheduler : defaults.scheduler === 'FLOW_MATCH_EULER') {
    throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: defaults.scheduler ${defaults.scheduler} cannot drive ${family.describe}`);
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
  if (server.promptOptional !== undefined && typeof server.promptOptional !== 'boolean') {
    throw new ModelFolderError(`${dir}/${SERVER_CONFIG_FILE}: promptOptional must be true or false`);
  }
  return {
    id,
    dir,
    kind: family.kind,
    family,
    pipelineClass,
    modelIndex: index,
    export: exportInfo,
    signatures,
    warnings,
    description: typeof server.description === 'string' ? server.description : `${family.kind} pipeline from ${dir}`,
    promptRequired: server.promptOptional !== true,
    schedulerJson,
    scalingFactor: num(vaeConfig, 'scaling_factor', 0.18215),
    shiftFactor: num(vaeConfig, 'shift_factor', 0),
    vaeScaleFactor: 2 ** Math.max(0, scaleExponent),
    latentChannels,
    denoiserInChannels,
    defaults,
    limits: {
      maxImagesPerJob: num(limitsRaw, 'maxImagesPerJob', 8),
      maxN: num(limitsRaw, 'maxN', 4),
      maxSteps: num(limitsRaw, 'maxSteps', 100),
      maxPixels: num(limitsRaw, 'maxPixels', family.limits?.maxPixels ?? 1024 * 1024),
      ...(defaults.maxSequenceLength != null ? { maxSequenceLength: num(limitsRaw, 'maxSequenceLength', family.limits?.maxSequenceLength ?? 512) } : {}),
    },
    memory: {
      weightBytes: num(memoryRaw, 'weightBytes', weightBytes),
      ...memoryProfile(memoryRaw, family.memoryDefaults),
    },
    preview,
    paths,
  };
}

const MEMORY_PROFILE_KEYS = [
  'runtimeBytes',
  'unetBytesPerLatentPixel',
  'attentionHeads',
  'attentionDownscale',
  'attentionBytesPerScore',
  'vaeBytesPerPixel',
] as const;

/**
 * The default profile: an SD 1.5-size fp32 export under ONNX Runtime's CPU provider with the
 * load's warm-up, fitted to peaks measured on one (issue 29; BENCHMARKS.md "Real-size model"):
 * 7,896 MiB for one guided 512² output, 10,156 for two in one call, 18,882 for one at 768². The
 * UNet's activations are mostly its attention at 64×64 latent tokens: about 2.3 fp32 score
 * matrices per head held at once. Plans: 8,318, 12,184 and 20,062 MiB.
 */
export const SD15_MEMORY: Omit<MemoryProfile, 'weightBytes'> = {
  runtimeBytes: 384 * 2 ** 20,
  unetBytesPerLatentPixel: 16 * 1024,
  attentionHeads: 8,
  attentionDownscale: 1,
  attentionBytesPerScore: 9.6,
  vaeBytesPerPixel: 5 * 1024,
};

/**
 * What a family's memoryDefaults or a folder's own `memory` entries leave out: the profile before
 * SD15_MEMORY (no fixed runtime term, one fp32 score matrix), which their figures were fitted with.
 */
const GENERIC_MEMORY: Omit<MemoryProfile, 'weightBytes'> = {
  runtimeBytes: 0,
  unetBytesPerLatentPixel: 800 * 1024,
  attentionHeads: 8,
  attentionDownscale: 1,
  attentionBytesPerScore: 4,
  vaeBytesPerPixel: 4 * 1024,
};

/** A folder's `memory` entries over its family's defaults; SD15_MEMORY where neither states any. */
function memoryProfile(raw: Record<string, unknown>, familyDefaults: PipelineFamilyDef['memoryDefaults']): Omit<MemoryProfile, 'weightBytes'> {
  const stated = familyDefaults !== undefined || MEMORY_PROFILE_KEYS.some((key) => key in raw);
  const base = stated ? { ...GENERIC_MEMORY, ...familyDefaults } : SD15_MEMORY;
  return Object.fromEntries(MEMORY_PROFILE_KEYS.map((key) => [key, num(raw, key, base[key])])) as Omit<MemoryProfile, 'weightBytes'>;
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
