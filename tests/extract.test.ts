import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_COEFFICIENTS, NEUTRAL_SYSTEM, type PlantedModel } from '../src/demo/index.js';
import { extractPersonaVectors, pairPassesFilter, type JudgmentRow, type RolloutRow } from '../src/experiments/extract.js';
import { meanDifference, PooledMeans, poolResidual } from '../src/experiments/pooling.js';
import { readJsonl } from '../src/io/jsonl.js';
import { parseJudgeSpec } from '../src/judges/index.js';
import { generate, promptMessages, SteerableModel } from '../src/runtime/index.js';
import { cosine, normalize } from '../src/vectors/linalg.js';
import { readVectorFile } from '../src/vectors/vectorFile.js';
import { cheerfulJudge, startJudgeServer } from './helpers/judgeServer.js';
import { tempDir } from './helpers/models.js';
import { plantedModel, smallCheerfulTrait } from './helpers/planted.js';

let planted: PlantedModel;
let model: SteerableModel;
beforeAll(async () => {
  planted = await plantedModel();
  model = await SteerableModel.load(planted.dir);
});
afterAll(async () => model?.dispose());

describe('the released code\'s pair filter', () => {
  const filter = { threshold: 50, coherenceFloor: 50 };
  const pair = (pos: [number | null, number | null], neg: [number | null, number | null]) =>
    pairPassesFilter({ trait: pos[0], coherence: pos[1] }, { trait: neg[0], coherence: neg[1] }, filter);
  it('keeps pos ≥ T with neg < 100 − T and both coherent ≥ C, at the exact boundaries', () => {
    expect(pair([50, 50], [49.99, 50])).toBe(true);
    expect(pair([49.99, 90], [0, 90])).toBe(false); // pos below T
    expect(pair([90, 90], [50, 90])).toBe(false); // neg at 100 − T is already too much trait
    expect(pair([90, 49.99], [0, 90])).toBe(false); // pos incoherent
    expect(pair([90, 90], [0, 49.99])).toBe(false); // neg incoherent
    expect(pairPassesFilter({ trait: 80, coherence: 60 }, { trait: 19.99, coherence: 60 }, { threshold: 80, coherenceFloor: 60 })).toBe(true);
    expect(pairPassesFilter({ trait: 80, coherence: 60 }, { trait: 20, coherence: 60 }, { threshold: 80, coherenceFloor: 60 })).toBe(false);
  });
  it('drops a pair when any of its four scores is missing', () => {
    expect(pair([null, 90], [0, 90])).toBe(false);
    expect(pair([90, null], [0, 90])).toBe(false);
    expect(pair([90, 90], [null, 90])).toBe(false);
    expect(pair([90, 90], [0, null])).toBe(false);
  });
});

describe('pooling and mean difference', () => {
  it('pools response, prompt and last-prompt positions and subtracts running means exactly', () => {
    const hidden = 2;
    // 4 positions, prompt length 2: rows are [p0, p1, r0, r1].
    const residual = Float32Array.from([1, 2, 3, 4, 10, 20, 30, 40]);
    expect(Array.from(poolResidual(residual, hidden, 2, 'response_avg'))).toEqual([20, 30]);
    expect(Array.from(poolResidual(residual, hidden, 2, 'prompt_avg'))).toEqual([2, 3]);
    expect(Array.from(poolResidual(residual, hidden, 2, 'prompt_last'))).toEqual([3, 4]);
    const pos = new PooledMeans(1, hidden);
    const neg = new PooledMeans(1, hidden);
    pos.add([residual], 2);
    pos.add([residual.map((x) => x * 3)], 2);
    neg.add([residual.map(() => 1)], 2);
    expect(pos.count).toBe(2);
    expect(Array.from(meanDifference(pos, neg, 'response_avg')[0]!)).toEqual([40 - 1, 60 - 1]);
  });
});

describe('extraction on the planted demo model with the lexicon judge', () => {
  it('recovers u at the layers where it lives (cos ≥ 0.95), and steering with it raises the judged trait score monotonically', async () => {
    const dir = tempDir('extract-lexicon');
    const judge = parseJudgeSpec(`lexicon:${planted.lexiconFile}`);
    const report = await extractPersonaVectors({
      model, trait: smallCheerfulTrait(), judge, runDir: path.join(dir, 'run'), vectorsDir: path.join(dir, 'vectors'), samples: 2, maxTokens: 24, minPairs: 20, batchSize: 40,
    });
    expect(report.pairs.total).toBe(4 * 5 * 2);
    expect(report.pairs.kept).toBeGreaterThanOrEqual(36);
    expect(report.scores.pos.trait.mean!).toBeGreaterThan(50);
    expect(report.scores.neg.trait.mean!).toBeLessThan(10);
    const file = readVectorFile(report.vectors.response_avg.file, { hiddenSize: model.hiddenSize, numLayers: model.numLayers });
    expect(file.metadata.trait).toBe('cheerful');
    expect(file.metadata.pooling).toBe('response_avg');
    expect((file.metadata.counts as { kept_pairs: number }).kept_pairs).toBe(report.pairs.kept);
    for (const layer of planted.layers) expect(cosine(file.vectors![layer]!, planted.direction)).toBeGreaterThanOrEqual(0.95);
    expect(file.metadata.per_layer_norms).toEqual(report.vectors.response_avg.norms);
    for (const pooling of ['prompt_avg', 'prompt_last'] as const) expect(fs.existsSync(report.vectors[pooling].file)).toBe(true);

    // Steering with the extracted vector (unit length, as the demo does) at the demo's coefficients.
    const direction = normalize(file.vectors![2]!);
    const questions = smallCheerfulTrait().evalQuestions;
    const rows = DEMO_COEFFICIENTS.flatMap((coefficient) =>
      questions.map((q) => ({ inputIds: model.tokenizer.encodeChat(promptMessages(q, NEUTRAL_SYSTEM)), interventions: { steer: [{ layer: 2, vector: direction, coefficient }] } })),
    );
    const result = await generate(model, rows, { maxNewTokens: 40, temperature: 1, seed: 1 });
    const scores = await judge.judge('trait').score(result.texts.map((answer) => ({ question: '', answer, template: '' })));
    const means = DEMO_COEFFICIENTS.map((_, c) => scores.slice(c * questions.length, (c + 1) * questions.length).reduce((s, j) => s + j.score!, 0) / questions.length);
    for (let i = 1; i < means.length; i++) expect(means[i]!).toBeGreaterThan(means[i - 1]!);
  });

  it('completes under judge faults, counting the judgments that failed, and a rerun asks only for those again', async () => {
    const dir = tempDir('extract-faults');
    let alwaysFailing = 0;
    let judgeFixed = false;
    const askedAfterFix: string[] = [];
    const seen = new Set<string>();
    const server = await startJudgeServer({
      score: (prompt) => {
        // One question's answers are unjudgeable whatever happens.
        if (judgeFixed) askedAfterFix.push(prompt);
        if (!judgeFixed && prompt.includes(smallCheerfulTrait(2).extractQuestions[1]!) && !/coheren/i.test(prompt)) return 'fail';
        return cheerfulJudge(prompt);
      },
      // Every prompt's first attempt meets a fault (500, 429, malformed JSON, a reply past the timeout, in turn);
      // retries then succeed, so only the always-failing answers end without a score.
      fault: (_request, prompt) => {
        if (seen.has(prompt)) return undefined;
        seen.add(prompt);
        return (['status500', 'status429', 'malformed', 'slow'] as const)[seen.size % 4];
      },
    });
    try {
      const judgeOptions = { concurrency: 4, cacheFile: path.join(dir, 'run', 'judge-cache.jsonl'), openai: { apiKey: 'sk-test-not-real', maxRetries: 3, baseDelayMs: 5, timeoutMs: 500 } };
      const judge = parseJudgeSpec(`openai:judge@${server.url}`, judgeOptions);
      const trait = smallCheerfulTrait(2);
      alwaysFailing = 5 * 2; // question 1 × 5 instructions × pos/neg
      const settings = { model, trait, runDir: path.join(dir, 'run'), vectorsDir: path.join(dir, 'vectors'), samples: 1, maxTokens: 16, minPairs: 3, batchSize: 20 };
      const report = await extractPersonaVectors({ ...settings, judge });
      expect(report.failedJudgments.trait).toBe(alwaysFailing);
      expect(report.failedJudgments.coherence).toBe(0);
      expect(report.pairs.kept).toBe(5);
      const judgments = readJsonl<JudgmentRow>(report.files.judgments);
      expect(judgments).toHaveLength(20);
      expect(judgments.filter((j) => j.trait === null && j.trait_error)).toHaveLength(alwaysFailing);
      expect(fs.readFileSync(report.files.markdown, 'utf8')).toContain(`Failed judgments: ${alwaysFailing} trait, 0 coherence.`);
      for (const file of [report.files.judgments, report.files.rollouts, report.files.report, judgeOptions.cacheFile]) expect(fs.readFileSync(file, 'utf8')).not.toContain('sk-test-not-real');
      // Trait and coherence are asked side by side, yet no more than the concurrency limit is ever in flight.
      expect(server.maxInFlight).toBeLessThanOrEqual(4);
      expect(server.maxInFlight).toBeGreaterThanOrEqual(2);

      // The judge works again: the rerun asks only for the failed trait scores (coherence comes from the cache).
      judgeFixed = true;
      const rerun = await extractPersonaVectors({ ...settings, judge: parseJudgeSpec(`openai:judge@${server.url}`, judgeOptions) });
      expect(askedAfterFix.length).toBeGreaterThan(0);
      expect(askedAfterFix.length).toBeLessThanOrEqual(alwaysFailing);
      for (const prompt of askedAfterFix) {
        expect(prompt).toContain(trait.extractQuestions[1]!);
        expect(prompt).not.toMatch(/coheren/i);
      }
      expect(rerun.failedJudgments).toEqual({ trait: 0, coherence: 0 });
      expect(rerun.pairs.kept).toBe(10);
      const rejudged = readJsonl<JudgmentRow>(rerun.files.judgments);
      expect(rejudged).toHaveLength(20);
      expect(new Set(rejudged.map((j) => j.id)).size).toBe(20);
      expect(rejudged.every((j) => j.trait !== null && j.trait_error === undefined)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('refuses to resume a run directory made with other settings, and fails clearly when too few pairs survive', async () => {
    const dir = tempDir('extract-settings');
    const judge = parseJudgeSpec(`lexicon:${planted.lexiconFile}`);
    const base = { model, trait: smallCheerfulTrait(1), judge, runDir: path.join(dir, 'run'), vectorsDir: path.join(dir, 'vectors'), samples: 1, maxTokens: 12, minPairs: 1 };
    await extractPersonaVectors(base);
    await expect(extractPersonaVectors({ ...base, samples: 2 })).rejects.toThrow(/holds a run with other settings \(samples: 1 → 2, temperature: 0 → 1\)/);
    await expect(extractPersonaVectors({ ...base, threshold: 100 })).rejects.toThrow(/only 0 of 5 response pairs pass the filter \(pos trait ≥ 100, neg trait < 0/);
    const rollouts = readJsonl<RolloutRow>(path.join(dir, 'run', 'rollouts.jsonl'));
    expect(new Set(rollouts.map((r) => r.id)).size).toBe(rollouts.length);
  });
});
