import * as path from 'node:path';
import { loadTrait } from '../experiments/traits.js';
import { writeFileAtomic } from '../io/files.js';
import { countLexiconWords, loadLexicon } from '../judges/index.js';
import { categoryBarFigure, projectionTrajectoryFigure, writeHtmlReport, type ReportFigure } from '../plots/index.js';
import { extractPersonaVectors } from '../experiments/extract.js';
import { parseJudgeSpec } from '../judges/index.js';
import { captureResiduals, generate, promptMessages, SteerableModel, type InterventionSpec } from '../runtime/index.js';
import { cosine, dot, norm, normalize } from '../vectors/linalg.js';
import { hashString } from '../vectors/random.js';
import { readVectorFile } from '../vectors/vectorFile.js';
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
  /** Extract the cheerful vector with the Persona Vectors pipeline and steer with it (default true). */
  extract?: boolean;
  vectorsDir?: string;
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

export interface ExtractionResult {
  /** cos(extracted response-average vector, u) per layer. */
  cosineWithU: number[];
  keptPairs: number;
  totalPairs: number;
  vectorFile: string;
  /** Lexicon-judged trait score (mean over responses) when steering with the extracted vector, unit-scaled. */
  steering: { coefficient: number; traitScore: number; coherence: number }[];
}

export interface DemoReport {
  model: string;
  layer: number;
  conditions: ConditionResult[];
  extraction?: ExtractionResult;
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
  const model = await SteerableModel.load(modelDir, { modelsDir });
  try {
    const lexicon = loadLexicon(planted.lexiconFile);
    const questions = loadTrait('cheerful').evalQuestions.slice(0, options.questions ?? 8);
    const runs = conditions(planted);
    // Rows of the same question share a seed across conditions, so the conditions are compared on paired samples.
    const rows = runs.flatMap((condition) =>
      questions.map((question, q) => ({ inputIds: model.tokenizer.encodeChat(promptMessages(question, condition.system)), interventions: condition.interventions, seed: hashString(`${options.seed ?? 0}:${q}`) })),
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
    const extraction = options.extract === false ? undefined : await extractAndSteer(model, planted, questions, outDir, options, log);
    const files = writeReport(outDir, modelDir, results, trajectories, extraction);
    log(`report written to ${files.html}`);
    return { model: modelDir, layer: DEMO_LAYER, conditions: results, trajectories, ...(extraction ? { extraction } : {}), files };
  } finally {
    await model.dispose();
  }
}

/**
 * The Persona Vectors pipeline on the planted model (cheerful vs grim system prompts, lexicon judge), then steering
 * with the extracted response-average vector at the demo's coefficients, scaled to unit length so the coefficients
 * mean the same as for u.
 */
async function extractAndSteer(model: SteerableModel, planted: PlantedModel, questions: string[], outDir: string, options: DemoOptions, log: (line: string) => void): Promise<ExtractionResult> {
  const judge = parseJudgeSpec(`lexicon:${planted.lexiconFile}`);
  log('extracting the cheerful vector: 20 questions × 5 instruction pairs × pos/neg, lexicon judge');
  const report = await extractPersonaVectors({
    model,
    trait: loadTrait('cheerful'),
    judge,
    runDir: path.join(outDir, 'extract'),
    vectorsDir: options.vectorsDir ?? 'vectors',
    samples: 1,
    // One sample per prompt but still sampled, so the 100 rollouts per polarity are not 20 repeated greedy answers.
    temperature: 1,
    maxTokens: options.maxTokens ?? 40,
    seed: options.seed ?? 0,
    batchSize: 40,
    // The demo owns this folder: a run with other settings (or an older demo model) is started over.
    onSettingsChange: 'restart',
  });
  const extracted = readVectorFile(report.vectors.response_avg.file).vectors!;
  const cosineWithU = extracted.map((v) => (norm(v) === 0 ? 0 : cosine(v, planted.direction)));
  log(`cos(extracted, u) per layer: ${cosineWithU.map((c) => c.toFixed(3)).join(', ')}`);
  const direction = normalize(extracted[DEMO_LAYER]!);
  const rows = DEMO_COEFFICIENTS.flatMap((coefficient) =>
    questions.map((question, q) => ({
      inputIds: model.tokenizer.encodeChat(promptMessages(question, NEUTRAL_SYSTEM)),
      interventions: { steer: [{ layer: DEMO_LAYER, vector: direction, coefficient }] },
      seed: hashString(`${options.seed ?? 0}:${q}`),
    })),
  );
  const result = await generate(model, rows, { maxNewTokens: options.maxTokens ?? 40, temperature: options.temperature ?? 1, seed: options.seed ?? 0 });
  const traitScores = await judge.judge('trait').score(result.texts.map((answer, i) => ({ question: questions[i % questions.length]!, answer, template: '' })));
  const coherence = await judge.judge('coherence').score(result.texts.map((answer, i) => ({ question: questions[i % questions.length]!, answer, template: '' })));
  const mean = (values: { score: number | null }[]) => values.reduce((s, v) => s + (v.score ?? 0), 0) / values.length;
  const steering = DEMO_COEFFICIENTS.map((coefficient, c) => ({
    coefficient,
    traitScore: mean(traitScores.slice(c * questions.length, (c + 1) * questions.length)),
    coherence: mean(coherence.slice(c * questions.length, (c + 1) * questions.length)),
  }));
  log(`steering with the extracted vector: ${steering.map((s) => `c=${s.coefficient} → ${s.traitScore.toFixed(1)}`).join(', ')}`);
  return { cosineWithU, keptPairs: report.pairs.kept, totalPairs: report.pairs.total, vectorFile: report.vectors.response_avg.file, steering };
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

function writeReport(outDir: string, modelDir: string, results: ConditionResult[], trajectories: DemoReport['trajectories'], extraction: ExtractionResult | undefined): DemoReport['files'] {
  const files = { json: path.join(outDir, 'report.json'), markdown: path.join(outDir, 'report.md'), html: path.join(outDir, 'report.html') };
  writeFileAtomic(files.json, `${JSON.stringify({ model: modelDir, layer: DEMO_LAYER, conditions: results, trajectories, extraction }, null, 2)}\n`);
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
    ...(extraction
      ? [
          '## Extraction (Persona Vectors pipeline, lexicon judge)',
          '',
          `${extraction.keptPairs} of ${extraction.totalPairs} pairs kept. cos(extracted response-average vector, u) per layer: ${extraction.cosineWithU.map((c) => c.toFixed(3)).join(', ')} (u lives in blocks 1-3).`,
          '',
          `Steering with the extracted vector (unit length, block ${DEMO_LAYER}, neutral prompt), judged trait score:`,
          '',
          '| coefficient | trait score | coherence |',
          '|---|---|---|',
          ...extraction.steering.map((s) => `| ${s.coefficient} | ${s.traitScore.toFixed(1)} | ${s.coherence.toFixed(1)} |`),
          '',
          `Vector file: \`${extraction.vectorFile}\``,
          '',
        ]
      : []),
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
    ...(extraction
      ? [
          {
            title: 'Extracted vector vs the planted direction',
            figure: categoryBarFigure(extraction.cosineWithU.map((_, layer) => `block ${layer}`), [{ label: 'cos(extracted, u)', values: extraction.cosineWithU }], { title: 'Cosine of the extracted response-average vector with u', yLabel: 'cosine' }),
          },
          {
            title: 'Steering with the extracted vector',
            figure: categoryBarFigure(extraction.steering.map((s) => `c=${s.coefficient}`), [
              { label: 'trait score', values: extraction.steering.map((s) => s.traitScore) },
              { label: 'coherence', values: extraction.steering.map((s) => s.coherence) },
            ], { title: 'Lexicon-judged scores when steering with the extracted vector', yLabel: 'score (0-100)' }),
          },
        ]
      : []),
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
