/**
 * POST /v1/images/edits: the seed project's REST contract, compatible with OpenAI's image edit API
 * and the official `openai` SDK, on the same engine, queue and auth as GraphQL.
 *
 * Field mapping (docs/rest.md): images | image | image[] → images (on models that take reference
 * images, several images are one output's image list: the last is the input, the rest its
 * references); prompt; negative_prompt;
 * size (default auto, as OpenAI's); fit (pad, crop or stretch); n (variants per input); num_inference_steps → steps; guidance_scale; true_cfg_scale (the
 * seed's name for text guidance with a negative prompt) → trueCfgScale on flow models,
 * guidanceScale on UNet models; max_sequence_length → maxSequenceLength on models with a T5 encoder
 * (checked and otherwise ignored on UNet models, whose CLIP encoders read 77 tokens);
 * image_guidance_scale; strength; seed; generator (TORCH | XOSHIRO); model; scheduler; output_format; output_compression →
 * outputQuality; output_type (the seed's diffusers `pil` or `np`: both mean the encoded image);
 * response_format (b64_json, or url: signed result URLs, src/jobs/resultUrls.ts); stream + partial_images (SSE in the SDK's event shapes).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import type { Logger } from 'pino';
import type { InferenceEngine } from '../inference/engine.js';
import { SIZE_FITS, isOutputFormat, outputFormatList, type OutputFormat, type SizeFit } from '../inference/imageIO.js';
import type { EditOptions } from '../inference/request.js';
import type { EditSchedulerName } from '../inference/schedulers/types.js';
import { EDIT_SCHEDULER_NAMES } from '../inference/schedulers/types.js';
import { isNoiseGeneratorName, NOISE_GENERATORS } from '../inference/random.js';
import type { ModelSpec } from '../inference/modelFolder.js';
import type { EditService, UploadedFile } from '../jobs/editService.js';
import type { JobEvent, JobSnapshot } from '../jobs/types.js';
import type { JobAccess, Viewer } from '../jobs/access.js';
import type { ResultUrl } from '../jobs/resultUrls.js';
import { WEBHOOK_EVENTS, type WebhookEventName } from '../jobs/webhooks.js';
import { type JobMetadata, parseMetadata } from '../jobs/history.js';
import { ServiceError, type ErrorCode } from '../errors.js';
import { openAIError, sendError } from './errorReply.js';
import { MultipartError, type MultipartLimits, readMultipart } from './multipart.js';

export interface RestDeps {
  engine: InferenceEngine;
  jobs: JobAccess;
  edits: EditService;
  /** The admitted caller: owns the job this request queues. */
  principal: Viewer;
  log: Logger;
  maxBodyBytes: number;
  multipartLimits: MultipartLimits;
  /** A URL of one output image, signed now (response_format=url). */
  resultUrl: ResultUrl;
}

class RestError extends ServiceError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly param: string | null = null,
  ) {
    super(code, message);
  }
}

/** The option names that the engine's and EditService's messages start with → this endpoint's form fields. */
const FIELD_OF_OPTION: Record<string, string> = {
  prompt: 'prompt',
  prompts: 'prompt',
  negativePrompt: 'negative_prompt',
  n: 'n',
  size: 'size',
  sizes: 'size',
  steps: 'num_inference_steps',
  guidanceScale: 'guidance_scale',
  trueCfgScale: 'true_cfg_scale',
  maxSequenceLength: 'max_sequence_length',
  imageGuidanceScale: 'image_guidance_scale',
  strength: 'strength',
  seed: 'seed',
  scheduler: 'scheduler',
  outputFormat: 'output_format',
  outputQuality: 'output_compression',
  maskBlur: 'mask_blur',
  previewEvery: 'partial_images',
  image: 'image',
  images: 'image',
  referenceImages: 'image',
  masks: 'mask',
};

/**
 * The form field an error is about (OpenAI's `param`): a RestError's own; the model for an unknown
 * or unavailable one; else the first option the message names ("steps × strength …" → num_inference_steps).
 */
function paramOf(err: unknown): string | null {
  if (err instanceof RestError || err instanceof MultipartError) return err.param;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'NOT_FOUND' || code === 'MODEL_UNAVAILABLE') return 'model';
  if (!['BAD_USER_INPUT', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'PAYLOAD_TOO_LARGE'].includes(code as string)) return null;
  const words = (err as Error).message.match(/[A-Za-z]+/g) ?? [];
  const named = words.find((w) => Object.hasOwn(FIELD_OF_OPTION, w));
  return named ? FIELD_OF_OPTION[named]! : null;
}

/** OpenAI fields with no effect here (quality tiers, fidelity, moderation, end-user ids). */
const IGNORED = new Set(['quality', 'input_fidelity', 'user', 'moderation']);
const KNOWN = new Set([
  'images',
  'image',
  'image[]',
  'mask',
  'mask[]',
  'mask_blur',
  'background',
  'prompt',
  'negative_prompt',
  'size',
  'fit',
  'n',
  'num_inference_steps',
  'guidance_scale',
  'true_cfg_scale',
  'max_sequence_length',
  'output_type',
  'image_guidance_scale',
  'strength',
  'seed',
  'generator',
  'model',
  'scheduler',
  'output_format',
  'output_compression',
  'response_format',
  'stream',
  'partial_images',
  'webhook_url',
  'webhook_events',
  'metadata',
  'priority',
]);

/** The request body as a stream that errors with 413 past `limit` bytes (never buffered whole). */
function limitedBody(req: IncomingMessage, limit: number): Readable {
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) done(new RestError('PAYLOAD_TOO_LARGE', `request body is over the limit of ${limit} bytes`));
      else done(null, chunk);
    },
  });
  req.on('error', (err) => counter.destroy(err));
  return req.pipe(counter);
}

/** Decimal integers and plain decimals, as form fields write numbers (no hex, exponents, spaces or `Infinity`). */
const INTEGER = /^-?[0-9]+$/;
const DECIMAL = /^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$/;

function numberField(form: FormData, name: string, integer: boolean): number | undefined {
  const raw = form.get(name);
  if (raw === null) return undefined;
  const value = typeof raw === 'string' && (integer ? INTEGER : DECIMAL).test(raw) ? Number(raw) : Number.NaN;
  if (integer ? !Number.isSafeInteger(value) : !Number.isFinite(value)) {
    throw new RestError(
      'BAD_USER_INPUT',
      `${name} must be ${integer ? 'a decimal integer' : 'a decimal number'} (got ${typeof raw === 'string' ? JSON.stringify(raw.slice(0, 40)) : 'a file'})`,
      name,
    );
  }
  return value;
}

function stringField(form: FormData, name: string): string | undefined {
  const raw = form.get(name);
  if (raw === null) return undefined;
  if (typeof raw !== 'string') throw new RestError('BAD_USER_INPUT', `${name} must be a text field, not a file`, name);
  return raw;
}

function booleanField(form: FormData, name: string): boolean {
  const raw = stringField(form, name);
  if (raw === undefined) return false;
  if (['true', '1'].includes(raw.toLowerCase())) return true;
  if (['false', '0', ''].includes(raw.toLowerCase())) return false;
  throw new RestError('BAD_USER_INPUT', `${name} must be true or false`, name);
}

interface ParsedRequest {
  model: string | null;
  files: UploadedFile[];
  /** On models that take reference images: every image but the last (see parseForm). */
  references: UploadedFile[];
  masks: UploadedFile[];
  options: EditOptions;
  stream: boolean;
  partialImages: number;
  responseFormat: 'b64_json' | 'url';
  webhook: { url: string; events: WebhookEventName[] | null } | null;
  metadata: JobMetadata | null;
  priority: number | undefined;
}

function parseForm(form: FormData, engine: InferenceEngine): ParsedRequest {
  for (const key of new Set(form.keys())) {
    if (!KNOWN.has(key) && !IGNORED.has(key)) throw new RestError('BAD_USER_INPUT', `unknown field "${key}"`, key);
  }
  const files: UploadedFile[] = [];
  for (const key of ['images', 'image', 'image[]']) {
    for (const value of form.getAll(key)) {
      if (typeof value === 'string') throw new RestError('BAD_USER_INPUT', `${key} must be a file`, key);
      files.push(value);
    }
  }
  if (files.length === 0) throw new RestError('BAD_USER_INPUT', 'at least one image is required (field "images", "image" or "image[]")', 'images');
  // OpenAI's `mask` applies to the first image; `mask[]` gives one per image in order.
  const masks: UploadedFile[] = [];
  for (const key of ['mask', 'mask[]']) {
    for (const value of form.getAll(key)) {
      if (typeof value === 'string') throw new RestError('BAD_USER_INPUT', `${key} must be a file`, key);
      masks.push(value);
    }
  }
  if (masks.length > files.length)
    throw new RestError('BAD_USER_INPUT', `${masks.length} masks for ${files.length} images: give at most one per image, in order`, 'mask');
  const background = stringField(form, 'background');
  if (background !== undefined && !['auto', 'opaque'].includes(background)) {
    throw new RestError('BAD_USER_INPUT', 'background must be auto or opaque: outputs have no alpha channel here', 'background');
  }
  const prompt = stringField(form, 'prompt');
  if (prompt === undefined) throw new RestError('BAD_USER_INPUT', 'prompt is required', 'prompt');
  const responseFormat = stringField(form, 'response_format') ?? 'b64_json';
  if (responseFormat !== 'b64_json' && responseFormat !== 'url')
    throw new RestError('BAD_USER_INPUT', 'response_format must be b64_json or url', 'response_format');
  let model = stringField(form, 'model') ?? null;
  // The SDK requires a model; OpenAI's own names mean "the default model" here.
  if (model && /^(gpt-image|dall-e)/.test(model) && !engine.models().some((m) => m.id === model)) model = null;
  const negativePrompt = stringField(form, 'negative_prompt');
  const trueCfg = numberField(form, 'true_cfg_scale', false);
  const guidance = numberField(form, 'guidance_scale', false);
  const fit = stringField(form, 'fit')?.toLowerCase();
  if (fit !== undefined && !SIZE_FITS.includes(fit as SizeFit)) throw new RestError('BAD_USER_INPUT', `fit must be one of ${SIZE_FITS.join(', ')}`, 'fit');
  const format = stringField(form, 'output_format')?.toLowerCase();
  if (format !== undefined && !isOutputFormat(format)) throw new RestError('BAD_USER_INPUT', `output_format must be ${outputFormatList()}`, 'output_format');
  const compression = numberField(form, 'output_compression', true);
  if (compression !== undefined && (compression < 0 || compression > 100))
    throw new RestError('BAD_USER_INPUT', 'output_compression must be from 0 to 100', 'output_compression');
  const scheduler = stringField(form, 'scheduler')?.toUpperCase();
  if (scheduler !== undefined && !EDIT_SCHEDULER_NAMES.includes(scheduler as EditSchedulerName))
    throw new RestError('BAD_USER_INPUT', `scheduler must be one of ${EDIT_SCHEDULER_NAMES.join(', ')}`, 'scheduler');
  const generator = stringField(form, 'generator')?.toUpperCase();
  if (generator !== undefined && !isNoiseGeneratorName(generator))
    throw new RestError('BAD_USER_INPUT', `generator must be one of ${NOISE_GENERATORS.join(', ')}`, 'generator');
  const outputType = stringField(form, 'output_type');
  if (outputType !== undefined && !['pil', 'np'].includes(outputType.toLowerCase())) {
    throw new RestError('BAD_USER_INPUT', 'output_type must be pil or np (both return the encoded image here)', 'output_type');
  }
  const maxSequenceLength = numberField(form, 'max_sequence_length', true);
  // Flow models take the seed's true_cfg_scale and max_sequence_length as they are; UNet models
  // keep the documented mapping (an unknown model is reported when the edit is submitted).
  let spec: ModelSpec | null = null;
  try {
    spec = engine.model(model);
  } catch {
    spec = null;
  }
  // The model's own limit (T5: 512; Qwen-Image-Edit: 1024, checked and not a truncation).
  const maxLength = spec?.limits.maxSequenceLength ?? 512;
  if (maxSequenceLength !== undefined && (maxSequenceLength < 1 || maxSequenceLength > maxLength)) {
    throw new RestError('BAD_USER_INPUT', `max_sequence_length must be from 1 to ${maxLength}`, 'max_sequence_length');
  }
  const flow = spec?.defaults.trueCfgScale != null;
  // OpenAI's reference semantics on models that condition one output on several images
  // (Qwen-Image-Edit Plus): image[] is diffusers' image list, one output (× n) conditioned on all of
  // them, the last one edited (its aspect ratio sets the output's). Elsewhere each image is an input.
  const references = spec?.family.referenceImages && masks.length === 0 && files.length > 1 ? files.splice(0, files.length - 1) : [];
  const partialImages = numberField(form, 'partial_images', true) ?? 0;
  if (partialImages < 0 || partialImages > 3) throw new RestError('BAD_USER_INPUT', 'partial_images must be from 0 to 3', 'partial_images');
  const stream = booleanField(form, 'stream');
  if (stream && responseFormat === 'url')
    throw new RestError('BAD_USER_INPUT', 'stream=true sends b64_json events; response_format=url is for responses that are not streamed', 'response_format');
  const webhookUrl = stringField(form, 'webhook_url');
  const eventsText = stringField(form, 'webhook_events');
  if (eventsText !== undefined && webhookUrl === undefined) throw new RestError('BAD_USER_INPUT', 'webhook_events needs webhook_url', 'webhook_events');
  const events = eventsText?.split(',').map((e) => e.trim().toLowerCase());
  const unknown = events?.find((e) => !WEBHOOK_EVENTS.includes(e as WebhookEventName));
  if (unknown !== undefined)
    throw new RestError(
      'BAD_USER_INPUT',
      `webhook_events is a comma-separated list of ${WEBHOOK_EVENTS.join(', ')} (got ${JSON.stringify(unknown)})`,
      'webhook_events',
    );
  const metadataText = stringField(form, 'metadata');
  let metadata: JobMetadata | null = null;
  try {
    metadata = metadataText === undefined ? null : parseMetadata(metadataText);
  } catch (err) {
    throw new RestError((err as ServiceError).code, (err as ServiceError).message, 'metadata');
  }
  return {
    responseFormat,
    metadata,
    priority: numberField(form, 'priority', true),
    webhook: webhookUrl === undefined ? null : { url: webhookUrl, events: (events as WebhookEventName[] | undefined) ?? null },
    model,
    files,
    references,
    masks,
    stream,
    partialImages,
    options: {
      prompt,
      negativePrompt,
      n: numberField(form, 'n', true),
      size: stringField(form, 'size'),
      fit: fit as SizeFit | undefined,
      steps: numberField(form, 'num_inference_steps', true),
      // On UNet models true_cfg_scale is the seed's text guidance against a negative prompt; it wins when one is given.
      guidanceScale: flow ? guidance : trueCfg !== undefined && (negativePrompt || guidance === undefined) ? trueCfg : guidance,
      trueCfgScale: flow ? trueCfg : undefined,
      maxSequenceLength: spec?.defaults.maxSequenceLength != null ? maxSequenceLength : undefined,
      imageGuidanceScale: numberField(form, 'image_guidance_scale', false),
      strength: numberField(form, 'strength', false),
      seed: numberField(form, 'seed', true),
      generator,
      scheduler: scheduler as EditSchedulerName | undefined,
      outputFormat: format as OutputFormat | undefined,
      outputQuality: compression === undefined ? undefined : Math.max(1, compression),
      maskBlur: numberField(form, 'mask_blur', true),
    },
  };
}

async function* events(deps: RestDeps, id: string): AsyncGenerator<JobEvent> {
  const stream = await deps.jobs.subscribe(id, deps.principal);
  try {
    for await (const e of stream) yield e;
  } finally {
    await stream.return?.();
  }
}

function terminalError(e: JobEvent): ServiceError | null {
  if (e.type === 'failed') return new ServiceError(e.error.code as ErrorCode, e.error.message);
  if (e.type === 'cancelled') return new ServiceError('CANCELLED', 'the job was cancelled');
  return null;
}

export async function handleRestEdit(req: IncomingMessage, res: ServerResponse, deps: RestDeps): Promise<void> {
  if (req.method !== 'POST') {
    sendError(res, 'openai', new RestError('BAD_USER_INPUT', 'use POST with multipart/form-data'), deps.log, { status: 405, headers: { allow: 'POST' } });
    return;
  }
  let job: JobSnapshot | null = null;
  let finished = false;
  const rawKey = req.headers['idempotency-key'];
  const idempotencyKey = typeof rawKey === 'string' ? rawKey : null;
  res.on('close', () => {
    // The client went away: stop its work instead of computing images nobody will read (unless it
    // sent an Idempotency-Key: its retry will ask for this job again).
    if (job && !finished && idempotencyKey === null) void Promise.resolve(deps.jobs.cancel(job.id, deps.principal)).catch(() => undefined);
  });
  try {
    const type = req.headers['content-type'] ?? '';
    if (!type.toLowerCase().startsWith('multipart/form-data')) throw new RestError('BAD_USER_INPUT', 'the body must be multipart/form-data');
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > deps.maxBodyBytes) throw new RestError('PAYLOAD_TOO_LARGE', `request body is over the limit of ${deps.maxBodyBytes} bytes`);
    const form = await readMultipart(limitedBody(req, deps.maxBodyBytes), type, deps.multipartLimits);
    const parsed = parseForm(form, deps.engine);
    const steps = parsed.options.steps ?? deps.engine.model(parsed.model).defaults.steps;
    if (parsed.stream && parsed.partialImages > 0) parsed.options.previewEvery = Math.max(1, Math.floor(steps / (parsed.partialImages + 1)));
    job = await deps.edits.submit(
      {
        model: parsed.model,
        images: parsed.files,
        references: parsed.references,
        masks: parsed.masks,
        options: parsed.options,
        idempotencyKey,
        webhook: parsed.webhook && { ...parsed.webhook, resultUrl: deps.resultUrl },
        metadata: parsed.metadata,
        priority: parsed.priority,
      },
      deps.principal,
    );
    const format = parsed.options.outputFormat ?? 'png';
    const created = Math.floor(job.createdAt);
    if (parsed.stream) {
      await streamEvents(res, deps, job, format, parsed.partialImages);
      finished = true;
      return;
    }
    for await (const e of events(deps, job.id)) {
      const failure = terminalError(e);
      if (failure) throw failure;
      if (e.type === 'completed') {
        finished = true;
        const u = e.result.usage;
        const first = e.result.images[0];
        const body = {
          created,
          data: await Promise.all(
            e.result.images.map(async (img) =>
              parsed.responseFormat === 'url'
                ? { url: await deps.resultUrl(e.jobId, img, e.result.created) }
                : { b64_json: Buffer.from(img.bytes).toString('base64') },
            ),
          ),
          output_format: format,
          size: first ? `${first.width}x${first.height}` : undefined,
          // Each change from the size asked for (absent when none).
          ...(e.result.warnings?.length ? { warnings: e.result.warnings } : {}),
          // The request's `metadata`, as given (absent when none).
          ...(parsed.metadata ? { metadata: parsed.metadata } : {}),
          usage: {
            processing_time_seconds: u.processingTimeSeconds,
            input_images: u.inputImages,
            generated_images: u.generatedImages,
            total_tokens: 0,
            input_tokens: 0,
            output_tokens: 0,
          },
        };
        const text = JSON.stringify(body);
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
    }
    throw new ServiceError('INTERNAL', 'the job ended without a result');
  } catch (err) {
    finished = true;
    sendError(res, 'openai', err, deps.log, { param: paramOf(err) });
  }
}

/** SSE in the shapes the OpenAI SDK's streaming image edit yields. */
async function streamEvents(res: ServerResponse, deps: RestDeps, job: JobSnapshot, format: string, partialImages: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (event: string, data: unknown): void => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const sent = new Map<number, number>();
  for await (const e of events(deps, job.id)) {
    const now = Math.floor(Date.now() / 1000);
    if (e.type === 'progress') {
      for (const p of e.previews) {
        const k = sent.get(p.index) ?? 0;
        if (k >= partialImages) continue;
        sent.set(p.index, k + 1);
        send('image_edit.partial_image', {
          type: 'image_edit.partial_image',
          b64_json: Buffer.from(p.bytes).toString('base64'),
          partial_image_index: k,
          image_index: p.index,
          created_at: now,
          size: 'auto',
          quality: 'auto',
          background: 'opaque',
          output_format: 'jpeg',
        });
      }
    } else if (e.type === 'completed') {
      const u = e.result.usage;
      for (const img of e.result.images) {
        send('image_edit.completed', {
          type: 'image_edit.completed',
          b64_json: Buffer.from(img.bytes).toString('base64'),
          image_index: img.index,
          created_at: now,
          size: `${img.width}x${img.height}`,
          quality: 'auto',
          background: 'opaque',
          output_format: format,
          ...(e.result.warnings?.length ? { warnings: e.result.warnings } : {}),
          usage: {
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            input_tokens_details: { image_tokens: 0, text_tokens: 0 },
            processing_time_seconds: u.processingTimeSeconds,
            input_images: u.inputImages,
            generated_images: u.generatedImages,
          },
        });
      }
    } else {
      const failure = terminalError(e);
      if (failure) send('error', { type: 'error', error: openAIError(failure) });
    }
  }
  res.end();
}
