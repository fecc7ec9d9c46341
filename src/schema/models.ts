/** Model, its defaults and limits, and the `models` query. */
import type { ModelSpec } from '../inference/modelFolder.js';
import { sizeMultiple } from '../inference/request.js';
import { builder } from './builder.js';
import { PIPELINE_FAMILIES } from '../inference/pipelines/index.js';
import { SchedulerNameEnum } from './enums.js';

type ModelView = { spec: ModelSpec; isDefault: boolean };

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
    id: t.id({ resolve: (m) => m.spec.id }),
    kind: t.string({ description: `The pipeline family: ${PIPELINE_FAMILIES.map((f) => f.kind).join(', ')}.`, resolve: (m) => m.spec.kind }),
    isDefault: t.boolean({ resolve: (m) => m.isDefault }),
    description: t.string({ resolve: (m) => m.spec.description }),
    defaults: t.field({ type: ModelDefaultsRef, resolve: (m) => m.spec.defaults }),
    sizeMultiple: t.int({
      description:
        "Output widths and heights are multiples of this (its family's: 64 for SD UNets, 16 for FLUX and SD3 transformers); explicit sizes snap down to it.",
      resolve: (m) => sizeMultiple(m.spec),
    }),
    limits: t.field({ type: ModelLimitsRef, resolve: (m) => m.spec.limits }),
    exporter: t.string({
      description: "The exporter generation the folder was recognised as, e.g. 'optimum ≥ 1.24 / optimum-onnx'.",
      resolve: (m) => m.spec.export.generation,
    }),
    precision: t.string({ description: 'fp32 or fp16, as the UNet declares its ports.', resolve: (m) => m.spec.export.precision }),
    state: t.string({
      description:
        "'loaded' (sessions open), 'loading', or 'available' (loads on first use; see PRELOAD_MODELS and MODEL_MEMORY_MB). In an API process that queues for Redis workers, always 'available'.",
      resolve: (m, _args, ctx) => ctx.engine.modelState(m.spec.id),
    }),
    maskMethod: t.string({
      description:
        "How `masks` are applied: 'unet-mask-channels' (an inpainting UNet takes the mask and masked image) or 'latent-blend' (the latents outside the mask are reset to the input's after every step, as diffusers does with other UNets).",
      resolve: (m) => m.spec.family.maskMethod,
    }),
    warnings: t.stringList({
      description: 'What this folder costs clients (e.g. an unseeded VAE sample, a scheduler fallback); empty when nothing.',
      resolve: (m) => m.spec.warnings,
    }),
  }),
});

builder.queryFields((t) => ({
  models: t.field({
    type: [ModelRef],
    description: 'The pipelines this server can run, with their defaults and limits.',
    resolve: (_root, _args, ctx) => ctx.engine.models().map((spec) => ({ spec, isDefault: spec.id === ctx.engine.defaultModelId })),
  }),
}));
