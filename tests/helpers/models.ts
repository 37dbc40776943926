import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildModel, type BuiltModel, type DecoderFamily, type ExportStyle, type GraphDtype } from '../../src/builder/index.js';

export const architectures: Record<DecoderFamily, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  gemma: 'GemmaForCausalLM',
};

/** A small decoder config: GQA (4 query heads over 2 KV heads), head size 16 so GroupQueryAttention runs on CPU. */
export function tinyConfig(family: DecoderFamily, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: [architectures[family]],
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    vocab_size: 300,
    max_position_embeddings: 256,
    ...overrides,
  };
}

export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `persona-${label}-`));
}

const built = new Map<string, BuiltModel>();

/** Builds (once per test process) a seeded tiny model of the given family, style and dtype. */
export function tinyModel(family: DecoderFamily, style: ExportStyle, dtype: GraphDtype, seed = 7): BuiltModel {
  const key = `${family}-${style}-${dtype}-${seed}`;
  let model = built.get(key);
  if (!model) {
    model = buildModel({ config: tinyConfig(family), seed, style, dtype, outDir: path.join(tempDir(key), 'model') });
    built.set(key, model);
  }
  return model;
}

export const FIXTURE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/fixtures/builder-llama-fp16');
export const hasFixture = fs.existsSync(path.join(FIXTURE_DIR, 'model.onnx'));

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
