/**
 * Result URLs, signed each time one is read. By default capability URLs for one output image of
 * one job, `<base>/v1/results/<jobId>/<index>?expires=<unix s>&signature=<base64url HMAC-SHA256>`:
 * the HMAC (RESULT_URL_SECRET) covers the job id, the index and the expiry, so a URL opens that one
 * image until then and nothing else; any API process with the same secret serves it from the job
 * store. An image kept in the S3 bucket (resultStore.ts) gets a GET URL presigned by the bucket
 * instead, valid for the TTL but never past the job's retention (the bucket does not know it).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ServiceError } from '../errors.js';
import type { OutputImage } from '../inference/editRunner.js';
import type { S3ResultStore } from './resultStore.js';

export const RESULTS_PATH = '/v1/results/';

/** A URL for one image of a result completed at `created` (Unix s), signed now: how every reader of results gets one. */
export type ResultUrl = (jobId: string, image: Pick<OutputImage, 'index' | 'objectKey'>, created: number) => Promise<string>;

export class ResultUrls {
  private readonly key: Buffer;

  constructor(
    secret: string | undefined,
    readonly ttlSeconds: number,
    /** Where images with an `objectKey` are kept, and how long a job stays readable after it ends. */
    readonly bucket: { store: S3ResultStore; retentionSeconds: number } | null = null,
  ) {
    // Unset: a key of this process only (its URLs open on this process alone).
    this.key = secret ? Buffer.from(secret) : randomBytes(32);
  }

  /** A URL of `image`: presigned by the bucket when it is kept there, else `url(base, …)`. */
  async image(base: string, jobId: string, image: Pick<OutputImage, 'index' | 'objectKey'>, created: number, now = Date.now()): Promise<string> {
    if (image.objectKey === undefined || !this.bucket) return this.url(base, jobId, image.index, now);
    const retained = Math.floor(created + this.bucket.retentionSeconds - now / 1000);
    return this.bucket.store.presign(image.objectKey, Math.max(1, Math.min(this.ttlSeconds, retained)), new Date(now));
  }

  close(): void {
    this.bucket?.store.close();
  }

  private signature(jobId: string, index: number, expires: number): Buffer {
    return createHmac('sha256', this.key).update(`${jobId}\n${index}\n${expires}`).digest();
  }

  /** A URL for output `index` of `jobId`, valid for ttlSeconds from now. */
  url(base: string, jobId: string, index: number, now = Date.now()): string {
    const expires = Math.floor(now / 1000) + this.ttlSeconds;
    const signature = this.signature(jobId, index, expires).toString('base64url');
    return `${base}${RESULTS_PATH}${jobId}/${index}?expires=${expires}&signature=${signature}`;
  }

  /**
   * The job id and index a request's path and query open; RESULT_URL_EXPIRED past the expiry,
   * RESULT_URL_INVALID for anything not signed by this key (checked before the job store is read).
   */
  check(pathname: string, query: URLSearchParams, now = Date.now()): { jobId: string; index: number; expires: number } {
    const invalid = (): ServiceError => new ServiceError('RESULT_URL_INVALID', 'this result URL is not valid: use the URL exactly as the server gave it');
    const [jobId, indexText, ...rest] = pathname.slice(RESULTS_PATH.length).split('/');
    const expiresText = query.get('expires') ?? '';
    const given = Buffer.from(query.get('signature') ?? '', 'base64url');
    if (!/^[\w-]{1,64}$/.test(jobId ?? '') || rest.length > 0 || !/^\d{1,4}$/.test(indexText ?? '') || !/^\d{1,12}$/.test(expiresText)) throw invalid();
    const index = Number(indexText);
    const expires = Number(expiresText);
    if (expires * 1000 <= now) throw new ServiceError('RESULT_URL_EXPIRED', 'this result URL has expired: read the job again for a fresh one');
    const expected = this.signature(jobId!, index, expires);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
    return { jobId: jobId!, index, expires };
  }
}
