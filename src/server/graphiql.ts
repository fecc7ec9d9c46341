/**
 * GraphiQL, served from the assets bundled in @graphql-yoga/render-graphiql (no CDN), but not
 * inlined: Yoga's renderer puts all 9 MB (script, styles, three Monaco workers) into every page.
 * Here the page is a few kB and the assets live under a content-hashed path
 * (`/graphiql-assets/<hash>/…`), sent br- or gzip-compressed by Accept-Encoding (about 1.3 MB)
 * with `Cache-Control: immutable` and an ETag: a browser downloads them once per server version.
 *
 * The page's options make GraphiQL do the main job (docs/api.md#graphiql): subscriptions go over
 * SSE with the Headers tab's headers (graphql-ws would send `connection_init` without them), and
 * the default query is a walk-through of a data: URL edit and its subscription.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlibConstants, gzip } from 'node:zlib';
import { css, editorWorkerService, favicon, graphqlWorker, js, jsonWorker } from '@graphql-yoga/render-graphiql/graphiql';
import type { GraphiQLOptions } from 'graphql-yoga';

interface Asset {
  type: string;
  body: Buffer;
}

const JS = 'text/javascript; charset=utf-8';
const FAVICON = /^data:([^;,]+);base64,(.*)$/s.exec(favicon);
const ASSETS: Record<string, Asset> = {
  'graphiql.js': { type: JS, body: Buffer.from(js) },
  'graphiql.css': { type: 'text/css; charset=utf-8', body: Buffer.from(css) },
  'editor.worker.js': { type: JS, body: Buffer.from(editorWorkerService) },
  'json.worker.js': { type: JS, body: Buffer.from(jsonWorker) },
  'graphql.worker.js': { type: JS, body: Buffer.from(graphqlWorker) },
  ...(FAVICON ? { 'favicon.ico': { type: FAVICON[1]!, body: Buffer.from(FAVICON[2]!, 'base64') } } : {}),
};

/** Changes whenever the bundled GraphiQL changes (a new @graphql-yoga/render-graphiql). */
export const GRAPHIQL_ASSETS_VERSION = (() => {
  const h = createHash('sha256');
  for (const [name, a] of Object.entries(ASSETS)) h.update(name).update(a.body);
  return h.digest('hex').slice(0, 16);
})();
export const GRAPHIQL_ASSETS_ROOT = '/graphiql-assets/';
const PREFIX = `${GRAPHIQL_ASSETS_ROOT}${GRAPHIQL_ASSETS_VERSION}/`;

/** A tiny PNG (8×8, two colours) as a data: URL: the walk-through's input. */
export const SAMPLE_IMAGE_DATA_URL =
  'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAFklEQVR42mM4YSMHR3IVd+CIYWhJAAD+GVKBn+bIZAAAAABJRU5ErkJggg==';

/**
 * The query GraphiQL opens with (until the user has tabs of their own in localStorage). Comment
 * lines stay within 46 characters: the query editor's width at 1280 px (test/ui.test.ts).
 */
export const GRAPHIQL_DEFAULT_QUERY = `# Edit an image here, then watch the job.
#
# 0. Auth on (AUTH_TOKENS)? In "Headers"
#    below, enter
#    { "authorization": "Bearer <token>" }
#    Every request sends it, subscriptions
#    too (over SSE).
#
# 1. Run "Edit" (the ▶ button, then Edit).
#    GraphiQL cannot upload files, so images
#    go as data: URLs in imageUrls; this one
#    is an 8×8 PNG. Make your own with
#    node -p "'data:image/png;base64,' +
#      require('fs').readFileSync(
#        'a.png', 'base64')"
#    The request must stay under
#    GRAPHQL_MAX_JSON_BYTES (1 MiB by
#    default); bigger images: multipart
#    uploads (docs/api.md). Other URLs are
#    refused, never fetched.
#
# 2. Put the returned id in "Variables" as
#    { "id": "…" } and run "Watch": progress,
#    then EditCompleted with the images in
#    base64 (or EditFailed with its error).
mutation Edit {
  editImages(imageUrls: ["${SAMPLE_IMAGE_DATA_URL}"], prompt: "make it sepia", n: 2, size: "64x64") {
    id
    status
    queuePosition
  }
}

subscription Watch($id: ID!) {
  editJobEvents(id: $id) {
    __typename
    status
    ... on EditProgress { step totalSteps }
    ... on EditCompleted { result { images { index seed mimeType b64Json } usage { processingTimeSeconds generatedImages } } }
    ... on EditFailed { error { code message } }
  }
}
`;

/** The options the page passes to GraphiQL. */
export function graphiqlOptions(): GraphiQLOptions {
  return {
    title: 'image-edit-server',
    // SSE over fetch carries the Headers tab's headers; POST so the CSRF check needs no extra header.
    subscriptionsProtocol: 'SSE',
    method: 'POST',
    defaultQuery: GRAPHIQL_DEFAULT_QUERY,
    favicon: ASSETS['favicon.ico'] ? `${PREFIX}favicon.ico` : undefined,
  };
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON inside <script>: no `</script>` or `<!--` can end it early. */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c');

/** Yoga's `renderGraphiQL`: the same page as @graphql-yoga/render-graphiql's, with its assets linked instead of inlined. */
export function renderGraphiQLPage(opts: GraphiQLOptions): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(opts.title ?? 'GraphiQL')}</title>
    <link rel="icon" href="${escapeHtml(opts.favicon ?? `${PREFIX}favicon.ico`)}" />
    <link rel="stylesheet" href="${PREFIX}graphiql.css" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>You need to enable JavaScript to run GraphiQL.</noscript>
    <div id="root"></div>
    <script>
      self['MonacoEnvironment'] = {
        globalAPI: false,
        getWorkerUrl: function (moduleId, label) {
          return ${scriptJson(PREFIX)} + (label === 'json' ? 'json' : label === 'graphql' ? 'graphql' : 'editor') + '.worker.js';
        },
      };
    </script>
    <script src="${PREFIX}graphiql.js"></script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), ${scriptJson(opts)});
    </script>
  </body>
</html>
`;
}

type Encoding = 'br' | 'gzip' | 'identity';
const compressed = new Map<string, Promise<Buffer>>();
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

function encoded(name: string, asset: Asset, encoding: Encoding): Promise<Buffer> {
  if (encoding === 'identity') return Promise.resolve(asset.body);
  const key = `${name}\u0000${encoding}`;
  let p = compressed.get(key);
  if (!p) {
    // Once per process and asset, on first use; quality 6 is within 3% of 11 here at a tenth of the time.
    p =
      encoding === 'br'
        ? brotli(asset.body, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 6, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: asset.body.length } })
        : gzipAsync(asset.body, { level: 6 });
    p.catch(() => compressed.delete(key));
    compressed.set(key, p);
  }
  return p;
}

/** The best encoding the client accepts (q=0 refuses one). */
export function pickEncoding(acceptEncoding: string | undefined): Encoding {
  const accepted = new Map<string, number>();
  for (const part of (acceptEncoding ?? '').split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    if (!token) continue;
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    accepted.set(token, q === undefined ? 1 : Number(q));
  }
  const ok = (e: string) => (accepted.get(e) ?? accepted.get('*') ?? 0) > 0;
  if (ok('br')) return 'br';
  if (ok('gzip')) return 'gzip';
  return 'identity';
}

/**
 * Serves `/graphiql-assets/<hash>/<name>` (GET, HEAD); false for anything else, which the caller
 * answers 404, an old hash included (a page cached across a server upgrade), so a stale page never
 * mixes versions.
 */
export async function serveGraphiQLAsset(pathname: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (!pathname.startsWith(GRAPHIQL_ASSETS_ROOT)) return false;
  const asset = pathname.startsWith(PREFIX) ? ASSETS[pathname.slice(PREFIX.length)] : undefined;
  if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  const etag = `"${GRAPHIQL_ASSETS_VERSION}"`;
  const headers: Record<string, string> = {
    'content-type': asset.type,
    'cache-control': 'public, max-age=31536000, immutable',
    etag,
    vary: 'Accept-Encoding',
  };
  if ((req.headers['if-none-match'] ?? '').split(',').some((t) => t.trim().replace(/^W\//, '') === etag)) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const encoding = pickEncoding(req.headers['accept-encoding']);
  const body = await encoded(pathname, asset, encoding);
  if (encoding !== 'identity') headers['content-encoding'] = encoding;
  headers['content-length'] = String(body.length);
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
