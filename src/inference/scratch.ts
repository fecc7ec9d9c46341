/**
 * Scratch memory reused from one pipeline run to the next.
 *
 * Why: a job's big arrays (decoded inputs, the VAE batch, per-step latents, RGB8 output buffers)
 * are fresh memory every time, because V8 frees ArrayBuffers only at GC. Touching fresh memory
 * costs a page fault per 4 KiB: measured here at ~14 µs each, i.e. ~40 ms for one 12 MB batch of
 * four 512² images, which was most of the pipeline's time outside `session.run`. Reused buffers
 * are already mapped.
 *
 * Buffers taken during a run go back to the pool when the run ends. Between runs the pool keeps the
 * most recently used buffers up to a byte cap (jobs of different sizes alternate: a 1-image job
 * must not evict the 4-image job's buffers), so it holds at most `maxBytes` while idle. Anything
 * that outlives the run (results, previews) must not point into scratch memory.
 */

/** Buffers for one run. Contents are stale: every caller overwrites all of what it takes. */
export class Scratch {
  /** Buffers taken and not yet given back, in the order they were taken. */
  private readonly inUse: ArrayBuffer[] = [];
  /** Every buffer this run touched: the pool for the next run. */
  private readonly used = new Set<ArrayBuffer>();

  constructor(private readonly available: Map<number, ArrayBuffer[]>) {}

  floats(length: number): Float32Array {
    return new Float32Array(this.take(length * Float32Array.BYTES_PER_ELEMENT), 0, length);
  }

  bytes(length: number): Buffer {
    return Buffer.from(this.take(length), 0, length);
  }

  /**
   * Runs `body` and then makes what it took available again, so that a run of many micro-batches
   * needs one batch's working set, not one per batch. Nothing else may take buffers meanwhile.
   */
  async scoped<T>(body: () => Promise<T>): Promise<T> {
    const mark = this.inUse.length;
    try {
      return await body();
    } finally {
      for (const buffer of this.inUse.splice(mark)) this.giveBack(buffer);
    }
  }

  /** Ends the run: every buffer it touched, least recently used first. */
  release(): ArrayBuffer[] {
    const used = [...this.used];
    this.inUse.length = 0;
    this.used.clear();
    return used;
  }

  private take(byteLength: number): ArrayBuffer {
    const buffer = this.available.get(byteLength)?.pop() ?? new ArrayBuffer(byteLength);
    this.inUse.push(buffer);
    this.used.add(buffer);
    return buffer;
  }

  private giveBack(buffer: ArrayBuffer): void {
    const list = this.available.get(buffer.byteLength);
    if (list) list.push(buffer);
    else this.available.set(buffer.byteLength, [buffer]);
  }
}

/** Hands each run a `Scratch` backed by the buffers of earlier runs. */
export class ScratchPool {
  /** Idle buffers, least recently used first. */
  private idle: ArrayBuffer[] = [];
  private busy = false;

  constructor(private readonly maxBytes = 256 * 2 ** 20) {}

  /** Bytes held between runs. */
  get idleBytes(): number {
    return this.idle.reduce((sum, b) => sum + b.byteLength, 0);
  }

  async run<T>(body: (scratch: Scratch) => Promise<T>): Promise<T> {
    // Runs on one model are serialised by the host; a concurrent caller just gets fresh memory.
    if (this.busy) return body(new Scratch(new Map()));
    this.busy = true;
    const available = new Map<number, ArrayBuffer[]>();
    for (const buffer of this.idle) {
      const list = available.get(buffer.byteLength);
      // Most recently used at the end, so `pop` reuses those first.
      if (list) list.push(buffer);
      else available.set(buffer.byteLength, [buffer]);
    }
    const scratch = new Scratch(available);
    try {
      return await body(scratch);
    } finally {
      const used = scratch.release();
      const usedSet = new Set(used);
      const kept = [...this.idle.filter((b) => !usedSet.has(b)), ...used];
      let bytes = kept.reduce((sum, b) => sum + b.byteLength, 0);
      let drop = 0;
      while (bytes > this.maxBytes && drop < kept.length) bytes -= kept[drop++]!.byteLength;
      this.idle = kept.slice(drop);
      this.busy = false;
    }
  }
}
