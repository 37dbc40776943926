import { Command } from 'commander';
import { UserError } from '../../errors.js';
import { generate, type GenerationResult } from '../../runtime/index.js';
import { hashString } from '../../vectors/index.js';
import { parseInteger, parseMonitor, parseNumber } from '../options.js';
import { emit } from '../output.js';
import { ProgressReporter } from '../progress.js';
import { addInterventionOptions, addModelOptions, addPromptOptions, interventionsFromFlags, openModel, promptRows, vectorFilesFor, type InterventionFlags, type ModelFlags, type PromptFlags } from './runtimeOptions.js';

interface GenerateFlags extends ModelFlags, PromptFlags, InterventionFlags {
  monitor?: string[];
  maxTokens: string;
  temperature: string;
  topP: string;
  topK: string;
  seed: string;
  stop?: string[];
  batchSize: string;
  driftLog?: string;
  json?: boolean;
}

export function generateCommand(): Command {
  const command = new Command('generate')
    .argument('<model>', 'model folder (or org/name under models/)')
    .description('generate text with optional steering, clamping and drift monitoring');
  addPromptOptions(command);
  addInterventionOptions(command);
  addModelOptions(command)
    .option('--monitor <FILE:LAYER>', 'log the projection on the vector at every generated token; repeatable', (v: string, p: string[] = []) => [...p, v])
    .option('--max-tokens <n>', 'new tokens per prompt', '64')
    .option('--temperature <t>', '0 = greedy', '0')
    .option('--top-p <p>', 'nucleus sampling mass', '1')
    .option('--top-k <k>', 'sample among the k most likely tokens (0 = all)', '0')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--stop <text>', 'stop a row when its text contains this; repeatable', (v: string, p: string[] = []) => [...p, v])
    .option('--batch-size <n>', 'prompts per batch', '8')
    .option('--drift-log <file>', 'append per-row projections to this JSONL file')
    .option('--json', 'print {"sequences", "texts", "projections"} as JSON')
    .addHelpText('after', `
Examples:
  $ persona generate models/demo/planted-cheerful --prompt "Tell me about your day." --system "You are a cheerful assistant."
  $ persona generate models/demo/planted-cheerful --prompt "Hi" --steer models/demo/planted-cheerful/planted.safetensors:2:4 --positions response
  $ persona generate models/demo/planted-cheerful --messages chats.jsonl --cap axis.safetensors:3-5:floor:-2.5 --monitor axis.safetensors:4 --json`)
    .action(async (location: string, flags: GenerateFlags) => {
      const model = await openModel(location, flags, flags.inputIds !== undefined && flags.stop === undefined);
      try {
        const { inputIds } = promptRows(model, flags);
        const vectorFiles = vectorFilesFor(model, flags);
        const interventions = interventionsFromFlags(vectorFiles, flags);
        const monitors = (flags.monitor ?? []).map((m) => parseMonitor(m, vectorFiles));
        const batchSize = parseInteger(flags.batchSize, '--batch-size', 1);
        const options = {
          maxNewTokens: parseInteger(flags.maxTokens, '--max-tokens', 1),
          temperature: parseNumber(flags.temperature, '--temperature'),
          topP: parseNumber(flags.topP, '--top-p'),
          topK: parseInteger(flags.topK, '--top-k'),
          seed: parseInteger(flags.seed, '--seed'),
          stopStrings: flags.stop ?? [],
          monitors,
          driftLog: flags.driftLog,
        };
        // A single prompt in human mode is printed token by token as it is generated.
        const streaming = !flags.json && inputIds.length === 1 && (flags.stop ?? []).length === 0 && model.hasTokenizer;
        if (!model.hasTokenizer && !flags.json) throw new UserError('without a tokenizer only --json output is available');
        const progress = new ProgressReporter('generate', inputIds.length, inputIds.length > batchSize, 'prompts');
        const combined: GenerationResult = { sequences: [], finishReasons: [], texts: [], projections: monitors.map((m) => ({ name: m.name, layer: m.layer, perToken: [], mean: [], promptLast: [] })) };
        const streamed: number[] = [];
        let streamedText = '';
        for (let start = 0; start < inputIds.length; start += batchSize) {
          // Each prompt's sampler is seeded by the run's seed and the prompt's index, whatever the batching.
          const rows = inputIds.slice(start, start + batchSize).map((ids, i) => ({ inputIds: ids, interventions, seed: hashString(`${options.seed}:${start + i}`) }));
          const result = await generate(model, rows, {
            ...options,
            onToken: streaming
              ? (event) => {
                  streamed.push(event.tokenId);
                  const text = model.tokenizer.decode(streamed);
                  process.stdout.write(text.slice(streamedText.length));
                  streamedText = text;
                }
              : undefined,
          });
          combined.sequences.push(...result.sequences);
          combined.finishReasons.push(...result.finishReasons);
          combined.texts.push(...result.texts);
          result.projections.forEach((p, m) => {
            combined.projections[m]!.perToken.push(...p.perToken);
            combined.projections[m]!.mean.push(...p.mean);
            combined.projections[m]!.promptLast.push(...p.promptLast);
          });
          progress.advance(rows.length);
        }
        const projectionSummary = (row: number) => combined.projections.map((p) => `${p.name} mean ${p.mean[row]!.toFixed(3)}`).join(', ');
        if (streaming) {
          process.stdout.write('\n');
          if (monitors.length) process.stdout.write(`    (${projectionSummary(0)})\n`);
          return;
        }
        emit(Boolean(flags.json), { sequences: combined.sequences, texts: combined.texts, finishReasons: combined.finishReasons, projections: combined.projections }, () =>
          combined.texts
            .map((text, row) => `${inputIds.length > 1 ? `[${row}] ` : ''}${text}${monitors.length ? `\n    (${projectionSummary(row)})` : ''}`)
            .join('\n'),
        );
      } finally {
        await model.dispose();
      }
    });
  return command;
}
