/**
 * `editImages(imageUrls:, referenceImageUrls:)`: images as `data:` URLs, for clients that cannot send multipart
 * (GraphiQL). Only `data:` URLs are read; the server never fetches a remote URL. A decoded URL
 * becomes the same UploadedFile an upload is, so EditService checks it with the same limits
 * (bytes per file and per job, content sniffed from the bytes, declared pixels).
 */
import { ServiceError } from '../errors.js';
import type { UploadedFile } from '../jobs/editService.js';

const DATA_URL = /^data:([^,]*?),(.*)$/s;

/** Decodes `urls` (argument `argument`: imageUrls, referenceImageUrls); an encoded length that cannot fit `maxFileBytes` is refused before decoding. */
export function filesFromDataUrls(urls: readonly string[], maxFileBytes: number, argument = 'imageUrls'): UploadedFile[] {
  return urls.map((url, i) => {
    const what = `${argument}[${i}]`;
    const m = DATA_URL.exec(url.trim());
    if (!m) {
      const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
      throw new ServiceError(
        'BAD_USER_INPUT',
        `${what}: only data: URLs are accepted (data:image/png;base64,…)${scheme ? `; ${scheme}: URLs are never fetched` : ''}. Upload files with a multipart request instead`,
      );
    }
    const params = m[1]!.split(';').map((p) => p.trim());
    const base64 = params.slice(1).some((p) => p.toLowerCase() === 'base64');
    const body = m[2]!;
    const estimate = base64 ? Math.floor((body.length * 3) / 4) : body.length;
    if (estimate > maxFileBytes + 3)
      throw new ServiceError('PAYLOAD_TOO_LARGE', `${what} is about ${estimate} bytes decoded; the limit is ${maxFileBytes} bytes per file`);
    let bytes: Buffer;
    if (base64) {
      const clean = body.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new ServiceError('BAD_USER_INPUT', `${what}: the base64 data is malformed`);
      bytes = Buffer.from(clean, 'base64');
    } else {
      try {
        bytes = Buffer.from(decodeURIComponent(body), 'latin1');
      } catch {
        throw new ServiceError('BAD_USER_INPUT', `${what}: the percent-encoded data is malformed`);
      }
    }
    const type = params[0] || 'text/plain';
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    return { name: what, size: bytes.byteLength, type, arrayBuffer: async () => ab };
  });
}
