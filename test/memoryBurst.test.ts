/**
 * Hostile uploads against memory, in a child server process (in-memory mode), measured from
 * /proc/<pid>/status: VmHWM (peak RSS) and VmRSS (settled RSS, a few seconds after the burst).
 * 1. One job of 16 solid 25-megapixel PNGs (5000×5000, tiny uploads that decode to 75 MB each).
 * 2. 20 concurrent uploads of one such PNG each (merged into shared pipeline calls).
 * Jobs use the model's default output size (512×512) with 2 steps.
 * 3. A 10 000 000 × 4 PNG: refused at submission with IMAGE_TOO_LARGE naming the limit.
 * The bounds are stated below and recorded in docs/security.md with the measured figures.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../src/config.js';
import { freePort } from './support/net.js';
import { collectSse, postMultipart } from './support/graphql.js';

const SUBMIT = 'mutation($images:[Upload!]!,$size:String){ editImages(images:$images, prompt:"sepia", size:$size, steps:2){ id } }';
const EVENTS = 'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditFailed { error { code message } } } }';
type Ev = { editJobEvents: { __typename: string; error?: { code: string; message: string } } };
const MB = 1024 * 1024;
/** Size of the solid test PNGs (5000x5000: 25 megapixels; MEMORY_BURST_INPUT=6325x6324 repeats the inputs). */
const [W, H] = (process.env.MEMORY_BURST_INPUT ?? '5000x5000').split('x').map(Number) as [number, number];
/** Output size of the jobs (the model's default, as in the issue). */
const OUTPUT = process.env.MEMORY_BURST_OUTPUT ?? '512x512';
/** MAX_JOB_INPUT_PIXELS of the child server. */
const JOB_CAP = Number(process.env.MEMORY_BURST_JOB_PIXELS ?? 600_000_000);
/**
 * Peak RSS above the idle baseline for each burst. Before issue 16 item 5 (main at 2026-12-02): +1778 MB
 * for the 16-image job, +2788 MB for the 20 uploads.
 */
const PEAK_BOUND_MB = Number(process.env.MEMORY_BURST_PEAK_MB ?? 1600);
/**
 * RSS above the idle baseline SETTLE_S seconds after each burst. Before: +1778 MB after the first
 * burst, +2630 MB after the second (nothing went back). The scratch pool keeps up to 256 MiB by design.
 * After: +219 to +800 MB across runs on this 2-core VM (allocator fragmentation varies with how the
 * concurrent uploads interleave), so the bound is 1000 MB: still far below what nothing returning gives.
 */
const SETTLED_BOUND_MB = Number(process.env.MEMORY_BURST_SETTLED_MB ?? 1000);

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux: write 5 to clear_refs). */
function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // not permitted: the peak then includes earlier phases
  }
}

/** Seconds to wait after a burst before reading the settled RSS. */
const SETTLE_S = Number(process.env.MEMORY_BURST_SETTLE_S ?? 20);
const mb = (bytes: number): number => Math.round(bytes / MB);

describe('memory under hostile uploads (child server process)', { timeout: 300_000 }, () => {
  let child: ChildProcess;
  let url = '';
  let output = '';
  let solid: Buffer;
  /** RSS of the idle, warmed-up server: every burst is measured against it. */
  let baseline = 0;

  before(async () => {
    const port = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        // The setting docs/security.md gives hosts that face untrusted uploads (the arena keeps memory).
        ORT_CPU_MEM_ARENA: '0',
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        MAX_JOB_INPUT_PIXELS: String(JOB_CAP),
        MAX_PROCESS_INPUT_PIXELS: '2000000000',
        MAX_QUEUED_JOBS: '100',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 300; i++) {
      if (
        await fetch(`${url}/healthz`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    solid = await sharp({ create: { width: W, height: H, channels: 3, background: { r: 90, g: 140, b: 200 } } })
      .png()
      .toBuffer();
    // Warm up (model sessions, first pipeline call, scratch) so the baseline is the idle server.
    const warm = await postMultipart<{ editImages: { id: string } }>(url, SUBMIT, { size: OUTPUT }, [
      {
        bytes: await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } })
          .png()
          .toBuffer(),
        name: 'w.png',
      },
    ]);
    await collectSse<Ev>(url, EVENTS, { id: warm.body.data!.editImages.id });
    await new Promise((r) => setTimeout(r, 2000));
    baseline = memory(child.pid!).rss;
  });

  after(() => {
    child?.kill('SIGKILL');
  });

  async function burst(name: string, run: () => Promise<void>): Promise<void> {
    resetPeak(child.pid!);
    let peak = memory(child.pid!).rss;
    const sampler = setInterval(() => (peak = Math.max(peak, memory(child.pid!).rss)), 50);
    await run();
    clearInterval(sampler);
    peak = Math.max(peak, memory(child.pid!).hwm);
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
    const settled = memory(child.pid!).rss;
    console.log(
      `# ${name}: baseline ${mb(baseline)} MB, peak ${mb(peak)} MB (+${mb(peak - baseline)}), settled after ${SETTLE_S} s ${mb(settled)} MB (+${mb(settled - baseline)}); bounds +${PEAK_BOUND_MB} / +${SETTLED_BOUND_MB} MB`,
    );
    assert.ok(peak - baseline < PEAK_BOUND_MB * MB, `${name}: peak ${mb(peak - baseline)} MB over the baseline`);
    assert.ok(settled - baseline < SETTLED_BOUND_MB * MB, `${name}: settled ${mb(settled - baseline)} MB over the baseline`);
  }

  it('one job of 16 solid 25-megapixel PNGs stays within the bound and returns near the baseline', async () => {
    console.log(`# upload: 16 × ${solid.length} bytes (${W}×${H} solid PNG), output ${OUTPUT}, steps 2`);
    await burst('16 × 25 MP in one job', async () => {
      const res = await postMultipart<{ editImages: { id: string } }>(
        url,
        SUBMIT,
        { size: OUTPUT },
        Array.from({ length: 16 }, (_, i) => ({ bytes: solid, name: `${i}.png` })),
      );
      assert.equal(res.body.errors, undefined, JSON.stringify(res.body.errors));
      const events = (await collectSse<Ev>(url, EVENTS, { id: res.body.data!.editImages.id })).events.map((e) => e.editJobEvents);
      assert.equal(events.at(-1)!.__typename, 'EditCompleted', JSON.stringify(events.at(-1)));
    });
  });

  it('20 concurrent uploads of a 25-megapixel PNG stay within the bound and return near the baseline', async () => {
    await burst('20 concurrent 25 MP uploads', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          postMultipart<{ editImages: { id: string } }>(url, SUBMIT, { size: OUTPUT }, [{ bytes: solid, name: `${i}.png` }]),
        ),
      );
      const ids = results.map((r) => {
        assert.equal(r.body.errors, undefined, JSON.stringify(r.body.errors));
        return r.body.data!.editImages.id;
      });
      for (const id of ids) {
        const events = (await collectSse<Ev>(url, EVENTS, { id })).events.map((e) => e.editJobEvents);
        assert.equal(events.at(-1)!.__typename, 'EditCompleted', JSON.stringify(events.at(-1)));
      }
    });
  });

  it('refuses a 10 000 000 × 4 PNG at submission with IMAGE_TOO_LARGE naming the limit', async () => {
    const wide = await sharp(Buffer.alloc(10_000_000 * 4 * 3, 7), { raw: { width: 10_000_000, height: 4, channels: 3 }, limitInputPixels: false })
      .png()
      .toBuffer();
    const res = await postMultipart(url, SUBMIT, { size: OUTPUT }, [{ bytes: wide, name: 'wide.png' }]);
    const error = res.body.errors?.[0];
    assert.equal(error?.extensions?.code, 'IMAGE_TOO_LARGE', JSON.stringify(res.body));
    assert.match(error!.message, /10000000x4.*64:1/);
  });

  it('refuses a job over MAX_JOB_INPUT_PIXELS with IMAGE_TOO_LARGE naming the limit', async () => {
    const big = await sharp({ create: { width: 6300, height: 6300, channels: 3, background: '#123456' } })
      .png()
      .toBuffer();
    const total = 16 * 6300 * 6300;
    if (total <= JOB_CAP) return; // MEMORY_BURST_JOB_PIXELS raised for a measurement
    const over = await postMultipart(
      url,
      SUBMIT,
      { size: OUTPUT },
      Array.from({ length: 16 }, (_, i) => ({ bytes: big, name: `${i}.png` })),
    );
    assert.equal(over.body.errors?.[0]?.extensions?.code, 'IMAGE_TOO_LARGE', JSON.stringify(over.body));
    assert.match(over.body.errors![0]!.message, new RegExp(`${total} pixels.*${JOB_CAP} pixels per job \\(MAX_JOB_INPUT_PIXELS\\)`));
  });
});
