import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { readJsonFile } from '../io/files.js';

/** transformers.js file suffixes per dtype (`onnx/model{suffix}.onnx`). */
export const dtypeSuffixes: Record<string, string> = {
  fp32: '', fp16: '_fp16', q8: '_quantized', int8: '_int8', uint8: '_uint8', q4: '_q4', q4f16: '_q4f16', bnb4: '_bnb4',
};

/** What the toolkit needs to know about a model folder before opening any graph. */
export interface ModelFolder {
  dir: string;
  /** Hugging Face / onnx-community layout (config.json + onnx/) or an onnxruntime-genai folder (genai_config.json). */
  format: 'huggingface' | 'genai';
  onnxFile: string;
  dtype: string;
  /** Identifier used in vector metadata: the folder relative to models/ when it lives there, else its name. */
  modelId: string;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  modelType: string;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

function asIdList(value: unknown): number[] {
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number');
  return typeof value === 'number' ? [value] : [];
}

function asId(value: unknown): number | null {
  return typeof value === 'number' ? value : null;
}

/** Resolves `models/<org>/<name>` for hub-style ids and checks the folder exists. */
export function locateModelDir(location: string, modelsDir = 'models'): string {
  if (fs.existsSync(location) && fs.statSync(location).isDirectory()) return path.resolve(location);
  const underModels = path.join(modelsDir, location);
  if (/^[\w.-]+\/[\w.-]+$/.test(location) && fs.existsSync(underModels)) return path.resolve(underModels);
  if (fs.existsSync(location)) throw new UserError(`model must be a folder, got a file: ${location}`);
  throw new UserError(`model folder not found: ${location}${/^[\w.-]+\/[\w.-]+$/.test(location) ? ` (nor ${underModels}; run persona models pull ${location})` : ''}`);
}

function pickOnnxFile(dir: string, requestedDtype: string | undefined, configDtype: string | undefined): { file: string; dtype: string } {
  const onnxDir = path.join(dir, 'onnx');
  // Only transformers.js' own file names count: other .onnx files (an instrumented copy, say) are not candidates.
  const known = new Set(Object.values(dtypeSuffixes).map((suffix) => `model${suffix}.onnx`));
  const available = fs.existsSync(onnxDir) ? fs.readdirSync(onnxDir).filter((f) => known.has(f)) : [];
  const dtypeOf = (file: string) => Object.entries(dtypeSuffixes).find(([, suffix]) => file === `model${suffix}.onnx`)![0];
  if (available.length === 0) throw new UserError(`no ONNX model in ${onnxDir} (expected onnx/model*.onnx)`);
  const wanted = requestedDtype ?? configDtype;
  if (wanted) {
    const suffix = dtypeSuffixes[wanted];
    if (suffix === undefined) throw new UserError(`unknown dtype ${wanted}: use one of ${Object.keys(dtypeSuffixes).join(', ')}`);
    const file = `model${suffix}.onnx`;
    if (!available.includes(file)) {
      throw new UserError(`${dir} has no ${wanted} graph (onnx/${file}); available: ${available.map(dtypeOf).join(', ')}`);
    }
    return { file: path.join(onnxDir, file), dtype: wanted };
  }
  if (available.includes('model.onnx')) return { file: path.join(onnxDir, 'model.onnx'), dtype: 'fp32' };
  if (available.length === 1) return { file: path.join(onnxDir, available[0]!), dtype: dtypeOf(available[0]!) };
  throw new UserError(`${dir} has several graphs (${available.map(dtypeOf).join(', ')}); choose one with --dtype`);
}

function modelIdFor(dir: string, modelsDir: string): string {
  const relative = path.relative(path.resolve(modelsDir), dir);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative.split(path.sep).join('/') : path.basename(dir);
}

function positive(value: unknown, what: string, dir: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw new UserError(`${dir}: ${what} is missing or invalid in the model config`);
  return value;
}

/** Reads a model folder in either layout, choosing the graph file for `dtype`. */
export function resolveModelFolder(location: string, options: { dtype?: string; modelsDir?: string } = {}): ModelFolder {
  const modelsDir = options.modelsDir ?? 'models';
  const dir = locateModelDir(location, modelsDir);
  const genaiFile = path.join(dir, 'genai_config.json');
  const configFile = path.join(dir, 'config.json');
  const tokenizerSpecials = readTokenizerSpecials(dir);
  if (fs.existsSync(configFile)) {
    const config = readJsonFile<Record<string, unknown>>(configFile, 'model config');
    const text = (config.text_config as Record<string, unknown> | undefined) ?? config;
    const generationFile = path.join(dir, 'generation_config.json');
    const generation = fs.existsSync(generationFile) ? readJsonFile<Record<string, unknown>>(generationFile, 'generation config') : {};
    const jsConfig = config['transformers.js_config'] as { dtype?: unknown } | undefined;
    const { file, dtype } = pickOnnxFile(dir, options.dtype, typeof jsConfig?.dtype === 'string' ? jsConfig.dtype : undefined);
    const hiddenSize = positive(text.hidden_size, 'hidden_size', dir);
    const numHeads = positive(text.num_attention_heads, 'num_attention_heads', dir);
    const eos = asIdList(generation.eos_token_id ?? text.eos_token_id);
    return {
      dir, format: 'huggingface', onnxFile: file, dtype, modelId: modelIdFor(dir, modelsDir),
      numLayers: positive(text.num_hidden_layers, 'num_hidden_layers', dir),
      hiddenSize,
      numHeads,
      numKvHeads: typeof text.num_key_value_heads === 'number' ? text.num_key_value_heads : numHeads,
      headDim: typeof text.head_dim === 'number' ? text.head_dim : hiddenSize / numHeads,
      vocabSize: positive(text.vocab_size, 'vocab_size', dir),
      modelType: String(text.model_type ?? 'unknown'),
      bosTokenId: asId(generation.bos_token_id ?? text.bos_token_id) ?? tokenizerSpecials.bos,
      eosTokenIds: eos.length ? eos : tokenizerSpecials.eos,
      padTokenId: asId(generation.pad_token_id ?? text.pad_token_id) ?? tokenizerSpecials.pad,
    };
  }
  if (fs.existsSync(genaiFile)) {
    const genai = readJsonFile<{ model?: Record<string, unknown> }>(genaiFile, 'genai_config.json').model ?? {};
    const decoder = (genai.decoder ?? {}) as Record<string, unknown>;
    const file = path.join(dir, String(decoder.filename ?? 'model.onnx'));
    if (!fs.existsSync(file)) throw new UserError(`ONNX model not found: ${file}`);
    const numHeads = positive(decoder.num_attention_heads, 'decoder.num_attention_heads', dir);
    // Stop on the tokenizer's eos and every id genai_config lists (Phi-3 lists several end-of-turn ids).
    const eos = [...new Set([...tokenizerSpecials.eos, ...asIdList(genai.eos_token_id)])];
    return {
      dir, format: 'genai', onnxFile: file, dtype: 'as exported', modelId: modelIdFor(dir, modelsDir),
      numLayers: positive(decoder.num_hidden_layers, 'decoder.num_hidden_layers', dir),
      hiddenSize: positive(decoder.hidden_size, 'decoder.hidden_size', dir),
      numHeads,
      numKvHeads: typeof decoder.num_key_value_heads === 'number' ? decoder.num_key_value_heads : numHeads,
      headDim: positive(decoder.head_size, 'decoder.head_size', dir),
      vocabSize: positive(genai.vocab_size, 'vocab_size', dir),
      modelType: String(genai.type ?? 'unknown'),
      bosTokenId: tokenizerSpecials.bos ?? asId(genai.bos_token_id),
      eosTokenIds: eos,
      padTokenId: tokenizerSpecials.pad ?? asId(genai.pad_token_id),
    };
  }
  throw new UserError(`${dir} is not a model folder: it has neither config.json nor genai_config.json`);
}

/** bos/eos/pad ids named by tokenizer_config.json, looked up in tokenizer.json. */
function readTokenizerSpecials(dir: string): { bos: number | null; eos: number[]; pad: number | null } {
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(tokenizerFile) || !fs.existsSync(configFile)) return { bos: null, eos: [], pad: null };
  const tokenizer = readJsonFile<{ added_tokens?: { id: number; content: string }[]; model?: { vocab?: Record<string, number> | unknown[] } }>(tokenizerFile, 'tokenizer.json');
  const config = readJsonFile<Record<string, unknown>>(configFile, 'tokenizer_config.json');
  const idOf = (token: unknown): number | null => {
    const content = typeof token === 'string' ? token : (token as { content?: string } | null)?.content;
    if (!content) return null;
    const added = tokenizer.added_tokens?.find((t) => t.content === content);
    if (added) return added.id;
    const vocab = tokenizer.model?.vocab;
    return vocab && !Array.isArray(vocab) && typeof (vocab as Record<string, number>)[content] === 'number' ? (vocab as Record<string, number>)[content]! : null;
  };
  const eos = idOf(config.eos_token);
  return { bos: idOf(config.bos_token), eos: eos === null ? [] : [eos], pad: idOf(config.pad_token) };
}
