/**
 * The one multipart/form-data reader, for GraphQL uploads (yoga.ts, with the GraphQL multipart
 * request spec's `operations`/`map` on top: graphqlMultipart.ts) and for REST (rest.ts): the same
 * streaming parser (@fastify/busboy, the one Yoga's fetch uses) and the same limits. Every limit
 * is enforced while the body streams: a field or part past its count, a field past its size and a
 * file past MAX_FILE_BYTES end the parse at once, without reading the rest of the body, and the
 * hooks may refuse the request as soon as a part arrives (before any file's bytes are read).
 */
import { Readable } from 'node:stream';
import { Busboy } from '@fastify/busboy';
import { ServiceError } from '../errors.js';

export interface MultipartLimits {
  /** Bytes of one file part (MAX_FILE_BYTES). */
  fileBytes: number;
  /** File parts in one request. */
  files: number;
  /** Text fields in one request. */
  fields: number;
  /** Bytes of one text field. */
  fieldBytes: number;
}

const MB = 1024 * 1024;

/** The one set of limits GraphQL and REST apply: a mask per image, 64 text fields of 1 MiB at most. */
export function multipartLimits(config: { maxFileBytes: number; maxImagesPerJob: number }): MultipartLimits {
  return { fileBytes: config.maxFileBytes, files: 2 * config.maxImagesPerJob, fields: 64, fieldBytes: MB };
}

/** A refused multipart body; `param` names the part it concerns, where one does. */
export class MultipartError extends ServiceError {
  constructor(
    code: 'BAD_USER_INPUT' | 'PAYLOAD_TOO_LARGE',
    message: string,
    readonly param: string | null = null,
  ) {
    super(code, message);
  }
}

/** Node's, Yoga's ponyfill or a web stream, as the Node stream busboy reads. */
function nodeStream(body: unknown): Readable {
  if (body instanceof Readable) return body;
  const ponyfill = (body as { readable?: unknown }).readable;
  if (ponyfill instanceof Readable) return ponyfill;
  if (body instanceof ReadableStream) return Readable.fromWeb(body as import('node:stream/web').ReadableStream);
  return Readable.from(body as AsyncIterable<Uint8Array>);
}

/** Checks run as parts arrive; what they throw ends the parse with that error. */
export interface MultipartHooks {
  field?(name: string, value: string): void;
  /** A file part has started (before any of its bytes are read). */
  file?(name: string): void;
}

/**
 * Reads a multipart body into a FormData (repeated names kept, in order). Rejects with a
 * MultipartError (400/413), with whatever the body stream errored with (a body-size bound's own
 * error), or with what a hook threw.
 */
export function readMultipart(body: unknown, contentType: string, limits: MultipartLimits, hooks: MultipartHooks = {}): Promise<FormData> {
  const source = nodeStream(body);
  return new Promise<FormData>((resolve, reject) => {
    const form = new FormData();
    let bb: InstanceType<typeof Busboy>;
    try {
      bb = new Busboy({
        headers: { 'content-type': contentType },
        defCharset: 'utf-8',
        // busboy counts fields and files together in `parts`.
        limits: { fileSize: limits.fileBytes, files: limits.files, fields: limits.fields, parts: limits.files + limits.fields, fieldSize: limits.fieldBytes },
      });
    } catch (err) {
      reject(new MultipartError('BAD_USER_INPUT', `malformed multipart body: ${(err as Error).message}`));
      return;
    }
    let done = false;
    const finish = (err: unknown): void => {
      if (done) return;
      done = true;
      source.unpipe(bb);
      bb.removeAllListeners();
      // Late parser events after a refusal go nowhere.
      bb.on('error', () => undefined);
      bb.destroy();
      if (err) {
        // What is left of the body is read and dropped (Node answers the request meanwhile).
        source.resume();
        reject(err);
      } else resolve(form);
    };
    source.on('error', finish);
    bb.on('field', (name, value, nameTruncated, valueTruncated) => {
      if (nameTruncated || valueTruncated) {
        finish(new MultipartError('PAYLOAD_TOO_LARGE', `field "${name}" is over the limit of ${limits.fieldBytes} bytes`, name));
        return;
      }
      try {
        hooks.field?.(name, value);
      } catch (err) {
        finish(err);
        return;
      }
      form.append(name, value);
    });
    bb.on('file', (name, stream, filename, _encoding, mimeType) => {
      try {
        hooks.file?.(name);
      } catch (err) {
        stream.resume();
        finish(err);
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () =>
        finish(new MultipartError('PAYLOAD_TOO_LARGE', `file "${name}" is over the limit of ${limits.fileBytes} bytes (MAX_FILE_BYTES)`, name)),
      );
      stream.on('error', finish);
      stream.on('end', () => {
        if (!done) form.append(name, new File(chunks as Uint8Array<ArrayBuffer>[], filename || name, { type: mimeType }));
      });
    });
    bb.on('fieldsLimit', () => finish(new MultipartError('BAD_USER_INPUT', `more than ${limits.fields} text fields`)));
    bb.on('filesLimit', () => finish(new MultipartError('BAD_USER_INPUT', `more than ${limits.files} files`)));
    bb.on('partsLimit', () => finish(new MultipartError('BAD_USER_INPUT', `more than ${limits.files + limits.fields} parts`)));
    bb.on('error', (err: Error) => finish(new MultipartError('BAD_USER_INPUT', `malformed multipart body: ${err.message}`)));
    bb.on('finish', () => finish(null));
    source.pipe(bb);
  });
}
