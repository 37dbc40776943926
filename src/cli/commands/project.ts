import * as fs from 'node:fs';
import { Command } from 'commander';
import { UserError } from '../../errors.js';
import { generateBaseline, projectExamples, projectionColumn, projectionDifference, projectionTypes, readDataset, tokenizeExample, writeDataset, type DatasetRow, type ProjectionType } from '../../experiments/project.js';
import { readVectorFile, vectorAtLayer } from '../../vectors/index.js';
import { parseInteger } from '../options.js';
import { emit } from '../output.js';
import { ProgressReporter } from '../progress.js';
import { addModelOptions, openModel, vectorShapeFor, type ModelFlags } from './runtimeOptions.js';

interface ProjectFlags extends ModelFlags {
  vector: string;
  layer: string;
  data: string;
  type: string;
  overwrite?: boolean;
  allowOtherModel?: boolean;
  baseline?: string;
  generateBaseline?: string;
  maxTokens: string;
  batchSize: string;
  json?: boolean;
}

export function projectCommand(): Command {
  const command = new Command('project')
    .argument('<model>', 'model folder (or org/name under models/)')
    .description('add the projection on a persona vector to every row of a JSONL dataset (as cal_projection does), or screen it by ΔP');
  addModelOptions(command)
    .requiredOption('--vector <file>', 'vector file (row LAYER of a per-layer file)')
    .requiredOption('--layer <L>', 'block whose output to read')
    .requiredOption('--data <file.jsonl>', 'rows of {"messages": [...]} (last = assistant answer) or {"prompt", "answer"}')
    .option('--type <type>', `${projectionTypes.join(' | ')}: response-mean projection, last-prompt-token projection, or cosine`, 'response_avg')
    .option('--overwrite', 'recompute a column the file already has')
    .option('--allow-other-model', 'use a vector file whose metadata names another model of the same shape')
    .option('--baseline <file.jsonl>', "the model's own answers to the same prompts: also add the per-row ΔP and report the dataset ΔP")
    .option('--generate-baseline <file.jsonl>', 'generate that baseline (greedy) into this file first')
    .option('--max-tokens <n>', 'tokens per generated baseline answer', '200')
    .option('--batch-size <n>', 'rows per forward pass', '8')
    .option('--json', 'print a machine-readable summary')
    .addHelpText('after', `
The column is named <model>_<vector stem>_<proj|prompt_last_proj|cos_sim>_layer<L>, as in the Persona Vectors code; the
file is rewritten atomically.

Examples:
  $ persona project models/demo/planted-cheerful --vector vectors/demo/planted-cheerful/cheerful.response_avg.safetensors --layer 2 --data chats.jsonl
  $ persona project my-model --vector evil.response_avg.safetensors --layer 19 --data finetune.jsonl --generate-baseline own.jsonl`)
    .action(async (location: string, flags: ProjectFlags) => {
      if (!(projectionTypes as readonly string[]).includes(flags.type)) throw new UserError(`--type must be one of ${projectionTypes.join(', ')}, got ${flags.type}`);
      if (flags.baseline && flags.generateBaseline) throw new UserError('give --baseline or --generate-baseline, not both');
      const type = flags.type as ProjectionType;
      const rows = readDataset(flags.data);
      const model = await openModel(location, flags);
      try {
        const layer = parseInteger(flags.layer, '--layer');
        const vector = vectorAtLayer(readVectorFile(flags.vector, vectorShapeFor(model, flags)), layer, model.numLayers);
        const column = projectionColumn(model.folder.modelId, flags.vector, type, layer);
        const examples = rows.map((row, i) => tokenizeExample(model, row as DatasetRow, `${flags.data} row ${i + 1}`));
        const batchSize = parseInteger(flags.batchSize, '--batch-size', 1);
        let computed = false;
        if (flags.overwrite || rows.some((row) => !(column in row))) {
          const progress = new ProgressReporter('project', rows.length, rows.length > batchSize, 'rows');
          const values = await projectExamples(model, examples, vector, layer, type, { batchSize, onProgress: (done) => progress.advance(done - progress.done) });
          rows.forEach((row, i) => (row[column] = values[i]));
          computed = true;
        }
        let deltaP: number | undefined;
        const baselineFile = flags.generateBaseline ?? flags.baseline;
        if (baselineFile) {
          if (flags.generateBaseline) writeDataset(flags.generateBaseline, await generateBaseline(model, rows, { maxTokens: parseInteger(flags.maxTokens, '--max-tokens', 1), batchSize }));
          if (!fs.existsSync(baselineFile)) throw new UserError(`baseline file not found: ${baselineFile}`);
          const baseline = readDataset(baselineFile).map((row, i) => tokenizeExample(model, row as DatasetRow, `${baselineFile} row ${i + 1}`));
          const difference = await projectionDifference(model, examples, baseline, vector, layer);
          rows.forEach((row, i) => (row[`${column}_delta_p`] = difference.perSample[i]));
          deltaP = difference.dataset;
          computed = true;
        }
        if (computed) writeDataset(flags.data, rows);
        const values = rows.map((row) => row[column] as number);
        emit(Boolean(flags.json), { file: flags.data, column, rows: rows.length, mean: values.reduce((a, b) => a + b, 0) / values.length, ...(deltaP !== undefined ? { deltaP } : {}) }, () =>
          [
            `${computed ? 'wrote' : 'already had'} column ${column} in ${flags.data} (${rows.length} rows, mean ${(values.reduce((a, b) => a + b, 0) / values.length).toFixed(4)})`,
            ...(deltaP !== undefined ? [`dataset ΔP = ${deltaP.toFixed(4)} (per-row values in ${column}_delta_p)`] : []),
          ].join('\n'),
        );
      } finally {
        await model.dispose();
      }
    });
  return command;
}
