/** The progress page in a real browser (Debian's chromium via playwright-core), plus GraphiQL. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestServer, type TestServer } from './support/server.js';
import { twoColourPng } from './support/images.js';
import { PROJECT_ROOT } from '../src/config.js';
import { serveUi } from '../src/server/ui.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { GRAPHIQL_ASSETS_VERSION, pickEncoding } from '../src/server/graphiql.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(PROJECT_ROOT, 'test-artifacts');

describe('progress page HTML', () => {
  it('offers every scheduler name, from SCHEDULER_NAMES', () => {
    let body = '';
    const res = { writeHead: () => res, end: (b: string) => { body = b; } };
    assert.ok(serveUi('/', { method: 'GET' } as never, res as never));
    const options = [...body.matchAll(/<select id="scheduler"[\s\S]*?<\/select>/g)][0]![0];
    assert.deepEqual([...options.matchAll(/<option>(\w+)<\/option>/g)].map((m) => m[1]), [...SCHEDULER_NAMES]);
  });
});

describe('progress page', () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let dir: string;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    dir = mkdtempSync(join(tmpdir(), 'ui-'));
    writeFileSync(join(dir, 'red.png'), await twoColourPng(64, 64, [200, 60, 30], [240, 200, 40]));
    writeFileSync(join(dir, 'blue.png'), await twoColourPng(64, 64, [20, 120, 220], [30, 200, 120]));
    writeFileSync(join(dir, 'notes.png'), 'this is a text file with a .png name');
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const fresh = async (): Promise<Page> => {
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#model option', { state: 'attached' });
    return page;
  };

  it('uploads two images, shows progress moving and previews, then both results with downloads', async () => {
    const p = await fresh();
    await p.setInputFiles('#files', [join(dir, 'red.png'), join(dir, 'blue.png')]);
    assert.equal(await p.locator('#thumbs img').count(), 2);
    await p.fill('#prompt', 'make it sepia');
    await p.fill('#steps', '80');
    await p.fill('#size', '256x256');
    // Every text the job card's detail line shows, in order.
    await p.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { details: string[] }).details = seen;
      new MutationObserver(() => document.querySelectorAll('.job > p').forEach((d) => seen.push(d.textContent ?? ''))).observe(document.getElementById('jobs')!, { subtree: true, childList: true, characterData: true });
    });
    await p.click('#start');
    const bar = p.locator('.job progress').first();
    await p.waitForFunction(() => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')) > 0);
    const early = Number(await bar.getAttribute('aria-valuenow'));
    await p.waitForSelector('.job img.preview', { timeout: 20_000 });
    await p.waitForFunction((v) => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')) > v, early);
    await p.screenshot({ path: join(ARTIFACTS, 'ui-progress.png'), fullPage: true });
    await p.waitForSelector('.job .state.SUCCEEDED', { timeout: 60_000 });
    assert.equal(await p.locator('.job img.result').count(), 2);
    const links = await p.locator('.job a[download]').evaluateAll((as) => as.map((a) => a.getAttribute('download')));
    assert.deepEqual(links, ['red-0.png', 'blue-0.png']);
    assert.match((await p.locator('.job .usage').textContent()) ?? '', /2 input → 2 images/);
    // No estimate from the first progress event alone (it used to say "about 0.0 s left"), one later.
    const steps = (await p.evaluate(() => (window as unknown as { details: string[] }).details)).filter((t) => t.startsWith('Step '));
    assert.match(steps[0] ?? '', /^Step \d+\/80$/);
    assert.ok(steps.some((t) => /^Step \d+\/80 · about \d+\.\d s left$/.test(t)), steps.join('\n'));
    await p.screenshot({ path: join(ARTIFACTS, 'ui-results.png'), fullPage: true });
    await p.close();
  });

  it('links a favicon that is served (no 404 for /favicon.ico either)', async () => {
    const p = await fresh();
    const href = await p.locator('link[rel="icon"]').getAttribute('href');
    assert.equal(href, '/ui/favicon.svg');
    for (const path of [href, '/favicon.ico']) {
      const r = await fetch(`${server.url}${path}`);
      assert.equal(r.status, 200, path!);
      assert.equal(r.headers.get('content-type'), 'image/svg+xml');
      assert.match(await r.text(), /^<svg /);
    }
    await p.close();
  });

  it('cancels a running job', async () => {
    const p = await fresh();
    await p.setInputFiles('#files', [join(dir, 'red.png')]);
    await p.fill('#steps', '100');
    await p.fill('#size', '512x512');
    await p.fill('#n', '4');
    await p.click('#start');
    await p.waitForFunction(() => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')) >= 1);
    await p.click('.job button:has-text("Cancel")');
    await p.waitForSelector('.job .state.CANCELLED', { timeout: 20_000 });
    await p.screenshot({ path: join(ARTIFACTS, 'ui-cancelled.png'), fullPage: true });
    await p.close();
  });

  it('explains an upload that is not an image', async () => {
    const p = await fresh();
    await p.setInputFiles('#files', [join(dir, 'notes.png')]);
    await p.click('#start');
    await p.waitForFunction(() => /INVALID_IMAGE/.test(document.getElementById('form-status')?.textContent ?? ''));
    await p.screenshot({ path: join(ARTIFACTS, 'ui-error.png'), fullPage: true });
    await p.close();
  });

  it('serves GraphiQL from local assets, and it runs a query', async () => {
    const p = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await p.goto(`${server.url}/graphql`);
    await p.waitForSelector('.graphiql-container', { timeout: 20_000 });
    // GraphiQL 5's editors are Monaco; insertText avoids its bracket auto-closing.
    await p.locator('.graphiql-query-editor .monaco-editor').first().click();
    await p.keyboard.press('Control+A');
    await p.keyboard.press('Delete');
    await p.keyboard.insertText('{ models { id } }');
    await p.click('.graphiql-execute-button');
    await p.waitForFunction(() => /tiny-edit/.test(document.querySelector('.graphiql-response, .result-window')?.textContent ?? ''), undefined, { timeout: 20_000 });
    await p.screenshot({ path: join(ARTIFACTS, 'graphiql.png') });
    await p.close();
  });
});

describe('GraphiQL with AUTH_TOKENS: the main job without leaving the page', () => {
  const TOKEN = 'graphiql-token';
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer({ AUTH_TOKENS: TOKEN });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('serves a small page and compressed, immutable, hashed assets', async () => {
    const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(html.length < 20_000, `page is ${html.length} bytes`);
    const js = `/graphiql-assets/${GRAPHIQL_ASSETS_VERSION}/graphiql.js`;
    assert.ok(html.includes(js), 'the page links the hashed script');
    const plain = await fetch(`${server.url}${js}`, { headers: { 'accept-encoding': 'identity' } });
    const size = Number(plain.headers.get('content-length'));
    assert.ok(size > 2_000_000, `uncompressed script is ${size} bytes`);
    await plain.arrayBuffer();
    for (const enc of ['br', 'gzip']) {
      // Node's fetch decodes the body itself; content-length is what went over the wire.
      const r = await fetch(`${server.url}${js}`, { headers: { 'accept-encoding': enc } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-encoding'), enc);
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(r.headers.get('vary'), 'Accept-Encoding');
      assert.ok(Number(r.headers.get('content-length')) < size / 3, `${enc}: ${r.headers.get('content-length')} bytes`);
      assert.match(await r.text(), /YogaGraphiQL/);
    }
    const etag = plain.headers.get('etag')!;
    const again = await fetch(`${server.url}${js}`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal((await fetch(`${server.url}/graphiql-assets/0000000000000000/graphiql.js`)).status, 404);
    assert.equal(pickEncoding('gzip, deflate, br, zstd'), 'br');
    assert.equal(pickEncoding('br;q=0, gzip;q=0.5'), 'gzip');
    assert.equal(pickEncoding('*;q=0'), 'identity');
    assert.equal(pickEncoding(undefined), 'identity');
  });

  it('reloading a GraphiQL URL with ?query= shows GraphiQL, not a 401 body', async () => {
    const r = await fetch(`${server.url}/graphql?query=${encodeURIComponent('{ models { id } }')}`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/html/);
    // An API GET with that query still needs credentials.
    const api = await fetch(`${server.url}/graphql?query=${encodeURIComponent('{ models { id } }')}`, { headers: { 'x-graphql-yoga-csrf': '1' } });
    assert.equal(api.status, 401);
  });

  it('runs the walk-through: the data: URL edit, then the subscription to EditCompleted, with the Headers tab credentials', async () => {
    const p = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const encodings: string[] = [];
    p.on('response', (r) => {
      if (r.url().includes('/graphiql-assets/')) encodings.push(`${new URL(r.url()).pathname.split('/').pop()}:${r.headers()['content-encoding'] ?? 'none'}`);
    });
    await p.goto(`${server.url}/graphql`);
    await p.waitForSelector('.graphiql-container', { timeout: 30_000 });
    assert.ok(encodings.includes('graphiql.js:br'), encodings.join(', '));
    await p.waitForFunction(() => /imageUrls/.test(document.querySelector('.graphiql-query-editor')?.textContent ?? ''), undefined, { timeout: 20_000 });
    // The Headers tab: the token every request of the page sends, subscriptions included.
    await p.getByRole('button', { name: /^headers$/i }).click();
    await p.locator('.monaco-editor[data-uri*="headers"]').click();
    await p.keyboard.press('Control+A');
    await p.keyboard.press('Delete');
    await p.keyboard.insertText(JSON.stringify({ authorization: `Bearer ${TOKEN}` }));
    const run = async (operation: string): Promise<void> => {
      await p.click('.graphiql-execute-button');
      await p.getByRole('menuitem', { name: operation }).click();
    };
    const response = () => p.evaluate(() => document.querySelector('.graphiql-response')?.textContent ?? '');
    await run('Edit');
    await p.waitForFunction(() => /"id":\s*"[0-9a-f-]{36}"|QUEUE|errors/.test(document.querySelector('.graphiql-response')?.textContent ?? ''), undefined, { timeout: 30_000 });
    const edited = await response();
    const id = /"id":\s*"([0-9a-f-]{36})"/.exec(edited)?.[1];
    assert.ok(id, edited);
    await p.getByRole('button', { name: /^variables$/i }).click();
    await p.locator('.monaco-editor[data-uri*="variables"]').click();
    await p.keyboard.press('Control+A');
    await p.keyboard.press('Delete');
    await p.keyboard.insertText(JSON.stringify({ id }));
    await run('Watch');
    await p.waitForFunction(() => /EditCompleted|EditFailed|errors/.test(document.querySelector('.graphiql-response')?.textContent ?? ''), undefined, { timeout: 60_000 });
    const done = await response();
    await p.screenshot({ path: join(ARTIFACTS, 'graphiql-walkthrough.png') });
    assert.match(done, /EditCompleted/, done.slice(0, 500));
    assert.match(done, /"b64Json":\s*"iVBOR/);
    assert.match(done, /"generatedImages":\s*2/);
    // GraphiQL wrote the editor into the URL; reloading it shows GraphiQL again.
    await p.reload();
    await p.waitForSelector('.graphiql-container', { timeout: 30_000 });
    await p.close();
  });
});
