import * as path from 'node:path';
import { Command } from 'commander';
import { extractPersonaVectors, type ExtractStage } from '../../experiments/extract.js';
import { selectLayer } from '../../experiments/selectLayer.js';
import { loadTrait } from '../../experiments/traits.js';
import { parseJudgeSpec, type JudgeFactory } from '../../judges/index.js';
import { parseInteger, parseNumber } from '../options.js';
import { emit } from '../output.js';
import { ProgressReporter } from '../progress.js';
import { addModelOptions, openModel, type ModelFlags } from './runtimeOptions.js';

interface ExtractFlags extends ModelFlags {
  trait: string;
  judge: string;
  samples: string;
  maxTokens: string;
  temperature?: string;
  threshold: string;
  coherence: string;
  minPairs: string;
  antonym?: string;
  seed: string;
  batchSize: string;
  runDir?: string;
  vectorsDir: string;
  judgeConcurrency: string;
  selectLayer?: boolean;
  selectCoefficient: string;
  selectQuestions?: string;
  json?: boolean;
}

export function extractCommand(): Command {
  const command = new Command('extract')
    .argument('<model>', 'model folder (or org/name under models/)')
    .description('extract persona vectors (Persona Vectors method): rollouts, judging, filtering, capture, mean difference per layer');
  addModelOptions(command)
    .requiredOption('--trait <name|file>', 'trait name under traits/, or the path of an extract file (its eval sibling is found)')
    .requiredOption('--judge <spec>', 'openai:<model>[@<base-url>], local:<model folder> or lexicon:<file>')
    .option('--samples <n>', 'rollouts per question and instruction, for each polarity', '10')
    .option('--max-tokens <n>', 'tokens per response (the released code: 1000)', '1000')
    .option('--temperature <t>', 'sampling temperature of the rollouts (default 1, or 0 with --samples 1, as the released code)')
    .option('--threshold <T>', 'keep pairs with pos trait ≥ T and neg trait < 100 − T', '50')
    .option('--coherence <C>', 'keep pairs whose responses both have coherence ≥ C', '50')
    .option('--min-pairs <n>', 'fail when fewer pairs survive the filter', '10')
    .option('--antonym <name>', 'assistant name in negative system prompts ("You are a/an <name> assistant.")', 'helpful')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--batch-size <n>', 'rollouts per generation batch', '16')
    .option('--judge-concurrency <n>', 'judge requests in flight', '8')
    .option('--run-dir <dir>', 'where rollouts, judgments and the report go (default experiments/extract/<model>/<trait>)')
    .option('--vectors-dir <dir>', 'vector files go to <dir>/<model>/<trait>.<pooling>.safetensors', 'vectors')
    .option('--select-layer', 'then steer with the response-average vector at every layer (one coefficient, evaluation questions) and report the best layer')
    .option('--select-coefficient <c>', 'coefficient for --select-layer (raw vector units)', '2')
    .option('--select-questions <n>', 'evaluation questions for --select-layer (default all)')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', `
A rerun with the same settings resumes an interrupted run: finished rollouts and judgments are not redone.
The judge's API key comes from OPENAI_API_KEY and is never written anywhere.

Examples:
  $ persona extract models/demo/planted-cheerful --trait cheerful --judge lexicon:models/demo/planted-cheerful/lexicon.json --samples 1
  $ persona extract onnx-community/Qwen2.5-0.5B-Instruct --trait evil --judge openai:gpt-4.1-mini --samples 10 --max-tokens 300
  $ persona extract my-model --trait optimistic --judge openai:qwen2.5-7b@http://127.0.0.1:8000/v1 --threshold 40
  $ persona extract models/demo/planted-cheerful --trait cheerful --judge lexicon:models/demo/planted-cheerful/lexicon.json --samples 1 --select-layer --select-coefficient 0.5`)
    .action(async (location: string, flags: ExtractFlags) => {
      const trait = loadTrait(flags.trait);
      const concurrency = parseInteger(flags.judgeConcurrency, '--judge-concurrency', 1);
      const model = await openModel(location, flags);
      const runDir = flags.runDir ?? path.join('experiments', 'extract', model.folder.modelId, trait.name);
      const reporters = new Map<ExtractStage, ProgressReporter>();
      let judge: JudgeFactory | undefined;
      try {
        // Judgments already paid for survive a crash between two writes of judgments.jsonl.
        judge = parseJudgeSpec(flags.judge, { concurrency, cacheFile: path.join(runDir, 'judge-cache.jsonl') });
        const report = await extractPersonaVectors({
          model,
          trait,
          judge,
          runDir,
          vectorsDir: flags.vectorsDir,
          samples: parseInteger(flags.samples, '--samples', 1),
          maxTokens: parseInteger(flags.maxTokens, '--max-tokens', 1),
          ...(flags.temperature !== undefined ? { temperature: parseNumber(flags.temperature, '--temperature') } : {}),
          threshold: parseNumber(flags.threshold, '--threshold'),
          coherence: parseNumber(flags.coherence, '--coherence'),
          minPairs: parseInteger(flags.minPairs, '--min-pairs'),
          antonym: flags.antonym,
          seed: parseInteger(flags.seed, '--seed'),
          batchSize: parseInteger(flags.batchSize, '--batch-size', 1),
          onProgress: (stage, done, total) => {
            let reporter = reporters.get(stage);
            if (!reporter) {
              reporter = new ProgressReporter(stage, total, true, stage === 'capture' ? 'rows' : stage === 'judging' ? 'responses' : 'rollouts');
              reporter.skip(done);
              reporters.set(stage, reporter);
              return;
            }
            reporter.advance(done - reporter.done);
          },
        });
        let selection: Awaited<ReturnType<typeof selectLayer>> | undefined;
        if (flags.selectLayer) {
          let progress: ProgressReporter | undefined;
          selection = await selectLayer({
            model, trait, judge, vectorFile: report.vectors.response_avg.file,
            coefficient: parseNumber(flags.selectCoefficient, '--select-coefficient'),
            outDir: path.join(report.files.report, '..', 'select-layer'),
            ...(flags.selectQuestions ? { questions: parseInteger(flags.selectQuestions, '--select-questions', 1) } : {}),
            maxTokens: parseInteger(flags.maxTokens, '--max-tokens', 1),
            seed: parseInteger(flags.seed, '--seed'),
            coherenceFloor: parseNumber(flags.coherence, '--coherence'),
            batchSize: parseInteger(flags.batchSize, '--batch-size', 1),
            onProgress: (done, total) => {
              if (!progress) {
                progress = new ProgressReporter('select-layer', total, true, 'rows');
                progress.skip(done);
              } else progress.advance(done - progress.done);
            },
          });
        }
        const best = selection?.best[0];
        emit(Boolean(flags.json), { ...report, ...(selection ? { selection: { best, summary: selection.files.summary } } : {}) }, () =>
          [
            `${report.pairs.kept} of ${report.pairs.total} pairs kept; failed judgments: ${report.failedJudgments.trait} trait, ${report.failedJudgments.coherence} coherence`,
            `pos trait mean ${report.scores.pos.trait.mean?.toFixed(1) ?? 'n/a'}, neg trait mean ${report.scores.neg.trait.mean?.toFixed(1) ?? 'n/a'}`,
            ...Object.entries(report.vectors).map(([pooling, v]) => `${pooling}: ${v.file} (largest norm ${Math.max(...v.norms).toFixed(2)} at layer ${v.norms.indexOf(Math.max(...v.norms))})`),
            `report: ${report.files.markdown}`,
            ...(best ? [`best layer at coefficient ${best.coefficient}: ${best.layer ?? 'none'} (${best.reason}); details in ${selection!.files.markdown}`] : []),
          ].join('\n'),
        );
      } finally {
        await model.dispose();
        await judge?.dispose();
      }
    });
  return command;
}
