/** Coded failures of the inference library; the API maps `code` to GraphQL/HTTP errors once. */
export type InferenceErrorCode =
  | 'BAD_USER_INPUT'
  | 'INVALID_IMAGE'
  | 'IMAGE_TOO_LARGE'
  | 'NOT_FOUND'
  /** The model's folder is broken (unreadable, incomplete) or its sessions do not open. */
  | 'MODEL_UNAVAILABLE'
  | 'OUT_OF_MEMORY'
  | 'CANCELLED'
  | 'TIMEOUT'
  /** The model's own graph failed (an export this server cannot drive, a broken file). */
  | 'MODEL_ERROR'
  /** The inference worker thread died while the job ran (it is restarted). */
  | 'WORKER_CRASHED'
  | 'INTERNAL';

export class InferenceError extends Error {
  override readonly name = 'InferenceError';
  constructor(
    readonly code: InferenceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a cancelled job fails with, whichever executor ran it. */
export function cancelledError(): InferenceError {
  return new InferenceError('CANCELLED', 'the job was cancelled');
}

/** Narrows anything thrown to a coded error; unknown failures become INTERNAL (message kept for logs). */
export function toInferenceError(err: unknown): InferenceError {
  if (err instanceof InferenceError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'INVALID_IMAGE' || code === 'IMAGE_TOO_LARGE') return new InferenceError(code, message, { cause: err });
  if (/bad_alloc|out of memory|Failed to allocate/i.test(message))
    return new InferenceError('OUT_OF_MEMORY', 'the model ran out of memory for this batch', { cause: err });
  return new InferenceError('INTERNAL', message, { cause: err });
}
