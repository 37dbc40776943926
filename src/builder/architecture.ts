import { UserError } from '../errors.js';

/** The decoder families the builder writes and the reference forward pass computes. */
export type DecoderFamily = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma';

export type HiddenActivation = 'silu' | 'gelu_pytorch_tanh';

/** A decoder's shape and its family's quirks, normalised from a Hugging Face `config.json`. */
export interface DecoderConfig {
  family: DecoderFamily;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  hiddenActivation: HiddenActivation;
  /** Qwen2: biases on q, k and v projections. */
  attentionBias: boolean;
  /** Qwen3: RMSNorm over each head of q and k before rotary. */
  qkNorm: boolean;
  /** Gemma: the embedding is multiplied by √hidden and RMSNorm scales by (1 + w). */
  gemmaNorms: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

interface FamilyDefaults {
  architecture: string;
  hiddenActivation: HiddenActivation;
  attentionBias: boolean;
  qkNorm: boolean;
  gemmaNorms: boolean;
  tieWordEmbeddings: boolean;
}

const families: Record<DecoderFamily, FamilyDefaults> = {
  llama: { architecture: 'LlamaForCausalLM', hiddenActivation: 'silu', attentionBias: false, qkNorm: false, gemmaNorms: false, tieWordEmbeddings: false },
  mistral: { architecture: 'MistralForCausalLM', hiddenActivation: 'silu', attentionBias: false, qkNorm: false, gemmaNorms: false, tieWordEmbeddings: false },
  qwen2: { architecture: 'Qwen2ForCausalLM', hiddenActivation: 'silu', attentionBias: true, qkNorm: false, gemmaNorms: false, tieWordEmbeddings: false },
  qwen3: { architecture: 'Qwen3ForCausalLM', hiddenActivation: 'silu', attentionBias: false, qkNorm: true, gemmaNorms: false, tieWordEmbeddings: false },
  gemma: { architecture: 'GemmaForCausalLM', hiddenActivation: 'gelu_pytorch_tanh', attentionBias: false, qkNorm: false, gemmaNorms: true, tieWordEmbeddings: true },
};

export const decoderFamilies = Object.keys(families) as DecoderFamily[];

export function familyOfModelType(modelType: string): DecoderFamily | undefined {
  return (decoderFamilies as string[]).includes(modelType) ? (modelType as DecoderFamily) : undefined;
}

function familyFromConfig(json: Record<string, unknown>): DecoderFamily {
  const architectures = Array.isArray(json.architectures) ? (json.architectures as unknown[]).map(String) : [];
  for (const [family, defaults] of Object.entries(families)) {
    if (architectures.includes(defaults.architecture)) return family as DecoderFamily;
  }
  const modelType = typeof json.model_type === 'string' ? json.model_type : undefined;
  const byType = modelType ? familyOfModelType(modelType) : undefined;
  if (byType) return byType;
  const named = architectures[0] ?? modelType ?? '(none given)';
  throw new UserError(
    `unknown architecture ${named}: the builder supports ${Object.values(families).map((f) => f.architecture).join(', ')}`,
  );
}

function positiveInteger(json: Record<string, unknown>, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (value === undefined) throw new UserError(`config is missing ${key}`);
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new UserError(`config ${key} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function positiveNumber(json: Record<string, unknown>, key: string, fallback: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new UserError(`config ${key} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

function tokenId(value: unknown, key: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  throw new UserError(`config ${key} must be a token id, got ${JSON.stringify(value)}`);
}

/** Reads and validates a Hugging Face decoder `config.json` object. */
export function parseDecoderConfig(json: unknown): DecoderConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError('config must be a JSON object');
  const raw = json as Record<string, unknown>;
  const family = familyFromConfig(raw);
  const defaults = families[family];
  const hiddenSize = positiveInteger(raw, 'hidden_size');
  const numHeads = positiveInteger(raw, 'num_attention_heads');
  const numKvHeads = positiveInteger(raw, 'num_key_value_heads', numHeads);
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0) {
      throw new UserError(`num_attention_heads ${numHeads} does not divide hidden_size ${hiddenSize} (and no head_dim is given)`);
    }
  }
  const headDim = raw.head_dim === undefined || raw.head_dim === null ? hiddenSize / numHeads : positiveInteger(raw, 'head_dim');
  if (numHeads % numKvHeads !== 0) {
    throw new UserError(`num_key_value_heads ${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  }
  if (headDim % 2 !== 0) throw new UserError(`head_dim ${headDim} must be even for rotary embeddings`);
  const activation = String(raw.hidden_activation ?? raw.hidden_act ?? defaults.hiddenActivation);
  const hiddenActivation: HiddenActivation =
    activation === 'silu' ? 'silu' : activation === 'gelu_pytorch_tanh' || activation === 'gelu' ? 'gelu_pytorch_tanh' : (() => {
      throw new UserError(`unsupported hidden activation ${activation}: use silu or gelu_pytorch_tanh`);
    })();
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.map((id, i) => tokenId(id, `eos_token_id[${i}]`)!) : eos === undefined || eos === null ? [] : [tokenId(eos, 'eos_token_id')!];
  const rope = (raw.rope_scaling ?? null) as Record<string, unknown> | null;
  if (rope && rope.rope_type !== undefined && rope.rope_type !== 'default') {
    throw new UserError(`rope_scaling type ${String(rope.rope_type)} is not supported by the builder`);
  }
  return {
    family,
    hiddenSize,
    intermediateSize: positiveInteger(raw, 'intermediate_size'),
    numLayers: positiveInteger(raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: positiveInteger(raw, 'vocab_size'),
    rmsNormEps: positiveNumber(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: positiveNumber(raw, 'rope_theta', 10000),
    maxPositionEmbeddings: positiveInteger(raw, 'max_position_embeddings', 2048),
    tieWordEmbeddings: typeof raw.tie_word_embeddings === 'boolean' ? raw.tie_word_embeddings : defaults.tieWordEmbeddings,
    hiddenActivation,
    attentionBias: family === 'qwen2' ? true : raw.attention_bias === true,
    qkNorm: defaults.qkNorm,
    gemmaNorms: defaults.gemmaNorms,
    bosTokenId: tokenId(raw.bos_token_id, 'bos_token_id'),
    eosTokenIds,
    padTokenId: tokenId(raw.pad_token_id, 'pad_token_id'),
  };
}

/** The `config.json` a Hugging Face checkpoint of this decoder would carry. */
export function toHuggingFaceConfig(config: DecoderConfig): Record<string, unknown> {
  const defaults = families[config.family];
  const json: Record<string, unknown> = {
    architectures: [defaults.architecture],
    model_type: config.family,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    vocab_size: config.vocabSize,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    max_position_embeddings: config.maxPositionEmbeddings,
    tie_word_embeddings: config.tieWordEmbeddings,
    [config.family === 'gemma' ? 'hidden_activation' : 'hidden_act']: config.hiddenActivation,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds,
    pad_token_id: config.padTokenId,
    torch_dtype: 'float32',
  };
  if (config.family === 'qwen2' || config.attentionBias) json.attention_bias = config.attentionBias;
  return json;
}

export function numQueryFeatures(config: DecoderConfig): number {
  return config.numHeads * config.headDim;
}

export function numKvFeatures(config: DecoderConfig): number {
  return config.numKvHeads * config.headDim;
}
