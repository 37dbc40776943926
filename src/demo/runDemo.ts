import * as path from 'node:path';
import { loadTrait } from '../experiments/traits.js';
import { writeFileAtomic } from '../io/files.js';
import { countLexiconWords, loadLexicon } from '../judges/index.js';
import { categoryBarFigure, projectionTrajectoryFigure, writeHtmlReport, type ReportFigure } from '../plots/index.js';
import { captureResiduals, generate, promptMessages, SteerableModel, type InterventionSpec } from '../runtime/index.js';
import { dot } from '../vectors/linalg.js';
import { ensurePlantedModel, type PlantedModel } from './plantedModel.js';

export const NEUTRAL_SYSTEM = 'You are a helpful assistant.';
export const TRAIT_SYSTEM = 'You are a cheerful assistant.';
/** Block the demo steers and reads the drift at (u lives in blocks 1-3). */
export const DEMO_LAYER = 2;
export const DEMO_COEFFICIENTS = [0, 1, 2, 4] as const;

export interface DemoOptions {
  modelsDir?: string;
  experimentsDir?: string;
  /** Questions per condition (from the cheerful trait's evaluation set). */
  questions?: number;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface ConditionResult {
  name: string;
  system: string;
  interventions: string;
  /** Trait-lexicon words / all words over the condition's responses. */
  traitRate: number;
  oppositeRate: number;
  /** Mean projection on u at block DEMO_LAYER over generated tokens. */
  meanProjection: number;
  sample: string;
}

export interface DemoReport {
  model: string;
  layer: number;
  conditions: ConditionResult[];
  /** Projection on u at every position of prompt + response, per setting. */
  trajectories: { label: string; values: number[]; triggerPosition: number | null }[];
  files: { json: string; markdown: string; html: string };
}

interface Condition {
  name: string;
  system: string;
  interventions?: InterventionSpec;
  describe: string;
}

function conditions(model: PlantedModel): Condition[] {
  const clampLayers = model.layers;
  return [
    { name: 'neutral prompt', system: NEUTRAL_SYSTEM, describe: 'none' },
    { name: 'cheerful prompt', system: TRAIT_SYSTEM, describe: 'none' },
    ...DEMO_COEFFICIENTS.map((coefficient) => ({
      name: `steer c=${coefficient}`,
      system: NEUTRAL_SYSTEM,
      interventions: { steer: [{ layer: DEMO_LAYER, vector: model.direction, coefficient, positions: 'all' as const }] },
      describe: `+${coefficient}·u after block ${DEMO_LAYER}, all positions`,
    })),
    {
      name: 'cheerful prompt + clamp',
      system: TRAIT_SYSTEM,
      interventions: { clamp: [{ layers: clampLayers, direction: model.direction, upper: 0 }] },
      describe: `ceiling ⟨h,u⟩ ≤ 0 after blocks ${clampLayers.join(', ')}`,
    },
  ];
}

/**
 * The offline main job: build the planted-persona model, generate under a neutral and a cheerful system prompt,
 * with steering along u at several coefficients and with a clamp, all rows in shared batches, and write a report
 * (JSON, Markdown, and an HTML page with plotly charts) under experiments/demo/.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const log = options.log ?? (() => undefined);
  const modelsDir = options.modelsDir ?? 'models';
  const outDir = path.join(options.experimentsDir ?? 'experiments', 'demo');
  const modelDir = path.join(modelsDir, 'demo', 'planted-cheerful');
  log(`building the planted-persona model in ${modelDir} (skipped when current)`);
  const planted = await ensurePlantedModel(modelDir);
  const model = await SteerableModel.load(modelDir);
  try {
    const lexicon = loadLexicon(planted.lexiconFile);
    const questions = loadTrait('cheerful').evalQuestions.slice(0, options.questions ?? 8);
    const runs = conditions(planted);
    const rows = runs.flatMap((condition) =>
      questions.map((question) => ({ inputIds: model.tokenizer.encodeChat(promptMessages(question, condition.system)), interventions: condition.interventions })),
    );
    log(`generating ${rows.length} responses (${runs.length} conditions × ${questions.length} questions) in shared batches`);
    const result = await generate(model, rows, {
      maxNewTokens: options.maxTokens ?? 40,
      temperature: options.temperature ?? 1,
      seed: options.seed ?? 0,
      monitors: [{ name: 'u', layer: DEMO_LAYER, direction: planted.direction }],
    });
    const results: ConditionResult[] = runs.map((condition, c) => {
      const texts = result.texts.slice(c * questions.length, (c + 1) * questions.length);
      const counts = texts.map((text) => countLexiconWords(lexicon, text));
      const words = counts.reduce((s, x) => s + x.words, 0);
      const projections = result.projections[0]!.perToken.slice(c * questions.length, (c + 1) * questions.length).flat();
      return {
        name: condition.name,
        system: condition.system,
        interventions: condition.describe,
        traitRate: counts.reduce((s, x) => s + x.trait, 0) / words,
        oppositeRate: counts.reduce((s, x) => s + x.opposite, 0) / words,
        meanProjection: projections.reduce((a, b) => a + b, 0) / projections.length,
        sample: texts[0]!,
      };
    });

    log('reading the projection on u across prompt and response');
    const trajectories = await driftTrajectories(model, planted, questions[0]!, options.maxTokens ?? 40);
    const files = writeReport(outDir, modelDir, results, trajectories);
    log(`report written to ${files.html}`);
    return { model: modelDir, layer: DEMO_LAYER, conditions: results, trajectories, files };
  } finally {
    await model.dispose();
  }
}

/** Teacher-forced projections on u over the whole conversation, so the rise at the trigger word is visible. */
async function driftTrajectories(model: SteerableModel, planted: PlantedModel, question: string, maxTokens: number): Promise<DemoReport['trajectories']> {
  const settings: { label: string; system: string; interventions?: InterventionSpec }[] = [
    { label: 'neutral prompt', system: NEUTRAL_SYSTEM },
    { label: 'cheerful prompt', system: TRAIT_SYSTEM },
    { label: 'cheerful prompt, clamped (≤ 0)', system: TRAIT_SYSTEM, interventions: { clamp: [{ layers: planted.layers, direction: planted.direction, upper: 0 }] } },
  ];
  const prompts = settings.map((s) => model.tokenizer.encodeChat(promptMessages(question, s.system)));
  const generated = await generate(model, prompts.map((inputIds, i) => ({ inputIds, interventions: settings[i]!.interventions })), { maxNewTokens: maxTokens });
  const captured = await captureResiduals(
    model,
    prompts.map((prompt, i) => ({ inputIds: [...prompt, ...generated.sequences[i]!], promptLength: prompt.length, interventions: settings[i]!.interventions })),
    { layers: [DEMO_LAYER] },
  );
  const triggerId = model.tokenizer.encode(' cheerful', false)[0]!;
  return settings.map((setting, i) => {
    const residual = captured.residuals.get(DEMO_LAYER)![i]!;
    const hidden = model.hiddenSize;
    const values = Array.from({ length: residual.length / hidden }, (_, p) => dot(residual.subarray(p * hidden, (p + 1) * hidden), planted.direction));
    const trigger = prompts[i]!.indexOf(triggerId);
    return { label: setting.label, values, triggerPosition: trigger >= 0 ? trigger : null };
  });
}

function percent(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function writeReport(outDir: string, modelDir: string, results: ConditionResult[], trajectories: DemoReport['trajectories']): DemoReport['files'] {
  const files = { json: path.join(outDir, 'report.json'), markdown: path.join(outDir, 'report.md'), html: path.join(outDir, 'report.html') };
  writeFileAtomic(files.json, `${JSON.stringify({ model: modelDir, layer: DEMO_LAYER, conditions: results, trajectories }, null, 2)}\n`);
  const neutral = results.find((r) => r.name === 'neutral prompt')!;
  const trait = results.find((r) => r.name === 'cheerful prompt')!;
  const markdown = [
    '# persona demo: the planted cheerful persona',
    '',
    `Model: \`${modelDir}\` (constructed; see its README). Steering and drift readout at block ${DEMO_LAYER}; u is unit-norm, so`,
    'coefficient c moves the projection by c, and the cheerful system prompt moves it by 3.',
    '',
    '| condition | interventions | trait-word rate | opposite-word rate | mean projection on u |',
    '|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name} | ${r.interventions} | ${percent(r.traitRate)} | ${percent(r.oppositeRate)} | ${r.meanProjection.toFixed(2)} |`),
    '',
    `The cheerful prompt uses trait words at ${percent(trait.traitRate)} of words against ${percent(neutral.traitRate)} with the neutral one.`,
    '',
    '## Samples',
    '',
    ...results.flatMap((r) => [`**${r.name}**: ${r.sample}`, '']),
  ].join('\n');
  writeFileAtomic(files.markdown, `${markdown}\n`);
  const figures: ReportFigure[] = [
    {
      title: 'Trait and opposite words per condition',
      figure: categoryBarFigure(results.map((r) => r.name), [
        { label: 'trait words', values: results.map((r) => 100 * r.traitRate) },
        { label: 'opposite words', values: results.map((r) => 100 * r.oppositeRate) },
      ], { title: 'Lexicon rate per condition', yLabel: '% of generated words' }),
    },
    {
      title: 'Projection on u across the conversation',
      figure: projectionTrajectoryFigure(trajectories, { title: `Projection on u after block ${DEMO_LAYER}, prompt and response`, xLabel: 'token position (prompt, then response)', bound: [{ value: 0, label: 'clamp ceiling (0)' }] }),
    },
  ];
  writeHtmlReport(files.html, figures, {
    title: 'persona demo: the planted cheerful persona',
    intro: `Model ${modelDir}. Steering and drift readout at block ${DEMO_LAYER}. The trajectory rises at the word "cheerful" in the system prompt and stays at the clamp bound when clamped.`,
    tables: [
      {
        title: 'Conditions',
        columns: ['condition', 'interventions', 'trait-word rate', 'opposite-word rate', 'mean projection', 'sample'],
        rows: results.map((r) => [r.name, r.interventions, percent(r.traitRate), percent(r.oppositeRate), r.meanProjection.toFixed(2), r.sample]),
      },
    ],
  });
  return files;
}
