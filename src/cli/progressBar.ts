/** A one-line terminal progress bar with step count and ETA (redrawn in place on a TTY). */
export class ProgressBar {
  private started = performance.now();
  private lastLine = '';

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly width = 30,
  ) {}

  update(step: number, total: number, label = 'denoising'): void {
    const fraction = total > 0 ? Math.min(1, step / total) : 0;
    const filled = Math.round(fraction * this.width);
    const elapsed = (performance.now() - this.started) / 1000;
    const eta = step > 0 ? (elapsed / step) * (total - step) : NaN;
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(this.width - filled)}] ${step}/${total} ${Math.round(fraction * 100)}% ETA ${Number.isFinite(eta) ? `${eta.toFixed(1)}s` : '?'}`;
    if (this.stream.isTTY) this.stream.write(`\r${line}\x1b[K`);
    else if (line !== this.lastLine) this.stream.write(`${line}\n`);
    this.lastLine = line;
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}
