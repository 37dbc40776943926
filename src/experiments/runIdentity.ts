import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import type { ModelFolder } from '../runtime/index.js';

/** The graph's bytes and its weight files' sizes: a rebuilt model must not reuse another model's results. */
export function modelFingerprint(folder: ModelFolder): string {
  const graphFile = folder.onnxFile;
  const weightFiles = fs.readdirSync(path.dirname(graphFile)).filter((f) => f.startsWith(path.basename(graphFile)) && f !== path.basename(graphFile));
  return createHash('sha256')
    .update(fs.readFileSync(graphFile))
    .update(JSON.stringify(weightFiles.map((f) => [f, fs.statSync(path.join(path.dirname(graphFile), f)).size])))
    .digest('hex')
    .slice(0, 16);
}

export function contentHash(value: unknown): string {
  return createHash('sha256').update(typeof value === 'string' || value instanceof Uint8Array ? value : JSON.stringify(value)).digest('hex').slice(0, 16);
}

/**
 * Resumable jobs key their rows by position in a plan, so rows written under other settings would silently mix with
 * new ones. `run.json` records what the rows depend on; a folder holding a run with other settings is refused, or
 * (for folders the toolkit owns) cleared of `resetFiles` and started over.
 */
export function checkRunIdentity(dir: string, identity: Record<string, unknown>, onChange: 'error' | 'restart', resetFiles: readonly string[], hint: string): void {
  const file = path.join(dir, 'run.json');
  if (fs.existsSync(file)) {
    let previous: Record<string, unknown>;
    try {
      previous = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new UserError(`${file} is not valid JSON (${(error as Error).message}); delete ${dir} to start over`);
    }
    const changed = Object.keys(identity).filter((key) => JSON.stringify(previous[key]) !== JSON.stringify(identity[key]));
    if (changed.length === 0) return;
    if (onChange === 'error') {
      throw new UserError(`${dir} holds a run with other settings (${changed.map((k) => `${k}: ${JSON.stringify(previous[k])} → ${JSON.stringify(identity[k])}`).join(', ')}); ${hint}`);
    }
    for (const name of resetFiles) fs.rmSync(path.join(dir, name), { force: true });
  }
  writeFileAtomic(file, `${JSON.stringify(identity, null, 2)}\n`);
}
