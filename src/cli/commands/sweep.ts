import { Command } from 'commander';
import { interval, runSweep } from '../../experiments/sweep.js';
import { writeSweepReport } from '../../experiments/sweepReport.js';
import { readSweepSpec } from '../../experiments/sweepSpec.js';
import { emit, table } from '../output.js';
import { ProgressReporter } from '../progress.js';
import { openModel } from './runtimeOptions.js';

export function sweepCommand(): Command {
  return new Command('sweep')
    .argument('<spec>', 'experiment spec (YAML), e.g. experiments/demo-sweep.yaml')
    .description('run a grid of steering interventions (vectors × layers × coefficients × positions × clamps), judge it, summarise it')
    .option('--experiments-dir <dir>', 'results go to <dir>/<spec name>/ (default: beside the spec)')
    .option('--models-dir <dir>', 'where models live', 'models')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', `
Results append to <name>/results.jsonl one generation per row; a rerun skips finished rows. summary.json and summary.md
hold per-cell means with 95% intervals and the best layer per vector. Then: persona plot experiments/<name>

Examples:
  $ persona sweep experiments/demo-sweep.yaml
  $ persona sweep experiments/demo-sweep.yaml --json > summary.json`)
    .action(async (file: string, flags: { experimentsDir?: string; modelsDir: string; json?: boolean }) => {
      const spec = readSweepSpec(file, { experimentsDir: flags.experimentsDir, modelsDir: flags.modelsDir });
      const model = await openModel(spec.model, { device: spec.device, dtype: spec.dtype, modelsDir: flags.modelsDir });
      let progress: ProgressReporter | undefined;
      try {
        const summary = await runSweep(spec, {
          model,
          log: (line) => process.stderr.write(`sweep: ${line}\n`),
          onProgress: (done, total, cells) => {
            const detail = `${cells.done}/${cells.total} cells`;
            if (!progress) {
              progress = new ProgressReporter('sweep', total, true, 'rows');
              progress.skip(done, detail);
            } else progress.advance(done - progress.done, detail);
          },
        });
        emit(Boolean(flags.json), summary, () =>
          [
            table([
              ['vector', 'layer', 'coef', 'positions', 'clamp', 'n', 'trait [95% CI]', 'coherence [95% CI]'],
              ...summary.cells.map((c) => [c.vector, c.layer, c.coefficient, c.positions, c.clamp ?? 'none', c.n, interval(c.trait), interval(c.coherence)]),
            ]),
            '',
            ...(summary.failedJudgments.trait || summary.failedJudgments.coherence
              ? [`failed judgments: ${summary.failedJudgments.trait} trait, ${summary.failedJudgments.coherence} coherence (left out of the means; rerun to ask again)`]
              : []),
            ...summary.best.map((b) => `best layer for ${b.vector} (${b.positions}, clamp ${b.clamp}): ${b.layer ?? 'none'} — ${b.reason}`),
            `summary: ${summary.files.markdown}`,
          ].join('\n'),
        );
      } finally {
        await model.dispose();
      }
    });
}

export function plotCommand(): Command {
  return new Command('plot')
    .argument('<dir>', 'a sweep output folder, e.g. experiments/demo-sweep')
    .description('write the sweep report: self-contained HTML (plotly inlined) and one PNG per figure (headless Chromium)')
    .option('--no-png', 'HTML only (no browser needed)')
    .option('--json', 'print the written files as JSON')
    .addHelpText('after', `
PNGs need Chromium (Debian: apt-get install chromium; elsewhere set PERSONA_CHROMIUM).

Examples:
  $ persona plot experiments/demo-sweep
  $ persona plot experiments/demo-sweep --no-png`)
    .action(async (dir: string, flags: { png: boolean; json?: boolean }) => {
      const files = await writeSweepReport(dir, { png: flags.png });
      emit(Boolean(flags.json), files, () => [`report: ${files.html}`, ...files.pngs.map((f) => `png: ${f}`)].join('\n'));
    });
}
