import type { DocumentTypeDecoration } from '@graphql-typed-document-node/core';
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
  Upload: { input: null; output: null; }
};

export type CancelReason =
  | 'CLIENT'
  | 'SHUTDOWN'
  | 'TIMEOUT';

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

/** What a seed seeds. TORCH (the default): torch.Generator("cpu").manual_seed(seed), drawn in diffusers' order, so a seed gives the image diffusers gives. XOSHIRO: the generator seeds meant before TORCH became the default. */
export type NoiseGenerator =
  | 'TORCH'
  | 'XOSHIRO';

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

/** Job events a webhook can receive (as `edit.<name>` in the body's `type`). */
export type WebhookEvent =
  | 'CANCELLED'
  | 'COMPLETED'
  | 'FAILED'
  | 'PROGRESS'
  | 'QUEUED'
  | 'RUNNING';

export type PageModelsQueryVariables = Exact<{ [key: string]: never; }>;


export type PageModelsQuery = { __typename?: 'Query', models: Array<{ __typename?: 'Model', id: string, isDefault: boolean, error?: string | null, defaults: { __typename?: 'ModelDefaults', steps: number, size: string, scheduler: SchedulerName } }> };

export type PageEditImagesMutationVariables = Exact<{
  images: Array<Scalars['Upload']['input']> | Scalars['Upload']['input'];
  masks?: InputMaybe<Array<InputMaybe<Scalars['Upload']['input']>> | InputMaybe<Scalars['Upload']['input']>>;
  maskBlur?: InputMaybe<Scalars['Int']['input']>;
  prompt: Scalars['String']['input'];
  prompts?: InputMaybe<Array<Scalars['String']['input']> | Scalars['String']['input']>;
  model?: InputMaybe<Scalars['String']['input']>;
  n?: InputMaybe<Scalars['Int']['input']>;
  steps?: InputMaybe<Scalars['Int']['input']>;
  size?: InputMaybe<Scalars['String']['input']>;
  seed?: InputMaybe<Scalars['Int']['input']>;
  scheduler?: InputMaybe<SchedulerName>;
  previewEvery?: InputMaybe<Scalars['Int']['input']>;
}>;


export type PageEditImagesMutation = { __typename?: 'Mutation', editImages: { __typename?: 'EditJob', id: string, status: JobStatus, queuePosition?: number | null, inputImages: number } };

export type PageCancelEditJobMutationVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type PageCancelEditJobMutation = { __typename?: 'Mutation', cancelEditJob: { __typename?: 'EditJob', id: string, status: JobStatus } };

export type PageEditJobEventsSubscriptionVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type PageEditJobEventsSubscription = { __typename?: 'Subscription', editJobEvents: { __typename: 'EditCancelled', status: JobStatus } | { __typename: 'EditCompleted', status: JobStatus, result: { __typename?: 'EditResult', images: Array<{ __typename?: 'EditedImage', index: number, inputIndex: number, variant: number, seed: number, b64Json: string, mimeType: string, width: number, height: number }>, usage: { __typename?: 'EditUsage', processingTimeSeconds: number, queueTimeSeconds: number, inputImages: number, generatedImages: number, batches: number } } } | { __typename: 'EditFailed', status: JobStatus, error: { __typename?: 'EditError', code: string, message: string } } | { __typename: 'EditProgress', step: number, totalSteps: number, phase?: string | null, status: JobStatus, previews: Array<{ __typename?: 'EditPreview', index: number, b64Json: string, mimeType: string }> } | { __typename: 'EditQueued', position: number, status: JobStatus } };

export class TypedDocumentString<TResult, TVariables>
  extends String
  implements DocumentTypeDecoration<TResult, TVariables>
{
  __apiType?: NonNullable<DocumentTypeDecoration<TResult, TVariables>['__apiType']>;
  private value: string;
  public __meta__?: Record<string, any> | undefined;

  constructor(value: string, __meta__?: Record<string, any> | undefined) {
    super(value);
    this.value = value;
    this.__meta__ = __meta__;
  }

  override toString(): string & DocumentTypeDecoration<TResult, TVariables> {
    return this.value;
  }
}

export const PageModelsDocument = new TypedDocumentString(`
    query PageModels {
  models {
    id
    isDefault
    error
    defaults {
      steps
      size
      scheduler
    }
  }
}
    `) as unknown as TypedDocumentString<PageModelsQuery, PageModelsQueryVariables>;
export const PageEditImagesDocument = new TypedDocumentString(`
    mutation PageEditImages($images: [Upload!]!, $masks: [Upload], $maskBlur: Int, $prompt: String!, $prompts: [String!], $model: String, $n: Int, $steps: Int, $size: String, $seed: Int, $scheduler: SchedulerName, $previewEvery: Int) {
  editImages(
    images: $images
    masks: $masks
    maskBlur: $maskBlur
    prompt: $prompt
    prompts: $prompts
    model: $model
    n: $n
    steps: $steps
    size: $size
    seed: $seed
    scheduler: $scheduler
    previewEvery: $previewEvery
  ) {
    id
    status
    queuePosition
    inputImages
  }
}
    `) as unknown as TypedDocumentString<PageEditImagesMutation, PageEditImagesMutationVariables>;
export const PageCancelEditJobDocument = new TypedDocumentString(`
    mutation PageCancelEditJob($id: ID!) {
  cancelEditJob(id: $id) {
    id
    status
  }
}
    `) as unknown as TypedDocumentString<PageCancelEditJobMutation, PageCancelEditJobMutationVariables>;
export const PageEditJobEventsDocument = new TypedDocumentString(`
    subscription PageEditJobEvents($id: ID!) {
  editJobEvents(id: $id) {
    __typename
    status
    ... on EditQueued {
      position
    }
    ... on EditProgress {
      step
      totalSteps
      phase
      previews {
        index
        b64Json
        mimeType
      }
    }
    ... on EditCompleted {
      result {
        images {
          index
          inputIndex
          variant
          seed
          b64Json
          mimeType
          width
          height
        }
        usage {
          processingTimeSeconds
          queueTimeSeconds
          inputImages
          generatedImages
          batches
        }
      }
    }
    ... on EditFailed {
      error {
        code
        message
      }
    }
  }
}
    `) as unknown as TypedDocumentString<PageEditJobEventsSubscription, PageEditJobEventsSubscriptionVariables>;