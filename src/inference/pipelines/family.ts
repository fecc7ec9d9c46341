/**
 * One object per pipeline family, as diffusers has one pipeline class per family: it owns which
 * folders it serves, its UNet layout, defaults, guidance branches, denoise steps and the run
 * itself. The runner, the request resolver and the folder reader ask the family; a new family is
 * one module plus its line in `index.ts`.
 */
import type { MemoryProfile, ModelDefaults, ModelLimits, ModelSpec } from '../modelFolder.js';
import type { OnnxSignature } from '../onnxSignature.js';
import type { FlowSchedulerName } from '../schedulers/types.js';
import type { Component } from '../components.js';
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams } from './common.js';

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
  /** Every UNet input the family feeds (a UNet declaring others cannot be driven). */
  readonly unetInputs: readonly string[];
  /** Outputs the family reads beyond what every folder must have (e.g. SDXL's `text_embeds`). */
  readonly requiredOutputs?: Partial<Record<Component, readonly string[]>>;
  /** Tokenizer folders, one per text encoder, in encoder order. */
  readonly tokenizers: readonly string[];
  /** UNet `sample` channels for a VAE with `latentChannels`. */
  unetInChannels(latentChannels: number): number;
  /** Defaults when the folder's edit-server.json does not set them. `null`: the option does not apply. */
  readonly defaults: ModelDefaults;
  /**
   * Defaults that depend on the folder: SDXL-Turbo's (told by its trailing timestep spacing),
   * FLUX schnell's (its transformer has no `guidance` input). Absent: `defaults`.
   */
  defaultsFor?(folder: { schedulerJson: Record<string, unknown>; modelIndex: Record<string, unknown>; signatures: ModelSpec['signatures'] }): ModelDefaults;
  /** Limits for this family's sizes, where SD 1.5's do not fit. */
  readonly limits?: Partial<ModelLimits>;
  /** UNet rows per output (1, or more with guidance), for memory planning. */
  guidanceBranches(edit: EditShape): number;
  /** How many of the schedule's first timesteps a run skips (img2img's `strength`; 0 for none). */
  startIndex(edit: Pick<EditShape, 'steps' | 'strength'>): number;
  /** Runs one micro-batch; returns each item's decoded pixels (signed range, planar). */
  run(ctx: PipelineContext, items: readonly PipelineItem[], params: PipelineParams, hooks: PipelineHooks): Promise<Float32Array[]>;
  /**
   * Flow families: the one scheduler the family samples with (requests may name it or leave the
   * scheduler unset). Absent: the request chooses among SCHEDULER_NAMES.
   */
  readonly scheduler?: FlowSchedulerName;
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
export const SD_UNET_INPUTS: readonly string[] = ['sample', 'timestep', 'encoder_hidden_states'];
