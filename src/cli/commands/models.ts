import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { buildModel, exportStyles, graphDtypes, loadWeights, parseDecoderConfig, randomWeights, saveWeights, type ExportStyle, type GraphDtype } from '../../builder/index.js';
import { UserError } from '../../errors.js';
import { formatProgress, pullModel, SUPPORTED_DTYPES } from '../../hub/index.js';
import { fullLayout, normalizeLayout, writeInstrumentedModel } from '../../instrument/index.js';
import { readJsonFile } from '../../io/files.js';
import { inspectModel, resolveModelFolder } from '../../runtime/index.js';
import { parseInteger, parseLayers } from '../options.js';
import { emit, table } from '../output.js';

export function modelsCommand(): Command {
  const models = new Command('models').description('build, download, inspect and instrument decoder models');

  models
    .command('build')
    .description('write a decoder (seeded or from a safetensors checkpoint) as an ONNX model folder in the Hugging Face layout')
    .requiredOption('--config <file>', 'Hugging Face config.json (Llama, Mistral, Qwen2, Qwen3 or Gemma)')
    .option('--weights <path>', 'safetensors checkpoint (file, index.json or folder) with Hugging Face tensor names')
    .option('--seed <n>', 'seed for random weights when no --weights', '0')
    .option('--style <style>', `exporter style: ${exportStyles.join(' | ')}`, 'optimum')
    .option('--dtype <dtype>', `graph dtype: ${graphDtypes.join(' | ')}`, 'fp32')
    .option('--tokenizer <dir>', 'copy tokenizer files from this folder (default: a byte-level tokenizer with a ChatML template)')
    .option('--save-weights <file>', 'also write the weights used as a safetensors checkpoint')
    .requiredOption('--out <dir>', 'model folder to write')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona models build --config models/configs/llama-tiny.json --seed 1 --out models/local/llama-tiny
  $ persona models build --config config.json --weights model.safetensors --style builder --dtype fp16 --out models/local/mine`)
    .action((options: { config: string; weights?: string; seed: string; style: string; dtype: string; tokenizer?: string; saveWeights?: string; out: string; json?: boolean }) => {
      if (!exportStyles.includes(options.style as ExportStyle)) throw new UserError(`unknown style ${options.style}: use ${exportStyles.join(' or ')}`);
      if (!graphDtypes.includes(options.dtype as GraphDtype)) throw new UserError(`unknown dtype ${options.dtype}: use ${graphDtypes.join(', ')}`);
      const config = parseDecoderConfig(readJsonFile(options.config, 'model config'));
      const seed = parseInteger(options.seed, '--seed');
      const weights = options.weights ? loadWeights(config, options.weights) : randomWeights(config, seed);
      const built = buildModel({ config, weights, seed, style: options.style as ExportStyle, dtype: options.dtype as GraphDtype, outDir: options.out, tokenizerDir: options.tokenizer });
      if (options.saveWeights) saveWeights(options.saveWeights, config, weights);
      emit(Boolean(options.json), { dir: built.dir, onnxFile: built.onnxFile, family: config.family, style: built.style, dtype: built.dtype, numLayers: config.numLayers, hiddenSize: config.hiddenSize }, () =>
        `built ${config.family} (${config.numLayers} layers, hidden ${config.hiddenSize}, ${built.style} style, ${built.dtype}) in ${built.dir}`,
      );
    });

  models
    .command('pull <repo>')
    .description('download a model from the Hugging Face Hub into models/<org>/<name>/ (resumable; honours HF_ENDPOINT and HF_TOKEN)')
    .option('--dtype <dtype>', `graph file to fetch: ${SUPPORTED_DTYPES.join(' | ')}`, 'fp32')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--models-dir <dir>', 'where models live', 'models')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona models pull onnx-community/Qwen2.5-0.5B-Instruct --dtype q4f16
  $ HF_ENDPOINT=https://hf-mirror.example persona models pull org/model --revision v1`)
    .action(async (repo: string, options: { dtype: string; revision: string; modelsDir: string; json?: boolean }) => {
      const tty = process.stderr.isTTY;
      let last = 0;
      const summary = await pullModel({
        repo,
        dtype: options.dtype,
        revision: options.revision,
        destDir: path.join(options.modelsDir, repo),
        onProgress: (progress) => {
          const now = Date.now();
          if (!tty && now - last < 5000 && progress.fileBytesDone < progress.fileBytesTotal) return;
          last = now;
          process.stderr.write(tty ? `\r${formatProgress(progress)}\u001b[K` : `${formatProgress(progress)}\n`);
        },
      });
      if (tty) process.stderr.write('\n');
      emit(Boolean(options.json), summary, () => `${repo}@${summary.revision} (${summary.dtype}) in ${summary.destDir}: ${summary.downloaded.length} downloaded, ${summary.skipped.length} already present`);
    });

  models
    .command('inspect <model>')
    .description('exporter family, shape, graph inputs/outputs and the tensor holding the residual after each layer')
    .option('--dtype <dtype>', 'which graph file of the folder (fp32, fp16, q4, q4f16, …)')
    .option('--models-dir <dir>', 'where models live', 'models')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona models inspect models/local/llama-tiny
  $ persona models inspect onnx-community/Qwen2.5-0.5B-Instruct --dtype q4f16 --json`)
    .action((model: string, options: { dtype?: string; modelsDir: string; json?: boolean }) => {
      const info = inspectModel(model, { dtype: options.dtype, modelsDir: options.modelsDir });
      emit(Boolean(options.json), info, () =>
        [
          `${info.dir} (${info.format} folder, graph ${path.basename(info.onnxFile)}, ${info.dtype})`,
          `exporter family ${info.family} (producer ${info.producer || 'unknown'}), model type ${info.modelType}`,
          `${info.numLayers} layers, hidden ${info.hiddenSize}, ${info.numHeads} heads, ${info.numKvHeads} KV heads of size ${info.headDim}, vocab ${info.vocabSize}`,
          `residual stream ${info.residualType}, KV cache ${info.kvType}, ${info.paddingSide}-padded batches, position_ids ${info.hasPositionIds ? 'input' : 'computed in the graph'}`,
          `inputs:  ${info.inputs.map((i) => `${i.name} ${i.type}[${(i.dims ?? []).join(',')}]`).join(', ')}`,
          `outputs: ${info.outputs.map((o) => `${o.name} ${o.type}[${(o.dims ?? []).join(',')}]`).join(', ')}`,
          'residual after each layer:',
          table([['layer', 'tensor', 'node'], ...info.residuals.map((r) => [r.layer, r.tensor ?? `(output 3 of ${r.node}, added when instrumented)`, `${r.op} ${r.node}`])]),
        ].join('\n'),
      );
    });

  models
    .command('instrument <model>')
    .description('write the instrumented graph (capture outputs, steering and clamp inputs) next to the original weights')
    .option('--out <file>', 'output graph (default: <graph>.instrumented.onnx beside the original)')
    .option('--capture <layers>', 'layers with residual outputs (all, A-B, L,…)', 'all')
    .option('--steer <layers>', 'layers with steering inputs', 'all')
    .option('--clamp <layers>', 'layers with clamp inputs', 'all')
    .option('--dtype <dtype>', 'which graph file of the folder')
    .option('--models-dir <dir>', 'where models live', 'models')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  $ persona models instrument models/local/llama-tiny
  $ persona models instrument models/local/llama-tiny --steer 4-6 --clamp none --capture all --out models/local/llama-tiny/onnx/steer46.onnx`)
    .action((model: string, options: { out?: string; capture: string; steer: string; clamp: string; dtype?: string; modelsDir: string; json?: boolean }) => {
      const folder = resolveModelFolder(model, { dtype: options.dtype, modelsDir: options.modelsDir });
      const layers = (value: string) => (value === 'none' ? [] : parseLayers(value, folder.numLayers));
      const layout =
        options.capture === 'all' && options.steer === 'all' && options.clamp === 'all'
          ? fullLayout(folder.numLayers)
          : normalizeLayout({ capture: layers(options.capture), steer: layers(options.steer), clamp: layers(options.clamp) }, folder.numLayers);
      const outFile = options.out ?? folder.onnxFile.replace(/\.onnx$/, '.instrumented.onnx');
      if (fs.existsSync(outFile) && path.resolve(outFile) === path.resolve(folder.onnxFile)) throw new UserError('refusing to overwrite the original graph');
      const written = writeInstrumentedModel(folder.onnxFile, layout, { hiddenSize: folder.hiddenSize, numLayers: folder.numLayers, outFile });
      emit(Boolean(options.json), written, () =>
        [
          `wrote ${written.file}`,
          'added inputs:',
          ...written.addedInputs.map((i) => `  ${i.name} ${i.type}[${i.dims.join(', ')}]`),
          'added outputs:',
          ...written.addedOutputs.map((o) => `  ${o}`),
          'feed zeros to steer.* and ±Infinity to clamp.*.lower/upper to switch interventions off (required inputs).',
        ].join('\n'),
      );
    });
  return models;
}
