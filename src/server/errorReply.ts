/**
 * The one writer of JSON error responses the server writes itself (Yoga writes the GraphQL errors
 * of operations, through errorMapping.ts). One shape per transport:
 *  - 'graphql' (/graphql over HTTP and SSE): `{"errors":[{"message","extensions":{"code",…}}]}`;
 *  - 'openai' (REST and every other path): OpenAI's `{"error":{"message","type","param","code"}}`.
 * The status is the code's (HTTP_STATUS); `retryAfterSeconds` becomes a Retry-After header.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { HTTP_STATUS, type ServiceError, toServiceError } from '../errors.js';
import { logRequestError } from './errorMapping.js';

export type ErrorShape = 'graphql' | 'openai';

export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Which shape a path answers in. */
export const errorShapeFor = (pathname: string): ErrorShape => (pathname === '/graphql' ? 'graphql' : 'openai');

/** OpenAI's error object (also the `error` event of REST's SSE stream). */
export function openAIError(e: ServiceError, param: string | null = null): { message: string; type: string; param: string | null; code: string } {
  const status = HTTP_STATUS[e.code];
  const type = status >= 500 ? 'server_error' : e.code === 'RATE_LIMITED' ? 'rate_limit_error' : 'invalid_request_error';
  return { message: e.message, type, param, code: e.code };
}

export interface ReplyOptions {
  /** The REST field at fault. */
  param?: string | null;
  /** Instead of the code's status (405 for a wrong method). */
  status?: number;
  headers?: Record<string, string>;
}

export function errorReply(shape: ErrorShape, e: ServiceError, options: ReplyOptions = {}): ErrorReply {
  const retryAfter = e.details.retryAfterSeconds;
  const body =
    shape === 'graphql'
      ? { errors: [{ message: e.message, extensions: { code: e.code, ...(retryAfter ? { retryAfterSeconds: retryAfter } : {}) } }] }
      : { error: openAIError(e, options.param ?? null) };
  const text = JSON.stringify(body);
  return {
    status: options.status ?? HTTP_STATUS[e.code],
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      ...(retryAfter ? { 'retry-after': String(retryAfter) } : {}),
      ...options.headers,
    },
    body: text,
  };
}

/**
 * Logs `err` once (INTERNAL with its stack at error, anything else by logRequestError) and answers
 * it in `shape`; anything but a coded error is INTERNAL with no detail for the client.
 */
export function sendError(res: ServerResponse, shape: ErrorShape, err: unknown, log: Logger, options: ReplyOptions & { logMessage?: string } = {}): void {
  const e = toServiceError(err);
  if (e.code === 'INTERNAL') log.error({ err }, 'internal error');
  else logRequestError(log, e.code, options.logMessage ?? e.message);
  // A response already under way (an SSE stream) can only be ended.
  if (res.headersSent) {
    res.end();
    return;
  }
  const reply = errorReply(shape, e, options);
  // Any body still arriving is discarded by node (not buffered) once the response has been sent.
  res.writeHead(reply.status, reply.headers);
  res.end(reply.body);
}

/** A JSON response that is not an error (/healthz). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
