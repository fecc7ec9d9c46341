/**
 * Accepting an edit: check the uploads (count, bytes, real image content sniffed from the bytes,
 * decoded-pixel bound from the header), resolve the options against the model, and queue the job.
 * Shared by the GraphQL mutation and the REST endpoint; nothing is queued unless all of it passes.
 */
import type { InferenceEngine } from '../inference/engine.js';
import type { EditOptions } from '../inference/request.js';
import { resolveEditOptions } from '../inference/request.js';
import { decodeMask, verifyImage, ImageDecodeError } from '../inference/imageIO.js';
import { InferenceError } from '../inference/errors.js';
import { ServiceError } from '../errors.js';
import type { JobBackend } from './types.js';
import type { EditInput } from '../inference/editRunner.js';
import type { JobSnapshot } from './types.js';

/** What Yoga's multipart parser (and undici's FormData) hand us for a file part. */
export interface UploadedFile {
  readonly name?: string;
  readonly size: number;
  readonly type?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface UploadLimits {
  maxFilesPerJob: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxInputPixels: number;
}

export interface EditSubmission {
  model?: string | null;
  images: readonly UploadedFile[];
  /** At most one per image, in upload order; null or missing: edit the whole image. */
  masks?: readonly (UploadedFile | null | undefined)[] | null;
  options: EditOptions;
}

export class EditService {
  constructor(private readonly engine: InferenceEngine, private readonly jobs: JobBackend, readonly limits: UploadLimits) {}

  /** Checks and queues an edit owned by `owner` (a principal's id, src/server/auth.ts). */
  async submit(submission: EditSubmission, owner: string): Promise<JobSnapshot> {
    const spec = this.engine.model(submission.model ?? null);
    const files = submission.images;
    if (files.length === 0) throw new ServiceError('BAD_USER_INPUT', 'at least one image is required');
    const maxFiles = Math.min(this.limits.maxFilesPerJob, spec.limits.maxImagesPerJob);
    if (files.length > maxFiles) throw new ServiceError('BAD_USER_INPUT', `${files.length} images is over the limit of ${maxFiles} per job`);
    let total = 0;
    files.forEach((f, i) => {
      if (f.size > this.limits.maxFileBytes) throw new ServiceError('PAYLOAD_TOO_LARGE', `images[${i}] is ${f.size} bytes; the limit is ${this.limits.maxFileBytes} bytes per file`);
      total += f.size;
    });
    if (total > this.limits.maxTotalBytes) throw new ServiceError('PAYLOAD_TOO_LARGE', `the images total ${total} bytes; the limit is ${this.limits.maxTotalBytes} bytes per job`);
    const masks = submission.masks ?? [];
    if (masks.length > files.length) throw new ServiceError('BAD_USER_INPUT', `${masks.length} masks for ${files.length} images: give at most one mask per image, in upload order`);
    masks.forEach((m, i) => {
      if (m && m.size > this.limits.maxFileBytes) throw new ServiceError('PAYLOAD_TOO_LARGE', `masks[${i}] is ${m.size} bytes; the limit is ${this.limits.maxFileBytes} bytes per file`);
      if (m) total += m.size;
    });
    if (total > this.limits.maxTotalBytes) throw new ServiceError('PAYLOAD_TOO_LARGE', `the images and masks total ${total} bytes; the limit is ${this.limits.maxTotalBytes} bytes per job`);
    // Options first: a bad argument is reported before any image work.
    const edit = resolveEditOptions(spec, files.length, submission.options);
    spec.pipeline.checkEdit?.(spec, { masks: masks.some(Boolean) });
    const limits = { maxInputPixels: this.limits.maxInputPixels };
    const named = (what: string, f: UploadedFile) => (err: unknown): never => {
      if (err instanceof ImageDecodeError) throw new InferenceError(err.code, `${what}${f.name ? ` ${JSON.stringify(f.name)}` : ''}: ${err.message}`);
      throw err;
    };
    // Every image and mask is decoded in full now, one at a time (bounded memory), so a truncated
    // or corrupt file is refused, by index and name, before a job exists.
    const inputs: EditInput[] = [];
    for (const [i, f] of files.entries()) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const probe = await verifyImage(bytes, limits).catch(named(`images[${i}]`, f));
      const maskFile = masks[i];
      if (!maskFile) {
        inputs.push({ bytes, name: f.name });
        continue;
      }
      const mask = new Uint8Array(await maskFile.arrayBuffer());
      await decodeMask(mask, probe, probe, { limits }).catch(named(`masks[${i}]`, maskFile));
      inputs.push({ bytes, name: f.name, mask });
    }
    return this.jobs.submit(spec.id, edit, inputs, owner);
  }
}
