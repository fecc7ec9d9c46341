import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ScratchPool } from '../src/inference/scratch.js';

describe('scratch memory', () => {
  it('hands the next run the buffers of the previous one', async () => {
    const pool = new ScratchPool();
    const first = await pool.run(async (s) => s.floats(1024).buffer);
    const second = await pool.run(async (s) => s.floats(1024).buffer);
    assert.equal(second, first);
  });

  it('never hands out one buffer twice within a run', async () => {
    const pool = new ScratchPool();
    await pool.run(async (s) => [s.floats(256), s.floats(256)]);
    await pool.run(async (s) => {
      const a = s.floats(256);
      const b = s.floats(256);
      const c = s.floats(256);
      assert.equal(new Set([a.buffer, b.buffer, c.buffer]).size, 3);
    });
  });

  it('gives a scope its buffers back when the scope ends, so micro-batches share one working set', async () => {
    const pool = new ScratchPool();
    await pool.run(async (s) => {
      const kept = s.floats(64);
      const inFirst = await s.scoped(async () => s.floats(128).buffer);
      const inSecond = await s.scoped(async () => s.floats(128).buffer);
      assert.equal(inSecond, inFirst);
      assert.notEqual(kept.buffer, inFirst);
    });
    assert.equal(pool.idleBytes, 64 * 4 + 128 * 4);
  });

  it('keeps recently used buffers of other sizes, up to its cap', async () => {
    const pool = new ScratchPool(3 * 4096);
    const big = await pool.run(async (s) => s.bytes(4096).buffer);
    await pool.run(async (s) => s.bytes(1024)); // a smaller job in between
    assert.equal(await pool.run(async (s) => s.bytes(4096).buffer), big);
    await pool.run(async (s) => [s.bytes(4096), s.bytes(4096), s.bytes(4096)]);
    assert.ok(pool.idleBytes <= 3 * 4096, `${pool.idleBytes} bytes kept`);
  });

  it('gives a concurrent run fresh memory instead of sharing', async () => {
    const pool = new ScratchPool();
    await pool.run(async (s) => s.floats(32));
    let inner: ArrayBufferLike | undefined;
    const outer = await pool.run(async (s) => {
      const mine = s.floats(32).buffer;
      inner = await pool.run(async (t) => t.floats(32).buffer);
      return mine;
    });
    assert.notEqual(inner, outer);
  });

  it('returns buffers even when the run throws', async () => {
    const pool = new ScratchPool();
    await assert.rejects(
      pool.run(async (s) => {
        s.floats(16);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(pool.idleBytes, 64);
    await pool.run(async (s) => assert.equal(s.floats(16).length, 16));
  });
});
