/**
 * A per-subscriber async queue: each subscription owns its buffer (never shared between topics),
 * and ends after the job's terminal event or when the consumer returns.
 */
import type { JobEvent } from './types.js';
import { isTerminal } from './types.js';

export class JobEventStream implements AsyncIterableIterator<JobEvent> {
  private buffer: JobEvent[] = [];
  private waiting: ((r: IteratorResult<JobEvent>) => void) | null = null;
  private ended = false;

  constructor(private readonly onClose: () => void) {}

  /** Progress events are coalesced for slow consumers: only the newest pending one is kept. */
  push(event: JobEvent): void {
    if (this.ended) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: event, done: false });
    } else {
      const last = this.buffer[this.buffer.length - 1];
      if (event.type === 'progress' && last?.type === 'progress' && last.previews.length === 0) this.buffer[this.buffer.length - 1] = event;
      else this.buffer.push(event);
    }
    if (isTerminal(event)) this.finish();
  }

  /** Ends the stream after what is buffered (terminal events included). */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
    if (this.waiting && this.buffer.length === 0) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<JobEvent>> {
    const event = this.buffer.shift();
    if (event) return Promise.resolve({ value: event, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<JobEvent>> {
    this.buffer = [];
    this.finish();
    if (this.waiting) {
      this.waiting({ value: undefined, done: true });
      this.waiting = null;
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<JobEvent> {
    return this;
  }
}
