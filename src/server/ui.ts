/**
 * The live progress page at `/`: static HTML/CSS/icon from `ui/` (with the scheduler options
 * filled in from SCHEDULER_NAMES), and `ui/app.ts` bundled by esbuild with what it imports
 * (graphql-ws's client, the codegen-typed operations of ui/generated/graphql.ts) on first request
 * (cached). No CDN: it works offline.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildSync } from 'esbuild';
import { PROJECT_ROOT } from '../config.js';
import { SCHEDULER_NAMES } from '../inference/schedulers/types.js';

const UI_DIR = join(PROJECT_ROOT, 'ui');
const cache = new Map<string, { body: string; type: string }>();

function asset(pathname: string): { body: string; type: string } | null {
  const hit = cache.get(pathname);
  if (hit) return hit;
  let entry: { body: string; type: string } | null = null;
  if (pathname === '/') {
    const html = readFileSync(join(UI_DIR, 'index.html'), 'utf8');
    const options = SCHEDULER_NAMES.map((name) => `<option>${name}</option>`).join('');
    entry = { body: html.replace(/<!-- SCHEDULER_OPTIONS:.*?-->/, options), type: 'text/html; charset=utf-8' };
  } else if (pathname === '/ui/style.css') entry = { body: readFileSync(join(UI_DIR, 'style.css'), 'utf8'), type: 'text/css; charset=utf-8' };
  // Linked from index.html; /favicon.ico too, for clients that ask for it without a link.
  else if (pathname === '/ui/favicon.svg' || pathname === '/favicon.ico')
    entry = { body: readFileSync(join(UI_DIR, 'favicon.svg'), 'utf8'), type: 'image/svg+xml' };
  else if (pathname === '/ui/app.js') {
    const bundle = buildSync({ entryPoints: [join(UI_DIR, 'app.ts')], bundle: true, write: false, format: 'esm', platform: 'browser', target: 'es2020' });
    entry = { body: bundle.outputFiles[0]!.text, type: 'text/javascript; charset=utf-8' };
  }
  if (entry) cache.set(pathname, entry);
  return entry;
}

/** Serves the page and its assets; false for any other path. */
export function serveUi(pathname: string, req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const entry = asset(pathname);
  if (!entry) return false;
  res.writeHead(200, {
    'content-type': entry.type,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'",
  });
  res.end(req.method === 'HEAD' ? undefined : entry.body);
  return true;
}
