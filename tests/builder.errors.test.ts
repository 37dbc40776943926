import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDecoderConfig, randomWeights, saveWeights } from '../src/builder/index.js';
import { writeSafetensors } from '../src/vectors/safetensors.js';
import { isOneLineError, runCli } from './helpers/cli.js';
import { tempDir, tinyConfig } from './helpers/models.js';

let dir: string;
const write = (name: string, value: unknown) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
};

beforeAll(() => {
  dir = tempDir('builder-errors');
  const config = parseDecoderConfig(tinyConfig('llama'));
  const weights = randomWeights(config, 1);
  saveWeights(path.join(dir, 'good.safetensors'), config, weights);
  const missing = new Map(weights);
  missing.delete('model.layers.1.mlp.up_proj.weight');
  saveWeights(path.join(dir, 'partial.safetensors'), { ...config, numLayers: 1 }, missing);
  writeSafetensors(
    path.join(dir, 'wrong-shape.safetensors'),
    Object.fromEntries([...weights].map(([name, values]) => [name, { dtype: 'F32' as const, shape: name === 'model.norm.weight' ? [32, 2] : shapeOf(name), data: values }])),
  );
  function shapeOf(name: string): number[] {
    const values = weights.get(name)!;
    if (name.endsWith('norm.weight') || name.endsWith('.bias')) return [values.length];
    if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return [300, 64];
    if (name.includes('down_proj')) return [64, 96];
    if (name.includes('gate_proj') || name.includes('up_proj')) return [96, 64];
    if (name.includes('o_proj')) return [64, 64];
    return [values.length / 64, 64];
  }
});

describe('bad builder configs and weights give one-line errors naming the problem', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['unknown architecture', () => ['--config', write('arch.json', tinyConfig('llama', { architectures: ['FalconForCausalLM'], model_type: 'falcon' }))], /unknown architecture FalconForCausalLM/],
    ['heads not dividing hidden', () => ['--config', write('heads.json', { ...tinyConfig('llama', { num_attention_heads: 5 }), head_dim: undefined })], /num_attention_heads 5 does not divide hidden_size 64/],
    ['KV heads not dividing heads', () => ['--config', write('kv.json', tinyConfig('llama', { num_key_value_heads: 3 }))], /num_key_value_heads 3 does not divide num_attention_heads 4/],
    ['missing field', () => ['--config', write('missing.json', { architectures: ['LlamaForCausalLM'], hidden_size: 64 })], /config is missing num_attention_heads/],
    ['weights missing a tensor', () => ['--config', write('ok.json', tinyConfig('llama')), '--weights', path.join(dir, 'partial.safetensors')], /missing tensor model\.layers\.1\.input_layernorm\.weight/],
    ['weights of the wrong shape', () => ['--config', write('ok2.json', tinyConfig('llama')), '--weights', path.join(dir, 'wrong-shape.safetensors')], /model\.norm\.weight has shape \[32, 2\], the config needs \[64\]/],
    ['weights file that does not exist', () => ['--config', write('ok3.json', tinyConfig('llama')), '--weights', path.join(dir, 'absent.safetensors')], /weights not found/],
    ['weights file that is not safetensors', () => ['--config', write('ok4.json', tinyConfig('llama')), '--weights', write('junk.safetensors', 'hello world, not a tensor file')], /not a valid safetensors file/],
    ['GroupQueryAttention head size on CPU', () => ['--config', write('gqa.json', tinyConfig('llama', { head_dim: 8, num_attention_heads: 8 })), '--style', 'builder'], /multiple of 16; head_dim is 8/],
    ['unknown style', () => ['--config', write('ok5.json', tinyConfig('llama')), '--style', 'tflite'], /unknown style tflite/],
    ['tokenizer bigger than the vocabulary', () => ['--config', write('vocab.json', tinyConfig('llama', { vocab_size: 300 })), '--tokenizer', tokenizerDir()], /has 32000 tokens but the config's vocab_size is 300/],
  ];
  for (const [label, args, message] of cases) {
    it(label, async () => {
      const result = await runCli(['models', 'build', ...args(), '--out', path.join(dir, 'out', label.replace(/\W+/g, '-'))]);
      expect(isOneLineError(result), result.stderr).toBe(true);
      expect(result.stderr).toMatch(message);
    });
  }
});

function tokenizerDir(): string {
  const source = path.resolve(dir, 'llama2-tokenizer');
  fs.mkdirSync(source, { recursive: true });
  const fixture = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../shared/fixtures/builder-llama-fp16');
  if (fs.existsSync(fixture)) for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(fixture, f), path.join(source, f));
  else fs.writeFileSync(path.join(source, 'tokenizer.json'), JSON.stringify({ model: { vocab: Object.fromEntries(Array.from({ length: 32000 }, (_, i) => [`t${i}`, i])) } }));
  return source;
}
