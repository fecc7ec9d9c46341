/**
 * The one place coded errors become GraphQL errors: ServiceError / InferenceError keep their code
 * and message; GraphQL's own parse/validation/coercion errors keep theirs (with BAD_USER_INPUT
 * where graphql-js gives none); anything else is INTERNAL with no message or stack for the client.
 */
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { HTTP_STATUS, ServiceError, toServiceError, type ErrorCode } from '../errors.js';
import { InferenceError } from '../inference/errors.js';
import { withoutSuggestions } from './hardening.js';

/** Yoga's refusal (400 over HTTP) of a document whose operation cannot be chosen, given over graphql-ws as well. */
export function operationResolutionFailure(): GraphQLError {
  return new GraphQLError('Could not determine what operation to execute.', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } });
}

/** Yoga's own HTTP-level errors (CSRF, body size) carry a status but no code. */
const STATUS_CODE: Record<number, string> = { 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 413: 'PAYLOAD_TOO_LARGE' };

export function maskGraphQLError(error: unknown, log: (err: unknown) => void): Error {
  const graphQLError = error instanceof GraphQLError ? error : null;
  const original = graphQLError?.originalError ?? (graphQLError ? null : error);
  if (original instanceof ServiceError || original instanceof InferenceError) {
    const e = toServiceError(original);
    if (e.code === 'INTERNAL') log(original);
    return new GraphQLError(e.message, {
      nodes: graphQLError?.nodes,
      path: graphQLError?.path,
      // `http.headers` becomes a Retry-After header on GraphQL over HTTP (Yoga; not in the body).
      extensions: {
        code: e.code,
        ...(e.details.retryAfterSeconds
          ? { retryAfterSeconds: e.details.retryAfterSeconds, http: { headers: { 'retry-after': String(e.details.retryAfterSeconds) } } }
          : {}),
      },
    });
  }
  if (graphQLError && (!original || original instanceof GraphQLError)) {
    const inner = (original as GraphQLError | null) ?? graphQLError;
    const status = (inner.extensions?.http as { status?: number } | undefined)?.status;
    const code = (inner.extensions?.code as string | undefined) ?? (status ? STATUS_CODE[status] : undefined) ?? 'BAD_USER_INPUT';
    return new GraphQLError(inner.message, { nodes: graphQLError.nodes, path: graphQLError.path, extensions: { ...inner.extensions, code } });
  }
  log(original ?? error);
  return new GraphQLError('internal error', { nodes: graphQLError?.nodes, path: graphQLError?.path, extensions: { code: 'INTERNAL' } });
}

/**
 * One log line for an error a client was sent, other than INTERNAL (logged with its stack where it
 * is caught): refused credentials at warn, the server's own refusals for load (5xx: QUEUE_FULL,
 * UNAVAILABLE, …) at warn, every other client mistake at info.
 */
export function logRequestError(log: Logger, code: string, message: string): void {
  const status = HTTP_STATUS[code as ErrorCode] ?? 400;
  const level = code === 'UNAUTHENTICATED' || status >= 500 ? 'warn' : 'info';
  log[level]({ code, error: message }, 'request error');
}

export interface ErrorMasker {
  /** A GraphQL error as a client sees it over HTTP and SSE (Yoga's maskError), logged once unless `logged` is false. */
  http(err: unknown, logged?: boolean): Error;
  /** The same over graphql-ws, without Yoga's HTTP-only `extensions.http` (status hints for its HTTP responses). */
  ws(err: unknown, logged?: boolean): GraphQLError;
}

/**
 * Every GraphQL error a client sees, over HTTP, SSE and graphql-ws, goes through here, and is
 * logged here once (validation errors, which Yoga does not mask, by yoga.ts's useValidationLog).
 */
export function createErrorMasker(options: { fieldSuggestions: boolean; log: Logger }): ErrorMasker {
  const logError = (err: unknown): void => options.log.error({ err }, 'internal error');
  const http = (err: unknown, logged = true): Error => {
    let masked = maskGraphQLError(err, logError);
    // Yoga's own body/file-size errors say REQUEST_ENTITY_TOO_LARGE: the API's code is PAYLOAD_TOO_LARGE.
    if (masked instanceof GraphQLError && masked.extensions?.code === 'REQUEST_ENTITY_TOO_LARGE') {
      masked = new GraphQLError(masked.message, { nodes: masked.nodes, path: masked.path, extensions: { ...masked.extensions, code: 'PAYLOAD_TOO_LARGE' } });
    }
    masked = options.fieldSuggestions ? masked : withoutSuggestions(masked);
    const code = (masked as GraphQLError).extensions?.code;
    if (logged && code !== 'INTERNAL') logRequestError(options.log, String(code), masked.message);
    return masked;
  };
  return {
    http,
    ws(err, logged = true) {
      const masked = http(err, logged);
      if (!(masked instanceof GraphQLError) || !masked.extensions?.http) return masked as GraphQLError;
      const { http: _http, ...extensions } = masked.extensions;
      return new GraphQLError(masked.message, { nodes: masked.nodes, source: masked.source, positions: masked.positions, path: masked.path, extensions });
    },
  };
}
