import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildModel, parseDecoderConfig } from '../builder/index.js';

/** Where benchmark models are built once and reused. */
export function benchDir(): string {
  const dir = process.env.PERSONA_BENCH_DIR ?? path.join(os.tmpdir(), 'persona-bench');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** A decoder shaped like a small real model: 12 layers, hidden 512, 8 heads of 64, vocabulary 32000. */
export const smallRealConfig = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 512,
  intermediate_size: 1408,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  head_dim: 64,
  vocab_size: 32000,
  max_position_embeddings: 2048,
};

export function ensureBenchModel(name: string, config: Record<string, unknown>, style: 'optimum' | 'builder' = 'optimum'): string {
  const dir = path.join(benchDir(), name);
  if (!fs.existsSync(path.join(dir, 'onnx', 'model.onnx'))) {
    buildModel({ config: parseDecoderConfig(config), seed: 1, style, outDir: dir });
  }
  return dir;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.arch()}`;
}
