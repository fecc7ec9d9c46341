/** EditJob and its result types; the editJob query and the editImages / cancelEditJob mutations. */
import type { OutputImage } from '../inference/editRunner.js';
import { type JobError, type JobProgress, type JobResult, type JobSnapshot, PRIORITY } from '../jobs/types.js';
import type { OutputFormat, SizeFit } from '../inference/imageIO.js';
import { builder } from './builder.js';
import { ServiceError } from '../errors.js';
import type { UploadedFile } from '../jobs/editService.js';
import { filesFromDataUrls } from './dataUrls.js';
import { ImageFormatEnum, JobStatusEnum, NoiseGeneratorEnum, SchedulerNameEnum, SizeFitEnum, WebhookEventEnum } from './enums.js';
import type { WebhookAttempt, WebhookEventName } from '../jobs/webhooks.js';
// EditProgress is also an event type (events.ts); the cycle is safe because Pothos resolves fields lazily.
import { EditProgressRef } from './events.js';
import { DEFAULT_PAGE_SIZE, encodeCursor, type HistoryPage, MAX_METADATA_BYTES, MAX_PAGE_SIZE } from '../jobs/history.js';

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** A result as the schema sees it: with its job's id, which its images' URLs name. */
export type JobResultView = JobResult & { jobId: string };
export const resultView = (result: JobResult, jobId: string): JobResultView => ({ ...result, jobId });

export const EditedImageRef = builder.objectRef<OutputImage & { jobId: string; created: number }>('EditedImage').implement({
  fields: (t) => ({
    index: t.exposeInt('index', { description: "Position in the job's output: inputIndex * n + variant." }),
    inputIndex: t.exposeInt('inputIndex'),
    variant: t.exposeInt('variant'),
    seed: t.exposeInt('seed'),
    b64Json: t.string({
      description: 'The encoded image, base64, in the requested format. Select `url` instead to keep responses small.',
      resolve: (i) => b64(i.bytes),
    }),
    url: t.string({
      nullable: true,
      description:
        'A signed URL that downloads this image (GET, no credentials: whoever holds it can read this one image) until RESULT_URL_TTL_SECONDS from now, or until the job is past its retention; then 403 RESULT_URL_EXPIRED or 404 NOT_FOUND. Each read of the field signs a fresh one. With S3_BUCKET: a URL presigned by the bucket now, valid RESULT_URL_TTL_SECONDS from now but never past the job retention (the bucket answers 403 after).',
      resolve: (i, _args, ctx) => ctx.resultUrl(i.jobId, i, i.created),
    }),
    mimeType: t.exposeString('mimeType'),
    width: t.exposeInt('width'),
    height: t.exposeInt('height'),
  }),
});

export const EditUsageRef = builder.objectRef<JobResult['usage']>('EditUsage').implement({
  fields: (t) => ({
    processingTimeSeconds: t.exposeFloat('processingTimeSeconds', { description: "Wall time from the job's start of processing to its result." }),
    queueTimeSeconds: t.exposeFloat('queueTimeSeconds'),
    inputImages: t.exposeInt('inputImages'),
    generatedImages: t.exposeInt('generatedImages', { description: 'inputImages x n' }),
    steps: t.exposeInt('steps', { description: 'Denoise steps run, summed over micro-batches.' }),
    batches: t.exposeInt('batches', { description: 'Pipeline calls the job was split into (1 when everything fit in one batch).' }),
    mergedJobs: t.exposeInt('mergedJobs', { description: 'Jobs that shared these pipeline calls through cross-request batching (1 when the job ran alone).' }),
  }),
});

export const EditResultRef = builder.objectRef<JobResultView>('EditResult').implement({
  fields: (t) => ({
    created: t.exposeFloat('created', { description: 'Unix time in seconds.' }),
    images: t.field({ type: [EditedImageRef], resolve: (r) => r.images.map((i) => ({ ...i, jobId: r.jobId, created: r.created })) }),
    usage: t.field({ type: EditUsageRef, resolve: (r) => r.usage }),
    warnings: t.stringList({
      description:
        "What the client should know about the result: each change from the size asked for (snapped to the model's multiple, or an input resized by `auto`).",
      resolve: (r) => r.warnings ?? [],
    }),
  }),
});

export const EditErrorRef = builder.objectRef<JobError>('EditError').implement({
  fields: (t) => ({
    code: t.exposeString('code', {
      description: 'A stable machine-readable code, e.g. BAD_USER_INPUT, INVALID_IMAGE, IMAGE_TOO_LARGE, OUT_OF_MEMORY, CANCELLED, INTERNAL.',
    }),
    message: t.exposeString('message'),
  }),
});

export const EditPreviewRef = builder.objectRef<JobProgress['previews'][number]>('EditPreview').implement({
  fields: (t) => ({
    index: t.exposeInt('index', { description: 'Index of the output image this previews, as in EditResult.images.' }),
    b64Json: t.string({ resolve: (p) => b64(p.bytes) }),
    mimeType: t.exposeString('mimeType'),
  }),
});

const WebhookAttemptRef = builder.objectRef<WebhookAttempt>('WebhookAttempt').implement({
  description: 'One attempt to deliver one webhook event.',
  fields: (t) => ({
    messageId: t.exposeString('id', { description: 'The `webhook-id` header: the same on every attempt of one event.' }),
    type: t.exposeString('type', { description: 'edit.queued, edit.running, edit.progress, edit.completed, edit.failed or edit.cancelled.' }),
    attempt: t.exposeInt('attempt', { description: '1 for the first try, then each retry.' }),
    at: t.exposeFloat('at', { description: 'Unix time in seconds when the attempt started.' }),
    status: t.exposeInt('status', { nullable: true, description: "The receiver's HTTP status; null when none came back (refused, timed out)." }),
    error: t.exposeString('error', { nullable: true, description: 'Why the attempt failed; null when delivered.' }),
    delivered: t.exposeBoolean('delivered', { description: 'The receiver answered 2xx.' }),
  }),
});

const EditJobRef = builder.objectRef<JobSnapshot>('EditJob').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.field({ type: JobStatusEnum, resolve: (j) => j.status }),
    queuePosition: t.exposeInt('queuePosition', { nullable: true, description: '1-based place in the queue while QUEUED, else null.' }),
    createdAt: t.exposeFloat('createdAt', { description: 'Unix time in seconds.' }),
    inputImages: t.exposeInt('inputImages'),
    n: t.exposeInt('n', { description: 'Variants per input image.' }),
    model: t.exposeString('modelId', { description: 'The model id the job runs on.' }),
    progress: t.field({
      type: EditProgressRef,
      nullable: true,
      description: 'The latest progress while RUNNING (and the last one after).',
      resolve: (j) => (j.progress ? { type: 'progress' as const, jobId: j.id, status: 'RUNNING' as const, ...j.progress } : null),
    }),
    result: t.field({
      type: EditResultRef,
      nullable: true,
      description: 'Set when SUCCEEDED.',
      resolve: async (j, _args, ctx) => {
        // A job listed by editJobs on Redis comes without its result: read it now.
        const result = j.result ?? (j.status === 'SUCCEEDED' ? ((await ctx.jobs.get(j.id, ctx.principal))?.result ?? null) : null);
        return result ? resultView(result, j.id) : null;
      },
    }),
    error: t.field({ type: EditErrorRef, nullable: true, description: 'Set when FAILED.', resolve: (j) => j.error }),
    metadata: t.field({
      type: 'JSON',
      nullable: true,
      description: 'The `metadata` the job was submitted with, as it was given; null when none.',
      resolve: (j) => j.metadata ?? null,
    }),
    webhookDeliveries: t.field({
      type: [WebhookAttemptRef],
      nullable: true,
      description: "Every attempt to deliver this job's webhook events so far, oldest first; null when the job has no webhook.",
      resolve: (j, _args, ctx) => ctx.edits.webhooks.attempts(j.id),
    }),
  }),
});

const PageInfoRef = builder
  .objectRef<{ hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null }>('PageInfo')
  .implement({
    description: 'Relay cursor connections: where a page sits in the whole listing.',
    fields: (t) => ({
      hasNextPage: t.exposeBoolean('hasNextPage', { description: 'More jobs follow `endCursor`.' }),
      hasPreviousPage: t.exposeBoolean('hasPreviousPage', { description: 'True when the page was asked for with `after`.' }),
      startCursor: t.exposeString('startCursor', { nullable: true }),
      endCursor: t.exposeString('endCursor', { nullable: true, description: 'Pass as `after` for the next page; null when the page is empty.' }),
    }),
  });

const EditJobEdgeRef = builder.objectRef<JobSnapshot>('EditJobEdge').implement({
  fields: (t) => ({
    cursor: t.string({ resolve: (j) => encodeCursor(j) }),
    node: t.field({ type: EditJobRef, resolve: (j) => j }),
  }),
});

const EditJobConnectionRef = builder.objectRef<HistoryPage & { after: boolean }>('EditJobConnection').implement({
  fields: (t) => ({
    edges: t.field({ type: [EditJobEdgeRef], resolve: (p) => p.jobs }),
    nodes: t.field({ type: [EditJobRef], description: "The edges' nodes.", resolve: (p) => p.jobs }),
    pageInfo: t.field({
      type: PageInfoRef,
      resolve: (p) => ({
        hasNextPage: p.hasNextPage,
        hasPreviousPage: p.after,
        startCursor: p.jobs.length ? encodeCursor(p.jobs[0]!) : null,
        endCursor: p.jobs.length ? encodeCursor(p.jobs.at(-1)!) : null,
      }),
    }),
  }),
});

builder.queryFields((t) => ({
  editJobs: t.field({
    type: EditJobConnectionRef,
    description:
      "The caller's jobs (an admin's: every tenant's), newest first, while they are kept: finished jobs for the retention period (JOB_RETENTION_SECONDS), as `editJob`. " +
      `A Relay cursor connection: \`first\` jobs (1..${MAX_PAGE_SIZE}, default ${DEFAULT_PAGE_SIZE}) after the cursor \`after\`, optionally only those whose status is \`status\`.`,
    args: {
      first: t.arg.int({ description: `Jobs per page, 1..${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).` }),
      after: t.arg.string({ description: "A cursor from a previous page (`pageInfo.endCursor` or an edge's `cursor`)." }),
      status: t.arg({ type: JobStatusEnum, description: 'Only jobs in this status now.' }),
    },
    resolve: async (_root, args, ctx) => ({ ...(await ctx.jobs.list(ctx.principal, args)), after: args.after != null }),
  }),
  editJob: t.field({
    type: EditJobRef,
    nullable: true,
    description:
      'A job by id: the polling alternative to the subscription. Finished jobs stay readable for the retention period (JOB_RETENTION_SECONDS, default 15 minutes).',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.jobs.get(String(args.id), ctx.principal),
  }),
}));

/**
 * One image list given as uploads (`field`) or data: URLs (`${field}Urls`), never both; a required
 * list (`images`) must be given, an optional one (`referenceImages`) is empty when neither is.
 */
function uploadsOrDataUrls(
  field: 'image' | 'referenceImage',
  uploads: readonly UploadedFile[] | null | undefined,
  urls: readonly string[] | null | undefined,
  maxFileBytes: number,
): readonly UploadedFile[] {
  const [names, urlNames] = [`${field}s`, `${field}Urls`];
  if (uploads && urls) throw new ServiceError('BAD_USER_INPUT', `give either ${names} (uploads) or ${urlNames} (data: URLs), not both`);
  if (urls) return filesFromDataUrls(urls, maxFileBytes, urlNames);
  if (uploads) return uploads;
  if (field === 'image') throw new ServiceError('BAD_USER_INPUT', `at least one image is required: ${names} (multipart uploads) or ${urlNames} (data: URLs)`);
  return [];
}

builder.mutationFields((t) => ({
  editImages: t.field({
    type: EditJobRef,
    description:
      "Queue one edit of all `images` as a single batched job. Each input image gets `n`\nvariants; the job's outputs are ordered input by input: all variants of image 0,\nthen all of image 1, and so on. Returns at once with the job in QUEUED (or RUNNING)\nstate; progress and the result arrive through `editJobEvents`, or by polling `editJob`.\nUnset arguments take the chosen model's defaults (see `Model.defaults`).",
    args: {
      images: t.arg({
        type: ['Upload'],
        required: { list: false, items: true },
        description: 'The input images as multipart uploads, in order. Give either `images` or `imageUrls`.',
      }),
      imageUrls: t.arg.stringList({
        description:
          'The input images as `data:` URLs (`data:image/png;base64,…`), for clients that cannot upload files, such as GraphiQL. Only `data:` URLs are accepted: other URLs are never fetched (BAD_USER_INPUT). Checked as uploads are (MAX_FILE_BYTES, MAX_TOTAL_BYTES, content, pixels); the JSON body is bounded by GRAPHQL_MAX_JSON_BYTES. Give either `images` or `imageUrls`.',
      }),
      referenceImages: t.arg({
        type: ['Upload'],
        required: { list: false, items: true },
        description:
          'Reference images as multipart uploads, for models that condition one output on several images (`Model.maxReferenceImages` above 0: Qwen-Image-Edit Plus): each input image is edited with the list [referenceImages…, that input], so in the prompt "Picture 1" is the first reference and the input is the last picture; the output keeps the input\'s size (the last image sets the aspect ratio, as in diffusers). Refused (BAD_USER_INPUT) on other models. Checked as `images` are (MAX_FILE_BYTES; they count toward MAX_TOTAL_BYTES and the job\'s pixels). Give either `referenceImages` or `referenceImageUrls`.',
      }),
      referenceImageUrls: t.arg.stringList({
        description: 'The reference images as `data:` URLs, checked as `imageUrls` are. Give either `referenceImages` or `referenceImageUrls`.',
      }),
      masks: t.arg({
        type: ['Upload'],
        required: { list: false, items: false },
        description:
          "Optional per-image masks, at most one per image in upload order; null edits the whole image. A mask must have its image's size. With an alpha channel, fully transparent pixels are edited (OpenAI's rule); without one, white is edited and black kept; grey edits partly. Outside the mask the output is the input's pixels.",
      }),
      maskBlur: t.arg.int({ description: 'Feathers mask edges: a Gaussian of this standard deviation in output pixels (0..64, default 0).' }),
      prompt: t.arg.string({
        required: true,
        description:
          "The edit instruction applied to every image that has no entry in `prompts`. Empty or whitespace-only is refused (BAD_USER_INPUT) unless the model's `promptRequired` is false.",
      }),
      prompts: t.arg.stringList({
        description: 'Optional per-image instructions: exactly one per image, in upload order; each overrides `prompt` for its image.',
      }),
      negativePrompt: t.arg.string(),
      n: t.arg.int({ defaultValue: 1, description: 'Variants per input image (1..model limit). Total outputs = images x n.' }),
      size: t.arg.string({
        description:
          "Output size as WIDTHxHEIGHT (e.g. 512x512), or 'auto' (the default, as OpenAI's): each input's own size and aspect ratio within the model's pixel budget. Sizes snap down to the model's multiple (`Model.sizeMultiple`); any change from the size asked for is in `EditResult.warnings`.",
      }),
      fit: t.arg({ type: SizeFitEnum, description: 'How an input meets an explicit `size` of another aspect ratio (default PAD: nothing is cut off).' }),
      steps: t.arg.int(),
      guidanceScale: t.arg.float({
        description:
          'Classifier-free guidance (UNet models) or the guidance embedding (FLUX dev). Refused (BAD_USER_INPUT) on models without a guidance input (Qwen-Image-Edit: send trueCfgScale with a negativePrompt).',
      }),
      imageGuidanceScale: t.arg.float(),
      strength: t.arg.float({ description: 'For img2img-style models: how far the input is noised, 0 < strength <= 1.' }),
      seed: t.arg.int({
        description:
          "Base seed. Output k of input i uses a seed derived only from (seed, i, k), so an image's result does not depend on what else is in the batch.",
      }),
      generator: t.arg({ type: NoiseGeneratorEnum, description: 'The noise generator the seed seeds; default TORCH.' }),
      scheduler: t.arg({
        type: SchedulerNameEnum,
        description: 'UNet models: any but FLOW_MATCH_EULER. Flow models (FLUX) sample with FLOW_MATCH_EULER only: leave unset or send it.',
      }),
      trueCfgScale: t.arg.float({
        description:
          'Flow models (FLUX, Qwen-Image-Edit): true classifier-free guidance against `negativePrompt` when above 1 (the negative prompt runs in the same batch; without a negative prompt it is off). Refused on UNet models (use guidanceScale).',
      }),
      maxSequenceLength: t.arg.int({
        description:
          'Models with a T5 encoder (FLUX): T5 tokens the prompt is padded or truncated to (1..ModelLimits.maxSequenceLength; default ModelDefaults.maxSequenceLength). Refused on models without T5.',
      }),
      model: t.arg.string({ description: "A model id from `models`; default: the server's default model." }),
      outputFormat: t.arg({ type: ImageFormatEnum, defaultValue: 'PNG' }),
      outputQuality: t.arg.int({ description: '1..100, for JPEG and WEBP.' }),
      previewEvery: t.arg.int({ defaultValue: 0, description: 'Send a small preview of every image in progress events every this many steps; 0 sends none.' }),
      webhookUrl: t.arg.string({
        description:
          "POST this job's events here, signed as Standard Webhooks define it (WEBHOOK_SECRET): `{type, timestamp, data}` with `data` the job's id and status (and on completion its result, as image URLs). Retried with backoff until a 2xx; attempts are in `EditJob.webhookDeliveries`. Private, loopback and link-local targets are refused unless WEBHOOK_ALLOW_PRIVATE.",
      }),
      webhookEvents: t.arg({
        type: [WebhookEventEnum],
        description: 'Which events to send (default COMPLETED, FAILED, CANCELLED). PROGRESS is sent at most once per 500 ms.',
      }),
      metadata: t.arg({
        type: 'JSON',
        description: `Your own data for this job: a JSON object of at most ${MAX_METADATA_BYTES} bytes as JSON (PAYLOAD_TOO_LARGE past it), returned as \`EditJob.metadata\` and sent in every webhook event's \`data.metadata\`.`,
      }),
      priority: t.arg.int({
        description: `Orders your own queued jobs: higher runs first (${PRIORITY.min}..${PRIORITY.max}, default ${PRIORITY.default}). Tenants take turns whatever their priorities, so it never moves a job ahead of another tenant's turn. Only admins may raise it above ${PRIORITY.default} (FORBIDDEN otherwise).`,
      }),
      idempotencyKey: t.arg.string({
        description:
          'Makes the submit safe to retry (as the `Idempotency-Key` header, which a multipart request may send instead; both must then agree): the same caller with the same key within 24 h gets the job the first request created; the same key with a different request is refused with IDEMPOTENCY_CONFLICT. 1-255 printable ASCII characters; keys are per tenant.',
      }),
    },
    resolve: (
      _root,
      {
        images,
        imageUrls,
        referenceImages: references,
        referenceImageUrls,
        masks,
        model,
        idempotencyKey,
        webhookUrl,
        webhookEvents,
        metadata,
        priority,
        ...args
      },
      ctx,
    ) => {
      const header = ctx.idempotencyKey ?? null;
      if (header !== null && idempotencyKey != null && header !== idempotencyKey)
        throw new ServiceError('BAD_USER_INPUT', 'the Idempotency-Key header and the idempotencyKey argument differ: give one, or the same key in both');
      return ctx.edits.submit(
        {
          model,
          images: uploadsOrDataUrls('image', images, imageUrls, ctx.edits.limits.maxFileBytes),
          references: uploadsOrDataUrls('referenceImage', references, referenceImageUrls, ctx.edits.limits.maxFileBytes),
          masks,
          idempotencyKey: idempotencyKey ?? header,
          metadata,
          priority,
          webhook:
            webhookUrl == null ? null : { url: webhookUrl, events: webhookEvents?.map((e) => e.toLowerCase() as WebhookEventName), resultUrl: ctx.resultUrl },
          options: {
            ...args,
            outputFormat: args.outputFormat ? (args.outputFormat.toLowerCase() as OutputFormat) : null,
            fit: args.fit ? (args.fit.toLowerCase() as SizeFit) : null,
          },
        },
        ctx.principal,
      );
    },
  }),
  cancelEditJob: t.field({
    type: EditJobRef,
    description:
      "Cancel a queued or running job. Takes effect before the job's next denoise step; other jobs are unaffected. Cancelling a finished job returns it unchanged.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.jobs.cancel(String(args.id), ctx.principal),
  }),
}));
