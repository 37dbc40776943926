import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkRenderedReport } from '../src/plots/index.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/models.js';

const chromium = process.env.PERSONA_CHROMIUM ?? '/usr/bin/chromium';

describe('persona demo', () => {
  it('runs offline end to end and writes its report', async () => {
    const dir = tempDir('demo-cli');
    const started = Date.now();
    const result = await runCli(['demo', '--models-dir', path.join(dir, 'models'), '--experiments-dir', path.join(dir, 'experiments'), '--vectors-dir', path.join(dir, 'vectors'), '--questions', '3', '--max-tokens', '20', '--json'], {
      env: { HF_HUB_OFFLINE: '1' },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(180_000);
    const report = JSON.parse(result.stdout) as { conditions: { name: string; traitRate: number }[]; files: { html: string; markdown: string; json: string } };
    const rate = (name: string) => report.conditions.find((c) => c.name === name)!.traitRate;
    expect(rate('cheerful prompt')).toBeGreaterThan(rate('neutral prompt'));
    for (const file of Object.values(report.files)) expect(fs.existsSync(file)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'models', 'demo', 'planted-cheerful', 'planted.safetensors'))).toBe(true);
    // Vectors are filed under the model's id relative to the models folder.
    expect(fs.existsSync(path.join(dir, 'vectors', 'demo', 'planted-cheerful', 'cheerful.response_avg.safetensors'))).toBe(true);
    if (fs.existsSync(chromium)) {
      const check = await checkRenderedReport(report.files.html);
      expect(check.errors).toEqual([]);
      for (const figure of check.figures) expect(figure.paths + figure.images).toBeGreaterThan(0);
    }
  });
});
