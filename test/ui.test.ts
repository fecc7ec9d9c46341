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
