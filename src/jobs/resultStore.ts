/**
 * Where results are kept besides the job store. By default nowhere: URLs are the server's own
 * capability URLs (resultUrls.ts). With S3_BUCKET, a job's images are also put in an S3-compatible
 * bucket when it completes (before its completed event is recorded, so no client sees a URL to a
 * missing object) and each image records its object key; resultUrls.ts presigns a GET URL of that
 * key each time a URL is read, and the bucket serves the bytes. `b64Json` still comes from the job
 * store. Objects are not deleted by the server: give the bucket a lifecycle rule (docs/deploy.md).
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3ResultsConfig } from '../server/config.js';
import type { TerminalEvent } from './jobRun.js';
import type { JobResult } from './types.js';

export interface ResultStore {
  /** Puts the result's images in the bucket and sets each image's `objectKey`. */
  store(jobId: string, result: JobResult): Promise<void>;
}

const EXTENSIONS: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp' };

export class S3ResultStore implements ResultStore {
  private readonly client: S3Client;

  constructor(private readonly config: S3ResultsConfig) {
    // Credentials come from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, a role).
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      // Checksums only where S3 requires them: S3-compatible servers differ in the ones they know.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    });
  }

  /** The object key of one image. */
  key(jobId: string, index: number, mimeType: string): string {
    return `${this.config.prefix}${jobId}/${index}.${EXTENSIONS[mimeType] ?? 'bin'}`;
  }

  async store(jobId: string, result: JobResult): Promise<void> {
    const { bucket: Bucket } = this.config;
    await Promise.all(
      result.images.map(async (image) => {
        const Key = this.key(jobId, image.index, image.mimeType);
        await this.client.send(new PutObjectCommand({ Bucket, Key, Body: image.bytes, ContentType: image.mimeType }));
        image.objectKey = Key;
      }),
    );
  }

  /** A GET URL of object `key`, presigned at `now` and valid `expiresIn` seconds from then. */
  presign(key: string, expiresIn: number, now: Date): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.config.bucket, Key: key }), { expiresIn, signingDate: now });
  }

  close(): void {
    this.client.destroy();
  }
}

/**
 * A completed event with its images stored (`store` unset: as it is). A result that cannot be
 * stored fails the job (INTERNAL), since its URLs would open nothing.
 */
export async function storeResult(store: ResultStore | undefined, event: TerminalEvent): Promise<TerminalEvent> {
  if (!store || event.type !== 'completed') return event;
  try {
    await store.store(event.jobId, event.result);
    return event;
  } catch (err) {
    return {
      type: 'failed',
      jobId: event.jobId,
      status: 'FAILED',
      error: { code: 'INTERNAL', message: `the result could not be stored (${(err as Error).name}: ${(err as Error).message.split('\n')[0]})` },
    };
  }
}
