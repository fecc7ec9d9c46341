/**
 * The server's coded errors. Every failure a client can see carries one of these codes, whether it
 * started in the inference library (InferenceError) or in the service layers (ServiceError); the
 * GraphQL and REST layers map them to extensions.code / HTTP statuses in one place each.
 */
import { InferenceError } from './inference/errors.js';

export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'INVALID_IMAGE'
  | 'IMAGE_TOO_LARGE'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'QUEUE_FULL'
  | 'QUOTA_EXCEEDED'
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'OUT_OF_MEMORY'
  | 'CANCELLED'
  | 'TIMEOUT'
  | 'JOB_LOST'
  | 'MODEL_ERROR'
  | 'INTERNAL';

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

export const HTTP_STATUS: Record<ErrorCode, number> = {
  BAD_USER_INPUT: 400,
  INVALID_IMAGE: 400,
  IMAGE_TOO_LARGE: 413,
  PAYLOAD_TOO_LARGE: 413,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  QUEUE_FULL: 503,
  QUOTA_EXCEEDED: 429,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  OUT_OF_MEMORY: 507,
  CANCELLED: 409,
  TIMEOUT: 504,
  /** The job's state vanished from Redis (restarted without persistence): resubmit it. */
  JOB_LOST: 410,
  MODEL_ERROR: 500,
  INTERNAL: 500,
};

/** Any thrown value → a coded error safe to show a client (INTERNAL hides the original message). */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (err instanceof InferenceError) {
    return err.code === 'INTERNAL' ? new ServiceError('INTERNAL', 'internal error') : new ServiceError(err.code, err.message);
  }
  return new ServiceError('INTERNAL', 'internal error');
}
