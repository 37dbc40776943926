import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`npm test` builds first) the way a user would. */
export function runCli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/persona.js'), ...args], {
      cwd: options.cwd ?? root,
      env: { ...process.env, ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A failed run that reported its error in one clear last line (after any progress lines) and no stack trace. */
export function isOneLineError(result: CliResult): boolean {
  const lines = result.stderr.trim().split('\n');
  const errors = lines.filter((line) => line.includes('error'));
  return (
    result.code !== 0 &&
    errors.length === 1 &&
    lines.at(-1)!.startsWith('persona: error: ') &&
    !/\n\s+at /.test(result.stderr)
  );
}
