import { Command } from 'commander';
import { captureResiduals } from '../../runtime/index.js';
import { LAYER_CONVENTION, writeSafetensors, type TensorToWrite } from '../../vectors/index.js';
import { parseInteger, parseLayers } from '../options.js';
import { emit } from '../output.js';
import { ProgressReporter } from '../progress.js';
import { addInterventionOptions, addModelOptions, addPromptOptions, interventionsFromFlags, openModel, promptRows, vectorFilesFor, type InterventionFlags, type ModelFlags, type PromptFlags } from './runtimeOptions.js';

interface CaptureFlags extends ModelFlags, PromptFlags, InterventionFlags {
  layers: string;
  out: string;
  batchSize: string;
  json?: boolean;
}

export function captureCommand(): Command {
  const command = new Command('capture')
    .argument('<model>', 'model folder (or org/name under models/)')
    .description('teacher-forced forward pass; writes the residual after each requested block to a safetensors file');
  addPromptOptions(command);
  addInterventionOptions(command);
  addModelOptions(command)
    .option('--layers <layers>', 'all, A-B or L,M,…', 'all')
    .option('--batch-size <n>', 'rows per forward pass', '8')
    .requiredOption('--out <file>', 'safetensors file: residual.L [batch, seq, hidden] float32, input_ids and attention_mask (left-padded)')
    .option('--json', 'machine-readable summary')
    .addHelpText('after', `
Examples:
  $ persona capture models/demo/planted-cheerful --prompt "Hello" --out hello.safetensors
  $ persona capture models/demo/planted-cheerful --messages chats.jsonl --layers 1-3 --steer v.safetensors:2:4 --out steered.safetensors`)
    .action(async (location: string, flags: CaptureFlags) => {
      const model = await openModel(location, flags, flags.inputIds !== undefined);
      try {
        const layers = parseLayers(flags.layers, model.numLayers);
        const { inputIds, promptLengths } = promptRows(model, flags);
        const interventions = interventionsFromFlags(vectorFilesFor(model, flags), flags);
        const batchSize = parseInteger(flags.batchSize, '--batch-size', 1);
        const residuals = new Map<number, Float32Array[]>(layers.map((layer) => [layer, []]));
        const progress = new ProgressReporter('capture', inputIds.length, inputIds.length > batchSize, 'rows');
        for (let start = 0; start < inputIds.length; start += batchSize) {
          const rows = inputIds.slice(start, start + batchSize).map((ids, i) => ({ inputIds: ids, promptLength: promptLengths[start + i], interventions }));
          const result = await captureResiduals(model, rows, { layers });
          for (const layer of layers) residuals.get(layer)!.push(...result.residuals.get(layer)!);
          progress.advance(rows.length);
        }
        const batch = inputIds.length;
        const width = Math.max(...inputIds.map((ids) => ids.length));
        const hidden = model.hiddenSize;
        const tensors: Record<string, TensorToWrite> = {};
        const ids = new BigInt64Array(batch * width);
        const mask = new BigInt64Array(batch * width);
        inputIds.forEach((row, r) => {
          const offset = width - row.length;
          row.forEach((id, i) => {
            ids[r * width + offset + i] = BigInt(id);
            mask[r * width + offset + i] = 1n;
          });
        });
        tensors.input_ids = { dtype: 'I64', shape: [batch, width], data: ids };
        tensors.attention_mask = { dtype: 'I64', shape: [batch, width], data: mask };
        for (const layer of layers) {
          const padded = new Float32Array(batch * width * hidden);
          residuals.get(layer)!.forEach((values, r) => padded.set(values, (r * width + width - inputIds[r]!.length) * hidden));
          tensors[`residual.${layer}`] = { dtype: 'F32', shape: [batch, width, hidden], data: padded };
        }
        writeSafetensors(flags.out, tensors, {
          model: model.folder.modelId,
          layers: JSON.stringify(layers),
          layer_convention: LAYER_CONVENTION,
          padding: 'left',
          interventions: JSON.stringify({ steer: flags.steer ?? [], positions: flags.positions, cap: flags.cap ?? [] }),
        });
        emit(Boolean(flags.json), { file: flags.out, batch, sequenceLength: width, hiddenSize: hidden, layers }, () =>
          `wrote ${flags.out}: ${layers.length} layers × [${batch}, ${width}, ${hidden}] float32 (left-padded; see attention_mask)`,
        );
      } finally {
        await model.dispose();
      }
    });
  return command;
}
