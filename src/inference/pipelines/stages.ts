/**
 * One micro-batch through a family's named stages (family.ts `FamilyStages`), in diffusers' order:
 * encode the prompt, take the timesteps, prepare the latents (where the run's noise is drawn),
 * predict at every step of the shared denoise loop, decode.
 */
import type { PipelineContext, PipelineHooks, PipelineItem, PipelineParams } from './common.js';
import { denoiseLatents, generatorsFor } from './common.js';
import type { PipelineFamilyDef, Schedule } from './family.js';

/** The timesteps stage: a scheduler set to the family's options for this size, from its begin index. */
export function timestepsFor(family: Pick<PipelineFamilyDef, 'timestepOptions' | 'startIndex'>, ctx: PipelineContext, params: PipelineParams): Schedule {
  const scheduler = ctx.createScheduler(params.scheduler);
  scheduler.setTimesteps(params.steps, family.timestepOptions?.(ctx.sessions.spec, params.steps, params));
  const begin = family.startIndex(params);
  if (begin === null) return { scheduler, timesteps: scheduler.timesteps };
  scheduler.setBeginIndex(begin);
  return { scheduler, timesteps: scheduler.timesteps.subarray(begin) };
}

/** Runs one micro-batch through `family`'s stages; returns each item's decoded pixels (signed range, planar). */
export async function runFamily(
  family: PipelineFamilyDef,
  ctx: PipelineContext,
  items: readonly PipelineItem[],
  params: PipelineParams,
  hooks: PipelineHooks,
): Promise<Float32Array[]> {
  const { stages } = family;
  const conditioning = await stages.encodePrompt(ctx, items, params);
  const generators = generatorsFor(items);
  const schedule = timestepsFor(family, ctx, params);
  const prepared = await stages.prepareLatents(ctx, items, params, schedule, generators);
  const predict = stages.predict(ctx, items, params, conditioning, prepared);
  const view = prepared.preview;
  const stepHooks: PipelineHooks = view ? { ...hooks, afterStep: (info) => hooks.afterStep(view(info)) } : hooks;
  const final = await denoiseLatents(
    schedule.scheduler,
    schedule.timesteps,
    prepared.latents,
    predict,
    generators,
    prepared.shape,
    stepHooks,
    ctx.scratch,
    prepared.blend,
  );
  return stages.decode(ctx, final, items, prepared, hooks);
}
