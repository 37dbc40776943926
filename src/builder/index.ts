import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { readJsonFile, writeFileAtomic } from '../io/files.js';
import { writeModelFile } from '../onnx/modelFile.js';
import { parseDecoderConfig, toHuggingFaceConfig, type DecoderConfig } from './architecture.js';
import { buildGenaiGraph } from './genaiGraph.js';
import type { GraphDtype } from './graphCommon.js';
import { buildOptimumGraph } from './optimumGraph.js';
import { copyTokenizerFiles, syntheticTokenizerFiles } from './tokenizerFiles.js';
import { loadWeights, randomWeights, type DecoderWeights } from './weights.js';

export { decoderFamilies, parseDecoderConfig, toHuggingFaceConfig, type DecoderConfig, type DecoderFamily } from './architecture.js';
export type { GraphDtype } from './graphCommon.js';
export { referenceForward, type ReferenceClamp, type ReferenceOptions, type ReferenceOutput, type ReferenceSteer } from './reference.js';
export { expectedTensors, loadWeights, randomWeights, saveWeights, type CheckpointDtype, type DecoderWeights } from './weights.js';

export type ExportStyle = 'optimum' | 'builder';

export const exportStyles: readonly ExportStyle[] = ['optimum', 'builder'];
export const graphDtypes: readonly GraphDtype[] = ['fp32', 'fp16', 'q4'];

export interface BuildOptions {
  /** A parsed config, a Hugging Face config.json object, or the path of one. */
  config: DecoderConfig | Record<string, unknown> | string;
  /** Weights: a safetensors checkpoint (file, index.json or folder), ready weights, or seeded random ones. */
  weights?: string | DecoderWeights;
  seed?: number;
  style?: ExportStyle;
  dtype?: GraphDtype;
  outDir: string;
  /** Folder to copy tokenizer files from; a byte-level tokenizer is written otherwise. */
  tokenizerDir?: string;
  externalData?: boolean | 'auto';
}

export interface BuiltModel {
  dir: string;
  onnxFile: string;
  config: DecoderConfig;
  style: ExportStyle;
  dtype: GraphDtype;
  /** The weights the graph computes with (fp16-rounded or dequantised), for the reference forward pass. */
  effectiveWeights: Map<string, Float32Array>;
}

/** File name transformers.js expects for each dtype. */
export function onnxFileName(dtype: GraphDtype): string {
  return { fp32: 'model.onnx', fp16: 'model_fp16.onnx', q4: 'model_q4.onnx' }[dtype];
}

function resolveConfig(config: BuildOptions['config']): DecoderConfig {
  if (typeof config === 'string') return parseDecoderConfig(readJsonFile(config, 'model config'));
  if ('family' in config && 'numLayers' in config) return config as DecoderConfig;
  return parseDecoderConfig(config);
}

/**
 * Builds a decoder into a model folder in the Hugging Face layout that the rest of the toolkit loads like a
 * downloaded one: config.json, generation_config.json, tokenizer files and onnx/model*.onnx.
 */
export function buildModel(options: BuildOptions): BuiltModel {
  const config = resolveConfig(options.config);
  const style = options.style ?? 'optimum';
  const dtype = options.dtype ?? 'fp32';
  if (!exportStyles.includes(style)) throw new UserError(`unknown style ${style}: use ${exportStyles.join(' or ')}`);
  if (!graphDtypes.includes(dtype)) throw new UserError(`unknown dtype ${dtype}: use ${graphDtypes.join(', ')}`);
  const weights =
    typeof options.weights === 'string' ? loadWeights(config, options.weights) : (options.weights ?? randomWeights(config, options.seed ?? 0));
  const { model, effectiveWeights } = style === 'builder' ? buildGenaiGraph(config, weights, dtype) : buildOptimumGraph(config, weights, dtype);

  const dir = options.outDir;
  fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  let hfConfig = toHuggingFaceConfig(config);
  if (options.tokenizerDir) {
    copyTokenizerFiles(options.tokenizerDir, dir, config.vocabSize);
  } else {
    const synthetic = syntheticTokenizerFiles(config.vocabSize);
    writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(synthetic.tokenizer));
    writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(synthetic.tokenizerConfig, null, 2));
    hfConfig = { ...hfConfig, bos_token_id: config.bosTokenId ?? synthetic.ids.bos, eos_token_id: config.eosTokenIds.length ? hfConfig.eos_token_id : synthetic.ids.eos, pad_token_id: config.padTokenId ?? synthetic.ids.pad };
  }
  hfConfig['transformers.js_config'] = { dtype };
  hfConfig.persona_steer = { built_by: 'persona models build', style, dtype, seed: typeof options.weights === 'string' ? null : (options.seed ?? 0) };
  writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(hfConfig, null, 2)}\n`);
  const generationConfig = { bos_token_id: hfConfig.bos_token_id, eos_token_id: hfConfig.eos_token_id, pad_token_id: hfConfig.pad_token_id, do_sample: false };
  writeFileAtomic(path.join(dir, 'generation_config.json'), `${JSON.stringify(generationConfig, null, 2)}\n`);
  const onnxFile = path.join(dir, 'onnx', onnxFileName(dtype));
  writeModelFile(onnxFile, model, { externalData: options.externalData ?? 'auto' });
  return { dir, onnxFile, config: parseDecoderConfig(hfConfig), style, dtype, effectiveWeights };
}
