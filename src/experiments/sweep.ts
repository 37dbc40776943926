import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { appendJsonl, readJsonl, writeJsonlAtomic } from '../io/jsonl.js';
import { COHERENCE_PROMPT, parseJudgeSpec, type JudgeFactory } from '../judges/index.js';
import type { CellSummary } from '../plots/index.js';
import { generate, promptMessages, type ClampSpec, type InterventionSpec, type MonitorSpec, type PositionMode, type SteerableModel } from '../runtime/index.js';
import { normalize } from '../vectors/linalg.js';
import { hashString } from '../vectors/random.js';
import { perLayerNorms, vectorAtLayer } from '../vectors/vectorFile.js';
import { checkRunIdentity, contentHash, modelFingerprint } from './runIdentity.js';
import { meanInterval, percentile } from './stats.js';
import type { SweepClamp, SweepSpec, SweepVector } from './sweepSpec.js';

/**
 * A steering sweep: the grid expanded into cells, every cell × question × sample a row, rows of many cells sharing
 * each batch (every row carries its own vector, coefficient, positions and clamp through the per-row inputs), judged
 * and appended to results.jsonl batch by batch so a rerun skips what is done.
 */

export interface SweepCell {
  id: string;
  vector: string;
  layer: number;
  coefficient: number;
  positions: PositionMode;
  clamp: string;
}

export interface SweepResultRow {
  id: string;
  cell: string;
  vector: string;
  layer: number;
  coefficient: number;
  positions: PositionMode;
  clamp: string;
  question_index: number;
  sample: number;
  question: string;
  response: string;
  trait: number | null;
  coherence: number | null;
  /** Why the judge gave no score (after its retries); a rerun asks again. */
  trait_error?: string;
  coherence_error?: string;
  /** Mean projection on the steered (unit) direction at the steered layer over the response tokens. */
  projection: number;
  /** The same projection at each generated token. */
  projections: number[];
}

export interface SweepSummary {
  name: string;
  model: string;
  judge: string;
  trait: string;
  vectors: { name: string; file: string; units: string; norms: number[] }[];
  cells: (CellSummary & { id: string; projection: number })[];
  best: { vector: string; positions: string; clamp: string; layer: number | null; coefficient: number; traitScore: number | null; coherence: number | null; reason: string }[];
  calibration: Record<string, Record<string, number>>;
  /** Rows the judge gave no score for (after its retries); they are left out of the means and retried by a rerun. */
  failedJudgments: { trait: number; coherence: number };
  files: { results: string; summary: string; markdown: string };
}

export function expandCells(spec: SweepSpec): SweepCell[] {
  const cells: SweepCell[] = [];
  for (const vector of spec.grid.vectors) {
    for (const layer of spec.grid.layers) {
      for (const coefficient of spec.grid.coefficients) {
        for (const positions of spec.grid.positions) {
          for (const clamp of spec.grid.clamps) {
            const clampName = clamp?.name ?? 'none';
            cells.push({ id: `${vector.name}|L${layer}|c${coefficient}|${positions}|${clampName}`, vector: vector.name, layer, coefficient, positions, clamp: clampName });
          }
        }
      }
    }
  }
  return cells;
}

function steeringDirection(vector: SweepVector, layer: number, numLayers: number): Float32Array {
  const raw = vectorAtLayer(vector.loaded, layer, numLayers);
  return vector.units === 'unit' ? normalize(raw) : raw;
}

function clampSpecs(clamp: SweepClamp, spec: SweepSpec, calibrated: Record<string, number>): ClampSpec[] {
  const vector = spec.grid.vectors.find((v) => v.name === clamp.vector)!;
  return clamp.layers.map((layer) => {
    const bound = 'value' in clamp.bound ? clamp.bound.value : calibrated[String(layer)]!;
    return { layers: [layer], direction: vectorAtLayer(vector.loaded, layer, spec.numLayers), ...(clamp.mode === 'floor' ? { lower: bound } : { upper: bound }) };
  });
}

function promptIds(model: SteerableModel, spec: SweepSpec, question: string): number[] {
  return model.tokenizer.encodeChat(promptMessages(question, spec.system));
}

/**
 * Percentile bounds from a calibration set: the unsteered model's answers to the questions, and the projection of
 * every response token on the clamp's direction at each clamp layer. Cached in calibration.json.
 */
async function calibrate(model: SteerableModel, spec: SweepSpec, log: (line: string) => void): Promise<Record<string, Record<string, number>>> {
  const needed = spec.grid.clamps.filter((c): c is SweepClamp => c !== null && 'percentile' in c.bound);
  if (needed.length === 0) return {};
  const file = path.join(spec.outDir, 'calibration.json');
  const key = JSON.stringify({ questions: spec.questions, samples: spec.calibration.samples, generation: spec.generation, seed: spec.seed, clamps: needed });
  if (fs.existsSync(file)) {
    const cached = JSON.parse(fs.readFileSync(file, 'utf8')) as { key: string; bounds: Record<string, Record<string, number>> };
    if (cached.key === key) return cached.bounds;
  }
  log(`calibrating ${needed.length} percentile bound(s) on ${spec.questions.length * spec.calibration.samples} unsteered responses`);
  const monitors: MonitorSpec[] = needed.flatMap((clamp) => {
    const vector = spec.grid.vectors.find((v) => v.name === clamp.vector)!;
    return clamp.layers.map((layer) => ({ name: `${clamp.name}@${layer}`, layer, direction: vectorAtLayer(vector.loaded, layer, spec.numLayers) }));
  });
  const rows = spec.questions.flatMap((question, q) =>
    Array.from({ length: spec.calibration.samples }, (_, s) => ({ inputIds: promptIds(model, spec, question), seed: hashString(`${spec.seed}:calibration:${q}:${s}`) })),
  );
  const projections = new Map<string, number[]>(monitors.map((m) => [m.name, []]));
  for (let start = 0; start < rows.length; start += spec.batchSize) {
    const result = await generate(model, rows.slice(start, start + spec.batchSize), {
      maxNewTokens: spec.generation.maxTokens, temperature: spec.generation.temperature, topP: spec.generation.topP, topK: spec.generation.topK, monitors,
    });
    for (const readout of result.projections) projections.get(readout.name)!.push(...readout.perToken.flat());
  }
  const bounds: Record<string, Record<string, number>> = {};
  for (const clamp of needed) {
    bounds[clamp.name] = Object.fromEntries(clamp.layers.map((layer) => [String(layer), percentile(projections.get(`${clamp.name}@${layer}`)!, (clamp.bound as { percentile: number }).percentile)]));
  }
  writeFileAtomic(file, `${JSON.stringify({ key, bounds }, null, 2)}\n`);
  return bounds;
}

export interface RunSweepOptions {
  model: SteerableModel;
  judge?: JudgeFactory;
  log?: (line: string) => void;
  /** Rows done of all rows, and cells whose every row is done. */
  onProgress?: (done: number, total: number, cells: { done: number; total: number }) => void;
  /** A folder holding a sweep made with other settings: refuse (default), or start over (for folders the toolkit owns). */
  onSettingsChange?: 'error' | 'restart';
}

export async function runSweep(spec: SweepSpec, options: RunSweepOptions): Promise<SweepSummary> {
  const { model } = options;
  const log = options.log ?? (() => undefined);
  const judge = options.judge ?? parseJudgeSpec(spec.judge, { cacheFile: path.join(spec.outDir, 'judge-cache.jsonl') });
  fs.mkdirSync(spec.outDir, { recursive: true });
  const files = { results: path.join(spec.outDir, 'results.jsonl'), summary: path.join(spec.outDir, 'summary.json'), markdown: path.join(spec.outDir, 'summary.md') };
  try {
    checkRunIdentity(
      spec.outDir,
      sweepIdentity(spec, model),
      options.onSettingsChange ?? 'error',
      ['results.jsonl', 'summary.json', 'summary.md'],
      `delete ${spec.outDir} or give the spec another name to start a new sweep`,
    );
    const calibration = await calibrate(model, spec, log);
    const cells = expandCells(spec);
    const planned = cells.flatMap((cell) =>
      spec.questions.flatMap((question, q) => Array.from({ length: spec.samples }, (_, s) => ({ id: `${cell.id}|q${q}|s${s}`, cell, question, q, s }))),
    );
    const done = new Map(readJsonl<SweepResultRow>(files.results).map((row) => [row.id, row]));
    const unjudged = [...done.values()].filter((row) => row.trait_error !== undefined || row.coherence_error !== undefined);
    if (unjudged.length) {
      log(`asking the judge again for ${unjudged.length} row(s) it failed on`);
      const judged = await judgeRows(judge, spec, unjudged);
      for (const row of judged) done.set(row.id, row);
      writeJsonlAtomic(files.results, [...done.values()]);
    }
    log(`${cells.length} cells × ${spec.questions.length} questions × ${spec.samples} samples = ${planned.length} rows (${done.size} already done)`);
    const rowsPerCell = spec.questions.length * spec.samples;
    const reportProgress = () => {
      const doneByCell = new Map<string, number>();
      let rowsDone = 0;
      for (const item of planned) {
        if (!done.has(item.id)) continue;
        rowsDone++;
        doneByCell.set(item.cell.id, (doneByCell.get(item.cell.id) ?? 0) + 1);
      }
      const cellsDone = [...doneByCell.values()].filter((n) => n === rowsPerCell).length;
      options.onProgress?.(rowsDone, planned.length, { done: cellsDone, total: cells.length });
    };
    reportProgress();
    for (let start = 0; start < planned.length; start += spec.batchSize) {
      const batch = planned.slice(start, start + spec.batchSize);
      if (batch.every((item) => done.has(item.id))) continue;
      const monitors = new Map<string, MonitorSpec>();
      const rows = batch.map((item) => {
        const vector = spec.grid.vectors.find((v) => v.name === item.cell.vector)!;
        const direction = steeringDirection(vector, item.cell.layer, spec.numLayers);
        const monitorName = `${vector.name}@${item.cell.layer}`;
        if (!monitors.has(monitorName)) monitors.set(monitorName, { name: monitorName, layer: item.cell.layer, direction });
        const clamp = spec.grid.clamps.find((c) => c?.name === item.cell.clamp) ?? null;
        const interventions: InterventionSpec = {
          steer: [{ layer: item.cell.layer, vector: direction, coefficient: item.cell.coefficient, positions: item.cell.positions }],
          clamp: clamp ? clampSpecs(clamp, spec, calibration[clamp.name] ?? {}) : [],
        };
        // The seed depends on the question and sample only: every cell sees the same random draws (paired cells).
        return { inputIds: promptIds(model, spec, item.question), interventions, seed: hashString(`${spec.seed}:${item.q}:${item.s}`), monitorName };
      });
      const result = await generate(model, rows, {
        maxNewTokens: spec.generation.maxTokens, temperature: spec.generation.temperature, topP: spec.generation.topP, topK: spec.generation.topK,
        monitors: [...monitors.values()],
      });
      const generated: SweepResultRow[] = batch
        .map((item, i) => {
          const readout = result.projections.find((p) => p.name === rows[i]!.monitorName)!;
          return {
            id: item.id, cell: item.cell.id, vector: item.cell.vector, layer: item.cell.layer, coefficient: item.cell.coefficient, positions: item.cell.positions,
            clamp: item.cell.clamp, question_index: item.q, sample: item.s, question: item.question, response: result.texts[i]!,
            trait: null, coherence: null, projection: readout.mean[i]!, projections: readout.perToken[i]!,
          };
        })
        .filter((row) => !done.has(row.id));
      const written = await judgeRows(judge, spec, generated);
      appendJsonl(files.results, written);
      for (const row of written) done.set(row.id, row);
      reportProgress();
    }
    const summary = summarizeSweep(spec, cells, planned.map((p) => done.get(p.id)!), calibration, files, judge.spec);
    writeFileAtomic(files.summary, `${JSON.stringify(summary, null, 2)}\n`);
    writeFileAtomic(files.markdown, sweepMarkdown(summary));
    return summary;
  } finally {
    if (!options.judge) await judge.dispose();
  }
}

/** Trait and coherence scores for rows (new ones, or ones the judge failed on before), with the failures noted. */
async function judgeRows(judge: JudgeFactory, spec: SweepSpec, rows: readonly SweepResultRow[]): Promise<SweepResultRow[]> {
  const requests = rows.map((row) => ({ question: row.question, answer: row.response }));
  const [traitScores, coherenceScores] = await Promise.all([
    judge.judge('trait').score(requests.map((r) => ({ ...r, template: spec.trait.evalPrompt }))),
    judge.judge('coherence').score(requests.map((r) => ({ ...r, template: COHERENCE_PROMPT }))),
  ]);
  return rows.map((row, i) => {
    const { trait_error: _trait, coherence_error: _coherence, ...rest } = row;
    const t = traitScores[i]!;
    const c = coherenceScores[i]!;
    return { ...rest, trait: t.score, coherence: c.score, ...(t.error ? { trait_error: t.error } : {}), ...(c.error ? { coherence_error: c.error } : {}) };
  });
}

/**
 * What finished rows depend on besides their cell (which is in their id): rows are reused only while these hold, so
 * a sweep can grow by cells or samples but never mixes answers made under other settings.
 */
function sweepIdentity(spec: SweepSpec, model: SteerableModel): Record<string, unknown> {
  return {
    model: model.folder.modelId,
    model_hash: modelFingerprint(model.folder),
    questions: contentHash(spec.questions),
    system: spec.system ?? null,
    trait_eval_prompt: contentHash(spec.trait.evalPrompt),
    generation: spec.generation,
    seed: spec.seed,
    judge: spec.judge,
    vectors: Object.fromEntries(spec.grid.vectors.map((v) => [v.name, { file: contentHash(fs.readFileSync(v.file)), units: v.units }])),
    clamps: spec.grid.clamps.filter((c): c is SweepClamp => c !== null).map(({ name, vector, layers, mode, bound }) => ({ name, vector, layers, mode, bound })),
    calibration: spec.calibration,
  };
}

export function summarizeSweep(spec: SweepSpec, cells: SweepCell[], rows: SweepResultRow[], calibration: SweepSummary['calibration'], files: SweepSummary['files'], judgeSpec: string): SweepSummary {
  const byCell = new Map<string, SweepResultRow[]>(cells.map((c) => [c.id, []]));
  for (const row of rows) byCell.get(row.cell)?.push(row);
  const summaries = cells.map((cell) => {
    const cellRows = byCell.get(cell.id)!;
    const scores = (metric: 'trait' | 'coherence') => cellRows.map((r) => r[metric]).filter((v): v is number => v !== null);
    const trait = meanInterval(scores('trait'));
    const coherence = meanInterval(scores('coherence'));
    return {
      id: cell.id, vector: cell.vector, layer: cell.layer, coefficient: cell.coefficient, positions: cell.positions, ...(cell.clamp !== 'none' ? { clamp: cell.clamp } : {}),
      n: cellRows.length,
      trait: trait ? { mean: trait.mean, low: trait.low, high: trait.high } : null,
      coherence: coherence ? { mean: coherence.mean, low: coherence.low, high: coherence.high } : null,
      projection: cellRows.reduce((s, r) => s + r.projection, 0) / Math.max(1, cellRows.length),
    };
  });
  // The paper's pick: at one fixed coefficient, the layer with the highest trait score among coherent enough cells.
  const best: SweepSummary['best'] = [];
  for (const vector of spec.grid.vectors) {
    for (const positions of spec.grid.positions) {
      for (const clamp of spec.grid.clamps.map((c) => c?.name ?? 'none')) {
        const candidates = summaries.filter((s) => s.vector === vector.name && s.positions === positions && (s.clamp ?? 'none') === clamp && s.coefficient === spec.select.coefficient);
        const coherent = candidates.filter((s) => s.trait && s.coherence && s.coherence.mean >= spec.select.coherenceFloor);
        const pick = coherent.sort((a, b) => b.trait!.mean - a.trait!.mean || a.layer - b.layer)[0];
        best.push({
          vector: vector.name, positions, clamp, coefficient: spec.select.coefficient,
          layer: pick?.layer ?? null, traitScore: pick?.trait?.mean ?? null, coherence: pick?.coherence?.mean ?? null,
          reason: pick ? `highest trait score at coefficient ${spec.select.coefficient} with coherence ≥ ${spec.select.coherenceFloor}` : `no layer keeps coherence ≥ ${spec.select.coherenceFloor} at coefficient ${spec.select.coefficient}`,
        });
      }
    }
  }
  const vectors = spec.grid.vectors.map((v) => ({
    name: v.name,
    file: v.file,
    units: v.units,
    norms: v.loaded.vectors ? perLayerNorms(v.loaded.vectors) : Array.from({ length: spec.numLayers }, () => perLayerNorms([v.loaded.vector!])[0]!),
  }));
  const failedJudgments = { trait: rows.filter((r) => r.trait_error !== undefined).length, coherence: rows.filter((r) => r.coherence_error !== undefined).length };
  return { name: spec.name, model: spec.model, judge: judgeSpec, trait: spec.trait.name, vectors, cells: summaries, best, calibration, failedJudgments, files };
}

export function interval(value: { mean: number; low: number; high: number } | null): string {
  return value ? `${value.mean.toFixed(1)} [${value.low.toFixed(1)}, ${value.high.toFixed(1)}]` : 'n/a';
}

function sweepMarkdown(summary: SweepSummary): string {
  return [
    `# Sweep ${summary.name}`,
    '',
    `Model \`${summary.model}\`, trait ${summary.trait}, judge \`${summary.judge}\`. Scores are means with 95% intervals.`,
    '',
    ...(summary.failedJudgments.trait || summary.failedJudgments.coherence
      ? [`Failed judgments (left out of the means; a rerun asks again): ${summary.failedJudgments.trait} trait, ${summary.failedJudgments.coherence} coherence.`, '']
      : []),
    '| vector | layer | coefficient | positions | clamp | n | trait | coherence | projection |',
    '|---|---|---|---|---|---|---|---|---|',
    ...summary.cells.map((c) => `| ${c.vector} | ${c.layer} | ${c.coefficient} | ${c.positions} | ${c.clamp ?? 'none'} | ${c.n} | ${interval(c.trait)} | ${interval(c.coherence)} | ${c.projection.toFixed(3)} |`),
    '',
    '## Best layer',
    '',
    ...summary.best.map((b) => `- ${b.vector}, positions ${b.positions}, clamp ${b.clamp}: ${b.layer === null ? b.reason : `layer ${b.layer} (trait ${b.traitScore!.toFixed(1)}, coherence ${b.coherence!.toFixed(1)}; ${b.reason})`}`),
    ...(Object.keys(summary.calibration).length
      ? ['', '## Calibrated clamp bounds', '', ...Object.entries(summary.calibration).map(([name, bounds]) => `- ${name}: ${Object.entries(bounds).map(([layer, tau]) => `layer ${layer} τ = ${tau.toFixed(3)}`).join(', ')}`)]
      : []),
    '',
  ].join('\n');
}
