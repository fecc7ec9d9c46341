/**
 * Hostile input against a real started server: a hand-written corpus (malformed multipart
 * bodies, corrupt and bomb images, huge and empty fields, hostile GraphQL documents) and
 * fast-check properties around it. Every response must be a 4xx, or a 200 whose errors all carry
 * extensions.code (never INTERNAL); nothing may take longer than the per-request timeout; and
 * afterwards the server still runs a real job to completion.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { print } from 'graphql';
import { startTestServer, type TestServer } from './support/server.js';
import { collectSse } from './support/graphql.js';
import { solidPng } from './support/images.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { EditImagesDocument, EditJobEventsDocument, type EditJobEventsSubscription } from './generated/graphql.js';

const REQUEST_TIMEOUT_MS = 10_000;
const RUNS = 150;
const EDIT = print(EditImagesDocument);
const CSRF = { 'apollo-require-preflight': 'true' };

interface Outcome {
  status: number;
  text: string;
  body: unknown;
}

let server: TestServer;

async function send(path: string, init: RequestInit & { headers?: Record<string, string> }): Promise<Outcome> {
  const res = await fetch(`${server.url}${path}`, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return { status: res.status, text, body };
}

/** The invariant every response must satisfy. Returns the error codes seen (empty for a success). */
function judge(label: string, o: Outcome): string[] {
  const where = `${label} → HTTP ${o.status} ${o.text.slice(0, 300)}`;
  assert.ok(o.status < 500, `server error: ${where}`);
  assert.ok(o.status === 200 || (o.status >= 400 && o.status < 500), `unexpected status: ${where}`);
  const body = o.body as { errors?: { message?: unknown; extensions?: { code?: unknown } }[]; data?: unknown; error?: { code?: unknown } } | null;
  if (o.status === 200) {
    assert.ok(body && typeof body === 'object', `200 without a JSON body: ${where}`);
    if (body.errors !== undefined) {
      assert.ok(Array.isArray(body.errors) && body.errors.length > 0, `malformed errors: ${where}`);
      for (const e of body.errors) {
        assert.equal(typeof e.message, 'string', `error without message: ${where}`);
        assert.equal(typeof e.extensions?.code, 'string', `error without extensions.code: ${where}`);
      }
    } else {
      assert.ok('data' in body, `200 with neither data nor errors: ${where}`);
    }
  }
  const codes = [...(body?.errors ?? []).map((e) => String(e.extensions?.code)), ...(body?.error?.code ? [String(body.error.code)] : [])];
  assert.ok(!codes.includes('INTERNAL'), `INTERNAL error: ${where}`);
  return codes;
}

/** POST /graphql with a JSON (or any string) body. */
function postJson(body: string, headers: Record<string, string> = {}): Promise<Outcome> {
  return send('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

interface Part {
  name: string;
  content: string | Uint8Array;
  filename?: string;
  type?: string;
}

/** A multipart/form-data body written by hand, so that it can be wrong in every way. */
function multipartBody(parts: Part[], boundary: string, close = true): Uint8Array {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `Content-Disposition: form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
    const type = p.type ?? (p.filename !== undefined ? 'application/octet-stream' : undefined);
    chunks.push(Buffer.from(`--${boundary}\r\n${disposition}\r\n${type ? `Content-Type: ${type}\r\n` : ''}\r\n`));
    chunks.push(Buffer.from(p.content));
    chunks.push(Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return new Uint8Array(Buffer.concat(chunks));
}

function postMultipartRaw(body: Uint8Array, boundary: string, headers: Record<string, string> = CSRF): Promise<Outcome> {
  return send('/graphql', { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, ...headers }, body: body as BodyInit });
}

const operations = (variables: Record<string, unknown>, files = 1): string =>
  JSON.stringify({ query: EDIT, variables: { prompt: 'invert', size: '32x32', steps: 1, ...variables, images: Array.from({ length: files }, () => null) } });
const mapFor = (files: number): string => JSON.stringify(Object.fromEntries(Array.from({ length: files }, (_, i) => [String(i), [`variables.images.${i}`]])));

/** A well-formed edit request with these images and variables (or a raw `operations` text). */
function editRequest(images: Uint8Array[], variables: Record<string, unknown> = {}, rawOperations?: string): Promise<Outcome> {
  const parts: Part[] = [
    { name: 'operations', content: rawOperations ?? operations(variables, images.length) },
    { name: 'map', content: mapFor(images.length) },
    ...images.map((content, i) => ({ name: String(i), content, filename: `f${i}.png`, type: 'image/png' })),
  ];
  return postMultipartRaw(multipartBody(parts, 'fuzzboundary'), 'fuzzboundary');
}

// --- images -----------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'ascii'), data])), 0);
  return Buffer.concat([head, data, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A PNG whose (valid, CRC-checked) IHDR declares width x height, with a tiny IDAT: a decompression-bomb header. */
function pngDeclaring(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return new Uint8Array(
    Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(Buffer.alloc(1024))), pngChunk('IEND', new Uint8Array(0))]),
  );
}

const MAGIC: Record<string, number[]> = {
  png: [...PNG_SIGNATURE],
  jpeg: [0xff, 0xd8, 0xff, 0xe0],
  gif: [...Buffer.from('GIF89a')],
  webp: [...Buffer.from('RIFF'), 0x10, 0, 0, 0, ...Buffer.from('WEBPVP8 ')],
  tiff: [0x49, 0x49, 0x2a, 0x00],
  avif: [0, 0, 0, 0x1c, ...Buffer.from('ftypavif'), 0, 0, 0, 0, ...Buffer.from('avifmif1')],
};

// --- the suite --------------------------------------------------------------------------------

describe('fuzzing the HTTP API', { timeout: 120_000 }, () => {
  let valid: Uint8Array;
  const queuedJobs: string[] = [];
  /** Records a successful submission, so the suite can check those jobs end too. */
  const track = (o: Outcome): void => {
    const id = (o.body as { data?: { editImages?: { id?: string } } } | null)?.data?.editImages?.id;
    if (id) queuedJobs.push(id);
  };

  before(async () => {
    server = await startTestServer({ MAX_FILE_BYTES: String(256 * 1024), MAX_TOTAL_BYTES: String(1024 * 1024), MAX_QUEUED_JOBS: '1000' });
    valid = new Uint8Array(await solidPng(16, 16, [200, 100, 50]));
  });
  after(async () => server.close());

  it('survives a corpus of malformed multipart requests', async () => {
    const B = 'corpusboundary';
    const file: Part = { name: '0', content: valid, filename: 'a.png', type: 'image/png' };
    const ops: Part = { name: 'operations', content: operations({}) };
    const map: Part = { name: 'map', content: mapFor(1) };
    const corpus: [string, Part[]][] = [
      ['missing map', [ops, file]],
      ['missing operations', [map, file]],
      ['map to nowhere', [ops, { name: 'map', content: '{"0":["variables.nothing.deeper.0"]}' }, file]],
      ['map to a missing file', [ops, { name: 'map', content: '{"7":["variables.images.0"]}' }, file]],
      ['map into a string variable', [ops, { name: 'map', content: '{"0":["variables.prompt"]}' }, file]],
      ['map not JSON', [ops, { name: 'map', content: '{"0": [variables.images.0' }, file]],
      ['map a number', [ops, { name: 'map', content: '5' }, file]],
      ['map values not arrays', [ops, { name: 'map', content: '{"0":"variables.images.0"}' }, file]],
      ['map values numbers', [ops, { name: 'map', content: '{"0":5}' }, file]],
      ['map paths null', [ops, { name: 'map', content: '{"0":[null]}' }, file]],
      [
        'map into __proto__',
        [ops, { name: 'map', content: '{"0":["variables.__proto__.polluted","__proto__.polluted","constructor.prototype.polluted"]}' }, file],
      ],
      ['operations not JSON', [{ name: 'operations', content: '{query: mutation' }, map, file]],
      ['operations a number', [{ name: 'operations', content: '42' }, map, file]],
      ['operations null', [{ name: 'operations', content: 'null' }, map, file]],
      [
        'operations an array (batch)',
        [{ name: 'operations', content: `[${operations({})}]` }, { name: 'map', content: '{"0":["0.variables.images.0"]}' }, file],
      ],
      ['operations with no query', [{ name: 'operations', content: '{"variables":{"images":[null]}}' }, map, file]],
      ['operations with a numeric query', [{ name: 'operations', content: '{"query":5}' }, map, file]],
      ['operations with string variables', [{ name: 'operations', content: `{"query":${JSON.stringify(EDIT)},"variables":"x"}` }, map, file]],
      ['files without map entries', [ops, { name: 'map', content: '{}' }, file, { ...file, name: '1' }]],
      ['duplicate operations', [ops, ops, map, file]],
      ['duplicate file keys', [ops, map, file, file]],
      ['a file as operations', [{ ...ops, filename: 'ops.json' }, map, file]],
      ['a file as map', [ops, { ...map, filename: 'map.json' }, file]],
      ['no parts at all', []],
      [
        '17 files (over the per-job limit)',
        [
          { name: 'operations', content: operations({}, 17) },
          { name: 'map', content: mapFor(17) },
          ...Array.from({ length: 17 }, (_, i) => ({ ...file, name: String(i) })),
        ],
      ],
      ['a file over MAX_FILE_BYTES', [ops, map, { ...file, content: new Uint8Array(300 * 1024) }]],
      [
        'a file over MAX_TOTAL_BYTES in all',
        [
          { name: 'operations', content: operations({}, 5) },
          { name: 'map', content: mapFor(5) },
          ...Array.from({ length: 5 }, (_, i) => ({ ...file, name: String(i), content: new Uint8Array(250 * 1024) })),
        ],
      ],
      ['a part name with quotes and CRLF', [ops, map, { ...file, name: '0"; filename="x\r\nX-Evil: 1' }]],
    ];
    // The sparse-index family: a map path past its list's end once made Yoga's parser build a
    // sparse array of that length (10⁸ slots: 20 s of one event loop, GBs held).
    const withMasks = JSON.stringify({
      query: 'mutation($i:[Upload!]!,$m:[Upload!],$p:String!){editImages(images:$i,masks:$m,prompt:$p){id}}',
      variables: { i: [null], m: [null], p: 'x', n: [[null]] },
    });
    for (const index of ['1', '16', '100', '99999999', '999999999', '2147483648', '4294967296', '1e3', '01', '-1', ' 0', '0x0']) {
      for (const path of [`variables.i.${index}`, `variables.m.${index}`, `variables.n.0.${index}`, `variables.n.${index}.0`]) {
        corpus.push([
          `sparse index: ${path}`,
          [
            { name: 'operations', content: withMasks },
            { name: 'map', content: JSON.stringify({ 0: [path] }) },
            { ...file, name: '0' },
          ],
        ]);
      }
    }
    corpus.push(
      ['a path naming no list', [ops, { name: 'map', content: '{"0":["variables.images.0.0"]}' }, file]],
      ['a path naming a filled slot', [ops, { name: 'map', content: '{"0":["variables.prompt"]}' }, file]],
      ['a path outside variables', [ops, { name: 'map', content: '{"0":["query"]}' }, file]],
      ['one slot mapped twice', [ops, { name: 'map', content: '{"0":["variables.images.0"],"1":["variables.images.0"]}' }, file, { ...file, name: '1' }]],
      ['a map of more files than the limit', [ops, { name: 'map', content: mapFor(40) }, file]],
      ['map before operations', [map, ops, file]],
      ['a file before map', [ops, file, map]],
      ['an unknown text field', [ops, map, { name: 'extra', content: 'x' }, file]],
    );
    for (const [label, parts] of corpus) {
      const o = await postMultipartRaw(multipartBody(parts, B), B);
      const codes = judge(label, o);
      track(o);
      if (label.startsWith('a file over')) assert.equal(codes[0], 'PAYLOAD_TOO_LARGE', `${label}: ${o.text.slice(0, 200)}`);
      // Refused by the resolver: a 200 with a coded error.
      else if (label.startsWith('operations with') || label.startsWith('17 files'))
        assert.ok(codes.length > 0, `${label} was accepted: ${o.text.slice(0, 200)}`);
      // The injected CRLF only ends the header: what is left is a well-formed part "0".
      else if (label === 'a part name with quotes and CRLF') continue;
      // Every malformed multipart request is a 4xx before any work, with its code.
      else assert.deepEqual([o.status >= 400 && o.status < 500, codes.length > 0], [true, true], `${label}: HTTP ${o.status} ${o.text.slice(0, 200)}`);
      if (label.startsWith('sparse index') || label.startsWith('a path') || label.includes('map')) assert.equal(o.status, 400, label);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype polluted');

    const whole = multipartBody([ops, map, file], B);
    const raw: [string, Uint8Array, string, Record<string, string>?][] = [
      ['wrong boundary', whole, 'otherboundary'],
      ['boundary missing from content-type', whole, ''],
      ['truncated body', whole.subarray(0, Math.floor(whole.length * 0.6)), B],
      ['truncated in the headers', whole.subarray(0, 30), B],
      ['no closing boundary', multipartBody([ops, map, file], B, false), B],
      ['empty body', new Uint8Array(0), B],
      ['garbage body', new Uint8Array(4096).map((_, i) => (i * 131) % 256), B],
      ['no CSRF header', whole, B, {}],
    ];
    for (const [label, body, boundary, headers] of raw) {
      const o = boundary
        ? await postMultipartRaw(body, boundary, headers ?? CSRF)
        : await send('/graphql', { method: 'POST', headers: { 'content-type': 'multipart/form-data', ...CSRF }, body: body as BodyInit });
      judge(label, o);
      track(o);
    }
  });

  it('refuses corrupt, truncated, bomb and disguised images with coded errors', async () => {
    const truncated = valid.subarray(0, Math.floor(valid.length / 2));
    const images: [string, Uint8Array, string[]][] = [
      ['empty file', new Uint8Array(0), ['INVALID_IMAGE', 'BAD_USER_INPUT']],
      ['random bytes', new Uint8Array(2048).map((_, i) => (i * 7919 + 13) % 256), ['INVALID_IMAGE']],
      ['text', new TextEncoder().encode('hello, I am not a picture'), ['INVALID_IMAGE']],
      ['SVG', new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'), ['INVALID_IMAGE']],
      ['HTML with a PNG name', new TextEncoder().encode('<!doctype html><h1>hi</h1>'), ['INVALID_IMAGE']],
      ['PNG signature + garbage', new Uint8Array([...PNG_SIGNATURE, ...new Uint8Array(512).fill(0x41)]), ['INVALID_IMAGE']],
      ['PNG declaring 100000x100000 (bomb header)', pngDeclaring(100_000, 100_000), ['IMAGE_TOO_LARGE']],
      ['PNG declaring 1x2^31-1', pngDeclaring(1, 0x7fffffff), ['IMAGE_TOO_LARGE', 'INVALID_IMAGE']],
      ['PNG declaring 0x0', pngDeclaring(0, 0), ['INVALID_IMAGE']],
      [
        'PNG IHDR with a bad CRC',
        (() => {
          const b = pngDeclaring(16, 16);
          b[29] ^= 0xff;
          return b;
        })(),
        ['INVALID_IMAGE'],
      ],
      ...Object.entries(MAGIC).map(([format, magic]): [string, Uint8Array, string[]] => [
        `${format} magic + garbage`,
        new Uint8Array([...magic, ...new Uint8Array(300).map((_, i) => (i * 37) % 256)]),
        ['INVALID_IMAGE'],
      ]),
    ];
    for (const [label, bytes, expected] of images) {
      const o = await editRequest([bytes]);
      const codes = judge(label, o);
      assert.ok(
        codes.some((c) => expected.includes(c)),
        `${label}: expected ${expected.join('|')}, got ${o.text.slice(0, 300)}`,
      );
    }
    // A truncated real PNG may pass the header probe; then the job itself must fail cleanly.
    const o = await editRequest([truncated]);
    judge('truncated PNG', o);
    track(o);
  });

  it('handles empty, huge and wrongly typed fields', async () => {
    const cases: [string, Record<string, unknown>, number?][] = [
      ['empty prompt', { prompt: '' }],
      ['1 MB prompt', { prompt: 'sepia '.repeat(175_000) }],
      ['10k prompts', { prompts: Array.from({ length: 10_000 }, () => 'invert') }],
      ['prompts of the wrong length', { prompts: ['a', 'b'] }],
      ['prompt as a number', { prompt: 5 }],
      ['prompt as an object', { prompt: { toString: 'x' } }],
      ['prompt null', { prompt: null }],
      ['n = 0', { n: 0 }],
      ['n = 2^31', { n: 2 ** 31 }],
      ['n = -1', { n: -1 }],
      ['n as a float', { n: 1.5 }],
      ['steps = 1e9', { steps: 1_000_000_000 }],
      ['seed = 2^53', { seed: 2 ** 53 }],
      ['guidanceScale = 1e308', { guidanceScale: 1e308 }],
      ['size = 0x0', { size: '0x0' }],
      ['size = -8x-8', { size: '-8x-8' }],
      ['size = 99999999x99999999', { size: '99999999x99999999' }],
      ['size with junk', { size: '32x32; DROP TABLE' }],
      ['unknown scheduler', { scheduler: 'NOPE' }],
      ['unknown output format', { outputFormat: 'BMP' }],
      ['model path traversal', { model: '../../../etc/passwd' }],
      ['model with NUL', { model: 'tiny-edit\u0000' }],
      ['previewEvery negative', { previewEvery: -5 }],
      ['unknown variable', { nope: true }],
    ];
    for (const [label, variables] of cases) {
      const o = await editRequest([valid], variables);
      judge(label, o);
      track(o);
    }
    // Nesting deeper than JSON.stringify (or any recursive walk) can follow: written as text.
    for (const depth of [5_000, 100_000]) {
      const nested = '['.repeat(depth) + ']'.repeat(depth);
      for (const name of ['prompts', 'prompt', 'n', 'nope']) {
        const raw = `{"query":${JSON.stringify(EDIT)},"variables":{"images":[null],"size":"32x32","steps":1,"prompt":"x","${name}":${nested}}}`;
        const o = await editRequest([valid], {}, raw);
        judge(`${name} nested ${depth} deep`, o);
        track(o);
      }
    }
  });

  it('refuses hostile GraphQL documents', async () => {
    const deep = (n: number) => '{ '.repeat(n) + 'models' + ' }'.repeat(n);
    const docs: [string, string, Record<string, unknown>?][] = [
      ['deep nesting (10k braces)', deep(10_000)],
      ['deep nesting of real fields', `{ editJob(id: "x") { ${'... on EditJob { '.repeat(50)} id ${'} '.repeat(50)} } }`],
      ['1000 aliases', `{ ${Array.from({ length: 1000 }, (_, i) => `a${i}: models { id }`).join(' ')} }`],
      ['500 __typename aliases', `{ ${Array.from({ length: 500 }, (_, i) => `t${i}: __typename`).join(' ')} }`],
      ['100k tokens', `{ models { ${'id '.repeat(100_000)} } }`],
      ['unknown fields', '{ users { password } }'],
      ['invalid syntax', '{ models { id '],
      ['not GraphQL', 'SELECT * FROM users;'],
      ['empty document', ''],
      ['only a comment', '# nothing here'],
      ['unterminated string', '{ editJob(id: "x) { id } }'],
      ['NUL and control bytes', '{ models { id \u0000 \u0007 } }'],
      ['lone surrogate', '{ editJob(id: "\ud800") { id } }'],
      ['wrong variable types', 'query($id: ID!) { editJob(id: $id) { id } }', { id: { $gt: '' } }],
      ['missing required variable', 'query($id: ID!) { editJob(id: $id) { id } }'],
      ['undeclared variable', '{ editJob(id: $id) { id } }'],
      ['fragment cycle', 'query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }'],
      ['self-referencing fragment', 'query { ...A } fragment A on Query { models { id } ...A }'],
      [
        'fragment fan-out',
        `query { ...F0 } ${Array.from({ length: 30 }, (_, i) => `fragment F${i} on Query { a${i}: models { id } ${i < 29 ? `...F${i + 1} ...F${i + 1}` : ''} }`).join(' ')}`,
      ],
      ['introspection bomb', `{ __schema { types { ${'fields { type { '.repeat(20)} name ${'} } '.repeat(20)} } } }`],
      ['__type bomb', `{ __type(name: "Query") { ${'fields { type { '.repeat(20)} name ${'} } '.repeat(20)} } }`],
      ['directive flood', `{ models ${'@include(if: true) '.repeat(300)} { id } }`],
      ['many directives on many fields', `{ models { ${Array.from({ length: 60 }, () => 'id @skip(if: false)').join(' ')} } }`],
      ['two anonymous operations', '{ models { id } } { models { kind } }'],
      ['unknown operation name', 'query A { models { id } }', undefined],
      ['subscription over plain POST', `subscription { editJobEvents(id: "x") { jobId } }`],
      ['mutation with an Upload given as a string', `mutation { editImages(images: ["not a file"], prompt: "x") { id } }`],
      ['huge string literal', `{ editJob(id: "${'x'.repeat(500_000)}") { id } }`],
      ['huge integer literal', `{ editJob(id: ${'9'.repeat(10_000)}) { id } }`],
    ];
    for (const [label, query, variables] of docs) {
      const o = await postJson(JSON.stringify({ query, variables, ...(label === 'unknown operation name' ? { operationName: 'B' } : {}) }), CSRF);
      const codes = judge(label, o);
      // __typename aliases are free (armor's allow list) and cheap, and a long id is one token:
      // answering those is fine.
      if (!['500 __typename aliases', 'huge string literal', 'huge integer literal'].includes(label))
        assert.ok(o.status >= 400 || codes.length > 0, `${label} was accepted: ${o.text.slice(0, 200)}`);
    }
    const bodies: [string, string, Record<string, string>?][] = [
      ['not JSON', '{"query": '],
      ['JSON null', 'null'],
      ['JSON number', '42'],
      ['JSON string', '"{ models { id } }"'],
      ['batched array', '[{"query":"{ models { id } }"},{"query":"{ models { id } }"}]'],
      ['query as an object', '{"query":{"kind":"Document"}}'],
      ['variables as an array', '{"query":"{ models { id } }","variables":[1]}'],
      ['extensions as a string', '{"query":"{ models { id } }","extensions":"x"}'],
      ['persisted-query hash only', '{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}'],
      ['__proto__ in the body', '{"query":"{ models { id } }","__proto__":{"polluted":1},"variables":{"__proto__":{"polluted":1}}}'],
      ['deeply nested JSON', '{"query":"{ models { id } }","variables":{"x":' + '['.repeat(50_000) + ']'.repeat(50_000) + '}}'],
      ['text/plain body (CSRF-simple)', '{"query":"{ models { id } }"}', { 'content-type': 'text/plain' }],
      [
        'form-urlencoded mutation',
        'query=mutation%20%7B%20cancelEditJob(id%3A%22x%22)%20%7B%20id%20%7D%20%7D',
        { 'content-type': 'application/x-www-form-urlencoded' },
      ],
      ['unknown content type', '{"query":"{ models { id } }"}', { 'content-type': 'application/x-evil' }],
    ];
    for (const [label, body, headers] of bodies) {
      const o = await send('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      judge(label, o);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype polluted');
    const getMutation = await send(`/graphql?query=${encodeURIComponent('mutation { cancelEditJob(id: "x") { id } }')}`, { method: 'GET', headers: CSRF });
    judge('mutation over GET', getMutation);
    assert.ok(getMutation.status >= 400);
    for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS']) judge(`${method} /graphql`, await send('/graphql', { method, headers: CSRF }));
  });

  it('property: arbitrary strings as documents never break the server', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 })), async (query) => {
        judge(`query ${JSON.stringify(query)}`, await postJson(JSON.stringify({ query }), CSRF));
      }),
      { numRuns: RUNS },
    );
  });

  it('property: arbitrary JSON bodies never break the server', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), fc.option(fc.jsonValue({ maxDepth: 3 })), async (value, variables) => {
        const body = typeof value === 'object' && value !== null && !Array.isArray(value) && variables !== null ? { ...value, variables } : value;
        judge(`body ${JSON.stringify(body).slice(0, 200)}`, await postJson(JSON.stringify(body), CSRF));
      }),
      { numRuns: RUNS },
    );
  });

  it('property: random GraphQL documents from the schema vocabulary get answers or coded errors', async () => {
    const field = fc.constantFrom(
      'models',
      'id',
      'kind',
      'defaults',
      'limits',
      'steps',
      'editJob(id: "x")',
      'editJob',
      '__typename',
      'result',
      'images',
      'nope',
      '__schema',
      'types',
      'fields',
      'type',
      'name',
    );
    const selection: fc.Arbitrary<string> = fc.letrec<{ sel: string }>((tie) => ({
      sel: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        field,
        fc
          .tuple(
            fc.option(fc.constantFrom('a', 'b', 'x1')),
            field,
            fc.array(tie('sel'), { minLength: 1, maxLength: 4 }),
            fc.option(fc.constantFrom('@include(if: true)', '@skip(if: $v)', '@deprecated')),
          )
          .map(([alias, f, inner, dir]) => `${alias ? `${alias}: ` : ''}${f} ${dir ?? ''} { ${inner.join(' ')} }`),
        fc.array(tie('sel'), { minLength: 1, maxLength: 3 }).map((inner) => `... on Query { ${inner.join(' ')} }`),
      ),
    })).sel;
    const doc = fc
      .tuple(fc.constantFrom('', 'query', 'query Q($v: Boolean)', 'mutation', 'subscription'), fc.array(selection, { minLength: 1, maxLength: 4 }))
      .map(([op, sels]) => `${op} { ${sels.join(' ')} }`);
    await fc.assert(
      fc.asyncProperty(doc, fc.option(fc.jsonValue({ maxDepth: 2 })), async (query, v) => {
        judge(`doc ${query}`, await postJson(JSON.stringify({ query, variables: v === null ? undefined : { v } }), CSRF));
      }),
      { numRuns: RUNS },
    );
  });

  it('property: mutated multipart bodies never break the server', async () => {
    const B = 'propboundary';
    const template = multipartBody(
      [
        { name: 'operations', content: operations({}) },
        { name: 'map', content: mapFor(1) },
        { name: '0', content: valid, filename: 'a.png', type: 'image/png' },
      ],
      B,
    );
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: template.length }) }),
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: template.length - 1 }), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('splice' as const), at: fc.nat({ max: template.length }), bytes: fc.uint8Array({ maxLength: 64 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat({ max: template.length }), length: fc.nat({ max: 200 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (mutations) => {
        let body = Buffer.from(template);
        for (const m of mutations) {
          const at = Math.min(m.at, body.length);
          if (m.kind === 'truncate') body = body.subarray(0, at);
          else if (m.kind === 'flip' && at < body.length) body[at] = m.value;
          else if (m.kind === 'splice') body = Buffer.concat([body.subarray(0, at), m.bytes, body.subarray(at)]);
          else if (m.kind === 'cut') body = Buffer.concat([body.subarray(0, at), body.subarray(at + m.length)]);
        }
        const o = await postMultipartRaw(new Uint8Array(body), B);
        judge(`multipart mutated by ${JSON.stringify(mutations)}`, o);
        track(o);
      }),
      { numRuns: RUNS },
    );
  });

  it('property: any multipart map gets its answer within 1 s in bounded memory, refused unless every path names a file slot', async () => {
    const B = 'mapboundary';
    const index = fc.oneof(
      fc.nat({ max: 20 }).map(String),
      fc.constantFrom('99999999', '999999999', '2147483648', '4294967296', '9007199254740993', '00', '-1', '1e3', '0.5', ''),
    );
    const segment = fc.oneof(index, fc.constantFrom('variables', 'images', 'masks', 'prompt', '__proto__', 'constructor', 'query'));
    const path = fc.oneof(
      fc.tuple(fc.constantFrom('images', 'masks'), index).map(([arg, i]) => `variables.${arg}.${i}`),
      fc.array(segment, { minLength: 1, maxLength: 5 }).map((segments) => segments.join('.')),
    );
    const list = fc.array(fc.constant(null), { maxLength: 3 });
    const rssBefore = process.memoryUsage().rss;
    await fc.assert(
      fc.asyncProperty(
        fc.record({ images: list, masks: fc.option(list), paths: fc.array(fc.array(path, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }) }),
        async ({ images, masks, paths }) => {
          const query = 'mutation($images:[Upload!]!,$masks:[Upload!],$p:String!){editImages(images:$images,masks:$masks,prompt:$p,size:"32x32",steps:1){id}}';
          const map = Object.fromEntries(paths.map((p, i) => [String(i), p]));
          const body = multipartBody(
            [
              { name: 'operations', content: JSON.stringify({ query, variables: { images, masks, p: 'invert' } }) },
              { name: 'map', content: JSON.stringify(map) },
              ...paths.map((_, i) => ({ name: String(i), content: valid, filename: `${i}.png`, type: 'image/png' })),
            ],
            B,
          );
          const res = await fetch(`${server.url}/graphql`, {
            method: 'POST',
            headers: { 'content-type': `multipart/form-data; boundary=${B}`, ...CSRF },
            body: body as BodyInit,
            signal: AbortSignal.timeout(1000),
          });
          const text = await res.text();
          const o = { status: res.status, text, body: JSON.parse(text) as unknown };
          judge(`map ${JSON.stringify(map)}`, o);
          track(o);
          const slots = new Set([...images.map((_, i) => `variables.images.${i}`), ...(masks ?? []).map((_, i) => `variables.masks.${i}`)]);
          const all = paths.flat();
          const fillsSlots = all.every((p) => slots.has(p)) && new Set(all).size === all.length;
          if (!fillsSlots) assert.equal(o.status, 400, `map ${JSON.stringify(map)} was not refused: ${text.slice(0, 200)}`);
        },
      ),
      { numRuns: RUNS },
    );
    assert.ok(process.memoryUsage().rss - rssBefore < 100 * 1024 * 1024, 'the server kept over 100 MB after the map property');
  });

  it('property: random bytes behind real image signatures are refused or processed, never a crash', async () => {
    const image = fc
      .tuple(fc.constantFrom(...Object.values(MAGIC), []), fc.uint8Array({ maxLength: 1024 }))
      .map(([magic, rest]) => new Uint8Array([...magic, ...rest]));
    await fc.assert(
      fc.asyncProperty(image, async (bytes) => {
        const o = await editRequest([bytes]);
        const codes = judge(`image of ${bytes.length} bytes`, o);
        track(o);
        if (codes.length)
          assert.ok(
            codes.every((c) => ['INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'BAD_USER_INPUT'].includes(c)),
            codes.join(','),
          );
      }),
      { numRuns: RUNS },
    );
  });

  it('property: arbitrary edit arguments get a job or coded errors', async () => {
    const anything = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string({ maxLength: 8 }), { maxLength: 5 }),
    );
    const variables = fc.record(
      {
        prompt: fc.oneof(fc.string({ maxLength: 100 }), anything),
        n: fc.oneof(fc.integer({ min: -3, max: 10 }), anything),
        size: fc.oneof(fc.constantFrom('32x32', 'auto', '8x8', '0x0', '64x16', 'x'), anything),
        steps: fc.oneof(fc.integer({ min: -1, max: 3 }), anything),
        seed: fc.oneof(fc.integer(), anything),
        guidanceScale: fc.oneof(fc.double({ noNaN: true }), anything),
        scheduler: fc.oneof(fc.constantFrom(...SCHEDULER_NAMES), anything),
        outputFormat: fc.oneof(fc.constantFrom('PNG', 'JPEG', 'WEBP'), anything),
        previewEvery: fc.oneof(fc.integer({ min: -1, max: 3 }), anything),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(variables, async (v) => {
        // Keep any job that is accepted small.
        const safe = {
          ...v,
          size: typeof v.size === 'string' && /^\d+x\d+$/.test(v.size) ? v.size : v.size,
          steps: typeof v.steps === 'number' && v.steps > 3 ? 3 : v.steps,
        };
        const o = await editRequest([valid], safe);
        judge(`variables ${JSON.stringify(safe)}`, o);
        track(o);
      }),
      { numRuns: RUNS },
    );
  });

  it('still runs a valid job to completion, and every accepted fuzz job ended', async () => {
    const health = await send('/healthz', { method: 'GET' });
    assert.equal(health.status, 200);
    const o = await editRequest([valid], { prompt: 'invert', size: '32x32', steps: 2 });
    assert.equal(judge('final valid job', o).length, 0, o.text);
    const id = (o.body as { data: { editImages: { id: string } } }).data.editImages.id;
    const events = await collectSse<EditJobEventsSubscription>(server.url, EditJobEventsDocument, { id });
    assert.equal(events.status, 200);
    assert.equal(events.events[events.events.length - 1]?.editJobEvents.__typename, 'EditCompleted');
    // The jobs the fuzzer got accepted are all finished by now (queue order): none hangs.
    for (const jobId of queuedJobs) {
      const status = (await server.server.jobs.get(jobId))?.status;
      assert.ok(status === undefined || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(status), `job ${jobId} is ${status}`);
    }
  });
});
