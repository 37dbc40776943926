export interface PullProgress {
  /** Path of the current file inside the repository. */
  file: string;
  fileBytesDone: number;
  fileBytesTotal: number;
  /** Over all selected files; files already on disk count as done. */
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Average over the bytes transferred by this pull. */
  bytesPerSecond: number;
  /** null until something has been transferred. */
  etaSeconds: number | null;
}

export const PROGRESS_INTERVAL_MS = 200;

/** Keeps the running totals of a pull and reports them at most every PROGRESS_INTERVAL_MS, plus at every file end. */
export class ProgressTracker {
  private file = '';
  private fileBytesTotal = 0;
  private fileBytesDone = 0;
  private fileOpen = false;
  private completedBytes = 0;
  private filesDone = 0;
  private transferred = 0;
  private readonly startedAt = performance.now();
  private lastReportAt = -Infinity;

  constructor(
    private readonly filesTotal: number,
    private readonly bytesTotal: number,
    private readonly onProgress: ((progress: PullProgress) => void) | undefined,
  ) {}

  /** Bytes received over the network by this pull. */
  get bytesTransferred(): number {
    return this.transferred;
  }

  startFile(file: string, size: number): void {
    this.file = file;
    this.fileBytesTotal = size;
    this.fileBytesDone = 0;
    this.fileOpen = true;
  }

  /** Sets how much of the current file is on disk (a resumed `.part`, or 0 when the server restarts it). */
  setFileBytes(bytes: number): void {
    this.fileBytesDone = bytes;
  }

  addTransferred(bytes: number): void {
    this.fileBytesDone += bytes;
    this.transferred += bytes;
    if (performance.now() - this.lastReportAt >= PROGRESS_INTERVAL_MS) this.report();
  }

  finishFile(): void {
    this.completedBytes += this.fileBytesTotal;
    this.fileBytesDone = this.fileBytesTotal;
    this.fileOpen = false;
    this.filesDone++;
    this.report();
  }

  private report(): void {
    if (!this.onProgress) return;
    this.lastReportAt = performance.now();
    const seconds = (this.lastReportAt - this.startedAt) / 1000;
    const bytesPerSecond = seconds > 0 ? this.transferred / seconds : 0;
    const bytesDone = this.completedBytes + (this.fileOpen ? this.fileBytesDone : 0);
    const remaining = this.bytesTotal - bytesDone;
    this.onProgress({
      file: this.file,
      fileBytesDone: this.fileBytesDone,
      fileBytesTotal: this.fileBytesTotal,
      bytesDone,
      bytesTotal: this.bytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      bytesPerSecond,
      etaSeconds: remaining === 0 ? 0 : bytesPerSecond > 0 ? remaining / bytesPerSecond : null,
    });
  }
}

/** One line for a terminal, e.g. `onnx/model.onnx 12.3/45.6 MB · 3/7 files · 8.1 MB/s · ETA 4s`. */
export function formatProgress(progress: PullProgress): string {
  const unit = byteUnit(progress.fileBytesTotal);
  const fileBytes = `${scaled(progress.fileBytesDone, unit)}/${scaled(progress.fileBytesTotal, unit)} ${unit.name}`;
  const eta = progress.etaSeconds === null ? '?' : formatDuration(progress.etaSeconds);
  return `${progress.file} ${fileBytes} · ${progress.filesDone}/${progress.filesTotal} files · ${formatBytes(progress.bytesPerSecond)}/s · ETA ${eta}`;
}

interface ByteUnit {
  name: string;
  size: number;
}

const BYTE_UNITS: readonly ByteUnit[] = [
  { name: 'GB', size: 1e9 },
  { name: 'MB', size: 1e6 },
  { name: 'kB', size: 1e3 },
];

function byteUnit(bytes: number): ByteUnit {
  return BYTE_UNITS.find((unit) => bytes >= unit.size) ?? { name: 'B', size: 1 };
}

function scaled(bytes: number, unit: ByteUnit): string {
  return unit.size === 1 ? String(Math.round(bytes)) : (bytes / unit.size).toFixed(1);
}

export function formatBytes(bytes: number): string {
  const unit = byteUnit(bytes);
  return `${scaled(bytes, unit)} ${unit.name}`;
}

export function formatDuration(seconds: number): string {
  const total = Math.ceil(seconds);
  if (total < 60) return `${total}s`;
  if (total < 3600) return `${Math.floor(total / 60)}m${String(total % 60).padStart(2, '0')}s`;
  return `${Math.floor(total / 3600)}h${String(Math.floor((total % 3600) / 60)).padStart(2, '0')}m`;
}
