import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrait } from '../src/experiments/traits.js';
import { isOneLineError, runCli } from './helpers/cli.js';
import { tempDir } from './helpers/models.js';
import { plantedModel, smallCheerfulTrait } from './helpers/planted.js';

let server: http.Server;
let url: string;
let lastAuthorization: string | undefined;

beforeAll(async () => {
  const trait = {
    instruction: Array.from({ length: 5 }, (_, i) => ({ pos: `Be stoic (${i}).`, neg: `Be emotional and reactive (${i}).` })),
    questions: Array.from({ length: 40 }, (_, i) => `Question number ${i + 1} about a setback?`),
    eval_prompt: 'Is the answer stoic?\n[QUESTION START]\n{question}\n[QUESTION END]\n[ANSWER START]\n{answer}\n[ANSWER END]\nReply REFUSAL or a number 0-100.',
  };
  server = http.createServer((request, response) => {
    lastAuthorization = request.headers.authorization;
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: '```json\n' + JSON.stringify(trait) + '\n```' } }] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('persona traits', () => {
  it('new: asks the LLM, validates, writes the extract/eval pair; list and show read it back', async () => {
    const dir = tempDir('traits-cli');
    const result = await runCli(['traits', 'new', 'stoic', '--description', 'calm and unmoved', '--llm', `openai:writer@${url}`, '--traits-dir', dir, '--json'], { env: { OPENAI_API_KEY: 'sk-test-secret' } });
    expect(result.code, result.stderr).toBe(0);
    expect(lastAuthorization).toBe('Bearer sk-test-secret');
    expect(result.stdout + result.stderr).not.toContain('sk-test-secret');
    const trait = loadTrait('stoic', { traitsDir: dir });
    expect(trait.instructions).toHaveLength(5);
    expect(trait.extractQuestions).toHaveLength(20);
    expect(trait.evalQuestions).toHaveLength(20);
    const list = await runCli(['traits', 'list', '--traits-dir', dir, '--json']);
    expect(JSON.parse(list.stdout)).toEqual(['stoic']);
    const again = await runCli(['traits', 'new', 'stoic', '--description', 'x', '--llm', `openai:writer@${url}`, '--traits-dir', dir], { env: { OPENAI_API_KEY: 'k' } });
    expect(isOneLineError(again), again.stderr).toBe(true);
    const shown = await runCli(['traits', 'show', 'cheerful']);
    expect(shown.stdout).toMatch(/cheerful: 5 instruction pairs, 20 extraction and 20 evaluation questions/);
    const badSpec = await runCli(['traits', 'new', 'calm', '--description', 'x', '--llm', 'lexicon:words.json', '--traits-dir', dir]);
    expect(isOneLineError(badSpec)).toBe(true);
    expect(badSpec.stderr).toMatch(/invalid LLM "lexicon:words.json"/);
  });
});

describe('persona extract --select-layer', () => {
  it('steers with the extracted vector at every layer at one coefficient and reports the best layer', async () => {
    const planted = await plantedModel();
    const dir = tempDir('select-layer');
    const result = await runCli([
      'extract', planted.dir, '--trait', smallCheerfulTrait(2).files.extract, '--judge', `lexicon:${planted.lexiconFile}`, '--samples', '1', '--max-tokens', '16',
      '--min-pairs', '3', '--run-dir', path.join(dir, 'run'), '--vectors-dir', path.join(dir, 'vectors'), '--select-layer', '--select-coefficient', '0.25', '--select-questions', '2', '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { selection: { best: { layer: number; coefficient: number }; summary: string } };
    // Block 0 carries no persona; blocks 1-3 all do, and ties go to the earliest layer.
    expect(report.selection.best.layer).toBe(1);
    expect(report.selection.best.coefficient).toBe(0.25);
    const summary = JSON.parse(fs.readFileSync(report.selection.summary, 'utf8')) as { cells: { layer: number; trait: { mean: number } }[] };
    expect(summary.cells.map((c) => c.layer)).toEqual([0, 1, 2, 3]);
    expect(summary.cells[0]!.trait.mean).toBeLessThan(summary.cells[1]!.trait.mean);
  });
});
