/**
 * Which exporter wrote a folder, told apart by the ports it declares (see models/exports.ts for
 * the table), and what each generation costs a client. The feeds adapt to every generation
 * (sessions.ts); what cannot be adapted is reported as a warning.
 */
import type { OnnxSignature } from './onnxSignature.js';
import type { Component } from './components.js';

export interface ExportInfo {
  /** e.g. "optimum ≥ 1.24 / optimum-onnx". */
  generation: string;
  precision: 'fp32' | 'fp16';
  /** `timestep` as the UNet declares it, e.g. "float32 scalar" or "int64 [steps]". */
  timestep: string;
  vaeEncoderOutput: 'latent_parameters' | 'latent_sample';
  warnings: string[];
}

type Signatures = Partial<Record<Component, OnnxSignature>>;

/**
 * `denoiser` and `latentSampleCost` are the folder's family's (its denoiser's component, and what an
 * encoder that samples inside the graph costs it).
 */
export function recogniseExport(pipelineClass: string, denoiser: Component, latentSampleCost: string, s: Signatures): ExportInfo {
  // Transformers take `hidden_states` where UNets take `sample`.
  const ports = s[denoiser]?.inputs ?? [];
  const timestep = ports.find((p) => p.name === 'timestep');
  const sample = ports.find((p) => p.name === 'sample' || p.name === 'hidden_states');
  const imgIds = ports.find((p) => p.name === 'img_ids');
  const vaeEncoderOutput = s.vaeEncoder?.outputs.some((p) => p.name === 'latent_parameters') ? 'latent_parameters' : 'latent_sample';
  const scalar = timestep !== undefined && timestep.shape.length === 0;
  const intTimestep = timestep?.type === 'int64' || timestep?.type === 'int32';
  let generation: string;
  if (/^Onnx|OnnxPipeline$/.test(pipelineClass)) generation = "diffusers' convert_stable_diffusion_checkpoint_to_onnx.py";
  else if (imgIds)
    generation =
      imgIds.shape.length === 3
        ? 'optimum with diffusers < 0.31 (img_ids/txt_ids with a batch axis)'
        : 'optimum-onnx with diffusers ≥ 0.31 (img_ids/txt_ids [sequence, 3])';
  else if (sample?.name === 'hidden_states') generation = 'optimum / optimum-onnx (transformer)';
  else if (scalar) generation = 'optimum ≥ 1.24 / optimum-onnx';
  else if (intTimestep && vaeEncoderOutput === 'latent_parameters') generation = 'optimum 1.23';
  else if (intTimestep) generation = 'optimum ≤ 1.22';
  else generation = 'unrecognised exporter (ports as optimum declares them)';
  const warnings: string[] = [];
  if (vaeEncoderOutput === 'latent_sample') {
    warnings.push(
      `vae_encoder returns "latent_sample", a sample drawn inside the graph with its own unseeded noise: ${latentSampleCost}. ` +
        'Re-export with optimum ≥ 1.23 (optimum-cli export onnx --model <id> <dir>) for "latent_parameters".',
    );
  }
  return {
    generation,
    precision: sample?.type === 'float16' ? 'fp16' : 'fp32',
    timestep: timestep ? `${timestep.type} ${scalar ? 'scalar' : `[${timestep.shape.join(', ')}]`}` : 'missing',
    vaeEncoderOutput,
    warnings,
  };
}
