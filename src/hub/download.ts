import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { ProgressTracker } from './progress.js';
import type { RepoFile } from './selection.js';
import { checkStatus, describeNetworkError, describeRepo, discardBody, hubGet, resolveUrl, TransientError, withRetries, type HubSession } from './session.js';

/** The server has (or sent) a different number of bytes than the listing promises: retrying cannot help. */
class SizeMismatchError extends UserError {
  constructor(file: RepoFile, actual: string) {
    super(`${file.path}: size mismatch, the listing says ${file.size} bytes but ${actual}`);
  }
}

export type DownloadOutcome = 'downloaded' | 'skipped';

/**
 * Brings `file` to `<destDir>/<path>`: skips it when it is already there with the listed size, otherwise streams it into
 * `<path>.part` (resuming what an earlier attempt or run left there), checks the size, fsyncs and renames it into place,
 * so the final name only ever holds a complete file.
 */
export async function downloadFile(session: HubSession, file: RepoFile, destDir: string, tracker: ProgressTracker): Promise<DownloadOutcome> {
  // The path comes from the listing, but selection only ever yields fixed names, so it cannot leave destDir.
  const finalPath = path.join(destDir, ...file.path.split('/'));
  const partPath = `${finalPath}.part`;
  tracker.startFile(file.path, file.size);
  try {
    if (sizeOnDisk(finalPath) === file.size) {
      tracker.finishFile();
      return 'skipped';
    }
    fs.rmSync(finalPath, { force: true });
    fs.mkdirSync(path.dirname(finalPath), { recursive: true });
    await withRetries(session, () => fetchIntoPart(session, file, partPath, tracker));
    await commitPart(file, partPath, finalPath);
  } catch (error) {
    if (error instanceof SizeMismatchError) fs.rmSync(partPath, { force: true });
    if (isFileSystemError(error)) throw new UserError(`cannot write ${file.path} under ${destDir}: ${error.message}`);
    throw error;
  }
  tracker.finishFile();
  return 'downloaded';
}

/** One attempt: asks for the bytes after what `.part` holds and appends them (or starts over when the server sends it all). */
async function fetchIntoPart(session: HubSession, file: RepoFile, partPath: string, tracker: ProgressTracker): Promise<void> {
  let offset = sizeOnDisk(partPath) ?? 0;
  if (offset > file.size) {
    fs.rmSync(partPath);
    offset = 0;
  }
  tracker.setFileBytes(offset);
  if (offset === file.size) return;

  const what = `downloading ${file.path}`;
  const response = await hubGet(session, resolveUrl(session, file.path), what, offset > 0 ? { range: `bytes=${offset}-` } : {});
  if (response.status === 416) {
    await discardBody(response);
    const serverSize = parseContentRange(response.headers.get('content-range'))?.total;
    if (serverSize !== undefined && serverSize !== file.size) throw new SizeMismatchError(file, `the server has ${serverSize}`);
    fs.rmSync(partPath, { force: true });
    throw new TransientError(`${what}: the server cannot resume at byte ${offset}`);
  }
  await checkStatus(session, response, what, `${file.path} not found in ${describeRepo(session)} on ${session.endpoint}`);

  if (response.status === 206) {
    const range = parseContentRange(response.headers.get('content-range'));
    if (range?.total !== undefined && range.total !== file.size) {
      await discardBody(response);
      throw new SizeMismatchError(file, `the server has ${range.total}`);
    }
    if (range?.start !== offset) {
      await discardBody(response);
      fs.rmSync(partPath, { force: true });
      throw new TransientError(`${what}: the server answered byte ${offset} with a different range`);
    }
  } else {
    offset = 0;
    const declared = declaredLength(response);
    if (declared !== undefined && declared !== file.size) {
      await discardBody(response);
      throw new SizeMismatchError(file, `the server sends ${declared}`);
    }
  }
  tracker.setFileBytes(offset);

  const size = await appendBody(response, file, partPath, offset, tracker);
  if (size < file.size) throw new TransientError(`${what}: the transfer ended at byte ${size} of ${file.size}`);
}

/** Writes the body after the first `offset` bytes of `.part` (truncating it when offset is 0); returns the new size. */
async function appendBody(response: Response, file: RepoFile, partPath: string, offset: number, tracker: ProgressTracker): Promise<number> {
  const handle = await fs.promises.open(partPath, offset === 0 ? 'w' : 'a');
  const reader = response.body?.getReader();
  let size = offset;
  try {
    while (reader) {
      const received = size;
      const chunk = await reader.read().catch((error: unknown) => {
        throw new TransientError(`downloading ${file.path}: connection lost at byte ${received} of ${file.size}: ${describeNetworkError(error)}`);
      });
      if (chunk.done) break;
      if (size + chunk.value.byteLength > file.size) throw new SizeMismatchError(file, `the server sent at least ${size + chunk.value.byteLength}`);
      await writeAll(handle, chunk.value);
      size += chunk.value.byteLength;
      tracker.addTransferred(chunk.value.byteLength);
    }
  } finally {
    await reader?.cancel().catch(() => undefined);
    await handle.close();
  }
  return size;
}

async function writeAll(handle: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.byteLength; ) {
    written += (await handle.write(bytes, written)).bytesWritten;
  }
}

async function commitPart(file: RepoFile, partPath: string, finalPath: string): Promise<void> {
  const size = sizeOnDisk(partPath) ?? 0;
  if (size !== file.size) throw new SizeMismatchError(file, `${path.basename(partPath)} holds ${size}`);
  const handle = await fs.promises.open(partPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(partPath, finalPath);
}

function sizeOnDisk(file: string): number | undefined {
  const stats = fs.statSync(file, { throwIfNoEntry: false });
  return stats?.isFile() ? stats.size : undefined;
}

/** Content-Length, when it counts the bytes we will read (no content coding in between). */
function declaredLength(response: Response): number | undefined {
  const encoding = response.headers.get('content-encoding');
  const length = response.headers.get('content-length');
  if ((encoding !== null && encoding !== 'identity') || length === null || !/^\d+$/.test(length)) return undefined;
  return Number(length);
}

// `bytes 10-99/100` gives {start: 10, total: 100}; the unsatisfied-range form `bytes */100` gives {total: 100}; a total of `*` is left out.
export function parseContentRange(header: string | null): { start?: number; total?: number } | undefined {
  const match = header?.match(/^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/);
  if (!match) return undefined;
  return {
    ...(match[1] !== undefined ? { start: Number(match[1]) } : {}),
    ...(match[2] !== undefined && match[2] !== '*' ? { total: Number(match[2]) } : {}),
  };
}

function isFileSystemError(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string';
}
