/** The progress page in a real browser (Debian's chromium via playwright-core), plus GraphiQL. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestServer, type TestServer } from './support/server.js';
import { expectedColour, maxChannelDiff, rawPixels, twoColourPng, type Rgb } from './support/images.js';
import { PROJECT_ROOT } from '../src/config.js';
import { serveUi } from '../src/server/ui.js';
import { SCHEDULER_NAMES } from '../src/inference/schedulers/types.js';
import { GRAPHIQL_ASSETS_VERSION, pickEncoding } from '../src/server/graphiql.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(PROJECT_ROOT, 'test-artifacts');
/** The left and right halves' colours of the two test images. */
const RED: [Rgb, Rgb] = [
  [200, 60, 30],
  [240, 200, 40],
];
const BLUE: [Rgb, Rgb] = [
  [20, 120, 220],
  [30, 200, 120],
];

/** Debian's chromium, headless, offline. */
function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

describe('progress page HTML', () => {
  it('offers every scheduler name, from SCHEDULER_NAMES', () => {
    let body = '';
    const res = {
      writeHead: () => res,
      end: (b: string) => {
        body = b;
      },
    };
    assert.ok(serveUi('/', { method: 'GET' } as never, res as never));
    const options = [...body.matchAll(/<select id="scheduler"[\s\S]*?<\/select>/g)][0]![0];
    assert.deepEqual(
      [...options.matchAll(/<option>(\w+)<\/option>/g)].map((m) => m[1]),
      [...SCHEDULER_NAMES],
    );
  });
});

/** What the page posts to /graphql as multipart, recorded by wrapping its fetch. */
interface Upload {
  operations: { variables: Record<string, unknown> };
  map: Record<string, string[]>;
  files: [string, string, string][];
  mask: string | null;
}
type Recorded = { uploads: Upload[] };

async function recordUploads(p: Page): Promise<void> {
  await p.evaluate(() => {
    const w = window as unknown as Recorded;
    w.uploads = [];
    const original = window.fetch;
    window.fetch = async (input, init) => {
      const body = init?.body;
      if (body instanceof FormData) {
        const files = [...body.entries()].filter((e): e is [string, File] => e[1] instanceof File);
        const mask = files.find(([key]) => key.startsWith('m'))?.[1];
        const bytes = mask ? new Uint8Array(await mask.arrayBuffer()) : null;
        w.uploads.push({
          operations: JSON.parse(String(body.get('operations'))),
          map: JSON.parse(String(body.get('map'))),
          files: files.map(([key, f]) => [key, f.name, f.type]),
          mask: bytes ? btoa(String.fromCharCode(...bytes)) : null,
        });
      }
      return original(input, init);
    };
  });
}

const uploads = (p: Page): Promise<Upload[]> => p.evaluate(() => (window as unknown as Recorded).uploads);

describe('progress page', () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let dir: string;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer();
    browser = await launchBrowser();
    dir = mkdtempSync(join(tmpdir(), 'ui-'));
    writeFileSync(join(dir, 'red.png'), await twoColourPng(64, 64, RED[0], RED[1]));
    writeFileSync(join(dir, 'blue.png'), await twoColourPng(64, 64, BLUE[0], BLUE[1]));
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
      new MutationObserver(() => document.querySelectorAll('.job > p').forEach((d) => seen.push(d.textContent ?? ''))).observe(
        document.getElementById('jobs')!,
        { subtree: true, childList: true, characterData: true },
      );
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
    assert.ok(
      steps.some((t) => /^Step \d+\/80 · about \d+\.\d s left$/.test(t)),
      steps.join('\n'),
    );
    await p.screenshot({ path: join(ARTIFACTS, 'ui-results.png'), fullPage: true });
    await p.close();
  });

  it('paints a mask (brush, eraser, size, hide), edits only the painted part, and compares before/after', async () => {
    const p = await fresh();
    await p.setInputFiles('#files', [join(dir, 'red.png'), join(dir, 'blue.png')]);
    // The canvas takes the image's natural size once the image has loaded.
    await p.waitForFunction(() => [...document.querySelectorAll<HTMLCanvasElement>('#thumbs canvas.mask')].every((c) => c.width === 64 && c.height === 64));
    const canvas = p.locator('#thumbs canvas.mask').first();
    const box = (await canvas.boundingBox())!;
    const scale = box.width / 64; // screen pixels per image pixel
    assert.ok(scale > 2, `the image is shown larger than natural size for painting (${box.width} px)`);
    const at = (x: number, y: number): [number, number] => [box.x + x * scale, box.y + y * scale];
    /** Brush width in image pixels (the slider is in screen pixels); returns the width set. */
    const setSize = async (imagePixels: number): Promise<number> => {
      const screen = Math.round(imagePixels * scale);
      await p.locator('#mask-size-0').evaluate((el, v) => {
        (el as HTMLInputElement).value = String(v);
        el.dispatchEvent(new Event('input', { bubbles: true }));
      }, screen);
      return screen / scale;
    };
    const drag = async (from: [number, number], to: [number, number]): Promise<void> => {
      await p.mouse.move(...at(...from));
      await p.mouse.down();
      await p.mouse.move(...at(...to), { steps: 10 });
      await p.mouse.up();
    };
    const tools = p.locator('#thumbs li').first();
    // A stroke along row 32 that stays, and one along row 12 that the eraser removes.
    const brush = await setSize(8);
    assert.ok(Math.abs(brush - 8) < 0.5);
    await drag([10, 32], [54, 32]);
    await drag([10, 12], [54, 12]);
    await tools.locator('button:has-text("Eraser")').click();
    assert.equal(await tools.locator('button:has-text("Eraser")').getAttribute('aria-pressed'), 'true');
    await setSize(20);
    await drag([1, 12], [63, 12]);
    // Hiding the overlay hides the canvas (and keeps what is painted).
    await tools.locator('input.mask-show').uncheck();
    assert.equal(await canvas.isVisible(), false);
    await tools.locator('input.mask-show').check();
    assert.equal(await canvas.isVisible(), true);
    // What is left painted: row 32's stroke only; the second image has none.
    const painted = await canvas.evaluate((c: HTMLCanvasElement) => {
      const a = c.getContext('2d')!.getImageData(0, 0, 64, 64).data;
      return [a[(32 * 64 + 32) * 4 + 3], a[(12 * 64 + 32) * 4 + 3], a[(50 * 64 + 32) * 4 + 3]];
    });
    assert.deepEqual(painted, [255, 0, 0]);
    await p.screenshot({ path: join(ARTIFACTS, 'ui-mask.png'), fullPage: true });

    await p.fill('#prompt', 'invert');
    await p.fill('#size', '64x64');
    await p.fill('#steps', '4');
    await p.fill('#mask-blur', '1');
    await recordUploads(p);
    await p.click('#start');
    await p.waitForFunction(() => (window as unknown as Recorded).uploads.length === 1);
    const [sent] = await uploads(p);
    assert.deepEqual(sent!.operations.variables.masks, [null, null]);
    assert.equal(sent!.operations.variables.maskBlur, 1);
    assert.deepEqual(sent!.map, { 0: ['variables.images.0'], 1: ['variables.images.1'], m0: ['variables.masks.0'] });
    assert.deepEqual(sent!.files, [
      ['0', 'red.png', 'image/png'],
      ['1', 'blue.png', 'image/png'],
      ['m0', 'mask-0.png', 'image/png'],
    ]);
    // The mask is a greyscale PNG of the image's size: white in the stroke, black elsewhere.
    const mask = await sharp(Buffer.from(sent!.mask!, 'base64')).metadata();
    assert.deepEqual([mask.format, mask.width, mask.height, mask.channels, mask.hasAlpha], ['png', 64, 64, 1, false]);
    const grey = await sharp(Buffer.from(sent!.mask!, 'base64')).extractChannel(0).raw().toBuffer();
    assert.deepEqual([grey[32 * 64 + 32], grey[32 * 64 + 8], grey[12 * 64 + 32], grey[50 * 64 + 32]], [255, 255, 0, 0]);
    await p.waitForSelector('.job .state.SUCCEEDED', { timeout: 60_000 });

    const srcs = await p.locator('.job img.result').evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).src));
    assert.equal(srcs.length, 2);
    const [masked, whole] = await Promise.all(srcs.map((s) => rawPixels(Buffer.from(s.split(',')[1]!, 'base64'))));
    const px = (img: { data: Buffer }, x: number, y: number): Rgb => {
      const i = (y * 64 + x) * 3;
      return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
    };
    const input = (colours: [Rgb, Rgb], x: number): Rgb => colours[x < 32 ? 0 : 1];
    assert.equal(masked!.width, 64);
    // Inside the stroke: inverted. Far from it (10+ px from its centre line, including the erased
    // stroke): the input's pixels.
    for (let y = 31; y <= 33; y++) {
      for (let x = 12; x <= 52; x++) {
        const want = expectedColour(input(RED, x), 'invert');
        assert.ok(maxChannelDiff(px(masked!, x, y), want) <= 3, `(${x},${y}) inside: ${px(masked!, x, y)} vs ${want}`);
      }
    }
    let far = 0;
    for (let y = 0; y < 64; y++) {
      if (Math.abs(y - 32) < 10) continue;
      for (let x = 0; x < 64; x++, far++) assert.ok(maxChannelDiff(px(masked!, x, y), input(RED, x)) <= 1, `(${x},${y}) outside: ${px(masked!, x, y)}`);
    }
    assert.equal(far, 64 * 45);
    // The image without a mask is edited whole.
    for (const [x, y] of [
      [8, 8],
      [56, 56],
      [8, 32],
    ] as const)
      assert.ok(maxChannelDiff(px(whole!, x, y), expectedColour(input(BLUE, x), 'invert')) <= 3);

    // Before/after: the input over the output, clipped at the slider's handle.
    const fig = p.locator('.job figure').first();
    assert.equal(await fig.locator('img.before').getAttribute('src'), await p.locator('#thumbs img').first().getAttribute('src'));
    const clip = () => fig.locator('img.before').evaluate((i) => (i as HTMLImageElement).style.clipPath);
    assert.match(await clip(), /inset\(0(px)? 100% 0(px)? 0(px)?\)/);
    await fig.locator('input.compare-slider').evaluate((el) => {
      (el as HTMLInputElement).value = '50';
      el.dispatchEvent(new Event('input', { bubbles: true }));
    });
    assert.match(await clip(), /inset\(0(px)? 50% 0(px)? 0(px)?\)/);
    await p.screenshot({ path: join(ARTIFACTS, 'ui-mask-result.png'), fullPage: true });
    // Clear empties the mask: the next job sends no masks at all.
    await tools.locator('button:has-text("Clear")').click();
    await p.click('#start');
    await p.waitForFunction(() => (window as unknown as Recorded).uploads.length === 2);
    assert.equal((await uploads(p))[1]!.operations.variables.masks, null);
    await p.waitForFunction(() => document.querySelectorAll('.job .state.SUCCEEDED').length === 2, undefined, { timeout: 60_000 });
    await p.close();
  });

  it('paints a mask by touch (Pointer Events), and a second finger does not draw', async () => {
    const context = await browser.newContext({ viewport: { width: 400, height: 800 }, hasTouch: true, isMobile: true });
    const p = await context.newPage();
    await p.goto(`${server.url}/`);
    await p.setInputFiles('#files', [join(dir, 'red.png')]);
    await p.waitForFunction(() => document.querySelector<HTMLCanvasElement>('#thumbs canvas.mask')?.width === 64);
    const canvas = p.locator('#thumbs canvas.mask');
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    const at = (x: number, y: number) => ({ x: box.x + (x / 64) * box.width, y: box.y + (y / 64) * box.height });
    const scrollY = await p.evaluate(() => window.scrollY);
    const cdp = await context.newCDPSession(p);
    const touch = (type: 'touchStart' | 'touchMove' | 'touchEnd', points: { x: number; y: number; id?: number }[]) =>
      cdp.send('Input.dispatchTouchEvent', { type, touchPoints: points });
    // One finger along row 20; a second finger that lands at row 50 while the first is down.
    await touch('touchStart', [{ ...at(8, 20), id: 1 }]);
    for (let x = 12; x <= 56; x += 4) await touch('touchMove', [{ ...at(x, 20), id: 1 }]);
    for (const y of [24, 28, 20]) await touch('touchMove', [{ ...at(56, y), id: 1 }]); // up and down: would scroll
    await touch('touchStart', [
      { ...at(56, 20), id: 1 },
      { ...at(8, 50), id: 2 },
    ]);
    for (let x = 12; x <= 56; x += 4)
      await touch('touchMove', [
        { ...at(56, 20), id: 1 },
        { ...at(x, 50), id: 2 },
      ]);
    await touch('touchEnd', []);
    const alpha = await canvas.evaluate((c: HTMLCanvasElement) => {
      const a = c.getContext('2d')!.getImageData(0, 0, 64, 64).data;
      return [
        [32, 20],
        [50, 20],
        [32, 50],
        [32, 5],
      ].map(([x, y]) => a[(y! * 64 + x!) * 4 + 3]);
    });
    assert.deepEqual(alpha, [255, 255, 0, 0]);
    // The page did not scroll under the finger (touch-action: none on the canvas).
    assert.equal(await p.evaluate(() => window.scrollY), scrollY);
    await context.close();
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

  /** What the page cuts off: elements outside the viewport's width, and select options wider than their select. */
  const cutOff = (p: Page): Promise<string[]> =>
    p.evaluate(() => {
      const width = document.documentElement.clientWidth;
      const found: string[] = [];
      if (document.documentElement.scrollWidth > width) found.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${width} px)`);
      for (const e of document.querySelectorAll<HTMLElement>('body *')) {
        const r = e.getBoundingClientRect();
        if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5))
          found.push(`${e.tagName.toLowerCase()}#${e.id}.${e.className} spans ${r.left}..${r.right}`);
      }
      for (const select of document.querySelectorAll('select')) {
        const chosen = select.selectedIndex;
        for (let i = 0; i < select.options.length; i++) {
          select.selectedIndex = i;
          if (select.scrollWidth > select.clientWidth) found.push(`#${select.id} cuts off "${select.options[i]!.text}"`);
        }
        select.selectedIndex = chosen;
      }
      return found;
    });

  for (const width of [1280, 390]) {
    it(`cuts nothing off at ${width} px, and the empty Jobs column says what to do (screenshots ui-${width}-*.png)`, async () => {
      const p = await browser.newPage({ viewport: { width, height: 900 } });
      await p.goto(`${server.url}/`);
      await p.waitForSelector('#model option', { state: 'attached' });
      await p.waitForFunction(() => /EULER/.test(document.querySelector('#scheduler option')?.textContent ?? ''));
      await p.screenshot({ path: join(ARTIFACTS, `ui-${width}-empty.png`), fullPage: true });
      assert.deepEqual(await cutOff(p), []);
      const hint = p.locator('#jobs-empty');
      assert.ok(await hint.isVisible(), 'the empty Jobs column has a hint');
      assert.match((await hint.textContent()) ?? '', /No jobs yet\. Choose one or more images, write an instruction .* and press Start/);
      await p.setInputFiles('#files', [join(dir, 'red.png'), join(dir, 'blue.png')]);
      await p.fill('#size', '64x64');
      await p.click('#start');
      await p.waitForSelector('.job .state.SUCCEEDED', { timeout: 60_000 });
      await p.screenshot({ path: join(ARTIFACTS, `ui-${width}-done.png`), fullPage: true });
      assert.deepEqual(await cutOff(p), []);
      assert.equal(await hint.isVisible(), false, 'the hint goes once there is a job');
      await p.close();
    });
  }

  it("GraphiQL's walk-through comment fits its editor at 1280 px (screenshot graphiql-1280.png)", async () => {
    const p = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await p.goto(`${server.url}/graphql`);
    await p.waitForSelector('.graphiql-container', { timeout: 20_000 });
    await p.waitForFunction(() => /imageUrls/.test(document.querySelector('.graphiql-query-editor')?.textContent ?? ''), undefined, { timeout: 20_000 });
    await p.screenshot({ path: join(ARTIFACTS, 'graphiql-1280.png') });
    const { visible, comments } = await p.evaluate(() => {
      const lines = [...document.querySelectorAll('.graphiql-query-editor .view-line')].map((l) => ({
        text: l.textContent ?? '',
        width: (l.firstElementChild as HTMLElement | null)?.getBoundingClientRect().width ?? 0,
      }));
      const view = document.querySelector('.graphiql-query-editor .monaco-scrollable-element') as HTMLElement;
      return { visible: view.clientWidth, comments: lines.filter((l) => l.text.startsWith('#')) };
    });
    assert.ok(comments.length >= 20, `the walk-through's comment lines are rendered (${comments.length})`);
    for (const c of comments) assert.ok(c.width <= visible, `"${c.text}" is ${c.width} px wide; the editor shows ${visible} px`);
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
    // GraphiQL 5's editors are Monaco; insertText avoids its bracket auto-closing. A select-all
    // that lands before the editor has focus leaves the walkthrough in place (several operations:
    // Execute then asks which), so the text is checked, and typed again if it is not ours.
    const editorText = async () => (await p.locator('.graphiql-query-editor .view-lines').first().textContent()) ?? '';
    for (let attempt = 0; attempt < 5; attempt++) {
      await p.locator('.graphiql-query-editor .monaco-editor').first().click();
      await p.keyboard.press('Control+A');
      await p.keyboard.press('Delete');
      await p.keyboard.insertText('{ models { id } }');
      if ((await editorText()).replace(/\s+/g, ' ').trim() === '{ models { id } }') break;
    }
    assert.equal((await editorText()).replace(/\s+/g, ' ').trim(), '{ models { id } }');
    // GraphiQL reads the editor's text a moment after it changes: an Execute that lands before then
    // sends nothing, so it is pressed again until the response shows.
    const answered = () => /tiny-edit/.test(document.querySelector('.graphiql-response, .result-window')?.textContent ?? '');
    for (let attempt = 0; attempt < 10; attempt++) {
      await p.click('.graphiql-execute-button');
      if (
        await p.waitForFunction(answered, undefined, { timeout: 2_000 }).then(
          () => true,
          () => false,
        )
      )
        break;
    }
    assert.ok(await p.evaluate(answered), 'GraphiQL showed no response with tiny-edit');
    await p.screenshot({ path: join(ARTIFACTS, 'graphiql.png') });
    await p.close();
  });
});

describe('progress page with a model folder that cannot be served', () => {
  it('shows that model greyed out, with the reason on hover', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ui-broken-'));
    cpSync(join(PROJECT_ROOT, 'models', 'tiny-edit'), join(root, 'tiny-edit'), { recursive: true });
    cpSync(join(PROJECT_ROOT, 'models', 'tiny-edit'), join(root, 'half-copied'), { recursive: true });
    rmSync(join(root, 'half-copied', 'unet', 'model.onnx'));
    const server = await startTestServer({ MODELS_DIR: root });
    const browser = await launchBrowser();
    try {
      const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await p.goto(`${server.url}/`);
      await p.waitForSelector('#model option', { state: 'attached' });
      const options = await p
        .locator('#model option')
        .evaluateAll((os) => os.map((o) => [o.textContent, (o as HTMLOptionElement).disabled, o.getAttribute('title')]));
      assert.deepEqual(options[0]!.slice(0, 2), ['half-copied (unavailable)', true]);
      assert.match(String(options[0]![2]), /missing unet\/model\.onnx/);
      assert.deepEqual(options[1], ['tiny-edit (default)', false, null]);
    } finally {
      await browser.close();
      await server.close();
      rmSync(root, { recursive: true, force: true });
    }
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
    browser = await launchBrowser();
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
    // GraphiQL takes an editor's new text a moment after it changes (and stores it then): a request
    // sent before would go without it.
    const stored = (key: string, text: string) =>
      p.waitForFunction(([k, t]) => (localStorage.getItem(`graphiql:${k}`) ?? '').includes(t!), [key, text], { timeout: 10_000 });
    await stored('headers', TOKEN);
    const run = async (operation: string): Promise<void> => {
      await p.click('.graphiql-execute-button');
      await p.getByRole('menuitem', { name: operation }).click();
    };
    const response = () => p.evaluate(() => document.querySelector('.graphiql-response')?.textContent ?? '');
    await run('Edit');
    await p.waitForFunction(() => /"id":\s*"[0-9a-f-]{36}"|QUEUE|errors/.test(document.querySelector('.graphiql-response')?.textContent ?? ''), undefined, {
      timeout: 30_000,
    });
    const edited = await response();
    const id = /"id":\s*"([0-9a-f-]{36})"/.exec(edited)?.[1];
    assert.ok(id, edited);
    await p.getByRole('button', { name: /^variables$/i }).click();
    await p.locator('.monaco-editor[data-uri*="variables"]').click();
    await p.keyboard.press('Control+A');
    await p.keyboard.press('Delete');
    await p.keyboard.insertText(JSON.stringify({ id }));
    await stored('variables', id);
    await run('Watch');
    await p.waitForFunction(() => /EditCompleted|EditFailed|errors/.test(document.querySelector('.graphiql-response')?.textContent ?? ''), undefined, {
      timeout: 60_000,
    });
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

  it('progress page: live updates stop on a refused token and resume with a valid one (graphql-ws client)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ui-auth-'));
    writeFileSync(join(dir, 'red.png'), await twoColourPng(64, 64, RED[0], RED[1]));
    const p = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await p.goto(`${server.url}/`);
    const setToken = async (token: string) => {
      await p.fill('#token', token);
      await p.dispatchEvent('#token', 'change');
    };
    await setToken(TOKEN);
    await p.setInputFiles('#files', [join(dir, 'red.png')]);
    await p.fill('#steps', '100');
    await p.fill('#size', '512x512');
    await p.fill('#n', '4');
    await p.click('#start');
    const step = () => p.evaluate(() => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')));
    await p.waitForFunction(() => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')) >= 1, undefined, { timeout: 30_000 });
    // A wrong token: the socket restarts, the server refuses it (4401), the card waits.
    await setToken('wrong');
    await p.waitForFunction(() => document.getElementById('connection')?.textContent === 'Live updates need a valid access token.', undefined, {
      timeout: 20_000,
    });
    assert.equal(await p.locator('.job .state.FAILED').count(), 0);
    const stalled = await step();
    // The right token again: the card resubscribes and progress moves on.
    await setToken(TOKEN);
    await p.waitForFunction((v) => Number(document.querySelector('.job progress')?.getAttribute('aria-valuenow')) > v, stalled, { timeout: 30_000 });
    assert.equal(await p.locator('#connection').textContent(), '');
    // Not left running (it may have finished meanwhile on a fast machine).
    const cancel = p.locator('.job button:has-text("Cancel")');
    if (await cancel.isEnabled()) await cancel.click();
    await p.waitForSelector('.job .state.CANCELLED, .job .state.SUCCEEDED', { timeout: 60_000 });
    await p.close();
  });
});
