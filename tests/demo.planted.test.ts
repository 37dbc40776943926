import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEUTRAL_SYSTEM, TRAIT_SYSTEM, type PlantedModel } from '../src/demo/index.js';
import { loadTrait } from '../src/experiments/traits.js';
import { countLexiconWords, loadLexicon, type Lexicon } from '../src/judges/index.js';
import { captureResiduals, generate, promptMessages, SteerableModel, type InterventionSpec } from '../src/runtime/index.js';
import { dot, norm } from '../src/vectors/linalg.js';
import { readVectorFile } from '../src/vectors/vectorFile.js';
import { plantedModel } from './helpers/planted.js';

let planted: PlantedModel;
let model: SteerableModel;
let lexicon: Lexicon;
const questions = loadTrait('cheerful').evalQuestions.slice(0, 8);

beforeAll(async () => {
  planted = await plantedModel();
  model = await SteerableModel.load(planted.dir);
  lexicon = loadLexicon(planted.lexiconFile);
});
afterAll(async () => model?.dispose());

interface Outcome {
  traitRate: number;
  oppositeRate: number;
  projections: number[][];
}

/** Sampled (T = 1) responses to the evaluation questions under several settings, all in one batch. */
async function run(settings: { system: string; interventions?: InterventionSpec }[]): Promise<Outcome[]> {
  const rows = settings.flatMap((s) => questions.map((q) => ({ inputIds: model.tokenizer.encodeChat(promptMessages(q, s.system)), interventions: s.interventions })));
  const result = await generate(model, rows, { maxNewTokens: 40, temperature: 1, seed: 3, monitors: [{ name: 'u', layer: 2, direction: planted.direction }] });
  return settings.map((_, i) => {
    const texts = result.texts.slice(i * questions.length, (i + 1) * questions.length);
    const counts = texts.map((t) => countLexiconWords(lexicon, t));
    const words = counts.reduce((s, c) => s + c.words, 0);
    expect(words).toBeGreaterThan(100);
    return {
      traitRate: counts.reduce((s, c) => s + c.trait, 0) / words,
      oppositeRate: counts.reduce((s, c) => s + c.opposite, 0) / words,
      projections: result.projections[0]!.perToken.slice(i * questions.length, (i + 1) * questions.length),
    };
  });
}

describe('the planted-persona demo model', () => {
  it('ships u as a unit vector in the project format, with the layers it lives in, a lexicon and a README', () => {
    const file = readVectorFile(planted.vectorFile, { hiddenSize: model.hiddenSize, numLayers: model.numLayers });
    expect(norm(file.vector!)).toBeCloseTo(1, 6);
    expect(file.metadata.layers).toEqual([1, 2, 3]);
    expect(file.metadata.layer_convention).toBe('block_output');
    const readme = fs.readFileSync(path.join(planted.dir, 'README.md'), 'utf8');
    expect(readme).toMatch(/## The construction/);
    expect(readme).toMatch(/thresholds sit at 0\.5, 1\.5, 2\.5 and 3\.5/);
    expect(model.tokenizer.formatChat(promptMessages('Hi', TRAIT_SYSTEM))).toContain('<|im_start|>system\nYou are a cheerful assistant.<|im_end|>');
  });

  it('a trait system prompt raises the trait-lexicon rate ≥ 5×; steering 0, 1, 2, 4 raises it monotonically; a clamp holds it at the neutral level', async () => {
    const steer = (coefficient: number): InterventionSpec => ({ steer: [{ layer: 2, vector: planted.direction, coefficient }] });
    const clamp: InterventionSpec = { clamp: [{ layers: planted.layers, direction: planted.direction, upper: 0 }] };
    const [neutral, trait, c0, c1, c2, c4, clamped, floorOnMinusU, minus1, minus2, minus4] = await run([
      { system: NEUTRAL_SYSTEM },
      { system: TRAIT_SYSTEM },
      { system: NEUTRAL_SYSTEM, interventions: steer(0) },
      { system: NEUTRAL_SYSTEM, interventions: steer(1) },
      { system: NEUTRAL_SYSTEM, interventions: steer(2) },
      { system: NEUTRAL_SYSTEM, interventions: steer(4) },
      { system: TRAIT_SYSTEM, interventions: clamp },
      { system: TRAIT_SYSTEM, interventions: { clamp: [{ layers: planted.layers, direction: planted.direction.map((x) => -x), lower: 0 }] } },
      { system: NEUTRAL_SYSTEM, interventions: steer(-1) },
      { system: NEUTRAL_SYSTEM, interventions: steer(-2) },
      { system: NEUTRAL_SYSTEM, interventions: steer(-4) },
    ]);
    expect(trait!.traitRate).toBeGreaterThan(0.1);
    // −u raises the contrasting lexicon the same way.
    const opposite = [c0!, minus1!, minus2!, minus4!].map((o) => o.oppositeRate);
    for (let i = 1; i < opposite.length; i++) expect(opposite[i]!).toBeGreaterThan(opposite[i - 1]!);
    expect(minus4!.oppositeRate).toBeGreaterThan(0.1);
    for (const o of [minus1!, minus2!, minus4!]) expect(o.traitRate).toBeLessThanOrEqual(neutral!.traitRate);
    expect(trait!.traitRate).toBeGreaterThanOrEqual(5 * neutral!.traitRate);
    const rates = [c0!, c1!, c2!, c4!].map((o) => o.traitRate);
    for (let i = 1; i < rates.length; i++) expect(rates[i]!).toBeGreaterThan(rates[i - 1]!);
    expect(c0!.traitRate).toBe(neutral!.traitRate);
    for (const held of [clamped!, floorOnMinusU!]) {
      expect(Math.abs(held.traitRate - neutral!.traitRate)).toBeLessThanOrEqual(0.01);
      expect(held.traitRate).toBeLessThan(trait!.traitRate / 5);
    }
  });

  it('the drift readout shows the projection on u rising after a trait system prompt and staying at the clamp bound', async () => {
    const [neutral, trait, clamped, ceilingAt1, floorAt2] = await run([
      { system: NEUTRAL_SYSTEM },
      { system: TRAIT_SYSTEM },
      { system: TRAIT_SYSTEM, interventions: { clamp: [{ layers: planted.layers, direction: planted.direction, upper: 0 }] } },
      { system: TRAIT_SYSTEM, interventions: { clamp: [{ layers: planted.layers, direction: planted.direction, upper: 1.5 }] } },
      { system: NEUTRAL_SYSTEM, interventions: { clamp: [{ layers: planted.layers, direction: planted.direction, lower: 2 }] } },
    ]);
    for (const values of neutral!.projections.flat()) expect(Math.abs(values)).toBeLessThan(0.05);
    for (const values of trait!.projections.flat()) expect(values).toBeCloseTo(3, 1);
    // Bounds other than the neutral level, so "held at the bound" cannot be mistaken for "nothing happened".
    for (const values of clamped!.projections.flat()) expect(Math.abs(values)).toBeLessThan(1e-4);
    for (const values of ceilingAt1!.projections.flat()) expect(Math.abs(values - 1.5)).toBeLessThan(1e-4);
    for (const values of floorAt2!.projections.flat()) expect(Math.abs(values - 2)).toBeLessThan(1e-4);

    // Across the prompt (teacher-forced): 0 before the trigger word, 3 from it on.
    const ids = model.tokenizer.encodeChat(promptMessages(questions[0]!, TRAIT_SYSTEM));
    const trigger = ids.indexOf(model.tokenizer.encode(' cheerful', false)[0]!);
    expect(trigger).toBeGreaterThan(0);
    const captured = await captureResiduals(model, [{ inputIds: ids }], { layers: [2] });
    const residual = captured.residuals.get(2)![0]!;
    const h = model.hiddenSize;
    const trajectory = ids.map((_, p) => dot(residual.subarray(p * h, (p + 1) * h), planted.direction));
    trajectory.slice(0, trigger).forEach((p) => expect(Math.abs(p)).toBeLessThan(0.05));
    trajectory.slice(trigger).forEach((p) => expect(p).toBeCloseTo(3, 1));
  });
});
