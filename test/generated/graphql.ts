import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';
export type Maybe<T> = T | null;
export type InputMaybe<T> = Maybe<T>;
export type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
export type MakeOptional<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]?: Maybe<T[SubKey]> };
export type MakeMaybe<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]: Maybe<T[SubKey]> };
export type MakeEmpty<T extends { [key: string]: unknown }, K extends keyof T> = { [_ in K]?: never };
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
/** All built-in and custom scalars, mapped to their actual values */
export type Scalars = {
  ID: { input: string; output: string; }
  String: { input: string; output: string; }
  Boolean: { input: boolean; output: boolean; }
  Int: { input: number; output: number; }
  Float: { input: number; output: number; }
  JSON: { input: unknown; output: unknown; }
  Upload: { input: unknown; output: unknown; }
};

export type CancelReason =
  | 'CLIENT'
  | 'SHUTDOWN'
  | 'TIMEOUT';

export type EditCancelled = EditJobEvent & {
  __typename?: 'EditCancelled';
  jobId: Scalars['ID']['output'];
  /** Why the job was cancelled: CLIENT (cancelEditJob, or a REST client that disconnected), SHUTDOWN (the server stopped before the job could finish), TIMEOUT (a time limit). */
  reason: CancelReason;
  status: JobStatus;
};

export type EditCompleted = EditJobEvent & {
  __typename?: 'EditCompleted';
  jobId: Scalars['ID']['output'];
  result: EditResult;
  status: JobStatus;
};

export type EditError = {
  __typename?: 'EditError';
  /** A stable machine-readable code, e.g. BAD_USER_INPUT, INVALID_IMAGE, IMAGE_TOO_LARGE, OUT_OF_MEMORY, CANCELLED, INTERNAL. */
  code: Scalars['String']['output'];
  message: Scalars['String']['output'];
};

export type EditFailed = EditJobEvent & {
  __typename?: 'EditFailed';
  error: EditError;
  jobId: Scalars['ID']['output'];
  status: JobStatus;
};

export type EditJob = {
  __typename?: 'EditJob';
  /** Unix time in seconds. */
  createdAt: Scalars['Float']['output'];
  /** Set when FAILED. */
  error?: Maybe<EditError>;
  id: Scalars['ID']['output'];
  inputImages: Scalars['Int']['output'];
  /** The `metadata` the job was submitted with, as it was given; null when none. */
  metadata?: Maybe<Scalars['JSON']['output']>;
  /** The model id the job runs on. */
  model: Scalars['String']['output'];
  /** Variants per input image. */
  n: Scalars['Int']['output'];
  /** The latest progress while RUNNING (and the last one after). */
  progress?: Maybe<EditProgress>;
  /** 1-based place in the queue while QUEUED, else null. */
  queuePosition?: Maybe<Scalars['Int']['output']>;
  /** Set when SUCCEEDED. */
  result?: Maybe<EditResult>;
  status: JobStatus;
  /** Every attempt to deliver this job's webhook events so far, oldest first; null when the job has no webhook. */
  webhookDeliveries?: Maybe<Array<WebhookAttempt>>;
};

export type EditJobConnection = {
  __typename?: 'EditJobConnection';
  edges: Array<EditJobEdge>;
  /** The edges' nodes. */
  nodes: Array<EditJob>;
  pageInfo: PageInfo;
};

export type EditJobEdge = {
  __typename?: 'EditJobEdge';
  cursor: Scalars['String']['output'];
  node: EditJob;
};

export type EditJobEvent = {
  jobId: Scalars['ID']['output'];
  status: JobStatus;
};

export type EditPreview = {
  __typename?: 'EditPreview';
  b64Json: Scalars['String']['output'];
  /** Index of the output image this previews, as in EditResult.images. */
  index: Scalars['Int']['output'];
  mimeType: Scalars['String']['output'];
};

/** One denoise step finished. `step` counts 1..totalSteps over the whole job (all its micro-batches) and never goes backwards within one attempt; a job retried after a worker was lost sends EditQueued again and counts from 1. Before step 1, a job whose model is not loaded yet (see Model.state) gets one event with step 0, totalSteps 0 and phase LOADING_MODEL. */
export type EditProgress = EditJobEvent & {
  __typename?: 'EditProgress';
  /** Unix time in milliseconds when this step finished on the inference worker (for measuring delivery latency). */
  emittedAt: Scalars['Float']['output'];
  jobId: Scalars['ID']['output'];
  /** 'LOADING_MODEL' while the job waits for its model to load (step 0); null for denoise steps. */
  phase?: Maybe<Scalars['String']['output']>;
  /** Present on the steps chosen by previewEvery: one small preview per output image. */
  previews: Array<EditPreview>;
  status: JobStatus;
  step: Scalars['Int']['output'];
  totalSteps: Scalars['Int']['output'];
};

export type EditQueued = EditJobEvent & {
  __typename?: 'EditQueued';
  jobId: Scalars['ID']['output'];
  position: Scalars['Int']['output'];
  status: JobStatus;
};

export type EditResult = {
  __typename?: 'EditResult';
  /** Unix time in seconds. */
  created: Scalars['Float']['output'];
  images: Array<EditedImage>;
  usage: EditUsage;
  /** What the client should know about the result: each change from the size asked for (snapped to the model's multiple, or an input resized by `auto`). */
  warnings: Array<Scalars['String']['output']>;
};

export type EditUsage = {
  __typename?: 'EditUsage';
  /** Pipeline calls the job was split into (1 when everything fit in one batch). */
  batches: Scalars['Int']['output'];
  /** inputImages x n */
  generatedImages: Scalars['Int']['output'];
  inputImages: Scalars['Int']['output'];
  /** Jobs that shared these pipeline calls through cross-request batching (1 when the job ran alone). */
  mergedJobs: Scalars['Int']['output'];
  /** Wall time from the job's start of processing to its result. */
  processingTimeSeconds: Scalars['Float']['output'];
  queueTimeSeconds: Scalars['Float']['output'];
  /** Denoise steps run, summed over micro-batches. */
  steps: Scalars['Int']['output'];
};

export type EditedImage = {
  __typename?: 'EditedImage';
  /** The encoded image, base64, in the requested format. Select `url` instead to keep responses small. */
  b64Json: Scalars['String']['output'];
  height: Scalars['Int']['output'];
  /** Position in the job's output: inputIndex * n + variant. */
  index: Scalars['Int']['output'];
  inputIndex: Scalars['Int']['output'];
  mimeType: Scalars['String']['output'];
  seed: Scalars['Int']['output'];
  /** A signed URL that downloads this image (GET, no credentials: whoever holds it can read this one image) until RESULT_URL_TTL_SECONDS from now, or until the job is past its retention; then 403 RESULT_URL_EXPIRED or 404 NOT_FOUND. Each read of the field signs a fresh one. With S3_BUCKET: a URL presigned by the bucket now, valid RESULT_URL_TTL_SECONDS from now but never past the job retention (the bucket answers 403 after). */
  url?: Maybe<Scalars['String']['output']>;
  variant: Scalars['Int']['output'];
  width: Scalars['Int']['output'];
};

export type ImageFormat =
  | 'JPEG'
  | 'PNG'
  | 'WEBP';

export type JobStatus =
  | 'CANCELLED'
  | 'FAILED'
  | 'QUEUED'
  | 'RUNNING'
  | 'SUCCEEDED';

export type Model = {
  __typename?: 'Model';
  defaults: ModelDefaults;
  description: Scalars['String']['output'];
  /** Why the model is in state 'error' (the folder's problem, e.g. a missing unet/model.onnx); null in any other state. */
  error?: Maybe<Scalars['String']['output']>;
  /** The exporter generation the folder was recognised as, e.g. 'optimum ≥ 1.24 / optimum-onnx'; 'unknown' when the folder cannot be read. */
  exporter: Scalars['String']['output'];
  id: Scalars['ID']['output'];
  isDefault: Scalars['Boolean']['output'];
  /** The pipeline family: instruct-pix2pix, img2img, inpaint, sdxl-img2img, sdxl-inpaint, flux-img2img, flux-kontext, sd3-img2img, sd3-inpaint, qwen-image-edit, qwen-image-edit-plus; 'unknown' when the folder cannot be read. */
  kind: Scalars['String']['output'];
  /** All 0 when the folder cannot be read. */
  limits: ModelLimits;
  /** How `masks` are applied: 'unet-mask-channels' (an inpainting UNet takes the mask and masked image) or 'latent-blend' (the latents outside the mask are reset to the input's after every step, as diffusers does with other UNets); 'unknown' when the folder cannot be read. */
  maskMethod: Scalars['String']['output'];
  /** Reference images one edit may add (`editImages(referenceImages:)`): each output is conditioned on them and its input together. 0 where the model's family takes one image per output, or the folder cannot be read. */
  maxReferenceImages: Scalars['Int']['output'];
  /** fp32 or fp16, as the UNet declares its ports; 'unknown' when the folder cannot be read. */
  precision: Scalars['String']['output'];
  /** Whether an edit needs a prompt with some text: an empty or whitespace-only prompt is refused with BAD_USER_INPUT, unless the folder declares `promptOptional` (edit-server.json). */
  promptRequired: Scalars['Boolean']['output'];
  /** Output widths and heights are multiples of this (its family's: 64 for SD UNets, 16 for FLUX and SD3 transformers); explicit sizes snap down to it. 0 when the folder cannot be read. */
  sizeMultiple: Scalars['Int']['output'];
  /** 'loaded' (sessions open), 'loading', 'available' (loads on first use; see PRELOAD_MODELS and MODEL_MEMORY_MB), or 'error' (the folder cannot be read or its sessions did not open: `error` says why; its jobs get MODEL_UNAVAILABLE, and it is tried again on next use and on SIGHUP). In an API process that queues for Redis workers, 'available' or 'error'. */
  state: Scalars['String']['output'];
  /** What this folder costs clients (e.g. an unseeded VAE sample, a scheduler fallback); empty when nothing. */
  warnings: Array<Scalars['String']['output']>;
};

export type ModelDefaults = {
  __typename?: 'ModelDefaults';
  guidanceScale: Scalars['Float']['output'];
  imageGuidanceScale?: Maybe<Scalars['Float']['output']>;
  /** Models with a T5 encoder: the default T5 token count (FLUX dev 512, schnell 256); null elsewhere. */
  maxSequenceLength?: Maybe<Scalars['Int']['output']>;
  scheduler: SchedulerName;
  size: Scalars['String']['output'];
  steps: Scalars['Int']['output'];
  strength?: Maybe<Scalars['Float']['output']>;
  /** Flow models: the default true CFG scale (1 = off); null where true CFG does not apply. */
  trueCfgScale?: Maybe<Scalars['Float']['output']>;
};

export type ModelLimits = {
  __typename?: 'ModelLimits';
  maxImagesPerJob: Scalars['Int']['output'];
  maxN: Scalars['Int']['output'];
  /** Largest width x height accepted for one output. */
  maxPixels: Scalars['Int']['output'];
  /** Models with a T5 encoder: the largest maxSequenceLength accepted; null elsewhere. */
  maxSequenceLength?: Maybe<Scalars['Int']['output']>;
  maxSteps: Scalars['Int']['output'];
};

export type Mutation = {
  __typename?: 'Mutation';
  /** Cancel a queued or running job. Takes effect before the job's next denoise step; other jobs are unaffected. Cancelling a finished job returns it unchanged. */
  cancelEditJob: EditJob;
  /**
   * Queue one edit of all `images` as a single batched job. Each input image gets `n`
   * variants; the job's outputs are ordered input by input: all variants of image 0,
   * then all of image 1, and so on. Returns at once with the job in QUEUED (or RUNNING)
   * state; progress and the result arrive through `editJobEvents`, or by polling `editJob`.
   * Unset arguments take the chosen model's defaults (see `Model.defaults`).
   */
  editImages: EditJob;
};


export type MutationCancelEditJobArgs = {
  id: Scalars['ID']['input'];
};


export type MutationEditImagesArgs = {
  fit?: InputMaybe<SizeFit>;
  generator?: InputMaybe<NoiseGenerator>;
  guidanceScale?: InputMaybe<Scalars['Float']['input']>;
  idempotencyKey?: InputMaybe<Scalars['String']['input']>;
  imageGuidanceScale?: InputMaybe<Scalars['Float']['input']>;
  imageUrls?: InputMaybe<Array<Scalars['String']['input']>>;
  images?: InputMaybe<Array<Scalars['Upload']['input']>>;
  maskBlur?: InputMaybe<Scalars['Int']['input']>;
  masks?: InputMaybe<Array<InputMaybe<Scalars['Upload']['input']>>>;
  maxSequenceLength?: InputMaybe<Scalars['Int']['input']>;
  metadata?: InputMaybe<Scalars['JSON']['input']>;
  model?: InputMaybe<Scalars['String']['input']>;
  n?: InputMaybe<Scalars['Int']['input']>;
  negativePrompt?: InputMaybe<Scalars['String']['input']>;
  outputFormat?: InputMaybe<ImageFormat>;
  outputQuality?: InputMaybe<Scalars['Int']['input']>;
  previewEvery?: InputMaybe<Scalars['Int']['input']>;
  priority?: InputMaybe<Scalars['Int']['input']>;
  prompt: Scalars['String']['input'];
  prompts?: InputMaybe<Array<Scalars['String']['input']>>;
  referenceImageUrls?: InputMaybe<Array<Scalars['String']['input']>>;
  referenceImages?: InputMaybe<Array<Scalars['Upload']['input']>>;
  scheduler?: InputMaybe<SchedulerName>;
  seed?: InputMaybe<Scalars['Int']['input']>;
  size?: InputMaybe<Scalars['String']['input']>;
  steps?: InputMaybe<Scalars['Int']['input']>;
  strength?: InputMaybe<Scalars['Float']['input']>;
  trueCfgScale?: InputMaybe<Scalars['Float']['input']>;
  webhookEvents?: InputMaybe<Array<WebhookEvent>>;
  webhookUrl?: InputMaybe<Scalars['String']['input']>;
};

/** What a seed seeds. TORCH (the default): torch.Generator("cpu").manual_seed(seed), drawn in diffusers' order, so a seed gives the image diffusers gives. XOSHIRO: the generator seeds meant before TORCH became the default. */
export type NoiseGenerator =
  | 'TORCH'
  | 'XOSHIRO';

/** Relay cursor connections: where a page sits in the whole listing. */
export type PageInfo = {
  __typename?: 'PageInfo';
  /** Pass as `after` for the next page; null when the page is empty. */
  endCursor?: Maybe<Scalars['String']['output']>;
  /** More jobs follow `endCursor`. */
  hasNextPage: Scalars['Boolean']['output'];
  /** True when the page was asked for with `after`. */
  hasPreviousPage: Scalars['Boolean']['output'];
  startCursor?: Maybe<Scalars['String']['output']>;
};

export type Query = {
  __typename?: 'Query';
  /** A job by id: the polling alternative to the subscription. Finished jobs stay readable for the retention period (JOB_RETENTION_SECONDS, default 15 minutes). */
  editJob?: Maybe<EditJob>;
  /** The caller's jobs (an admin's: every tenant's), newest first, while they are kept: finished jobs for the retention period (JOB_RETENTION_SECONDS), as `editJob`. A Relay cursor connection: `first` jobs (1..100, default 20) after the cursor `after`, optionally only those whose status is `status`. */
  editJobs: EditJobConnection;
  /** The pipelines this server can run, with their defaults and limits; folders that cannot be read are listed too, in state 'error'. */
  models: Array<Model>;
};


export type QueryEditJobArgs = {
  id: Scalars['ID']['input'];
};


export type QueryEditJobsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  status?: InputMaybe<JobStatus>;
};

export type SchedulerName =
  | 'DDIM'
  | 'DPMPP_2M'
  | 'DPMPP_2M_KARRAS'
  | 'EULER'
  | 'EULER_ANCESTRAL'
  | 'FLOW_MATCH_EULER'
  | 'LCM'
  | 'PNDM';

/** How an input meets an explicit size of another aspect ratio: PAD scales it inside and fills the rest with white (the whole picture is kept; the default), CROP scales it to cover and trims the centre, STRETCH scales each axis on its own. */
export type SizeFit =
  | 'CROP'
  | 'PAD'
  | 'STRETCH';

export type Subscription = {
  __typename?: 'Subscription';
  /**
   * Every event of one job, from its state at subscription time to its end. A subscriber
   * that arrives late first receives the job's current state (its queue position or its
   * latest progress); a job that has already finished yields its final event, and the
   * stream then completes. The stream always ends with exactly one EditCompleted,
   * EditFailed or EditCancelled event.
   */
  editJobEvents: EditJobEvent;
};


export type SubscriptionEditJobEventsArgs = {
  id: Scalars['ID']['input'];
};

/** One attempt to deliver one webhook event. */
export type WebhookAttempt = {
  __typename?: 'WebhookAttempt';
  /** Unix time in seconds when the attempt started. */
  at: Scalars['Float']['output'];
  /** 1 for the first try, then each retry. */
  attempt: Scalars['Int']['output'];
  /** The receiver answered 2xx. */
  delivered: Scalars['Boolean']['output'];
  /** Why the attempt failed; null when delivered. */
  error?: Maybe<Scalars['String']['output']>;
  /** The `webhook-id` header: the same on every attempt of one event. */
  messageId: Scalars['String']['output'];
  /** The receiver's HTTP status; null when none came back (refused, timed out). */
  status?: Maybe<Scalars['Int']['output']>;
  /** edit.queued, edit.running, edit.progress, edit.completed, edit.failed or edit.cancelled. */
  type: Scalars['String']['output'];
};

/** Job events a webhook can receive (as `edit.<name>` in the body's `type`). */
export type WebhookEvent =
  | 'CANCELLED'
  | 'COMPLETED'
  | 'FAILED'
  | 'PROGRESS'
  | 'QUEUED'
  | 'RUNNING';

export type ModelsQueryVariables = Exact<{ [key: string]: never; }>;


export type ModelsQuery = { __typename?: 'Query', models: Array<{ __typename?: 'Model', id: string, kind: string, isDefault: boolean, defaults: { __typename?: 'ModelDefaults', steps: number, guidanceScale: number, imageGuidanceScale?: number | null, strength?: number | null, scheduler: SchedulerName, size: string }, limits: { __typename?: 'ModelLimits', maxImagesPerJob: number, maxN: number, maxSteps: number, maxPixels: number } }> };

export type JobFieldsFragment = { __typename?: 'EditJob', id: string, status: JobStatus, queuePosition?: number | null, createdAt: number, inputImages: number, progress?: { __typename?: 'EditProgress', step: number, totalSteps: number } | null, result?: { __typename?: 'EditResult', created: number, images: Array<{ __typename?: 'EditedImage', index: number, inputIndex: number, variant: number, seed: number, b64Json: string, mimeType: string, width: number, height: number }>, usage: { __typename?: 'EditUsage', processingTimeSeconds: number, queueTimeSeconds: number, inputImages: number, generatedImages: number, steps: number, batches: number } } | null, error?: { __typename?: 'EditError', code: string, message: string } | null };

export type EditImagesMutationVariables = Exact<{
  images: Array<Scalars['Upload']['input']> | Scalars['Upload']['input'];
  prompt: Scalars['String']['input'];
  prompts?: InputMaybe<Array<Scalars['String']['input']> | Scalars['String']['input']>;
  n?: InputMaybe<Scalars['Int']['input']>;
  size?: InputMaybe<Scalars['String']['input']>;
  steps?: InputMaybe<Scalars['Int']['input']>;
  seed?: InputMaybe<Scalars['Int']['input']>;
  scheduler?: InputMaybe<SchedulerName>;
  previewEvery?: InputMaybe<Scalars['Int']['input']>;
  guidanceScale?: InputMaybe<Scalars['Float']['input']>;
  outputFormat?: InputMaybe<ImageFormat>;
  model?: InputMaybe<Scalars['String']['input']>;
}>;


export type EditImagesMutation = { __typename?: 'Mutation', editImages: { __typename?: 'EditJob', id: string, status: JobStatus, queuePosition?: number | null, createdAt: number, inputImages: number, progress?: { __typename?: 'EditProgress', step: number, totalSteps: number } | null, result?: { __typename?: 'EditResult', created: number, images: Array<{ __typename?: 'EditedImage', index: number, inputIndex: number, variant: number, seed: number, b64Json: string, mimeType: string, width: number, height: number }>, usage: { __typename?: 'EditUsage', processingTimeSeconds: number, queueTimeSeconds: number, inputImages: number, generatedImages: number, steps: number, batches: number } } | null, error?: { __typename?: 'EditError', code: string, message: string } | null } };

export type EditJobQueryVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type EditJobQuery = { __typename?: 'Query', editJob?: { __typename?: 'EditJob', id: string, status: JobStatus, queuePosition?: number | null, createdAt: number, inputImages: number, progress?: { __typename?: 'EditProgress', step: number, totalSteps: number } | null, result?: { __typename?: 'EditResult', created: number, images: Array<{ __typename?: 'EditedImage', index: number, inputIndex: number, variant: number, seed: number, b64Json: string, mimeType: string, width: number, height: number }>, usage: { __typename?: 'EditUsage', processingTimeSeconds: number, queueTimeSeconds: number, inputImages: number, generatedImages: number, steps: number, batches: number } } | null, error?: { __typename?: 'EditError', code: string, message: string } | null } | null };

export type CancelEditJobMutationVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type CancelEditJobMutation = { __typename?: 'Mutation', cancelEditJob: { __typename?: 'EditJob', id: string, status: JobStatus } };

export type EditJobEventsSubscriptionVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type EditJobEventsSubscription = { __typename?: 'Subscription', editJobEvents: { __typename: 'EditCancelled', jobId: string, status: JobStatus } | { __typename: 'EditCompleted', jobId: string, status: JobStatus, result: { __typename?: 'EditResult', created: number, images: Array<{ __typename?: 'EditedImage', index: number, inputIndex: number, variant: number, seed: number, b64Json: string, mimeType: string, width: number, height: number }>, usage: { __typename?: 'EditUsage', processingTimeSeconds: number, queueTimeSeconds: number, inputImages: number, generatedImages: number, steps: number, batches: number } } } | { __typename: 'EditFailed', jobId: string, status: JobStatus, error: { __typename?: 'EditError', code: string, message: string } } | { __typename: 'EditProgress', step: number, totalSteps: number, jobId: string, status: JobStatus, previews: Array<{ __typename?: 'EditPreview', index: number, b64Json: string, mimeType: string }> } | { __typename: 'EditQueued', position: number, jobId: string, status: JobStatus } };

export const JobFieldsFragmentDoc = {"kind":"Document","definitions":[{"kind":"FragmentDefinition","name":{"kind":"Name","value":"JobFields"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditJob"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"queuePosition"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"progress"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"step"}},{"kind":"Field","name":{"kind":"Name","value":"totalSteps"}}]}},{"kind":"Field","name":{"kind":"Name","value":"result"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"created"}},{"kind":"Field","name":{"kind":"Name","value":"images"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"index"}},{"kind":"Field","name":{"kind":"Name","value":"inputIndex"}},{"kind":"Field","name":{"kind":"Name","value":"variant"}},{"kind":"Field","name":{"kind":"Name","value":"seed"}},{"kind":"Field","name":{"kind":"Name","value":"b64Json"}},{"kind":"Field","name":{"kind":"Name","value":"mimeType"}},{"kind":"Field","name":{"kind":"Name","value":"width"}},{"kind":"Field","name":{"kind":"Name","value":"height"}}]}},{"kind":"Field","name":{"kind":"Name","value":"usage"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"processingTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"queueTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"generatedImages"}},{"kind":"Field","name":{"kind":"Name","value":"steps"}},{"kind":"Field","name":{"kind":"Name","value":"batches"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"error"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]} as unknown as DocumentNode<JobFieldsFragment, unknown>;
export const ModelsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"Models"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"models"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"isDefault"}},{"kind":"Field","name":{"kind":"Name","value":"defaults"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"steps"}},{"kind":"Field","name":{"kind":"Name","value":"guidanceScale"}},{"kind":"Field","name":{"kind":"Name","value":"imageGuidanceScale"}},{"kind":"Field","name":{"kind":"Name","value":"strength"}},{"kind":"Field","name":{"kind":"Name","value":"scheduler"}},{"kind":"Field","name":{"kind":"Name","value":"size"}}]}},{"kind":"Field","name":{"kind":"Name","value":"limits"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"maxImagesPerJob"}},{"kind":"Field","name":{"kind":"Name","value":"maxN"}},{"kind":"Field","name":{"kind":"Name","value":"maxSteps"}},{"kind":"Field","name":{"kind":"Name","value":"maxPixels"}}]}}]}}]}}]} as unknown as DocumentNode<ModelsQuery, ModelsQueryVariables>;
export const EditImagesDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"EditImages"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"images"}},"type":{"kind":"NonNullType","type":{"kind":"ListType","type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"Upload"}}}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"prompt"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"prompts"}},"type":{"kind":"ListType","type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"n"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"size"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"steps"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"seed"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"scheduler"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"SchedulerName"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"previewEvery"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"guidanceScale"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Float"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"outputFormat"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"ImageFormat"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"model"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"editImages"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"images"},"value":{"kind":"Variable","name":{"kind":"Name","value":"images"}}},{"kind":"Argument","name":{"kind":"Name","value":"prompt"},"value":{"kind":"Variable","name":{"kind":"Name","value":"prompt"}}},{"kind":"Argument","name":{"kind":"Name","value":"prompts"},"value":{"kind":"Variable","name":{"kind":"Name","value":"prompts"}}},{"kind":"Argument","name":{"kind":"Name","value":"n"},"value":{"kind":"Variable","name":{"kind":"Name","value":"n"}}},{"kind":"Argument","name":{"kind":"Name","value":"size"},"value":{"kind":"Variable","name":{"kind":"Name","value":"size"}}},{"kind":"Argument","name":{"kind":"Name","value":"steps"},"value":{"kind":"Variable","name":{"kind":"Name","value":"steps"}}},{"kind":"Argument","name":{"kind":"Name","value":"seed"},"value":{"kind":"Variable","name":{"kind":"Name","value":"seed"}}},{"kind":"Argument","name":{"kind":"Name","value":"scheduler"},"value":{"kind":"Variable","name":{"kind":"Name","value":"scheduler"}}},{"kind":"Argument","name":{"kind":"Name","value":"previewEvery"},"value":{"kind":"Variable","name":{"kind":"Name","value":"previewEvery"}}},{"kind":"Argument","name":{"kind":"Name","value":"guidanceScale"},"value":{"kind":"Variable","name":{"kind":"Name","value":"guidanceScale"}}},{"kind":"Argument","name":{"kind":"Name","value":"outputFormat"},"value":{"kind":"Variable","name":{"kind":"Name","value":"outputFormat"}}},{"kind":"Argument","name":{"kind":"Name","value":"model"},"value":{"kind":"Variable","name":{"kind":"Name","value":"model"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"JobFields"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"JobFields"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditJob"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"queuePosition"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"progress"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"step"}},{"kind":"Field","name":{"kind":"Name","value":"totalSteps"}}]}},{"kind":"Field","name":{"kind":"Name","value":"result"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"created"}},{"kind":"Field","name":{"kind":"Name","value":"images"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"index"}},{"kind":"Field","name":{"kind":"Name","value":"inputIndex"}},{"kind":"Field","name":{"kind":"Name","value":"variant"}},{"kind":"Field","name":{"kind":"Name","value":"seed"}},{"kind":"Field","name":{"kind":"Name","value":"b64Json"}},{"kind":"Field","name":{"kind":"Name","value":"mimeType"}},{"kind":"Field","name":{"kind":"Name","value":"width"}},{"kind":"Field","name":{"kind":"Name","value":"height"}}]}},{"kind":"Field","name":{"kind":"Name","value":"usage"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"processingTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"queueTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"generatedImages"}},{"kind":"Field","name":{"kind":"Name","value":"steps"}},{"kind":"Field","name":{"kind":"Name","value":"batches"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"error"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]} as unknown as DocumentNode<EditImagesMutation, EditImagesMutationVariables>;
export const EditJobDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"EditJob"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"editJob"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"FragmentSpread","name":{"kind":"Name","value":"JobFields"}}]}}]}},{"kind":"FragmentDefinition","name":{"kind":"Name","value":"JobFields"},"typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditJob"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"queuePosition"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"progress"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"step"}},{"kind":"Field","name":{"kind":"Name","value":"totalSteps"}}]}},{"kind":"Field","name":{"kind":"Name","value":"result"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"created"}},{"kind":"Field","name":{"kind":"Name","value":"images"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"index"}},{"kind":"Field","name":{"kind":"Name","value":"inputIndex"}},{"kind":"Field","name":{"kind":"Name","value":"variant"}},{"kind":"Field","name":{"kind":"Name","value":"seed"}},{"kind":"Field","name":{"kind":"Name","value":"b64Json"}},{"kind":"Field","name":{"kind":"Name","value":"mimeType"}},{"kind":"Field","name":{"kind":"Name","value":"width"}},{"kind":"Field","name":{"kind":"Name","value":"height"}}]}},{"kind":"Field","name":{"kind":"Name","value":"usage"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"processingTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"queueTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"generatedImages"}},{"kind":"Field","name":{"kind":"Name","value":"steps"}},{"kind":"Field","name":{"kind":"Name","value":"batches"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"error"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]} as unknown as DocumentNode<EditJobQuery, EditJobQueryVariables>;
export const CancelEditJobDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"CancelEditJob"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"cancelEditJob"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<CancelEditJobMutation, CancelEditJobMutationVariables>;
export const EditJobEventsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"EditJobEvents"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"editJobEvents"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"__typename"}},{"kind":"Field","name":{"kind":"Name","value":"jobId"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditQueued"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"position"}}]}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditProgress"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"step"}},{"kind":"Field","name":{"kind":"Name","value":"totalSteps"}},{"kind":"Field","name":{"kind":"Name","value":"previews"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"index"}},{"kind":"Field","name":{"kind":"Name","value":"b64Json"}},{"kind":"Field","name":{"kind":"Name","value":"mimeType"}}]}}]}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditCompleted"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"result"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"created"}},{"kind":"Field","name":{"kind":"Name","value":"images"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"index"}},{"kind":"Field","name":{"kind":"Name","value":"inputIndex"}},{"kind":"Field","name":{"kind":"Name","value":"variant"}},{"kind":"Field","name":{"kind":"Name","value":"seed"}},{"kind":"Field","name":{"kind":"Name","value":"b64Json"}},{"kind":"Field","name":{"kind":"Name","value":"mimeType"}},{"kind":"Field","name":{"kind":"Name","value":"width"}},{"kind":"Field","name":{"kind":"Name","value":"height"}}]}},{"kind":"Field","name":{"kind":"Name","value":"usage"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"processingTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"queueTimeSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"inputImages"}},{"kind":"Field","name":{"kind":"Name","value":"generatedImages"}},{"kind":"Field","name":{"kind":"Name","value":"steps"}},{"kind":"Field","name":{"kind":"Name","value":"batches"}}]}}]}}]}},{"kind":"InlineFragment","typeCondition":{"kind":"NamedType","name":{"kind":"Name","value":"EditFailed"}},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"error"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"code"}},{"kind":"Field","name":{"kind":"Name","value":"message"}}]}}]}}]}}]}}]} as unknown as DocumentNode<EditJobEventsSubscription, EditJobEventsSubscriptionVariables>;