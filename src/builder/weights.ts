import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { readJsonFile } from '../io/files.js';
import { Rng } from '../vectors/random.js';
import { entryToFloat32, readSafetensors, writeSafetensors, type SafetensorsEntry, type TensorToWrite } from '../vectors/safetensors.js';
import { numKvFeatures, numQueryFeatures, type DecoderConfig } from './architecture.js';

/** Decoder weights by Hugging Face tensor name, row-major in the Hugging Face layout ([out, in] for linear layers). */
export type DecoderWeights = ReadonlyMap<string, Float32Array>;

export interface TensorSpec {
  name: string;
  shape: number[];
  init: 'embedding' | 'linear' | 'bias' | 'norm';
}

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}`;
}

/** Every tensor a checkpoint of this decoder must hold, with its shape. */
export function expectedTensors(config: DecoderConfig): TensorSpec[] {
  const { hiddenSize: h, intermediateSize: inter, vocabSize: v, headDim } = config;
  const q = numQueryFeatures(config);
  const kv = numKvFeatures(config);
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [v, h], init: 'embedding' }];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [h], init: 'norm' },
      { name: `${p}.self_attn.q_proj.weight`, shape: [q, h], init: 'linear' },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kv, h], init: 'linear' },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kv, h], init: 'linear' },
      { name: `${p}.self_attn.o_proj.weight`, shape: [h, q], init: 'linear' },
    );
    if (config.attentionBias) {
      specs.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [q], init: 'bias' },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kv], init: 'bias' },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kv], init: 'bias' },
      );
    }
    if (config.qkNorm) {
      specs.push(
        { name: `${p}.self_attn.q_norm.weight`, shape: [headDim], init: 'norm' },
        { name: `${p}.self_attn.k_norm.weight`, shape: [headDim], init: 'norm' },
      );
    }
    specs.push(
      { name: `${p}.post_attention_layernorm.weight`, shape: [h], init: 'norm' },
      { name: `${p}.mlp.gate_proj.weight`, shape: [inter, h], init: 'linear' },
      { name: `${p}.mlp.up_proj.weight`, shape: [inter, h], init: 'linear' },
      { name: `${p}.mlp.down_proj.weight`, shape: [h, inter], init: 'linear' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [h], init: 'norm' });
  if (!config.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [v, h], init: 'linear' });
  return specs;
}

/**
 * Seeded random weights: N(0, 1/fan_in) projections (so every block adds O(1) to the residual stream and logits
 * stay O(1)), N(0, 1) embeddings (N(0, 1/hidden) when tied, since they are then the output head too), small
 * biases, and norm scales near 1 (near 0 for Gemma's 1 + w).
 */
export function randomWeights(config: DecoderConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const weights = new Map<string, Float32Array>();
  for (const spec of expectedTensors(config)) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    switch (spec.init) {
      case 'embedding':
        weights.set(spec.name, rng.normalArray(count, config.tieWordEmbeddings ? 1 / Math.sqrt(config.hiddenSize) : 1));
        break;
      case 'linear':
        weights.set(spec.name, rng.normalArray(count, 1 / Math.sqrt(spec.shape[1]!)));
        break;
      case 'bias':
        weights.set(spec.name, rng.normalArray(count, 0.1));
        break;
      case 'norm':
        weights.set(spec.name, rng.normalArray(count, 0.1, config.gemmaNorms ? 0 : 1));
        break;
    }
  }
  return weights;
}

/** The safetensors files behind a checkpoint path: a file, an index.json, or a folder holding either. */
function checkpointFiles(location: string): string[] {
  if (!fs.existsSync(location)) throw new UserError(`weights not found: ${location}`);
  if (fs.statSync(location).isDirectory()) {
    const single = path.join(location, 'model.safetensors');
    if (fs.existsSync(single)) return [single];
    const index = path.join(location, 'model.safetensors.index.json');
    if (fs.existsSync(index)) return checkpointFiles(index);
    throw new UserError(`no model.safetensors or model.safetensors.index.json in ${location}`);
  }
  if (location.endsWith('.json')) {
    const index = readJsonFile<{ weight_map?: Record<string, string> }>(location, 'safetensors index');
    if (!index.weight_map || typeof index.weight_map !== 'object') throw new UserError(`${location} has no weight_map`);
    return [...new Set(Object.values(index.weight_map))].map((file) => path.join(path.dirname(location), file));
  }
  return [location];
}

/**
 * Loads a checkpoint with Hugging Face tensor names (fp32, fp16 or bf16 storage) and checks it against the config:
 * every expected tensor present with its exact shape. Extra tensors (rotary caches, tied lm_head copies) are ignored.
 */
export function loadWeights(config: DecoderConfig, location: string): Map<string, Float32Array> {
  const available = new Map<string, SafetensorsEntry>();
  for (const file of checkpointFiles(location)) {
    for (const [name, entry] of readSafetensors(file).tensors) available.set(name, entry);
  }
  const weights = new Map<string, Float32Array>();
  for (const spec of expectedTensors(config)) {
    const entry = available.get(spec.name);
    if (!entry) throw new UserError(`weights ${location} are missing tensor ${spec.name} [${spec.shape.join(', ')}]`);
    if (entry.shape.length !== spec.shape.length || entry.shape.some((d, i) => d !== spec.shape[i])) {
      throw new UserError(`weights tensor ${spec.name} has shape [${entry.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]`);
    }
    weights.set(spec.name, entryToFloat32(entry));
  }
  return weights;
}

export type CheckpointDtype = 'F32' | 'F16' | 'BF16';

export function saveWeights(file: string, config: DecoderConfig, weights: DecoderWeights, dtype: CheckpointDtype = 'F32'): void {
  const tensors: Record<string, TensorToWrite> = {};
  for (const spec of expectedTensors(config)) {
    tensors[spec.name] = { dtype, shape: spec.shape, data: weights.get(spec.name)! };
  }
  writeSafetensors(file, tensors, { format: 'pt' });
}
