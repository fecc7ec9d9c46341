/**
 * One object per pipeline family, as diffusers has one pipeline class per family: it owns which
 * folders it serves, its components' roles and the ports it checks, its sizes, defaults, guidance
 * branches, timesteps and the run itself, in named stages. The runner, the sessions, the request
 * resolver and the folder reader ask the family; a new family is one module plus its line in
 * `index.ts` (docs/models.md, "Adding a family").
 */
import type { MemoryProfile, ModelDefaults, ModelLimits, ModelSpec } from '../modelTypes.js';
import type { OnnxSignature } from '../onnxSignature.js';
import type { FlowSchedulerName, Scheduler, SetTimestepsOptions } from '../schedulers/types.js';
import type { NoiseGenerator } from '../random.js';
import type { Component } from '../components.js';
import type { LatentShape, MaskBlend, PipelineContext, PipelineHooks, PipelineItem, PipelineParams, StepInfo } from './common.js';

/** The component that denoises, and what of it the family reads and checks. */
export interface DenoiserRole {
  readonly component: Extract<Component, 'unet' | 'transformer'>;
  /** For messages: "UNet", "transformer". */
  readonly name: string;
  /** The folder-relative config whose `in_channels` is the denoiser's input channels. */
  readonly config: string;
  /**
   * The input whose axis 1 counts channels: checked against `in_channels` when the session opens,
   * and read where the folder has no config (diffusers' ONNX converter writes none). null: neither.
   */
  readonly channelsInput: string | null;
  /** Every input the family feeds: a denoiser declaring any other cannot be driven. */
  readonly inputs: readonly string[];
  /** The inputs it must declare (besides its component's own, components.ts); the rest are fed where declared. */
  readonly required: readonly string[];
}

/** One port a component must declare as the family feeds or reads it: its dtypes and rank (its number of axes). */
export interface PortRule {
  readonly name: string;
  /** onnxruntime-node's names (float32, int64, …): any of them. */
  readonly dtypes: readonly string[];
  readonly rank: number;
  /** Fed only where declared (e.g. Qwen's `position_ids`). */
  readonly optional?: boolean;
}

/**
 * A component's ports in full, checked from its ONNX signature when the folder is read (before
 * any session opens): every input the family feeds (a declared input it does not feed cannot be
 * driven), and the outputs it reads.
 */
export interface ComponentPorts {
  readonly inputs: readonly PortRule[];
  readonly outputs: readonly PortRule[];
}

/** The output size asked for, or chosen from the input (`auto`). */
export interface SizeAsked {
  width: number;
  height: number;
}

/** The scheduler set for this run, and the timesteps it visits (from the begin index). */
export interface Schedule {
  scheduler: Scheduler;
  timesteps: Float64Array;
}

/** What `prepareLatents` hands the denoise loop, `predict` and `decode`. */
export interface PreparedLatents {
  /** The starting latents, as the loop steps them (in place). */
  latents: Float32Array;
  /** Their layout in the loop (FLUX's packed tokens differ from the VAE's). */
  shape: LatentShape;
  /** Resets the kept region after each step (masked edits); null for none. */
  blend: MaskBlend | null;
  /** The step report as previews and progress see it (FLUX unpacks its tokens); absent: as stepped. */
  preview?(info: StepInfo): StepInfo;
}

/** The denoiser's prediction for the scaled latents at timestep t, guidance applied. */
export type Predict = (scaled: Float32Array, t: number) => Promise<Float32Array>;

/**
 * A family's run in diffusers' named stages (stages.ts `runFamily` calls them in order). The
 * conditioning and the prepared latents are the family's own types.
 */
export interface FamilyStages<Conditioning = unknown, Latents extends PreparedLatents = PreparedLatents> {
  /** Text conditioning of every denoiser row (prompts are encoded once each, into ctx.embeddings). */
  encodePrompt(ctx: PipelineContext, items: readonly PipelineItem[], params: PipelineParams): Promise<Conditioning>;
  /** The starting latents: the input's, noised to the first timestep, or noise; each item draws from its own generator. */
  prepareLatents(
    ctx: PipelineContext,
    items: readonly PipelineItem[],
    params: PipelineParams,
    schedule: Schedule,
    generators: readonly NoiseGenerator[],
  ): Promise<Latents>;
  predict(ctx: PipelineContext, items: readonly PipelineItem[], params: PipelineParams, conditioning: Conditioning, latents: Latents): Predict;
  /** Each item's pixels from the final latents (signed range, planar), handed to `hooks.decoded` as they land. */
  decode(ctx: PipelineContext, final: Float32Array, items: readonly PipelineItem[], latents: Latents, hooks: PipelineHooks): Promise<Float32Array[]>;
}

/** What a family reads of a resolved edit to plan it. */
export interface EditShape {
  steps: number;
  strength: number;
  guidanceScale: number;
  imageGuidanceScale: number;
  /** Flow families only (absent elsewhere). */
  trueCfgScale?: number;
  negativePrompt?: string;
  maxSequenceLength?: number | null;
  /** Reference images' own (orientation-corrected) sizes, in order; absent or empty: none. */
  references?: readonly SizeAsked[];
}

/**
 * Families that condition each output on several images (QwenImageEditPlusPipeline's image list):
 * a job's reference images come before each input in the list (see docs/api.md).
 */
export interface ReferenceImagesRole {
  /** Condition images per output at most, the input included. */
  readonly maxConditionImages: number;
  /** The condition size of a reference whose own size is `source` (what its tokens are made from); it sets the token layout. */
  conditionSize(spec: ModelSpec, source: SizeAsked): SizeAsked;
}

export interface PipelineFamilyDef {
  /** `Model.kind`. */
  readonly kind: string;
  /** For messages: "InstructPix2Pix". */
  readonly describe: string;
  /** model_index.json `_class_name`s this family serves (diffusers', optimum's and the ONNX converter's names). */
  readonly pipelineClasses: RegExp;
  /**
   * How masks are applied: the UNet takes the mask and masked image as extra input channels
   * (inpainting UNets), or the latents outside the mask are reset after every step (any UNet).
   */
  readonly maskMethod: 'unet-mask-channels' | 'latent-blend';
  /** The ONNX components the family runs (each folder must hold them). */
  readonly components: readonly Component[];
  /** Which of them denoises (it runs on the engine's thread; the others may run on the stage thread). */
  readonly denoiser: DenoiserRole;
  /** Components whose ports the family checks one by one (names, dtypes, ranks): its own layouts' (Qwen's text encoder). */
  readonly componentPorts?: Partial<Record<Component, ComponentPorts>>;
  /** Outputs the family reads beyond what every folder must have (e.g. SDXL's `text_embeds`). */
  readonly requiredOutputs?: Partial<Record<Component, readonly string[]>>;
  /** Tokenizer folders, one per text encoder, in encoder order. */
  readonly tokenizers: readonly string[];
  /** The denoiser's input channels for a VAE with `latentChannels` (told apart from a sibling family by them). */
  denoiserInChannels(latentChannels: number): number;
  /**
   * The pixel multiple output sizes snap down to: what the denoiser's downsampling (or patching)
   * of the VAE's latents needs.
   */
  sizeMultiple(spec: Pick<ModelSpec, 'vaeScaleFactor'>): number;
  /**
   * Options to the scheduler's `setTimesteps` for a run at `size` (FLUX's σ and shift); absent: none.
   * The request resolver checks a request's step count with the same options the run uses.
   */
  timestepOptions?(spec: Pick<ModelSpec, 'schedulerJson' | 'vaeScaleFactor'>, steps: number, size: SizeAsked): SetTimestepsOptions;
  /** Who writes this family's folders where no public exporter does (the doctor's "exporter"); absent: told from the ports. */
  readonly exporter?: string;
  /** VAE-encoder warning: what an export whose encoder samples inside the graph (`latent_sample`) costs this family. */
  readonly latentSampleCost: string;
  /** Defaults when the folder's edit-server.json does not set them. `null`: the option does not apply. */
  readonly defaults: ModelDefaults;
  /**
   * Defaults that depend on the folder: SDXL-Turbo's (told by its trailing timestep spacing),
   * FLUX schnell's (its transformer has no `guidance` input). Absent: `defaults`.
   */
  defaultsFor?(folder: {
    dir: string;
    schedulerJson: Record<string, unknown>;
    modelIndex: Record<string, unknown>;
    signatures: ModelSpec['signatures'];
  }): ModelDefaults;
  /** Limits for this family's sizes, where SD 1.5's do not fit. */
  readonly limits?: Partial<ModelLimits>;
  /** Denoiser rows per output (1, or more with guidance), for memory planning. */
  guidanceBranches(edit: EditShape): number;
  /**
   * How many of the schedule's first timesteps a run skips (img2img's `strength`), set as the
   * scheduler's begin index; null for families that generate from noise (no begin index is set).
   */
  startIndex(edit: Pick<EditShape, 'steps' | 'strength'>): number | null;
  /** How one micro-batch runs. */
  readonly stages: FamilyStages;
  /**
   * Flow families: the one scheduler the family samples with (requests may name it or leave the
   * scheduler unset). Absent: the request chooses among SCHEDULER_NAMES.
   */
  readonly scheduler?: FlowSchedulerName;
  /** Reference images (several condition images per output); absent: the family takes none (BAD_USER_INPUT). */
  readonly referenceImages?: ReferenceImagesRole;
  /**
   * true: the denoiser has no guidance input and the family runs no guidance on `guidanceScale`
   * (Qwen-Image: true CFG only), so an explicit guidanceScale is refused, not ignored.
   */
  readonly noGuidanceScale?: boolean;
  /** Refuses (throws) what this family cannot do with a resolved edit, e.g. masks. */
  checkEdit?(spec: ModelSpec, edit: { masks: boolean }): void;
  /** Memory profile defaults for this family's folders (SD 1.5's where absent); edit-server.json overrides. */
  readonly memoryDefaults?: Partial<Omit<MemoryProfile, 'weightBytes'>>;
  /** Attention tokens per row besides the image's own (memory planning; see memory.ts). */
  extraAttentionTokens?(spec: ModelSpec, edit: EditShape, width: number, height: number): number;
}

export type { OnnxSignature };

/** Stable Diffusion 1.x/2.x folders: one CLIP text encoder, a UNet, the VAE's two halves. */
export const SD_COMPONENTS: readonly Component[] = ['textEncoder', 'unet', 'vaeEncoder', 'vaeDecoder'];

/** A UNet fed `inputs` (SD's three, plus SDXL's added conditioning). */
export function unetRole(inputs: readonly string[] = ['sample', 'timestep', 'encoder_hidden_states']): DenoiserRole {
  return { component: 'unet', name: 'UNet', config: 'unet/config.json', channelsInput: 'sample', inputs, required: [] };
}

/** A transformer fed `inputs`, of which it must declare all but `optional`. */
export function transformerRole(inputs: readonly string[], optional: readonly string[] = []): DenoiserRole {
  return {
    component: 'transformer',
    name: 'transformer',
    config: 'transformer/config.json',
    channelsInput: null,
    inputs,
    required: inputs.filter((n) => !optional.includes(n)),
  };
}

/**
 * SD UNets as exported to ONNX: three 2× downsamplings of the latents, traced at sizes they divide
 * (the graph's upsamplers double without diffusers' size fix-up), so latents snap to 8 and pixels
 * to 8 × the VAE factor (64 for SD; 8 for full-resolution latents).
 */
export const unetSizeMultiple = (spec: Pick<ModelSpec, 'vaeScaleFactor'>): number => (spec.vaeScaleFactor > 1 ? spec.vaeScaleFactor * 8 : 8);

/** Transformers over 2×2 latent patches (FLUX, SD3): diffusers' `vae_scale_factor * 2` (16 for 8× VAEs). */
export const patchSizeMultiple = (spec: Pick<ModelSpec, 'vaeScaleFactor'>): number => spec.vaeScaleFactor * 2;

export const IMG2IMG_LATENT_SAMPLE_COST =
  'img2img starts from an image latent sampled without the job seed, so results are not exactly reproducible from a seed';
