/** The EditJobEvent interface, its event types, and the editJobEvents subscription. */
import type { JobEvent } from '../jobs/types.js';
import { builder } from './builder.js';
import { CancelReasonEnum, JobStatusEnum } from './enums.js';
import { EditErrorRef, EditPreviewRef, EditResultRef, resultView } from './jobs.js';

type EventOf<T extends JobEvent['type']> = Extract<JobEvent, { type: T }>;

const TYPE_NAME: Record<JobEvent['type'], string> = {
  queued: 'EditQueued',
  progress: 'EditProgress',
  completed: 'EditCompleted',
  failed: 'EditFailed',
  cancelled: 'EditCancelled',
};

export const EditJobEventRef = builder.interfaceRef<JobEvent>('EditJobEvent').implement({
  resolveType: (event) => TYPE_NAME[event.type],
  fields: (t) => ({
    jobId: t.exposeID('jobId'),
    status: t.field({ type: JobStatusEnum, resolve: (e) => e.status }),
  }),
});

builder.objectRef<EventOf<'queued'>>('EditQueued').implement({
  interfaces: [EditJobEventRef],
  fields: (t) => ({ position: t.exposeInt('position') }),
});

export const EditProgressRef = builder.objectRef<EventOf<'progress'>>('EditProgress').implement({
  description:
    'One denoise step finished. `step` counts 1..totalSteps over the whole job (all its micro-batches) and never goes backwards within one attempt; a job retried after a worker was lost sends EditQueued again and counts from 1. Before step 1, a job whose model is not loaded yet (see Model.state) gets one event with step 0, totalSteps 0 and phase LOADING_MODEL.',
  interfaces: [EditJobEventRef],
  fields: (t) => ({
    step: t.exposeInt('step'),
    totalSteps: t.exposeInt('totalSteps'),
    phase: t.string({
      nullable: true,
      description: "'LOADING_MODEL' while the job waits for its model to load (step 0); null for denoise steps.",
      resolve: (e) => (e.phase === 'loading-model' ? 'LOADING_MODEL' : null),
    }),
    emittedAt: t.exposeFloat('emittedAt', {
      description: 'Unix time in milliseconds when this step finished on the inference worker (for measuring delivery latency).',
    }),
    previews: t.field({
      type: [EditPreviewRef],
      description: 'Present on the steps chosen by previewEvery: one small preview per output image.',
      resolve: (e) => e.previews,
    }),
  }),
});

builder.objectRef<EventOf<'completed'>>('EditCompleted').implement({
  interfaces: [EditJobEventRef],
  fields: (t) => ({ result: t.field({ type: EditResultRef, resolve: (e) => resultView(e.result, e.jobId) }) }),
});

builder.objectRef<EventOf<'failed'>>('EditFailed').implement({
  interfaces: [EditJobEventRef],
  fields: (t) => ({ error: t.field({ type: EditErrorRef, resolve: (e) => e.error }) }),
});

builder.objectRef<EventOf<'cancelled'>>('EditCancelled').implement({
  interfaces: [EditJobEventRef],
  fields: (t) => ({
    reason: t.field({
      type: CancelReasonEnum,
      description:
        'Why the job was cancelled: CLIENT (cancelEditJob, or a REST client that disconnected), SHUTDOWN (the server stopped before the job could finish), TIMEOUT (a time limit).',
      resolve: (e) => e.reason ?? 'CLIENT',
    }),
  }),
});

builder.subscriptionFields((t) => ({
  editJobEvents: t.field({
    type: EditJobEventRef,
    description:
      "Every event of one job, from its state at subscription time to its end. A subscriber\nthat arrives late first receives the job's current state (its queue position or its\nlatest progress); a job that has already finished yields its final event, and the\nstream then completes. The stream always ends with exactly one EditCompleted,\nEditFailed or EditCancelled event.",
    args: { id: t.arg.id({ required: true }) },
    subscribe: (_root, args, ctx) => ctx.jobs.subscribe(String(args.id), ctx.principal),
    resolve: (event) => event,
  }),
}));
