import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlantedModel } from '../src/demo/index.js';
import { expandCells, runSweep, summarizeSweep, type SweepResultRow, type SweepSummary } from '../src/experiments/sweep.js';
import { readSweepSpec } from '../src/experiments/sweepSpec.js';
import { meanInterval } from '../src/experiments/stats.js';
import { readJsonl } from '../src/io/jsonl.js';
import { checkRenderedReport } from '../src/plots/index.js';
import { parseJudgeSpec } from '../src/judges/index.js';
import { SteerableModel } from '../src/runtime/index.js';
import { writeVectorFile } from '../src/vectors/vectorFile.js';
import { isOneLineError, runCli } from './helpers/cli.js';
import { tempDir } from './helpers/models.js';
import { plantedModel } from './helpers/planted.js';
import { hasChromium } from './helpers/tools.js';
import { cheerfulJudge, startJudgeServer } from './helpers/judgeServer.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let planted: PlantedModel;
let model: SteerableModel;

beforeAll(async () => {
  planted = await plantedModel();
  model = await SteerableModel.load(planted.dir);
});
afterAll(async () => model?.dispose());

function writeSpec(dir: string, overrides: Record<string, unknown> = {}, grid: Record<string, unknown> = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  const spec = {
    model: planted.dir,
    questions: { trait: 'cheerful', count: 3 },
    system: 'You are a helpful assistant.',
    samples: 1,
    generation: { max_tokens: 24, temperature: 1 },
    seed: 0,
    judge: `lexicon:${planted.lexiconFile}`,
    batch_size: 48,
    grid: { vectors: { u: { file: planted.vectorFile, units: 'unit' } }, layers: [1, 2], coefficients: [0, 1, 2, 4], positions: ['all', 'response'], ...grid },
    select: { coefficient: 2 },
    ...overrides,
  };
  const file = path.join(dir, 'spec.yaml');
  fs.writeFileSync(file, YAML.stringify(spec));
  return file;
}

describe('persona sweep', () => {
  it('2 layers × 4 coefficients × 2 positions: every row, the trait score rising with the coefficient, summary and plots', async () => {
    const dir = tempDir('sweep');
    const result = await runCli(['sweep', writeSpec(dir), '--json'], { cwd: root });
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as SweepSummary;
    const rows = readJsonl<SweepResultRow>(path.join(dir, 'spec', 'results.jsonl'));
    expect(summary.cells).toHaveLength(16);
    expect(rows).toHaveLength(16 * 3);
    expect(new Set(rows.map((r) => r.id)).size).toBe(48);
    for (const layer of [1, 2]) {
      for (const positions of ['all', 'response']) {
        const means = [0, 1, 2, 4].map((c) => summary.cells.find((cell) => cell.layer === layer && cell.positions === positions && cell.coefficient === c)!.trait!.mean);
        for (let i = 1; i < means.length; i++) expect(means[i]!, `layer ${layer} ${positions}`).toBeGreaterThan(means[i - 1]!);
        const cell = summary.cells.find((c) => c.layer === layer && c.positions === positions && c.coefficient === 4)!;
        expect(cell.n).toBe(3);
        expect(cell.projection).toBeCloseTo(4, 1);
      }
    }
    expect(summary.best.find((b) => b.positions === 'all')!.layer).toBe(1);
    // Every cell's summary is the mean and 95% interval of its rows' scores, and both summary files say so.
    for (const cell of summary.cells) {
      const scores = rows.filter((r) => r.cell === cell.id).map((r) => r.trait!);
      const expected = meanInterval(scores)!;
      expect(cell.trait).toEqual({ mean: expected.mean, low: expected.low, high: expected.high });
    }
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'spec', 'summary.json'), 'utf8'))).toEqual(summary);
    const markdown = fs.readFileSync(path.join(dir, 'spec', 'summary.md'), 'utf8');
    const c4 = summary.cells.find((c) => c.layer === 1 && c.positions === 'all' && c.coefficient === 4)!;
    expect(markdown).toContain(`| u | 1 | 4 | all | none | 3 | ${c4.trait!.mean.toFixed(1)} [${c4.trait!.low.toFixed(1)}, ${c4.trait!.high.toFixed(1)}] |`);
    expect(markdown).toMatch(/## Best layer\n\n- u, positions all, clamp none: layer 1 \(trait/);

    const plot = await runCli(['plot', path.join(dir, 'spec'), '--json', ...(hasChromium ? [] : ['--no-png'])]);
    expect(plot.code, plot.stderr).toBe(0);
    const files = JSON.parse(plot.stdout) as { html: string; pngs: string[] };
    expect(fs.readFileSync(files.html, 'utf8')).not.toMatch(/<script src="http/);
    if (hasChromium) {
      expect(files.pngs.length).toBeGreaterThanOrEqual(4);
      for (const png of files.pngs) expect(fs.readFileSync(png).subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))).toBe(true);
      const check = await checkRenderedReport(files.html);
      expect(check.errors).toEqual([]);
      expect(check.figures.length).toBe(files.pngs.length);
      for (const figure of check.figures) expect(figure.paths + figure.images, figure.title).toBeGreaterThan(0);
    }
  });

  it('cells sharing batches generate exactly what each cell generates alone (greedy)', async () => {
    const dir = tempDir('sweep-batched');
    const grid = { layers: [2], coefficients: [0, 1, 4], positions: ['all', 'response'] };
    const batched = readSweepSpec(writeSpec(dir, { generation: { max_tokens: 20, temperature: 0 }, select: { coefficient: 1 } }, grid), { experimentsDir: path.join(dir, 'batched') });
    const alone = { ...batched, outDir: path.join(dir, 'alone'), batchSize: batched.questions.length * batched.samples };
    const a = await runSweep(batched, { model });
    const b = await runSweep(alone, { model });
    const rowsOf = (summary: SweepSummary) => new Map(readJsonl<SweepResultRow>(summary.files.results).map((r) => [r.id, r.response]));
    const shared = rowsOf(a);
    const separate = rowsOf(b);
    expect(shared.size).toBe(18);
    for (const [id, response] of shared) expect(response, id).toBe(separate.get(id));
    expect(new Set(shared.values()).size).toBeGreaterThan(1);
  });

  it('picks the best layer as the paper does: highest trait score at the fixed coefficient, among coherent cells', () => {
    const dir = tempDir('sweep-best');
    // At coefficient 2: layer 2 has the highest trait score but is incoherent; layer 1 is next.
    const scoresAtTwo: Record<number, [number, number]> = { 1: [70, 80], 2: [90, 40], 3: [60, 90] };
    const pick = (coherenceFloor: number) => {
      const spec = readSweepSpec(writeSpec(dir, { select: { coefficient: 2, coherence_floor: coherenceFloor } }, { layers: [1, 2, 3], coefficients: [0, 2], positions: ['all'] }));
      const cells = expandCells(spec);
      const rows = cells.map((cell): SweepResultRow => {
        const [trait, coherence] = cell.coefficient === 2 ? scoresAtTwo[cell.layer]! : [99, 99];
        return { id: `${cell.id}|q0|s0`, cell: cell.id, vector: cell.vector, layer: cell.layer, coefficient: cell.coefficient, positions: cell.positions, clamp: cell.clamp, question_index: 0, sample: 0, question: 'q', response: 'r', trait, coherence, projection: 0, projections: [] };
      });
      const files = { results: '', summary: '', markdown: '' };
      return summarizeSweep(spec, cells, rows, {}, files, 'test').best[0]!;
    };
    expect(pick(60)).toMatchObject({ layer: 1, traitScore: 70, coherence: 80, coefficient: 2 });
    expect(pick(30)).toMatchObject({ layer: 2, traitScore: 90, coherence: 40 });
    expect(pick(95)).toMatchObject({ layer: null, traitScore: null, reason: 'no layer keeps coherence ≥ 95 at coefficient 2' });
  });

  it('clamp bounds as percentiles of a calibration set', async () => {
    const dir = tempDir('sweep-calibrated');
    const file = writeSpec(dir, { system: 'You are a cheerful assistant.', questions: { trait: 'cheerful', count: 2 }, select: { coefficient: 0 } }, {
      layers: [2], coefficients: [0], positions: ['all'],
      clamps: ['none', { name: 'cap', vector: 'u', layers: '1-3', mode: 'ceiling', bound: 'p50' }, { name: 'floor', vector: 'u', layers: [2], mode: 'floor', bound: 5 }],
    });
    const summary = await runSweep(readSweepSpec(file), { model });
    // The cheerful prompt puts every token's projection at 3: the median is 3, so that ceiling changes nothing,
    // while a fixed floor of 5 holds the projection at 5.
    expect(summary.calibration.cap!['2']!).toBeCloseTo(3, 1);
    const projection = (clamp: string | undefined) => summary.cells.find((c) => c.clamp === clamp)!.projection;
    expect(projection(undefined)).toBeCloseTo(3, 1);
    expect(projection('cap')).toBeCloseTo(3, 1);
    expect(projection('floor')).toBeCloseTo(5, 3);
    expect(fs.existsSync(path.join(dir, 'spec', 'calibration.json'))).toBe(true);
  });

  it('a rerun reuses finished rows when the grid grows, refuses other settings, and asks the judge again where it failed', async () => {
    const dir = tempDir('sweep-rerun');
    let judgeDown = true;
    const server = await startJudgeServer({ score: (prompt) => (judgeDown && !/coheren/i.test(prompt) ? 'fail' : cheerfulJudge(prompt)) });
    try {
      // As `persona sweep` makes it: the judge cache lives beside the results.
      const judge = () => parseJudgeSpec(`openai:judge@${server.url}`, { cacheFile: path.join(dir, 'spec', 'judge-cache.jsonl'), openai: { apiKey: 'sk-test-not-real', maxRetries: 0 } });
      const small = { questions: { trait: 'cheerful', count: 2 }, judge: `openai:judge@${server.url}`, select: { coefficient: 0 } };
      const first = await runSweep(readSweepSpec(writeSpec(dir, small, { layers: [2], coefficients: [0], positions: ['all'] })), { model, judge: judge() });
      expect(first.failedJudgments).toEqual({ trait: 2, coherence: 0 });
      expect(first.cells[0]!.trait).toBeNull();
      const results = path.join(dir, 'spec', 'results.jsonl');
      const firstRows = readJsonl<SweepResultRow>(results);
      expect(firstRows.every((row) => row.trait === null && row.trait_error !== undefined && row.coherence !== null)).toBe(true);

      // A second coefficient: the two finished rows keep their answers, two new rows are generated, failures re-judged.
      judgeDown = false;
      const requestsBefore = server.requests;
      const grown = await runSweep(readSweepSpec(writeSpec(dir, small, { layers: [2], coefficients: [0, 4], positions: ['all'] })), { model, judge: judge() });
      const rows = readJsonl<SweepResultRow>(results);
      expect(rows).toHaveLength(4);
      expect(new Set(rows.map((r) => r.id)).size).toBe(4);
      for (const row of firstRows) expect(rows.find((r) => r.id === row.id)!.response).toBe(row.response);
      expect(rows.every((row) => row.trait !== null && row.trait_error === undefined)).toBe(true);
      expect(grown.failedJudgments).toEqual({ trait: 0, coherence: 0 });
      // The 2 failed trait scores (their coherence is cached), then trait and coherence for the 2 new rows.
      expect(server.requests - requestsBefore).toBe(2 + 2 * 2);

      const changed = writeSpec(dir, { ...small, generation: { max_tokens: 8, temperature: 1 } }, { layers: [2], coefficients: [0, 4], positions: ['all'] });
      await expect(runSweep(readSweepSpec(changed), { model, judge: judge() })).rejects.toThrow(/holds a run with other settings \(generation: .*"maxTokens":24.* → .*"maxTokens":8/);
      expect(readJsonl<SweepResultRow>(results)).toHaveLength(4);
    } finally {
      await server.close();
    }
  });

  it('resumes after being killed mid-sweep with no duplicated or missing rows', async () => {
    const dir = tempDir('sweep-killed');
    const file = writeSpec(dir, { batch_size: 8 });
    const results = path.join(dir, 'spec', 'results.jsonl');
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(root, 'bin/persona.js'), 'sweep', file]);
      const timer = setInterval(() => {
        if (fs.existsSync(results) && fs.readFileSync(results, 'utf8').split('\n').filter(Boolean).length >= 8) child.kill('SIGKILL');
      }, 20);
      child.on('error', reject);
      child.on('close', () => {
        clearInterval(timer);
        resolve();
      });
    });
    const partial = readJsonl<SweepResultRow>(results).length;
    expect(partial).toBeGreaterThanOrEqual(8);
    expect(partial).toBeLessThan(48);
    const resumed = await runCli(['sweep', file, '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const rows = readJsonl<SweepResultRow>(results);
    expect(rows).toHaveLength(48);
    expect(new Set(rows.map((r) => r.id)).size).toBe(48);
  });

  it('invalid specs give one-line errors before any work starts', async () => {
    const dir = tempDir('sweep-invalid');
    const otherModelVector = path.join(dir, 'other.safetensors');
    writeVectorFile(otherModelVector, { vector: new Float32Array(64).fill(0.1), metadata: { model: 'org/another-model', method: 'test' } });
    const cases: [string, () => string, RegExp][] = [
      ['bad YAML', () => {
        const f = path.join(dir, 'bad.yaml');
        fs.writeFileSync(f, 'model: [unclosed\n  grid: {');
        return f;
      }, /is not valid YAML/],
      ['unknown key', () => writeSpec(path.join(dir, 'k'), { temprature: 1 }), /spec: unknown key "temprature"/],
      ['unknown grid key', () => writeSpec(path.join(dir, 'g'), {}, { layer: [1] }), /grid: unknown key "layer"/],
      ['coefficient not a number', () => writeSpec(path.join(dir, 'c'), {}, { coefficients: [0, 'two'] }), /grid\.coefficients\[1\]: must be a number, got "two"/],
      ['missing vector file', () => writeSpec(path.join(dir, 'v'), {}, { vectors: { u: { file: path.join(dir, 'absent.safetensors') } } }), /grid\.vectors\.u\.file: vector file not found/],
      ['layer out of range', () => writeSpec(path.join(dir, 'l'), {}, { layers: [1, 7] }), /grid\.layers: layer 7 is out of range: the model has layers 0-3/],
      ['bad positions', () => writeSpec(path.join(dir, 'p'), {}, { positions: ['everywhere'] }), /grid\.positions\[0\]: must be one of all, prompt, response/],
      ['repeated coefficient', () => writeSpec(path.join(dir, 'd'), {}, { coefficients: [0, 1, 1] }), /grid\.coefficients\[2\]: 1 is listed twice/],
      ['repeated clamp name', () => writeSpec(path.join(dir, 'n'), {}, { clamps: [{ name: 'cap', vector: 'u', layers: [1], mode: 'ceiling', bound: 1 }, { name: 'cap', vector: 'u', layers: [2], mode: 'ceiling', bound: 2 }] }), /grid\.clamps\[1\]: clamp name "cap" is listed twice/],
      ['vector of another model', () => writeSpec(path.join(dir, 'o'), {}, { vectors: { u: { file: otherModelVector } } }), /grid\.vectors\.u\.file: .* was made for model org\/another-model, not planted-cheerful/],
      ['bad clamp bound', () => writeSpec(path.join(dir, 'b'), {}, { clamps: [{ vector: 'u', layers: [1], mode: 'ceiling', bound: 'median' }] }), /bound: must be a number or a percentile like p25/],
    ];
    for (const [label, make, message] of cases) {
      const file = make();
      const result = await runCli(['sweep', file]);
      expect(isOneLineError(result), `${label}: ${result.stderr}`).toBe(true);
      expect(result.stderr, label).toMatch(message);
      expect(fs.existsSync(path.join(path.dirname(file), path.basename(file).replace(/\.yaml$/, ''))), `${label} created its output folder`).toBe(false);
    }
  });
});
