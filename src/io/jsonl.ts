import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from './files.js';

/**
 * Append-only JSONL files for long jobs. A crash can leave a half-written last line; reading drops it and truncates
 * the file back to the last complete line, so the next append starts clean and no row is duplicated or lost.
 */
export function readJsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  const rows: T[] = [];
  let offset = 0;
  let lineNumber = 0;
  while (offset < text.length) {
    const end = text.indexOf('\n', offset);
    lineNumber++;
    if (end < 0) {
      // A last line without its newline was cut off mid-write: drop it.
      fs.truncateSync(file, Buffer.byteLength(text.slice(0, offset)));
      break;
    }
    const line = text.slice(offset, end);
    offset = end + 1;
    if (line.trim() === '') continue;
    try {
      rows.push(JSON.parse(line) as T);
    } catch (error) {
      throw new UserError(`${file} line ${lineNumber} is not valid JSON (${(error as Error).message}); the file is damaged`);
    }
  }
  return rows;
}

/** Appends rows as whole lines in one write, flushed to disk before returning. */
export function appendJsonl(file: string, rows: readonly unknown[]): void {
  if (rows.length === 0) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces the whole file at once (temporary file and rename), for the rare rewrite of rows already written. */
export function writeJsonlAtomic(file: string, rows: readonly unknown[]): void {
  writeFileAtomic(file, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
}
