import { Command } from 'commander';
import { runDemo } from '../../demo/index.js';
import { parseInteger } from '../options.js';
import { emit, table } from '../output.js';

export function demoCommand(): Command {
  return new Command('demo')
    .description('offline main job: build the planted-persona model, steer and clamp it, and write a report to experiments/demo/')
    .option('--models-dir <dir>', 'where the demo model is built', 'models')
    .option('--experiments-dir <dir>', 'where the report goes', 'experiments')
    .option('--questions <n>', 'questions per condition', '8')
    .option('--max-tokens <n>', 'tokens per response', '40')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--vectors-dir <dir>', 'where the extracted vectors go', 'vectors')
    .option('--no-extract', 'skip the extraction and steering with the extracted vector')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', `
Examples:
  $ persona demo
  $ persona demo --questions 4 --max-tokens 20 --json`)
    .action(async (flags: { modelsDir: string; experimentsDir: string; questions: string; maxTokens: string; seed: string; vectorsDir: string; extract: boolean; json?: boolean }) => {
      const started = Date.now();
      const report = await runDemo({
        modelsDir: flags.modelsDir,
        experimentsDir: flags.experimentsDir,
        questions: parseInteger(flags.questions, '--questions', 1),
        maxTokens: parseInteger(flags.maxTokens, '--max-tokens', 1),
        seed: parseInteger(flags.seed, '--seed'),
        extract: flags.extract,
        vectorsDir: flags.vectorsDir,
        log: (line) => process.stderr.write(`demo: ${line}\n`),
      });
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      emit(Boolean(flags.json), report, () =>
        [
          table([['condition', 'trait words', 'opposite words', 'projection on u'], ...report.conditions.map((c) => [c.name, pct(c.traitRate), pct(c.oppositeRate), c.meanProjection.toFixed(2)])]),
          '',
          `sample, cheerful prompt: ${report.conditions.find((c) => c.name === 'cheerful prompt')!.sample}`,
          `sample, clamped:         ${report.conditions.find((c) => c.name === 'cheerful prompt + clamp')!.sample}`,
          '',
          ...(report.extraction
            ? [
                `extraction: ${report.extraction.keptPairs}/${report.extraction.totalPairs} pairs kept; cos(vector, u) per layer ${report.extraction.cosineWithU.map((c) => c.toFixed(3)).join(', ')}`,
                `steering with it (unit, block 2): ${report.extraction.steering.map((s) => `c=${s.coefficient}: ${s.traitScore.toFixed(0)}`).join(', ')} (trait score)`,
                `vector: ${report.extraction.vectorFile}`,
                '',
              ]
            : []),
          `report: ${report.files.html} (also ${report.files.markdown}, ${report.files.json}); ${((Date.now() - started) / 1000).toFixed(1)} s`,
        ].join('\n'),
      );
    });
}
