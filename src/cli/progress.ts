/** Items done, rate and ETA on stderr for long CLI work; one line, redrawn on a TTY, every few seconds otherwise. */
export class ProgressReporter {
  private doneCount = 0;
  private skipped = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private detail = '';

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled = true,
    private readonly unit = 'items',
  ) {}

  get done(): number {
    return this.doneCount;
  }

  /** `detail` (e.g. finished cells of a sweep) is shown beside the count until replaced. */
  advance(count = 1, detail?: string): void {
    this.doneCount += count;
    if (detail !== undefined) this.detail = detail;
    this.draw(this.doneCount >= this.total);
  }

  /** Work already done before this run (a resumed job) counts towards the total but not the rate. */
  skip(count: number, detail?: string): void {
    if (detail !== undefined) this.detail = detail;
    this.doneCount += count;
    this.skipped += count;
  }

  private draw(final: boolean): void {
    if (!this.enabled) return;
    const now = Date.now();
    const tty = process.stderr.isTTY;
    if (!final && now - this.lastDraw < (tty ? 200 : 5000)) return;
    this.lastDraw = now;
    const seconds = (now - this.started) / 1000;
    const fresh = this.doneCount - this.skipped;
    const rate = seconds > 0 ? fresh / seconds : 0;
    const remaining = rate > 0 ? (this.total - this.doneCount) / rate : NaN;
    const eta = Number.isFinite(remaining) ? `ETA ${formatSeconds(remaining)}` : 'ETA –';
    const line = `${this.label}: ${this.doneCount}/${this.total} ${this.unit}${this.detail ? ` (${this.detail})` : ''} · ${rate.toFixed(rate < 10 ? 2 : 0)}/s · ${final ? `done in ${formatSeconds(seconds)}` : eta}`;
    process.stderr.write(tty ? `\r${line}${final ? '\n' : ''}` : `${line}\n`);
  }
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${Math.round(seconds % 60)}s`;
  return `${Math.floor(minutes / 60)}h${minutes % 60}m`;
}
