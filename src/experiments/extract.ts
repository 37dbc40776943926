import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { appendJsonl, readJsonl, writeJsonlAtomic } from '../io/jsonl.js';
import { COHERENCE_PROMPT, type JudgeFactory, type Judgment } from '../judges/index.js';
import { captureResiduals, generate, type SteerableModel } from '../runtime/index.js';
import { hashString } from '../vectors/random.js';
import { perLayerNorms, writeVectorFile } from '../vectors/vectorFile.js';
import { checkRunIdentity, contentHash, modelFingerprint } from './runIdentity.js';
import { meanDifference, PooledMeans, poolings, type Pooling } from './pooling.js';
import { systemPromptFor, type Polarity, type TraitDefinition } from './traits.js';

/**
 * Persona Vectors extraction (methods.md §A.2–A.7): rollouts under pos/neg system prompts, judged for trait and
 * coherence, filtered as the released code does (row-paired mask), then teacher-forced capture and the per-layer
 * mean difference for each pooling. Rollouts and judgments are appended to JSONL in fixed batches, so an interrupted
 * run resumes where it stopped and gives the same vectors.
 */

export interface ExtractOptions {
  model: SteerableModel;
  trait: TraitDefinition;
  judge: JudgeFactory;
  /** Folder for rollouts.jsonl, judgments.jsonl, run.json and the report. */
  runDir: string;
  /** Vector files go to `<vectorsDir>/<model id>/<trait>.<pooling>.safetensors`. */
  vectorsDir: string;
  samples?: number;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  /** Name for the negative system prompt ("You are a/an <name> assistant."); default "helpful". */
  antonym?: string;
  /** Keep pairs with pos trait ≥ T and neg trait < 100 − T. */
  threshold?: number;
  /** Keep pairs whose two responses both score coherence ≥ C. */
  coherence?: number;
  /** Fail when fewer pairs survive. */
  minPairs?: number;
  batchSize?: number;
  /** Capture batches are sized to hold about this many residual floats across all layers. */
  captureBudget?: number;
  onProgress?: (stage: ExtractStage, done: number, total: number) => void;
  /** What to do with a run directory made with other settings: refuse (default) or start it over. */
  onSettingsChange?: 'error' | 'restart';
}

export type ExtractStage = 'rollouts' | 'judging' | 'capture';

export interface RolloutRow {
  id: string;
  polarity: Polarity;
  question_index: number;
  instruction_index: number;
  sample: number;
  question: string;
  system: string;
  prompt_ids: number[];
  response_ids: number[];
  answer: string;
  finish_reason: string;
}

export interface JudgmentRow {
  id: string;
  trait: number | null;
  coherence: number | null;
  trait_error?: string;
  coherence_error?: string;
}

/**
 * The released code's mask (methods.md §A.5): the pos response shows the trait (≥ T), its neg twin does not
 * (< 100 − T), and both are coherent (≥ C). A missing score fails its test.
 */
export function pairPassesFilter(pos: Pick<JudgmentRow, 'trait' | 'coherence'>, neg: Pick<JudgmentRow, 'trait' | 'coherence'>, filter: { threshold: number; coherenceFloor: number }): boolean {
  const passes = (value: number | null, test: (v: number) => boolean) => value !== null && test(value);
  return (
    passes(pos.trait, (v) => v >= filter.threshold) &&
    passes(neg.trait, (v) => v < 100 - filter.threshold) &&
    passes(pos.coherence, (v) => v >= filter.coherenceFloor) &&
    passes(neg.coherence, (v) => v >= filter.coherenceFloor)
  );
}

function judgmentFailed(row: JudgmentRow): boolean {
  return row.trait_error !== undefined || row.coherence_error !== undefined;
}

export interface ScoreSummary {
  n: number;
  mean: number | null;
  quartiles: [number, number, number] | null;
  missing: number;
}

export interface ExtractReport {
  model: string;
  trait: string;
  judge: string;
  rollouts: number;
  pairs: { total: number; kept: number; threshold: number; coherence: number };
  failedJudgments: { trait: number; coherence: number };
  scores: { pos: { trait: ScoreSummary; coherence: ScoreSummary }; neg: { trait: ScoreSummary; coherence: ScoreSummary } };
  vectors: Record<Pooling, { file: string; norms: number[] }>;
  files: { rollouts: string; judgments: string; report: string; markdown: string };
}

interface PlannedRollout {
  id: string;
  polarity: Polarity;
  questionIndex: number;
  instructionIndex: number;
  sample: number;
  question: string;
  system: string;
}

function pairKey(row: { question_index: number; instruction_index: number; sample: number }): string {
  return `${row.question_index}/${row.instruction_index}/${row.sample}`;
}

/** The settings that decide what the rollouts and judgments are; a resumed run must match them. */
function runIdentity(options: ExtractOptions, settings: { samples: number; maxTokens: number; temperature: number; seed: number; batchSize: number; antonym: string }): Record<string, unknown> {
  const traitHash = contentHash([options.trait.instructions, options.trait.extractQuestions, options.trait.evalPrompt]);
  return { model: options.model.folder.modelId, model_hash: modelFingerprint(options.model.folder), trait: options.trait.name, trait_hash: traitHash, judge: options.judge.spec, ...settings };
}

function summarize(values: readonly (number | null)[]): ScoreSummary {
  const present = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  const at = (q: number) => present[Math.min(present.length - 1, Math.floor(q * present.length))]!;
  return {
    n: present.length,
    mean: present.length ? present.reduce((a, b) => a + b, 0) / present.length : null,
    quartiles: present.length ? [at(0.25), at(0.5), at(0.75)] : null,
    missing: values.length - present.length,
  };
}

export async function extractPersonaVectors(options: ExtractOptions): Promise<ExtractReport> {
  const { model, trait, judge } = options;
  const samples = options.samples ?? 10;
  const maxTokens = options.maxTokens ?? 1000;
  // As eval_persona.main: sampling at 1.0, greedy when there is one rollout per prompt.
  const temperature = options.temperature ?? (samples === 1 ? 0 : 1);
  const seed = options.seed ?? 0;
  const batchSize = options.batchSize ?? 16;
  const threshold = options.threshold ?? 50;
  const coherenceFloor = options.coherence ?? 50;
  const antonym = options.antonym ?? 'helpful';
  for (const [name, value, minimum] of [['samples', samples, 1], ['max tokens', maxTokens, 1], ['batch size', batchSize, 1]] as const) {
    if (!Number.isInteger(value) || value < minimum) throw new UserError(`${name} must be an integer ≥ ${minimum}, got ${value}`);
  }
  if (!(threshold >= 0 && threshold <= 100)) throw new UserError(`threshold must be between 0 and 100, got ${threshold}`);
  if (!(coherenceFloor >= 0 && coherenceFloor <= 100)) throw new UserError(`coherence floor must be between 0 and 100, got ${coherenceFloor}`);
  fs.mkdirSync(options.runDir, { recursive: true });
  checkRunIdentity(
    options.runDir,
    runIdentity(options, { samples, maxTokens, temperature, seed, batchSize, antonym }),
    options.onSettingsChange ?? 'error',
    ['rollouts.jsonl', 'judgments.jsonl', 'report.json', 'report.md'],
    'use another --run-dir or delete it',
  );
  const files = {
    rollouts: path.join(options.runDir, 'rollouts.jsonl'),
    judgments: path.join(options.runDir, 'judgments.jsonl'),
    report: path.join(options.runDir, 'report.json'),
    markdown: path.join(options.runDir, 'report.md'),
  };

  // 1. Rollouts: every question × instruction × polarity × sample, in fixed batches (a batch is written whole).
  const planned: PlannedRollout[] = [];
  trait.extractQuestions.forEach((question, questionIndex) => {
    trait.instructions.forEach((instruction, instructionIndex) => {
      for (const polarity of ['pos', 'neg'] as Polarity[]) {
        const system = systemPromptFor(trait.name, instruction, polarity, polarity === 'neg' ? antonym : undefined);
        for (let sample = 0; sample < samples; sample++) {
          planned.push({ id: `${trait.name}_${questionIndex}_${polarity}_${instructionIndex}_${sample}`, polarity, questionIndex, instructionIndex, sample, question, system });
        }
      }
    });
  });
  const rollouts = new Map(readJsonl<RolloutRow>(files.rollouts).map((row) => [row.id, row]));
  options.onProgress?.('rollouts', rollouts.size, planned.length);
  for (let start = 0; start < planned.length; start += batchSize) {
    const batch = planned.slice(start, start + batchSize);
    if (batch.every((item) => rollouts.has(item.id))) continue;
    const promptIds = batch.map((item) => model.tokenizer.encodeChat([{ role: 'system', content: item.system }, { role: 'user', content: item.question }]));
    const result = await generate(
      model,
      batch.map((item, i) => ({ inputIds: promptIds[i]!, seed: hashString(`${seed}:${item.id}`) })),
      { maxNewTokens: maxTokens, temperature },
    );
    const eos = new Set(model.folder.eosTokenIds);
    const rows: RolloutRow[] = batch
      .map((item, i) => {
        const ids = result.sequences[i]!;
        return {
          id: item.id, polarity: item.polarity, question_index: item.questionIndex, instruction_index: item.instructionIndex, sample: item.sample,
          question: item.question, system: item.system, prompt_ids: promptIds[i]!,
          // The end-of-turn token is not part of the answer (Persona Vectors decodes with skip_special_tokens).
          response_ids: ids.length && eos.has(ids.at(-1)!) ? ids.slice(0, -1) : ids,
          answer: result.texts[i]!, finish_reason: result.finishReasons[i]!,
        };
      })
      .filter((row) => !rollouts.has(row.id));
    appendJsonl(files.rollouts, rows);
    for (const row of rows) rollouts.set(row.id, row);
    options.onProgress?.('rollouts', rollouts.size, planned.length);
  }

  // 2. Judging: trait and coherence for every response, a chunk at a time. A judgment that failed (after the client's
  // own retries) is recorded so the run can finish; a rerun asks for it again.
  const storedJudgments = readJsonl<JudgmentRow>(files.judgments);
  const judgments = new Map(storedJudgments.filter((row) => !judgmentFailed(row)).map((row) => [row.id, row]));
  if (judgments.size < storedJudgments.length) writeJsonlAtomic(files.judgments, [...judgments.values()]);
  const toJudge = planned.filter((item) => !judgments.has(item.id)).map((item) => rollouts.get(item.id)!);
  options.onProgress?.('judging', judgments.size, planned.length);
  const chunk = Math.max(batchSize, 32);
  for (let start = 0; start < toJudge.length; start += chunk) {
    const rows = toJudge.slice(start, start + chunk);
    const [traitScores, coherenceScores] = await Promise.all([
      judge.judge('trait').score(rows.map((r) => ({ question: r.question, answer: r.answer, template: trait.evalPrompt }))),
      judge.judge('coherence').score(rows.map((r) => ({ question: r.question, answer: r.answer, template: COHERENCE_PROMPT }))),
    ]);
    const judged: JudgmentRow[] = rows.map((row, i) => {
      const t = traitScores[i] as Judgment;
      const c = coherenceScores[i] as Judgment;
      return { id: row.id, trait: t.score, coherence: c.score, ...(t.error ? { trait_error: t.error } : {}), ...(c.error ? { coherence_error: c.error } : {}) };
    });
    appendJsonl(files.judgments, judged);
    for (const row of judged) judgments.set(row.id, row);
    options.onProgress?.('judging', judgments.size, planned.length);
  }

  // 3. The released code's filter: pos and neg rows of the same question, instruction and sample survive together.
  const positives = planned.filter((p) => p.polarity === 'pos').map((p) => rollouts.get(p.id)!);
  const negativeByPair = new Map(planned.filter((p) => p.polarity === 'neg').map((p) => [pairKey(rollouts.get(p.id)!), rollouts.get(p.id)!]));
  const kept = positives
    .map((pos) => ({ pos, neg: negativeByPair.get(pairKey(pos))! }))
    .filter(
      ({ pos, neg }) =>
        pairPassesFilter(judgments.get(pos.id)!, judgments.get(neg.id)!, { threshold, coherenceFloor }) && pos.response_ids.length > 0 && neg.response_ids.length > 0,
    );
  const minPairs = options.minPairs ?? 10;
  const failedJudgments = [...judgments.values()].filter(judgmentFailed);
  if (kept.length < Math.max(1, minPairs)) {
    const advice = failedJudgments.length
      ? `${failedJudgments.length} responses could not be judged (first error: ${failedJudgments[0]!.trait_error ?? failedJudgments[0]!.coherence_error}); rerun to ask the judge again`
      : 'lower --threshold or --coherence, or raise --samples';
    throw new UserError(
      `only ${kept.length} of ${positives.length} response pairs pass the filter (pos trait ≥ ${threshold}, neg trait < ${100 - threshold}, coherence ≥ ${coherenceFloor}; at least ${minPairs} needed): ${advice}`,
    );
  }

  // 4. Teacher-forced capture of prompt + response, pooled per layer as the rows stream through.
  const layers = Array.from({ length: model.numLayers }, (_, i) => i);
  const means = { pos: new PooledMeans(model.numLayers, model.hiddenSize), neg: new PooledMeans(model.numLayers, model.hiddenSize) };
  const rowsToCapture = kept.flatMap(({ pos, neg }) => [pos, neg]);
  const budget = options.captureBudget ?? 32_000_000;
  let captured = 0;
  options.onProgress?.('capture', 0, rowsToCapture.length);
  for (let start = 0; start < rowsToCapture.length; ) {
    let end = start;
    let width = 0;
    while (end < rowsToCapture.length) {
      const length = rowsToCapture[end]!.prompt_ids.length + rowsToCapture[end]!.response_ids.length;
      const nextWidth = Math.max(width, length);
      if (end > start && (end - start + 1) * nextWidth * model.hiddenSize * model.numLayers > budget) break;
      width = nextWidth;
      end++;
    }
    const batch = rowsToCapture.slice(start, end);
    const result = await captureResiduals(
      model,
      batch.map((row) => ({ inputIds: [...row.prompt_ids, ...row.response_ids], promptLength: row.prompt_ids.length })),
      { layers },
    );
    batch.forEach((row, i) => {
      means[row.polarity].add(layers.map((layer) => result.residuals.get(layer)![i]!), row.prompt_ids.length);
    });
    captured += batch.length;
    options.onProgress?.('capture', captured, rowsToCapture.length);
    start = end;
  }

  // 5. Mean difference per layer for each pooling, saved with its provenance.
  const vectorDir = path.join(options.vectorsDir, model.folder.modelId);
  const judgmentsOf = (polarity: Polarity) => planned.filter((p) => p.polarity === polarity).map((p) => judgments.get(p.id)!);
  const failed = (metric: 'trait' | 'coherence') => failedJudgments.filter((j) => j[`${metric}_error`] !== undefined).length;
  const vectors = {} as ExtractReport['vectors'];
  for (const pooling of poolings) {
    const difference = meanDifference(means.pos, means.neg, pooling);
    const norms = perLayerNorms(difference);
    const file = path.join(vectorDir, `${trait.name}.${pooling}.safetensors`);
    writeVectorFile(file, {
      vectors: difference,
      metadata: {
        model: model.folder.modelId,
        method: 'persona vectors: mean difference of pooled residuals, pos − neg, unnormalised',
        trait: trait.name,
        pooling,
        counts: { pairs: positives.length, kept_pairs: kept.length, pos: means.pos.count, neg: means.neg.count },
        thresholds: { trait: threshold, coherence: coherenceFloor },
        judge: judge.spec,
        seed,
        samples,
        max_tokens: maxTokens,
        temperature,
        per_layer_norms: norms,
      },
    });
    vectors[pooling] = { file, norms };
  }
  const report: ExtractReport = {
    model: model.folder.modelId,
    trait: trait.name,
    judge: judge.spec,
    rollouts: planned.length,
    pairs: { total: positives.length, kept: kept.length, threshold, coherence: coherenceFloor },
    failedJudgments: { trait: failed('trait'), coherence: failed('coherence') },
    scores: {
      pos: { trait: summarize(judgmentsOf('pos').map((j) => j.trait)), coherence: summarize(judgmentsOf('pos').map((j) => j.coherence)) },
      neg: { trait: summarize(judgmentsOf('neg').map((j) => j.trait)), coherence: summarize(judgmentsOf('neg').map((j) => j.coherence)) },
    },
    vectors,
    files,
  };
  writeFileAtomic(files.report, `${JSON.stringify(report, null, 2)}\n`);
  writeFileAtomic(files.markdown, reportMarkdown(report));
  return report;
}

function reportMarkdown(report: ExtractReport): string {
  const score = (s: ScoreSummary) => (s.mean === null ? 'n/a' : `${s.mean.toFixed(1)} (quartiles ${s.quartiles!.map((q) => q.toFixed(0)).join(' / ')}; ${s.missing} without a score)`);
  return [
    `# Persona vector extraction: ${report.trait} on ${report.model}`,
    '',
    `Judge \`${report.judge}\`; ${report.rollouts} rollouts; ${report.pairs.kept} of ${report.pairs.total} pairs kept (pos trait ≥ ${report.pairs.threshold}, neg trait < ${100 - report.pairs.threshold}, coherence ≥ ${report.pairs.coherence}).`,
    `Failed judgments: ${report.failedJudgments.trait} trait, ${report.failedJudgments.coherence} coherence.`,
    '',
    '| polarity | trait score | coherence |',
    '|---|---|---|',
    `| pos | ${score(report.scores.pos.trait)} | ${score(report.scores.pos.coherence)} |`,
    `| neg | ${score(report.scores.neg.trait)} | ${score(report.scores.neg.coherence)} |`,
    '',
    '## Vector norm per layer',
    '',
    `| layer | ${poolings.join(' | ')} |`,
    `|---|${poolings.map(() => '---').join('|')}|`,
    ...report.vectors.response_avg.norms.map((_, layer) => `| ${layer} | ${poolings.map((p) => report.vectors[p].norms[layer]!.toFixed(3)).join(' | ')} |`),
    '',
    ...poolings.map((p) => `- ${p}: \`${report.vectors[p].file}\``),
    '',
  ].join('\n');
}
