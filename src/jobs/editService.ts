/**
 * Accepting an edit: check the uploads (count, bytes, real image content sniffed from the bytes,
 * decoded-pixel bound from the header), resolve the options against the model, and queue the job.
 * Shared by the GraphQL mutation and the REST endpoint; nothing is queued unless all of it passes.
 */
import type { InferenceEngine } from '../inference/engine.js';
import type { EditOptions } from '../inference/request.js';
import { checkReferenceCount, resolveEditOptions, resolveReferences } from '../inference/request.js';
import { checkPromptGiven } from '../inference/prompts.js';
import { decodeMask, probeImage, verifyImage, ImageDecodeError } from '../inference/imageIO.js';
import { InferenceError } from '../inference/errors.js';
import { ServiceError } from '../errors.js';
import type { JobBackend } from './types.js';
import type { EditInput } from '../inference/editRunner.js';
import { checkPriority, type JobSnapshot } from './types.js';
import type { Viewer } from './access.js';
import type { ResultUrl } from './resultUrls.js';
import { createHash } from 'node:crypto';
import { checkMetadata } from './history.js';
import type { WebhookDispatcher, WebhookRequest } from './webhooks.js';
import { checkIdempotencyKey, type IdempotencyRecord, type IdempotencyStore, idempotencySlot } from './idempotency.js';

/** How long a request waits for another one holding its idempotency key to queue the job. */
const IDEMPOTENCY_WAIT_MS = 60_000;

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
  /** Declared pixels of all of a job's inputs (IMAGE_TOO_LARGE past it). */
  maxJobInputPixels?: number;
  /** Declared input pixels of this process's unfinished jobs and submissions in progress (QUEUE_FULL past it). */
  maxProcessInputPixels?: number;
}

/** [issue 16 item 5] Full decodes at once at submission, over all concurrent submissions of this process. */
const SUBMIT_DECODE_CONCURRENCY = 2;

export interface EditSubmission {
  model?: string | null;
  images: readonly UploadedFile[];
  /** At most one per image, in upload order; null or missing: edit the whole image. */
  masks?: readonly (UploadedFile | null | undefined)[] | null;
  /** Reference images conditioning every output before its input (families with `referenceImages`); null or missing: none. */
  references?: readonly UploadedFile[] | null;
  options: EditOptions;
  /** Idempotency-Key header or `idempotencyKey` argument (idempotency.ts). */
  idempotencyKey?: string | null;
  /** A webhook for the job's events (webhooks.ts); `resultUrl` makes the completed event's image URLs. */
  webhook?: (WebhookRequest & { resultUrl: ResultUrl }) | null;
  /** The client's own data, kept with the job (history.ts: checked here). */
  metadata?: unknown;
  /** Orders the caller's own queued jobs (checkPriority in types.ts); default 0. */
  priority?: number | null;
}

/** The request as bytes: model, options (unset ones left out, keys sorted) and every image and mask. */
async function fingerprint(s: EditSubmission): Promise<string> {
  const hash = createHash('sha256');
  const options = Object.fromEntries(
    Object.entries(s.options)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  const webhook = s.webhook ? { url: s.webhook.url, events: s.webhook.events ?? null } : null;
  hash.update(
    // metadata and priority only when given, so keys claimed before it existed still match their retries.
    JSON.stringify({
      model: s.model ?? null,
      options,
      webhook,
      ...(s.metadata != null ? { metadata: s.metadata } : {}),
      ...(s.priority != null ? { priority: s.priority } : {}),
      images: s.images.length,
      masks: (s.masks ?? []).map((m) => !!m),
      ...(s.references?.length ? { references: s.references.length } : {}),
    }),
  );
  for (const f of [...s.images, ...(s.masks ?? []), ...(s.references ?? [])]) if (f) hash.update(new Uint8Array(await f.arrayBuffer()));
  return hash.digest('hex');
}

export class EditService {
  /** Declared input pixels of submissions being checked right now. */
  private submittingPixels = 0;
  private decoding = 0;
  private readonly decodeWaiters: (() => void)[] = [];

  constructor(
    private readonly engine: InferenceEngine,
    private readonly jobs: JobBackend,
    readonly limits: UploadLimits,
    private readonly idempotency: IdempotencyStore,
    readonly webhooks: WebhookDispatcher,
  ) {}

  private async decodeSlot<T>(fn: () => Promise<T>): Promise<T> {
    while (this.decoding >= SUBMIT_DECODE_CONCURRENCY) await new Promise<void>((r) => this.decodeWaiters.push(r));
    this.decoding += 1;
    try {
      return await fn();
    } finally {
      this.decoding -= 1;
      this.decodeWaiters.shift()?.();
    }
  }

  /**
   * Checks and queues an edit owned by `principal.owner` (src/server/auth.ts). With an
   * idempotency key already used by this owner: the job it created (IDEMPOTENCY_CONFLICT when the
   * request differs).
   */
  async submit(submission: EditSubmission, principal: Viewer): Promise<JobSnapshot> {
    const { owner } = principal;
    const priority = checkPriority(submission.priority, principal.admin);
    if (submission.idempotencyKey == null) return this.submitNew(submission, owner, priority);
    const slot = idempotencySlot(owner, checkIdempotencyKey(submission.idempotencyKey));
    const mine: IdempotencyRecord = { fingerprint: await fingerprint(submission), jobId: null };
    const deadline = Date.now() + IDEMPOTENCY_WAIT_MS;
    for (;;) {
      const held = await this.idempotency.claim(slot, mine);
      if (!held) break;
      if (held.fingerprint !== mine.fingerprint)
        throw new ServiceError('IDEMPOTENCY_CONFLICT', 'this idempotency key was used with a different request; use a new key for a new request');
      if (held.jobId) {
        const job = await this.jobs.get(held.jobId);
        if (job) return job;
        throw new ServiceError('NOT_FOUND', `the job this idempotency key created (${held.jobId}) has expired; use a new key for a new job`);
      }
      // Another request with this key is being checked and queued: wait for its job (or its failure).
      if (Date.now() > deadline)
        throw new ServiceError('IDEMPOTENCY_CONFLICT', 'a request with this idempotency key is still being submitted; retry later', { retryAfterSeconds: 5 });
      await new Promise((r) => setTimeout(r, 100));
    }
    let job: JobSnapshot;
    try {
      job = await this.submitNew(submission, owner, priority);
    } catch (err) {
      await this.idempotency.release(slot).catch(() => undefined);
      throw err;
    }
    await this.idempotency.settle(slot, { ...mine, jobId: job.id });
    return job;
  }

  private async submitNew(submission: EditSubmission, owner: string, priority: number): Promise<JobSnapshot> {
    const spec = this.engine.model(submission.model ?? null);
    const files = submission.images;
    if (files.length === 0) throw new ServiceError('BAD_USER_INPUT', 'at least one image is required');
    const maxFiles = Math.min(this.limits.maxFilesPerJob, spec.limits.maxImagesPerJob);
    if (files.length > maxFiles) throw new ServiceError('BAD_USER_INPUT', `${files.length} images is over the limit of ${maxFiles} per job`);
    let total = 0;
    files.forEach((f, i) => {
      if (f.size > this.limits.maxFileBytes)
        throw new ServiceError('PAYLOAD_TOO_LARGE', `images[${i}] is ${f.size} bytes; the limit is ${this.limits.maxFileBytes} bytes per file`);
      total += f.size;
    });
    if (total > this.limits.maxTotalBytes)
      throw new ServiceError('PAYLOAD_TOO_LARGE', `the images total ${total} bytes; the limit is ${this.limits.maxTotalBytes} bytes per job`);
    const masks = submission.masks ?? [];
    if (masks.length > files.length)
      throw new ServiceError('BAD_USER_INPUT', `${masks.length} masks for ${files.length} images: give at most one mask per image, in upload order`);
    masks.forEach((m, i) => {
      if (m && m.size > this.limits.maxFileBytes)
        throw new ServiceError('PAYLOAD_TOO_LARGE', `masks[${i}] is ${m.size} bytes; the limit is ${this.limits.maxFileBytes} bytes per file`);
      if (m) total += m.size;
    });
    if (total > this.limits.maxTotalBytes)
      throw new ServiceError('PAYLOAD_TOO_LARGE', `the images and masks total ${total} bytes; the limit is ${this.limits.maxTotalBytes} bytes per job`);
    const referenceFiles = submission.references ?? [];
    referenceFiles.forEach((f, i) => {
      if (f.size > this.limits.maxFileBytes)
        throw new ServiceError('PAYLOAD_TOO_LARGE', `referenceImages[${i}] is ${f.size} bytes; the limit is ${this.limits.maxFileBytes} bytes per file`);
      total += f.size;
    });
    if (total > this.limits.maxTotalBytes)
      throw new ServiceError(
        'PAYLOAD_TOO_LARGE',
        `the images, masks and reference images total ${total} bytes; the limit is ${this.limits.maxTotalBytes} bytes per job`,
      );
    // Options first: a bad argument is reported before any image work.
    checkPromptGiven(spec, submission.options.prompt, submission.options.prompts);
    let edit = resolveEditOptions(spec, files.length, submission.options);
    checkReferenceCount(spec, referenceFiles.length);
    spec.family.checkEdit?.(spec, { masks: masks.some(Boolean) });
    const metadata = submission.metadata == null ? null : checkMetadata(submission.metadata);
    const webhook = submission.webhook ? await this.webhooks.check(submission.webhook) : null;
    const limits = { maxInputPixels: this.limits.maxInputPixels };
    const named =
      (what: string, f: UploadedFile) =>
      (err: unknown): never => {
        if (err instanceof ImageDecodeError) throw new InferenceError(err.code, `${what}${f.name ? ` ${JSON.stringify(f.name)}` : ''}: ${err.message}`);
        throw err;
      };
    // Headers first (no pixels decoded): the declared sizes are checked against the caps before any work.
    const read: { bytes: Uint8Array; pixels: number }[] = [];
    for (const [i, f] of files.entries()) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const probe = await probeImage(bytes, limits).catch(named(`images[${i}]`, f));
      read.push({ bytes, pixels: probe.width * probe.height });
    }
    const references: { bytes: Uint8Array; width: number; height: number }[] = [];
    for (const [i, f] of referenceFiles.entries()) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const probe = await probeImage(bytes, limits).catch(named(`referenceImages[${i}]`, f));
      references.push({ bytes, width: probe.width, height: probe.height });
    }
    edit = resolveReferences(spec, edit, references);
    // The references count with the inputs against the caps: they are held decoded for the whole call too.
    const pixels = read.reduce((n, r) => n + r.pixels, 0) + references.reduce((n, r) => n + r.width * r.height, 0);
    const jobCap = this.limits.maxJobInputPixels;
    if (jobCap !== undefined && pixels > jobCap) {
      throw new ServiceError('IMAGE_TOO_LARGE', `the images total ${pixels} pixels; the limit is ${jobCap} pixels per job (MAX_JOB_INPUT_PIXELS)`);
    }
    const processCap = this.limits.maxProcessInputPixels;
    const pending = (this.jobs.pendingInputPixels?.() ?? 0) + this.submittingPixels;
    if (processCap !== undefined && pending + pixels > processCap) {
      throw new ServiceError(
        'QUEUE_FULL',
        `the server holds ${pending} pixels of input images and this job has ${pixels}; the limit is ${processCap} (MAX_PROCESS_INPUT_PIXELS): retry later`,
        { retryAfterSeconds: 5 },
      );
    }
    this.submittingPixels += pixels;
    try {
      // Every image and mask is decoded in full now, one at a time (bounded memory), so a truncated
      // or corrupt file is refused, by index and name, before a job exists.
      for (const [i, r] of references.entries())
        await this.decodeSlot(() => verifyImage(r.bytes, limits)).catch(named(`referenceImages[${i}]`, referenceFiles[i]!));
      // Every input holds the same reference arrays (stored once: see EditInput.references).
      const shared = references.length ? { references: references.map((r) => r.bytes) } : {};
      const inputs: EditInput[] = [];
      for (const [i, f] of files.entries()) {
        const { bytes, pixels: p } = read[i]!;
        const probe = await this.decodeSlot(() => verifyImage(bytes, limits)).catch(named(`images[${i}]`, f));
        const maskFile = masks[i];
        if (!maskFile) {
          inputs.push({ bytes, name: f.name, pixels: p, ...shared });
          continue;
        }
        const mask = new Uint8Array(await maskFile.arrayBuffer());
        await this.decodeSlot(() => decodeMask(mask, probe, probe, { limits })).catch(named(`masks[${i}]`, maskFile));
        inputs.push({ bytes, name: f.name, mask, pixels: p, ...shared });
      }
      const job = await this.jobs.submit(spec.id, edit, inputs, owner, metadata, priority);
      if (webhook) await this.webhooks.register(job, webhook, submission.webhook!.resultUrl);
      return job;
    } finally {
      this.submittingPixels -= pixels;
    }
  }
}
