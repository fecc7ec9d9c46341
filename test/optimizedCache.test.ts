/**
 * ONNX Runtime's optimized-model cache (src/inference/optimizedCache.ts, ORT_OPTIMIZED_CACHE): the
 * first open writes an entry, the second loads it and gives the same outputs bit for bit; a
 * truncated or garbled entry is written again; a changed model file gets a new entry and its old
 * one is removed; a cache that cannot be written leaves the model opening as without one.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBenchModel } from '../models/bench.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { describeLoadProgress, openComponentSessions } from '../src/inference/sessions.js';
import type { Feed, LoadProgress, SessionConfig } from '../src/inference/sessions.js';
import type { Component } from '../src/inference/components.js';
import { optimizedCacheDir } from '../src/config.js';

let modelDir: string;

before(async () => {
  const root = mkdtempSync(join(tmpdir(), 'ortcache-'));
  modelDir = join(root, 'bench');
  cpSync(await ensureBenchModel(), modelDir, { recursive: true });
});

/** Opens one component through the cache in `cacheDir`, runs it once on fixed feeds, releases it. */
async function openAndRun(cacheDir: string, component: Component = 'unet'): Promise<{ cache: LoadProgress['cache']; output: Float32Array }> {
  const spec = readModelFolder(modelDir, 'bench');
  let cache: LoadProgress['cache'];
  const config: SessionConfig = {
    provider: 'cpu',
    intraOpThreads: 1,
    optimizedCacheDir: cacheDir,
    optimizedCacheMinBytes: 0,
    onLoadProgress: (e) => {
      if (e.phase === 'opened') cache = e.cache;
    },
  };
  const sessions = await openComponentSessions(spec, [component], config);
  try {
    const ports = sessions.ports.get(component)!;
    const feeds: Record<string, Feed> = {};
    let seed = 1;
    for (const port of ports.inputs.values()) {
      const dims = port.shape.map((d) => (typeof d === 'number' ? d : /batch/.test(d) ? 1 : 8));
      const length = dims.reduce((a, b) => a * b, 1);
      const data = port.type.startsWith('int')
        ? Int32Array.from({ length }, (_, i) => (i * 7) % 50)
        : Float32Array.from({ length }, () => ((seed = (seed * 48271) % 2147483647) / 2147483647) * 2 - 1);
      feeds[port.name] = { data, dims };
    }
    const [name] = ports.outputs.keys();
    const { outputs } = await sessions.exec(component, feeds, [name!]);
    return { cache, output: outputs[0]!.slice() };
  } finally {
    await sessions.release();
  }
}

function entries(cacheDir: string): string[] {
  return readdirSync(cacheDir).sort();
}

describe('optimized-model cache', () => {
  it('writes an entry on the first open and loads it on the second, with identical outputs', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'ortcache-dir-'));
    const first = await openAndRun(cacheDir);
    assert.equal(first.cache, 'written');
    const [entry, ...more] = entries(cacheDir);
    assert.deepEqual(more, [], 'one entry, no .tmp- folder left behind');
    assert.match(entry!, /^unet-[0-9a-f]{8}-[0-9a-f]{20}$/);
    assert.deepEqual(readdirSync(join(cacheDir, entry!)).sort(), ['manifest.json', 'model.onnx', 'model.onnx.data']);
    const manifest = JSON.parse(readFileSync(join(cacheDir, entry!, 'manifest.json'), 'utf8')) as { files: Record<string, number> };
    assert.equal(manifest.files['model.onnx.data'], statSync(join(cacheDir, entry!, 'model.onnx.data')).size);
    const second = await openAndRun(cacheDir);
    assert.equal(second.cache, 'hit');
    assert.deepEqual(second.output, first.output, 'the cached graph gives the same outputs bit for bit');
    // Without the cache, the same again: the cached graph is the model's own optimization.
    const plain = await openAndRun('');
    assert.equal(plain.cache, 'off');
    assert.deepEqual(plain.output, first.output);
  });

  it('writes a truncated or garbled entry again', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'ortcache-dir-'));
    const { output } = await openAndRun(cacheDir);
    const entry = join(cacheDir, entries(cacheDir)[0]!);
    const data = join(entry, 'model.onnx.data');
    truncateSync(data, statSync(data).size - 4096); // a partial copy
    const afterTruncation = await openAndRun(cacheDir);
    assert.equal(afterTruncation.cache, 'rewritten');
    assert.deepEqual(afterTruncation.output, output);
    // The same sizes, garbage inside: ONNX Runtime refuses the graph, the entry is written again.
    const graph = join(entry, 'model.onnx');
    writeFileSync(graph, Buffer.alloc(statSync(graph).size, 0xab));
    const afterGarbage = await openAndRun(cacheDir);
    assert.equal(afterGarbage.cache, 'rewritten');
    assert.deepEqual(afterGarbage.output, output);
    assert.equal((await openAndRun(cacheDir)).cache, 'hit');
    assert.equal(entries(cacheDir).length, 1);
  });

  it('keys entries on the model file: a changed file gets a new entry and its old one goes', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'ortcache-dir-'));
    await openAndRun(cacheDir, 'vaeDecoder');
    const [old] = entries(cacheDir);
    const file = join(modelDir, 'vae_decoder', 'model.onnx');
    const later = new Date(statSync(file).mtimeMs + 60_000);
    utimesSync(file, later, later);
    assert.equal((await openAndRun(cacheDir, 'vaeDecoder')).cache, 'written');
    const now = entries(cacheDir);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], old);
  });

  it('opens the model without the cache when the folder cannot be written', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ortcache-file-')), 'not-a-folder');
    writeFileSync(file, '');
    const { cache, output } = await openAndRun(file);
    assert.equal(cache, 'unwritable');
    assert.ok(output.length > 0);
  });

  it('ORT_OPTIMIZED_CACHE: on by default in .cache/ort-optimized, 0/off turns it off, anything else is the folder', () => {
    assert.match(optimizedCacheDir({})!, /\.cache\/ort-optimized$/);
    assert.equal(optimizedCacheDir({ ORT_OPTIMIZED_CACHE: 'on' }), optimizedCacheDir({}));
    assert.equal(optimizedCacheDir({ ORT_OPTIMIZED_CACHE: '0' }), null);
    assert.equal(optimizedCacheDir({ ORT_OPTIMIZED_CACHE: 'off' }), null);
    assert.equal(optimizedCacheDir({ ORT_OPTIMIZED_CACHE: '/srv/ort-cache' }), '/srv/ort-cache');
  });
});

describe('warm-up at load (ORT_WARM_UP)', () => {
  it('runs each large component once at batch 1 and the smallest size as it opens, reported with its load', async () => {
    const spec = readModelFolder(modelDir, 'bench');
    const events: LoadProgress[] = [];
    const sessions = await openComponentSessions(spec, spec.family.components, {
      provider: 'cpu',
      intraOpThreads: 1,
      warmUp: true,
      warmUpMinBytes: 0,
      onLoadProgress: (e) => events.push(e),
    });
    await sessions.release();
    const opened = events.filter((e) => e.phase === 'opened');
    assert.deepEqual(
      opened.map((e) => e.component),
      spec.family.components,
    );
    for (const e of opened) assert.ok(typeof e.warmUpMs === 'number' && e.warmUpMs >= 0, `${e.file} was warmed up`);
    assert.match(describeLoadProgress(opened[0]!), /open in \d+\.\d s, warm-up run \d+\.\d s$/);
    // Below the size threshold (64 MiB by default: the bench model's components), no warm-up.
    const quiet: LoadProgress[] = [];
    const plain = await openComponentSessions(spec, ['unet'], { provider: 'cpu', intraOpThreads: 1, warmUp: true, onLoadProgress: (e) => quiet.push(e) });
    await plain.release();
    assert.equal(quiet.find((e) => e.phase === 'opened')!.warmUpMs, undefined);
  });
});
