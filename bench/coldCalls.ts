/**
 * Cold first calls of a real-size UNet, in a fresh process (issue 29): opens `unet/model.onnx` of
 * an SD 1.5-layout folder (scripts/export/sd15_real_size.py) with the server's session options and
 * times 4 calls at 512², batch 2 (one guided image), printing RSS after each:
 *   npx tsx bench/coldCalls.ts <variant> <model folder> [cache dir]
 * variant: plain (no cache) | cached (through the optimized-model cache in [cache dir]), with
 * `-warm` for one batch-1 call at 64² first (what ORT_WARM_UP does at load), and/or `-nopattern`
 * for ONNX Runtime's memory pattern off (ORT_MEM_PATTERN=0; on otherwise, the server's default).
 * CALLS=n: calls after the open (default 4). Run each variant in its own process.
 */
import ort from 'onnxruntime-node';
import { sessionOptions } from '../src/inference/sessions.js';
import { createCachedSession } from '../src/inference/optimizedCache.js';
const variant = process.argv[2]!;
const path = `${process.argv[3]}/unet/model.onnx`;
const cacheDir = process.argv[4] ?? '.cache/ort-optimized';
// ONNX Runtime's memory pattern: on (the server's default, ORT_MEM_PATTERN) unless the variant says `-nopattern`.
const opts = sessionOptions({ provider: 'cpu', intraOpThreads: 2, memPattern: !variant.includes('nopattern') }, 'cpu');
const t0 = performance.now();
const { session, cache } = await createCachedSession(path, opts, variant.startsWith('cached') ? cacheDir : null);
const rss = () => `${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`;
console.log(`${variant}: open ${((performance.now() - t0) / 1000).toFixed(1)} s (${cache}), rss ${rss()}`);
const meta = (name: string) => session.inputMetadata.find((m) => m.name === name) as { type?: string; shape?: unknown[] };
const tsType = meta('timestep');
// Channels and text width as the graph declares them (SD 1.5: 4 and 768; the bench model: 8 and its own).
const channels = Number(meta('sample').shape?.[1]) || 4;
const width = Number(meta('encoder_hidden_states').shape?.[2]) || 768;
const feeds = (batch: number, side: number, tokens = 77) => {
  const n = batch * channels * side * side;
  const sample = new ort.Tensor(
    'float32',
    Float32Array.from({ length: n }, (_, i) => Math.sin(i)),
    [batch, channels, side, side],
  );
  const ts =
    tsType.shape && tsType.shape.length === 0
      ? new ort.Tensor('float32', new Float32Array([500]), [])
      : tsType.type === 'int64'
        ? new ort.Tensor('int64', new BigInt64Array(batch).fill(500n), [batch])
        : new ort.Tensor('float32', new Float32Array(batch).fill(500), [batch]);
  const ehs = new ort.Tensor(
    'float32',
    Float32Array.from({ length: batch * tokens * width }, (_, i) => Math.cos(i) * 0.1),
    [batch, tokens, width],
  );
  return { sample, timestep: ts, encoder_hidden_states: ehs };
};
if (variant.includes('-warm')) {
  const w0 = performance.now();
  // `-warm8`: 8 text tokens, as ORT_WARM_UP's generic feeds give; `-warm`: 77.
  await session.run(feeds(1, 8, variant.includes('-warm8') ? 8 : 77));
  console.log(`  warm-up 64² batch 1: ${((performance.now() - w0) / 1000).toFixed(2)} s, rss ${rss()}`);
}
const f = feeds(2, 64);
const calls = Number(process.env.CALLS ?? 4);
for (let i = 1; i <= calls; i++) {
  const s0 = performance.now();
  await session.run(f);
  console.log(`  call ${i} 512² batch 2: ${((performance.now() - s0) / 1000).toFixed(2)} s, rss ${rss()}`);
}
