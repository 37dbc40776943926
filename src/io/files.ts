import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';

/**
 * Writes a file so that readers only ever see the old content or the complete new content: write a temporary file in
 * the same folder, fsync it, then rename it over the target.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const temporary = `${target}.tmp-${process.pid}-${Date.now().toString(36)}`;
  let fd: number;
  try {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fd = fs.openSync(temporary, 'w');
  } catch (error) {
    throw new UserError(`cannot write ${target}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) fs.writeSync(fd, data as never);
    else for (const chunk of data) fs.writeSync(fd, chunk);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, target);
}

export function readJsonFile<T = unknown>(file: string, what = 'JSON file'): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`${what} not found: ${file}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new UserError(`${what} ${file} is not valid JSON: ${(error as Error).message}`);
  }
}
