/**
 * The server's coded errors. Every failure a client can see carries one of these codes, whether it
 * started in the inference library (InferenceError) or in the service layers (ServiceError); the
 * GraphQL and REST layers map them to extensions.code / HTTP statuses in one place each.
 */
import { InferenceError } from './inference/errors.js';

/** What docs/api.md says about one code (its table between the error-codes markers is generated from these). */
export interface ErrorCodeInfo {
  readonly code: string;
  /** The HTTP status of a request-level refusal and of REST (`HTTP_STATUS`), as the table shows it. */
  readonly status: number;
  readonly where: string;
  readonly when: string;
}

/** The one list of the server's codes: `ErrorCode`, `HTTP_STATUS` and the docs table derive from it. */
export const ERROR_CODES = [
  {
    code: 'BAD_USER_INPUT',
    status: 400,
    where: 'GraphQL error, REST',
    when: 'an argument out of range, wrong `prompts` count, too many images, `imageUrls` that are not `data:` URLs, malformed multipart, variable errors (a missing or mistyped variable: HTTP 400) and document limits, too many operations on one websocket',
  },
  {
    code: 'INVALID_IMAGE',
    status: 400,
    where: 'GraphQL error (sniffing at submission), `EditError` (decoding fails while running), REST',
    when: 'not a PNG/JPEG/WebP/AVIF/TIFF/GIF, corrupt or truncated',
  },
  {
    code: 'IMAGE_TOO_LARGE',
    status: 413,
    where:
      'GraphQL error (`size` over `maxPixels`, input over `MAX_INPUT_PIXELS`), `EditError` (one output cannot fit `MEMORY_BUDGET_MB`; the message names the largest size that fits and `max pixels N`; refused before the model loads), REST',
    when: 'too many pixels',
  },
  {
    code: 'PAYLOAD_TOO_LARGE',
    status: 413,
    where: 'HTTP 413 when cut off while streaming, else a GraphQL error; REST',
    when: 'a file (or decoded `data:` URL) over `MAX_FILE_BYTES`, files over `MAX_TOTAL_BYTES`, a body over its bound, job `metadata` over 4096 bytes',
  },
  { code: 'UNAUTHENTICATED', status: 401, where: 'HTTP 401 (+ `WWW-Authenticate`), websocket close 4401, REST', when: 'missing or wrong credentials' },
  {
    code: 'FORBIDDEN',
    status: 403,
    where: 'HTTP 403 + GraphQL error',
    when: 'multipart or GET without the CSRF header; a non-admin asking for `priority` above 0',
  },
  {
    code: 'NOT_FOUND',
    status: 404,
    where: 'GraphQL error, REST, unknown paths',
    when: 'unknown `model`; unknown or expired job id in `cancelEditJob`/`editJobEvents` (`editJob` returns `null` instead)',
  },
  {
    code: 'MODEL_UNAVAILABLE',
    status: 503,
    where: 'GraphQL error (at submission), `EditError` (the model fails to load), REST',
    when: 'the model\'s folder cannot be read or its sessions do not open; the message says why (`models` shows `state: "error"` and the reason, /healthz lists it). Fixed on disk, it loads on next use or on SIGHUP',
  },
  {
    code: 'QUEUE_FULL',
    status: 503,
    where: 'GraphQL error with `extensions.retryAfterSeconds` (5), REST with `Retry-After`',
    when: 'more than `MAX_QUEUED_JOBS` jobs waiting',
  },
  {
    code: 'QUOTA_EXCEEDED',
    status: 429,
    where: 'GraphQL error with `extensions.retryAfterSeconds` (5), REST with `Retry-After`',
    when: 'auth on: the tenant already has `TENANT_MAX_QUEUED_JOBS` unfinished jobs or `TENANT_MAX_QUEUED_IMAGES` output images in them',
  },
  {
    code: 'RATE_LIMITED',
    status: 429,
    where: 'HTTP 429 with `Retry-After` and `extensions.retryAfterSeconds`, graphql-ws error, REST',
    when: 'over the per-tenant rate when `RATE_LIMIT_PER_MINUTE` > 0 (off by default); or too many failed authentications from this IP (`AUTH_FAIL_LIMIT`, on by default; graphql-ws `connection_init`: close 4429) ([security.md](security.md))',
  },
  {
    code: 'UNAVAILABLE',
    status: 503,
    where:
      'GraphQL error on `editImages`, REST; with `REDIS_URL` also on `editJob`, `cancelEditJob`, `editJobEvents` (`extensions.retryAfterSeconds` and a `Retry-After` header)',
    when: 'the server is shutting down and takes no new jobs, or Redis is unreachable',
  },
  { code: 'OUT_OF_MEMORY', status: 507, where: '`EditError`, REST', when: 'the runtime failed to allocate memory for a batch' },
  {
    code: 'CANCELLED',
    status: 409,
    where: 'REST',
    when: 'the job was cancelled (e.g. at shutdown). In GraphQL a cancelled job is status `CANCELLED` / `EditCancelled`, not an error',
  },
  {
    code: 'IDEMPOTENCY_CONFLICT',
    status: 409,
    where: 'GraphQL error on `editImages`, REST',
    when: 'an idempotency key (`Idempotency-Key` header or `idempotencyKey`) this principal used in the last 24 h with a different request, or whose first request is still being submitted after 60 s',
  },
  {
    code: 'RESULT_URL_EXPIRED',
    status: 403,
    where: '`GET /v1/results/…` (a result URL)',
    when: 'the URL is past its `expires` (`RESULT_URL_TTL_SECONDS` after it was made): read the job again for a fresh one',
  },
  {
    code: 'RESULT_URL_INVALID',
    status: 403,
    where: '`GET /v1/results/…` (a result URL)',
    when: 'a result URL that this server did not sign: any part changed, or signed with another `RESULT_URL_SECRET`',
  },
  { code: 'TIMEOUT', status: 504, where: '`EditError`, REST', when: 'the job ran longer than `JOB_TIMEOUT_SECONDS`' },
  {
    code: 'JOB_LOST',
    status: 410,
    where: '`EditFailed` (once, then the subscription ends), REST',
    when: "with `REDIS_URL`: the job's state vanished (Redis restarted without persistence); submit it again",
  },
  { code: 'MODEL_ERROR', status: 500, where: '`EditError`, REST', when: "the model's own graph failed (an export this server cannot drive, a broken file)" },
  {
    code: 'WORKER_CRASHED',
    status: 500,
    where: '`EditError`, REST',
    when: 'the inference worker thread died while running the job (the server logs why, restarts it and counts it in `image_edit_inference_worker_restarts_total`), or the encoder thread did (text encoders and VAEs, `STAGE_THREAD`: logged, and the next run starts another); submit the job again',
  },
  { code: 'INTERNAL', status: 500, where: 'anywhere', when: 'anything unexpected (a bug: see the server log)' },
] as const satisfies readonly ErrorCodeInfo[];

export type ErrorCode = (typeof ERROR_CODES)[number]['code'];

/**
 * Codes graphql-yoga and graphql-js put on errors themselves; clients receive them unchanged
 * (errorMapping.ts keeps a GraphQL error's own code). `status` is the usual one; `statusNote`
 * what the table says when it varies.
 */
export const FRAMEWORK_ERROR_CODES = [
  {
    code: 'GRAPHQL_PARSE_FAILED',
    status: 200,
    statusNote: '200 (400 with `Accept: application/graphql-response+json`)',
    where: 'GraphQL error (Yoga)',
    when: 'the document is not GraphQL (a syntax error)',
  },
  {
    code: 'GRAPHQL_VALIDATION_FAILED',
    status: 200,
    statusNote: '200 (400 with `Accept: application/graphql-response+json`)',
    where: 'GraphQL error (Yoga, graphql-js)',
    when: 'the document does not validate against the schema: an unknown field or argument, a wrong literal type, a missing required argument',
  },
  {
    code: 'BAD_REQUEST',
    status: 400,
    statusNote: '400, 405, 415 or 200',
    where: 'GraphQL error (Yoga; 415 from this server)',
    when: 'the request is not a GraphQL request: a body that is not JSON (400), a method other than GET/POST or a mutation over GET (405), a POST whose Content-Type is not JSON, multipart, `application/graphql` or a URL-encoded form (415, e.g. `text/plain`), no `query` (200)',
  },
  {
    code: 'OPERATION_RESOLUTION_FAILURE',
    status: 400,
    statusNote: '400 (graphql-ws: an `error` message)',
    where: 'GraphQL error (Yoga; graphql-ws alike)',
    when: 'no single operation to run: several operations and no `operationName`, several anonymous ones, or an `operationName` the document lacks',
  },
] as const satisfies readonly (ErrorCodeInfo & { statusNote: string })[];

/** Every `extensions.code` / `error.code` a client can receive. */
export type ClientErrorCode = ErrorCode | (typeof FRAMEWORK_ERROR_CODES)[number]['code'];

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: { retryAfterSeconds?: number } = {},
  ) {
    super(message);
  }
}

export const HTTP_STATUS = Object.fromEntries(ERROR_CODES.map((e) => [e.code, e.status])) as Record<ErrorCode, number>;

/** Any thrown value → a coded error safe to show a client (INTERNAL hides the original message). */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (err instanceof InferenceError) {
    return err.code === 'INTERNAL' ? new ServiceError('INTERNAL', 'internal error') : new ServiceError(err.code, err.message);
  }
  return new ServiceError('INTERNAL', 'internal error');
}

/** The error-code table of docs/api.md (between its `error-codes` markers). */
export function errorCodeTable(): string {
  const row = (code: string, status: string, where: string, when: string) => `| \`${code}\` | ${status} | ${where} | ${when} |`;
  return [
    '| code | HTTP | where | when |',
    '|---|---|---|---|',
    ...ERROR_CODES.map((e) => row(e.code, String(e.status), e.where, e.when)),
    ...FRAMEWORK_ERROR_CODES.map((e) => row(e.code, e.statusNote, e.where, e.when)),
  ].join('\n');
}
