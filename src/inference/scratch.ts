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

  constructor(private readonly pool: ScratchPool) {}

  floats(length: number): Float32Array {
    return new Float32Array(this.take(length * Float32Array.BYTES_PER_ELEMENT), 0, length);
  }

  bytes(length: number): Buffer {
    return Buffer.from(this.take(length), 0, length);
  }

  /**
   * Runs `body` and then makes what it took available again, so that a run of many micro-batches
   * needs one batch's working set, not one per batch. Nothing else may take buffers from this
   * run meanwhile (other runs may).
   */
  async scoped<T>(body: () => Promise<T>): Promise<T> {
    const mark = this.inUse.length;
    try {
      return await body();
    } finally {
      this.pool.giveBack(this.inUse.splice(mark));
    }
  }

  /** Ends the run: what it still holds goes back to the pool. */
  close(): void {
    this.pool.giveBack(this.inUse.splice(0));
  }

  private take(byteLength: number): ArrayBuffer {
    const buffer = this.pool.take(byteLength) ?? new ArrayBuffer(byteLength);
    this.inUse.push(buffer);
    return buffer;
  }
}

/**
 * Hands runs `Scratch` backed by the buffers earlier runs gave back. Runs may overlap (a call's
 * decoding beside the previous call's denoising, a job's encoding beside the next call): a buffer
 * belongs to one run from `take` until it is given back.
 */
export class ScratchPool {
  /** Idle buffers, least recently given back first. */
  private idle: ArrayBuffer[] = [];

  constructor(private readonly maxBytes = 256 * 2 ** 20) {}

  /** Bytes held idle. */
  get idleBytes(): number {
    return this.idle.reduce((sum, b) => sum + b.byteLength, 0);
  }

  /** A run that lasts until its `close()`. */
  open(): Scratch {
    return new Scratch(this);
  }

  async run<T>(body: (scratch: Scratch) => Promise<T>): Promise<T> {
    const scratch = this.open();
    try {
      return await body(scratch);
    } finally {
      scratch.close();
    }
  }

  /** The most recently given back idle buffer of this size, if any. */
  take(byteLength: number): ArrayBuffer | undefined {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      if (this.idle[i]!.byteLength === byteLength) return this.idle.splice(i, 1)[0];
    }
    return undefined;
  }

  /** Buffers a run is done with; the least recently used go when idle memory passes the cap. */
  giveBack(buffers: readonly ArrayBuffer[]): void {
    this.idle.push(...buffers);
    let bytes = this.idleBytes;
    let drop = 0;
    while (bytes > this.maxBytes && drop < this.idle.length) bytes -= this.idle[drop++]!.byteLength;
    if (drop > 0) this.idle = this.idle.slice(drop);
  }
}
