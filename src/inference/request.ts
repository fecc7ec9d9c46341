/**
 * Turning a caller's edit options into a complete, validated request for one model: defaults from
 * the model, ranges from its limits. Shared by the CLI, the GraphQL API and the REST endpoint, so
 * all of them accept and refuse the same things with the same messages.
 */
import type { ModelSpec } from './modelFolder.js';
import type { EditSchedulerName, Scheduler } from './schedulers/types.js';
import { EDIT_SCHEDULER_NAMES, SCHEDULER_NAMES } from './schedulers/types.js';
import { createScheduler, parseSchedulerConfig } from './schedulers/index.js';
import { FlowMatchEulerDiscreteScheduler, parseFlowMatchSchedulerConfig } from './schedulers/flowMatchEuler.js';
import { DEFAULT_SIZE_FIT, SIZE_FITS, isOutputFormat, outputFormatList } from './imageIO.js';
import type { OutputFormat, SizeFit, TargetSize } from './imageIO.js';
import { InferenceError } from './errors.js';
import { DEFAULT_NOISE_GENERATOR, isNoiseGeneratorName, NOISE_GENERATORS, normalizeSeed, randomSeed } from './random.js';
import type { NoiseGeneratorName } from './random.js';

export const MAX_PROMPT_LENGTH = 2000;
export const MAX_GUIDANCE = 50;
export const MAX_MASK_BLUR = 64;

export interface EditOptions {
  prompt: string;
  prompts?: readonly string[] | null;
  negativePrompt?: string | null;
  n?: number | null;
  /** WIDTHxHEIGHT or 'auto' (the default: each input's own size, snapped to the model's multiple). */
  size?: string | null;
  /** How an input meets an explicit size of another aspect ratio (DEFAULT_SIZE_FIT when absent). */
  fit?: SizeFit | null;
  steps?: number | null;
  guidanceScale?: number | null;
  imageGuidanceScale?: number | null;
  strength?: number | null;
  seed?: number | null;
  /** The noise generator the seed seeds (default TORCH: torch's CPU generator). */
  generator?: NoiseGeneratorName | null;
  scheduler?: EditSchedulerName | null;
  /** Flow families: true classifier-free guidance against `negativePrompt` (> 1 turns it on). */
  trueCfgScale?: number | null;
  /** Families with a T5 encoder: its token count (up to the model's limit). */
  maxSequenceLength?: number | null;
  outputFormat?: OutputFormat | null;
  outputQuality?: number | null;
  previewEvery?: number | null;
  /** Feathering of mask edges: Gaussian standard deviation in output pixels. */
  maskBlur?: number | null;
}

export interface ResolvedEdit {
  /** One prompt per input image. */
  prompts: string[];
  negativePrompt: string;
  n: number;
  /** The output size: 'auto', or the size asked for snapped down to the model's multiple. */
  size: 'auto' | TargetSize;
  /** The size as asked, normalised ('auto' or WIDTHxHEIGHT), to report a change. */
  sizeAsked: string;
  fit: SizeFit;
  steps: number;
  guidanceScale: number;
  imageGuidanceScale: number;
  strength: number;
  seed: number;
  generator: NoiseGeneratorName;
  scheduler: EditSchedulerName;
  /** 1 unless the family runs true CFG (flow families). */
  trueCfgScale: number;
  /** The T5 token count; null for families without T5. */
  maxSequenceLength: number | null;
  outputFormat: OutputFormat;
  outputQuality: number | null;
  previewEvery: number;
  maskBlur: number;
  /**
   * Reference images' own (orientation-corrected) sizes, in order (families with
   * `referenceImages`; resolveReferences): each input is conditioned on them before itself.
   * Absent or empty: none.
   */
  references?: readonly TargetSize[];
}

const bad = (message: string): InferenceError => new InferenceError('BAD_USER_INPUT', message);

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw bad(`${name} must be an integer from ${min} to ${max} (got ${value})`);
  return value;
}

function numberIn(name: string, value: number, min: number, max: number, minExclusive = false): number {
  if (!Number.isFinite(value) || value > max || (minExclusive ? value <= min : value < min)) {
    throw bad(`${name} must be a number ${minExclusive ? 'above' : 'from'} ${min} ${minExclusive ? 'and at most' : 'to'} ${max} (got ${value})`);
  }
  return value;
}

function checkPrompt(name: string, value: string): string {
  if (value.length > MAX_PROMPT_LENGTH) throw bad(`${name} is ${value.length} characters; the limit is ${MAX_PROMPT_LENGTH}`);
  return value;
}

/** Pixel multiple outputs snap to: the model's family's (see its `sizeMultiple`). */
export function sizeMultiple(spec: ModelSpec): number {
  return spec.family.sizeMultiple(spec);
}

/** Parses 'WIDTHxHEIGHT' or 'auto', snapping down to the model's multiple and checking its pixel limit. */
export function parseSize(value: string, spec: ModelSpec): 'auto' | TargetSize {
  const text = value.trim().toLowerCase();
  if (text === 'auto') return 'auto';
  const match = /^(\d{1,5})x(\d{1,5})$/.exec(text);
  if (!match) throw bad(`size must be WIDTHxHEIGHT (e.g. 512x512) or auto (got "${value}")`);
  const multiple = sizeMultiple(spec);
  const width = Math.floor(Number(match[1]) / multiple) * multiple;
  const height = Math.floor(Number(match[2]) / multiple) * multiple;
  if (width < multiple || height < multiple) throw bad(`size must be at least ${multiple}x${multiple} for model ${spec.id} (got ${value})`);
  if (width * height > spec.limits.maxPixels) {
    throw new InferenceError(
      'IMAGE_TOO_LARGE',
      `size ${width}x${height} is over model ${spec.id}'s limit of ${spec.limits.maxPixels} pixels (max pixels ${spec.limits.maxPixels})`,
    );
  }
  return { width, height };
}

/** The size the family's timestep options are taken at when the request leaves it to each input. */
function planningSize(spec: ModelSpec, size: 'auto' | TargetSize): TargetSize {
  if (size !== 'auto') return size;
  const [width, height] = spec.defaults.size.split('x').map(Number);
  return { width: width || 512, height: height || 512 };
}

export function resolveEditOptions(spec: ModelSpec, imageCount: number, options: EditOptions): ResolvedEdit {
  const d = spec.defaults;
  if (imageCount < 1) throw bad('at least one image is required');
  if (imageCount > spec.limits.maxImagesPerJob) throw bad(`${imageCount} images is over model ${spec.id}'s limit of ${spec.limits.maxImagesPerJob} per job`);
  if (typeof options.prompt !== 'string') throw bad('prompt is required');
  checkPrompt('prompt', options.prompt);
  let prompts: string[];
  if (options.prompts != null) {
    if (options.prompts.length !== imageCount)
      throw bad(`prompts has ${options.prompts.length} entries for ${imageCount} images; give exactly one per image, or none`);
    prompts = options.prompts.map((p, i) => checkPrompt(`prompts[${i}]`, p));
  } else {
    prompts = Array.from({ length: imageCount }, () => options.prompt);
  }
  const negativePrompt = checkPrompt('negativePrompt', options.negativePrompt ?? '');
  const n = integerIn('n', options.n ?? 1, 1, spec.limits.maxN);
  const sizeAsked = (options.size ?? 'auto').trim().toLowerCase();
  const size = parseSize(sizeAsked, spec);
  const fit = options.fit ?? DEFAULT_SIZE_FIT;
  if (!SIZE_FITS.includes(fit)) throw bad(`fit must be one of ${SIZE_FITS.join(', ')} (got ${fit})`);
  const steps = integerIn('steps', options.steps ?? d.steps, 1, spec.limits.maxSteps);
  if (options.guidanceScale != null && spec.family.noGuidanceScale)
    throw bad(
      `guidanceScale does not apply to model ${spec.id} (${spec.family.describe}): its transformer has no guidance input; for text guidance send trueCfgScale (REST true_cfg_scale) above 1 with a negativePrompt (REST negative_prompt)`,
    );
  const guidanceScale = numberIn('guidanceScale', options.guidanceScale ?? d.guidanceScale, 0, MAX_GUIDANCE);
  const imageGuidanceScale = numberIn('imageGuidanceScale', options.imageGuidanceScale ?? d.imageGuidanceScale ?? 1.5, 0, MAX_GUIDANCE);
  const strength = numberIn('strength', options.strength ?? d.strength ?? 0.8, 0, 1, true);
  if ((spec.family.startIndex({ steps, strength }) ?? 0) >= steps) {
    throw bad(`steps × strength must be at least 1 so that one denoise step runs (steps ${steps}, strength ${strength})`);
  }
  const scheduler = options.scheduler ?? d.scheduler;
  if (!EDIT_SCHEDULER_NAMES.includes(scheduler)) throw bad(`scheduler must be one of ${EDIT_SCHEDULER_NAMES.join(', ')}`);
  const own = spec.family.scheduler;
  if (own && scheduler !== own)
    throw bad(`model ${spec.id} (${spec.family.describe}) samples with ${own} only; leave scheduler unset or send ${own} (got ${scheduler})`);
  if (!own && scheduler === 'FLOW_MATCH_EULER')
    throw bad(`scheduler FLOW_MATCH_EULER is for flow-matching models; model ${spec.id} (${spec.family.describe}) takes one of ${SCHEDULER_NAMES.join(', ')}`);
  // The folder's scheduler_config.json may not suit every scheduler (e.g. thresholding for DPMPP_2M),
  // and some step counts do not suit some schedulers (LCM: at most original_inference_steps).
  try {
    schedulerFor(spec, scheduler).setTimesteps(steps, spec.family.timestepOptions?.(spec, steps, planningSize(spec, size)));
  } catch (err) {
    throw bad(`scheduler ${scheduler} cannot run ${steps} steps of model ${spec.id}: ${(err as Error).message}`);
  }
  let trueCfgScale = 1;
  if (options.trueCfgScale != null) {
    if (d.trueCfgScale == null) throw bad(`model ${spec.id} (${spec.family.describe}) has no true CFG; use guidanceScale`);
    trueCfgScale = numberIn('trueCfgScale', options.trueCfgScale, 0, MAX_GUIDANCE);
  } else if (d.trueCfgScale != null) trueCfgScale = d.trueCfgScale;
  let maxSequenceLength: number | null = null;
  if (options.maxSequenceLength != null) {
    if (d.maxSequenceLength == null || spec.limits.maxSequenceLength == null)
      throw bad(`model ${spec.id} (${spec.family.describe}) has no T5 encoder; maxSequenceLength does not apply`);
    maxSequenceLength = integerIn('maxSequenceLength', options.maxSequenceLength, 1, spec.limits.maxSequenceLength);
  } else maxSequenceLength = d.maxSequenceLength ?? null;
  const outputFormat = options.outputFormat ?? 'png';
  if (!isOutputFormat(outputFormat)) throw bad(`outputFormat must be ${outputFormatList()}`);
  const outputQuality = options.outputQuality == null ? null : integerIn('outputQuality', options.outputQuality, 1, 100);
  const previewEvery = integerIn('previewEvery', options.previewEvery ?? 0, 0, 10_000);
  const maskBlur = integerIn('maskBlur', options.maskBlur ?? 0, 0, MAX_MASK_BLUR);
  const seed = options.seed == null ? randomSeed() : normalizeSeed(integerIn('seed', options.seed, -(2 ** 53), 2 ** 53));
  const generator = options.generator ?? DEFAULT_NOISE_GENERATOR;
  if (!isNoiseGeneratorName(generator)) throw bad(`generator must be one of ${NOISE_GENERATORS.join(', ')} (got ${generator})`);
  return {
    prompts,
    negativePrompt,
    n,
    size,
    sizeAsked,
    fit,
    steps,
    guidanceScale,
    imageGuidanceScale,
    strength,
    seed,
    generator,
    scheduler,
    trueCfgScale,
    maxSequenceLength,
    outputFormat,
    outputQuality,
    previewEvery,
    maskBlur,
  };
}

/** Refuses `count` reference images where the model's family takes none, or more than it takes beside one input. */
export function checkReferenceCount(spec: ModelSpec, count: number): void {
  if (count === 0) return;
  const role = spec.family.referenceImages;
  if (!role)
    throw bad(
      `model ${spec.id} (${spec.family.describe}) takes no reference images; send none, or use a model that takes several images per output (e.g. Qwen-Image-Edit Plus)`,
    );
  const max = role.maxConditionImages - 1;
  if (count > max)
    throw bad(`${count} reference images is over model ${spec.id}'s limit of ${max} (${role.maxConditionImages} images per output, the input included)`);
}

/** The edit with its reference images' own sizes (checked: checkReferenceCount). */
export function resolveReferences(spec: ModelSpec, edit: ResolvedEdit, sources: readonly TargetSize[]): ResolvedEdit {
  checkReferenceCount(spec, sources.length);
  return sources.length === 0 ? edit : { ...edit, references: sources.map(({ width, height }) => ({ width, height })) };
}

/**
 * The condition sizes of an edit's reference images, in order (their family's `conditionSize`):
 * the token layout they add to every output. Outputs of one size and one reference layout share a
 * transformer call; cross-request merging (mergeKey) and micro-batching (editRunner) both use it.
 */
export function referenceLayout(spec: ModelSpec, edit: Pick<ResolvedEdit, 'references'>): TargetSize[] {
  const sources = edit.references ?? [];
  if (sources.length === 0) return [];
  const role = spec.family.referenceImages;
  if (!role) throw new InferenceError('INTERNAL', `model ${spec.id} (${spec.family.describe}) takes no reference images`);
  return sources.map((s) => role.conditionSize(spec, s));
}

/** A fresh scheduler of `name` configured from the model folder's scheduler_config.json. */
export function schedulerFor(spec: Pick<ModelSpec, 'schedulerJson'>, name: EditSchedulerName): Scheduler {
  if (name === 'FLOW_MATCH_EULER') return new FlowMatchEulerDiscreteScheduler(parseFlowMatchSchedulerConfig(spec.schedulerJson));
  return createScheduler(name, parseSchedulerConfig(spec.schedulerJson, name));
}

/**
 * Denoise steps (denoiser evaluations) one micro-batch of `size` runs: the scheduler's timesteps
 * (PNDM has one more than `steps` as PLMS, nine more with its Runge–Kutta start), less the part of
 * the schedule that img2img skips.
 */
export function denoiseStepsPerBatch(spec: ModelSpec, edit: Pick<ResolvedEdit, 'steps' | 'strength' | 'scheduler' | 'size'>): number {
  const scheduler = schedulerFor(spec, edit.scheduler);
  scheduler.setTimesteps(edit.steps, spec.family.timestepOptions?.(spec, edit.steps, planningSize(spec, edit.size)));
  return scheduler.timesteps.length - (spec.family.startIndex(edit) ?? 0);
}
