/** The one Pothos builder. The `Upload` scalar is filled by Yoga's multipart parser with File-like objects. */
import SchemaBuilder from '@pothos/core';
import { GraphQLError, valueFromASTUntyped } from 'graphql';
import type { InferenceEngine } from '../inference/engine.js';
import type { JobAccess, Viewer } from '../jobs/access.js';
import type { EditService, UploadedFile } from '../jobs/editService.js';
import type { ResultUrl } from '../jobs/resultUrls.js';

export interface GraphQLContext {
  engine: InferenceEngine;
  /** Jobs as the caller may see them: another tenant's job is answered as an unknown id. */
  jobs: JobAccess;
  edits: EditService;
  /** Who is calling (admitted once per HTTP request or graphql-ws connection: src/server/useAdmission.ts, websocket.ts). */
  principal: Viewer;
  /** A URL of one output image, signed now (src/jobs/resultUrls.ts), at the address this request came to. */
  resultUrl: ResultUrl;
  /** The request's Idempotency-Key header (HTTP only). */
  idempotencyKey?: string | null;
}

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  Scalars: { Upload: { Input: UploadedFile; Output: never }; JSON: { Input: unknown; Output: unknown } };
  DefaultFieldNullability: false;
}>({ defaultFieldNullability: false });

/** Duck-typed: Yoga's parser yields @whatwg-node File objects, which are not `instanceof File`. */
function isUploadedFile(value: unknown): value is UploadedFile {
  return (
    typeof value === 'object' && value !== null && typeof (value as UploadedFile).arrayBuffer === 'function' && typeof (value as UploadedFile).size === 'number'
  );
}

builder.scalarType('Upload', {
  description: 'A file sent per the GraphQL multipart request spec (operations + map + files).',
  serialize: () => {
    throw new GraphQLError('Upload is an input-only scalar');
  },
  parseValue: (value) => {
    if (!isUploadedFile(value))
      throw new GraphQLError('Upload must be a file sent as a multipart request part (operations + map + files)', { extensions: { code: 'BAD_USER_INPUT' } });
    return value;
  },
  parseLiteral: () => {
    throw new GraphQLError('Upload cannot be written inline; send files as multipart parts', { extensions: { code: 'BAD_USER_INPUT' } });
  },
});

builder.scalarType('JSON', {
  description: 'Any JSON value, written as JSON in variables or as a GraphQL literal.',
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (ast, variables) => valueFromASTUntyped(ast, variables),
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
