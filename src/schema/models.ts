/** Model, its defaults and limits, and the `models` query. */
import type { ModelSpec } from '../inference/modelFolder.js';
import { sizeMultiple } from '../inference/request.js';
import { builder } from './builder.js';
import { PIPELINE_FAMILIES } from '../inference/pipelines/index.js';
import { SchedulerNameEnum } from './enums.js';

/** A model in `models`; `spec` is null when its folder cannot be read (state 'error'). */
type ModelView = { id: string; spec: ModelSpec | null; isDefault: boolean };

/** What a model whose folder cannot be read shows: it takes no edits (every limit 0); `error` says why. */
const UNREADABLE: Pick<ModelSpec, 'defaults' | 'limits'> = {
  defaults: { steps: 0, guidanceScale: 0, imageGuidanceScale: null, strength: null, scheduler: 'EULER', size: '', trueCfgScale: null, maxSequenceLength: null },
  limits: { maxImagesPerJob: 0, maxN: 0, maxSteps: 0, maxPixels: 0 },
};

const ModelDefaultsRef = builder.objectRef<ModelSpec['defaults']>('ModelDefaults').implement({
  fields: (t) => ({
    steps: t.exposeInt('steps'),
    guidanceScale: t.exposeFloat('guidanceScale'),
    imageGuidanceScale: t.exposeFloat('imageGuidanceScale', { nullable: true }),
    strength: t.exposeFloat('strength', { nullable: true }),
    scheduler: t.field({ type: SchedulerNameEnum, resolve: (d) => d.scheduler }),
    size: t.exposeString('size'),
    trueCfgScale: t.float({
      nullable: true,
      description: 'Flow models: the default true CFG scale (1 = off); null where true CFG does not apply.',
      resolve: (d) => d.trueCfgScale ?? null,
    }),
    maxSequenceLength: t.int({
      nullable: true,
      description: 'Models with a T5 encoder: the default T5 token count (FLUX dev 512, schnell 256); null elsewhere.',
      resolve: (d) => d.maxSequenceLength ?? null,
    }),
  }),
});

const ModelLimitsRef = builder.objectRef<ModelSpec['limits']>('ModelLimits').implement({
  fields: (t) => ({
    maxImagesPerJob: t.exposeInt('maxImagesPerJob'),
    maxN: t.exposeInt('maxN'),
    maxSteps: t.exposeInt('maxSteps'),
    maxPixels: t.exposeInt('maxPixels', { description: 'Largest width x height accepted for one output.' }),
    maxSequenceLength: t.int({
      nullable: true,
      description: 'Models with a T5 encoder: the largest maxSequenceLength accepted; null elsewhere.',
      resolve: (l) => l.maxSequenceLength ?? null,
    }),
  }),
});

const ModelRef = builder.objectRef<ModelView>('Model').implement({
  fields: (t) => ({
    id: t.id({ resolve: (m) => m.id }),
    kind: t.string({
      description: `The pipeline family: ${PIPELINE_FAMILIES.map((f) => f.kind).join(', ')}; 'unknown' when the folder cannot be read.`,
      resolve: (m) => m.spec?.kind ?? 'unknown',
    }),
    isDefault: t.boolean({ resolve: (m) => m.isDefault }),
    promptRequired: t.boolean({
      description:
        'Whether an edit needs a prompt with some text: an empty or whitespace-only prompt is refused with BAD_USER_INPUT, unless the folder declares `promptOptional` (edit-server.json).',
      resolve: (m) => m.spec?.promptRequired ?? true,
    }),
    description: t.string({ resolve: (m) => m.spec?.description ?? 'cannot be served (see `error`)' }),
    defaults: t.field({ type: ModelDefaultsRef, resolve: (m) => (m.spec ?? UNREADABLE).defaults }),
    sizeMultiple: t.int({
      description:
        "Output widths and heights are multiples of this (its family's: 64 for SD UNets, 16 for FLUX and SD3 transformers); explicit sizes snap down to it. 0 when the folder cannot be read.",
      resolve: (m) => (m.spec ? sizeMultiple(m.spec) : 0),
    }),
    maxReferenceImages: t.int({
      description:
        "Reference images one edit may add (`editImages(referenceImages:)`): each output is conditioned on them and its input together. 0 where the model's family takes one image per output, or the folder cannot be read.",
      resolve: (m) => (m.spec?.family.referenceImages?.maxConditionImages ?? 1) - 1,
    }),
    limits: t.field({ type: ModelLimitsRef, description: 'All 0 when the folder cannot be read.', resolve: (m) => (m.spec ?? UNREADABLE).limits }),
    exporter: t.string({
      description: "The exporter generation the folder was recognised as, e.g. 'optimum ≥ 1.24 / optimum-onnx'; 'unknown' when the folder cannot be read.",
      resolve: (m) => m.spec?.export.generation ?? 'unknown',
    }),
    precision: t.string({
      description: "fp32 or fp16, as the UNet declares its ports; 'unknown' when the folder cannot be read.",
      resolve: (m) => m.spec?.export.precision ?? 'unknown',
    }),
    state: t.string({
      description:
        "'loaded' (sessions open), 'loading', 'available' (loads on first use; see PRELOAD_MODELS and MODEL_MEMORY_MB), or 'error' (the folder cannot be read or its sessions did not open: `error` says why; its jobs get MODEL_UNAVAILABLE, and it is tried again on next use and on SIGHUP). In an API process that queues for Redis workers, 'available' or 'error'.",
      resolve: (m, _args, ctx) => ctx.engine.modelState(m.id),
    }),
    error: t.string({
      nullable: true,
      description: "Why the model is in state 'error' (the folder's problem, e.g. a missing unet/model.onnx); null in any other state.",
      resolve: (m, _args, ctx) => ctx.engine.errorReason(m.id),
    }),
    maskMethod: t.string({
      description:
        "How `masks` are applied: 'unet-mask-channels' (an inpainting UNet takes the mask and masked image) or 'latent-blend' (the latents outside the mask are reset to the input's after every step, as diffusers does with other UNets); 'unknown' when the folder cannot be read.",
      resolve: (m) => m.spec?.family.maskMethod ?? 'unknown',
    }),
    warnings: t.stringList({
      description: 'What this folder costs clients (e.g. an unseeded VAE sample, a scheduler fallback); empty when nothing.',
      resolve: (m) => m.spec?.warnings ?? [],
    }),
  }),
});

builder.queryFields((t) => ({
  models: t.field({
    type: [ModelRef],
    description: "The pipelines this server can run, with their defaults and limits; folders that cannot be read are listed too, in state 'error'.",
    resolve: (_root, _args, ctx) => {
      const specs = new Map(ctx.engine.models().map((s) => [s.id, s]));
      return ctx.engine.catalogue.modelIds().map((id) => ({ id, spec: specs.get(id) ?? null, isDefault: id === ctx.engine.defaultModelId }));
    },
  }),
}));
