/**
 * What a model folder is read into (modelFolder.ts reads it; the pipeline families plan and run
 * with it). A module of types only, so that the families and the folder reader do not import each
 * other.
 */
import type { EditSchedulerName } from './schedulers/types.js';
import type { Component } from './components.js';
import type { OnnxSignature } from './onnxSignature.js';
import type { ExportInfo } from './exportGeneration.js';
import type { PipelineFamilyDef } from './pipelines/family.js';

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
  /**
   * Bytes held besides the weights whatever the batch: ONNX Runtime's and Node's own, the text
   * encoders' runs (0 unless measured; SD 1.5-size exports: see SD15_MEMORY).
   */
  runtimeBytes: number;
  /** Attention heads at the highest-resolution attention level; 0 for models without attention. */
  attentionHeads: number;
  /**
   * Bytes held per attention score per head at that level: 4 for one fp32 score matrix; more where
   * the runtime holds several at once (scores, softmax).
   */
  attentionBytesPerScore: number;
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
  /** Its family's `kind` (`Model.kind`). */
  kind: string;
  /** The pipeline family that plans and runs this model's edits. */
  family: PipelineFamilyDef;
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
  /** Whether an edit needs a prompt with some text (edit-server.json `promptOptional: true` says it does not). */
  promptRequired: boolean;
  /** scheduler_config.json as on disk; parsed per scheduler, since diffusers' defaults differ by class. */
  schedulerJson: Record<string, unknown>;
  /** VAE latent scaling factor (0.18215 for SD 1.x). */
  scalingFactor: number;
  /** VAE latent shift (latents = (z − shift)·scale where the VAE config has one); 0 for SD 1.x/2.x. */
  shiftFactor: number;
  /** Pixels per latent pixel along each axis (8 for SD). */
  vaeScaleFactor: number;
  latentChannels: number;
  /** Input channels of the denoiser (UNet or transformer), from its config or its ports. */
  denoiserInChannels: number;
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
