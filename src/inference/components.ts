/**
 * The ONNX components a model folder can hold, as optimum exports diffusers pipelines: the one list
 * of folder names and of the ports each must expose. A family names the components it runs.
 */
export const COMPONENTS = {
  textEncoder: { dir: 'text_encoder', inputs: ['input_ids'], outputs: [['last_hidden_state']] },
  /** A second text encoder: CLIP with projection, or T5 (a family checks what else it reads). */
  textEncoder2: { dir: 'text_encoder_2', inputs: ['input_ids'], outputs: [['last_hidden_state']] },
  unet: { dir: 'unet', inputs: ['sample', 'timestep', 'encoder_hidden_states'], outputs: [['out_sample']] },
  /** A third text encoder (T5). */
  textEncoder3: { dir: 'text_encoder_3', inputs: ['input_ids'], outputs: [['last_hidden_state']] },
  /**
   * Transformers as optimum exports them: the ports every one declares (a family's
   * `denoiser.inputs` lists the rest it feeds).
   */
  transformer: { dir: 'transformer', inputs: ['hidden_states', 'encoder_hidden_states', 'timestep'], outputs: [['out_hidden_states']] },
  vaeEncoder: { dir: 'vae_encoder', inputs: ['sample'], outputs: [['latent_parameters', 'latent_sample']] },
  vaeDecoder: { dir: 'vae_decoder', inputs: ['latent_sample'], outputs: [['sample']] },
} as const satisfies Record<string, { dir: string; inputs: readonly string[]; outputs: readonly (readonly string[])[] }>;

export type Component = keyof typeof COMPONENTS;

/** `unet/model.onnx`, for messages and paths. */
export function componentFile(component: Component): string {
  return `${COMPONENTS[component].dir}/model.onnx`;
}
