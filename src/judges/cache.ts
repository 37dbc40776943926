import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';

/** The cache key of one judgment: the judge that gave it and the exact prompt it saw. */
export function judgmentKey(spec: string, prompt: string): string {
  return createHash('sha256').update(JSON.stringify([spec, prompt])).digest('hex');
}

/**
 * Scores already obtained, kept in a JSONL file of `{key, score}` lines that grows as results arrive. Only successful
 * judgments are stored (a null score from a refusal is a result; a failed request is not), so a rerun retries the
 * failures. A last line cut short by a crash is dropped when the file is opened.
 */
export class JudgmentCache {
  private constructor(
    private readonly file: string,
    private readonly scores: Map<string, number | null>,
  ) {}

  static open(file: string): JudgmentCache {
    const scores = new Map<string, number | null>();
    if (!fs.existsSync(file)) {
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      return new JudgmentCache(file, scores);
    }
    const data = fs.readFileSync(file);
    const completeLength = data.lastIndexOf(0x0a) + 1;
    // Later appends must start on a fresh line, not continue the broken one.
    if (completeLength < data.length) fs.truncateSync(file, completeLength);
    const lines = data.subarray(0, completeLength).toString('utf8').split('\n');
    lines.forEach((line, index) => {
      if (line.trim() === '') return;
      const entry = parseEntry(line);
      if (!entry) throw new UserError(`judge cache ${file} line ${index + 1} is not a {key, score} entry; delete the file to start over`);
      // A line recording a failure is not a result: leave the key to be judged again.
      if (entry.error === undefined) scores.set(entry.key, entry.score);
    });
    return new JudgmentCache(file, scores);
  }

  /** The stored score (null included), or undefined when this key was never judged successfully. */
  get(key: string): number | null | undefined {
    return this.scores.get(key);
  }

  put(key: string, score: number | null): void {
    // One write call per whole line, so a crash can only ever cut the last line.
    fs.appendFileSync(this.file, `${JSON.stringify({ key, score })}\n`);
    this.scores.set(key, score);
  }
}

function parseEntry(line: string): { key: string; score: number | null; error?: unknown } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { key, score, error } = parsed as { key?: unknown; score?: unknown; error?: unknown };
  if (typeof key !== 'string' || !(score === null || typeof score === 'number')) return undefined;
  return { key, score, error };
}
