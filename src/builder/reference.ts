import { numKvFeatures, numQueryFeatures, type DecoderConfig } from './architecture.js';
import { layerPrefix, type DecoderWeights } from './weights.js';

/**
 * An independent forward pass of the builder's architectures in float64 over plain typed arrays: no ONNX, no KV
 * cache, one sequence at a time. Tests hold every exported graph to it, and it applies the same interventions the
 * engine does at a block output: add a vector, then clamp projections.
 */

export interface ReferenceSteer {
  layer: number;
  vector: ArrayLike<number>;
  /** Positions (0-based in this sequence) that receive the vector. */
  positions: readonly number[];
}

export interface ReferenceClamp {
  layer: number;
  /** Directions u_k, used as given (callers pass unit vectors). */
  directions: readonly ArrayLike<number>[];
  lower: readonly number[];
  upper: readonly number[];
  /** Positions that are clamped; every position when omitted. */
  positions?: readonly number[];
}

export interface ReferenceOptions {
  /** Rotary position of each token; 0..S−1 when omitted. */
  rotaryPositions?: readonly number[];
  steer?: readonly ReferenceSteer[];
  clamp?: readonly ReferenceClamp[];
}

export interface ReferenceOutput {
  /** [S × vocab], row-major. */
  logits: Float64Array;
  /** blockOutputs[L] is the residual after block L, [S × hidden] (Hugging Face hidden_states[L + 1]). */
  blockOutputs: Float64Array[];
}

export function referenceForward(config: DecoderConfig, weights: DecoderWeights, tokenIds: readonly number[], options: ReferenceOptions = {}): ReferenceOutput {
  const get = (name: string): Float32Array => {
    const tensor = weights.get(name);
    if (!tensor) throw new Error(`reference forward: missing weight ${name}`);
    return tensor;
  };
  const { hiddenSize: h, vocabSize } = config;
  const seqLen = tokenIds.length;
  const positions = options.rotaryPositions ?? tokenIds.map((_, i) => i);

  const residual = new Float64Array(seqLen * h);
  const embedding = get('model.embed_tokens.weight');
  const embedScale = config.gemmaNorms ? Math.sqrt(h) : 1;
  for (let s = 0; s < seqLen; s++) {
    const id = tokenIds[s]!;
    if (!(id >= 0 && id < vocabSize)) throw new Error(`reference forward: token ${id} outside the vocabulary`);
    for (let i = 0; i < h; i++) residual[s * h + i] = embedding[id * h + i]! * embedScale;
  }

  const blockOutputs: Float64Array[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    const normed = rmsNorm(residual, get(`${p}.input_layernorm.weight`), h, config);
    const attention = attentionBlock(config, weights, p, normed, seqLen, positions);
    addInPlace(residual, linear(attention, get(`${p}.self_attn.o_proj.weight`), seqLen, numQueryFeatures(config), h));
    const normed2 = rmsNorm(residual, get(`${p}.post_attention_layernorm.weight`), h, config);
    addInPlace(residual, mlp(config, weights, p, normed2, seqLen));
    applyInterventions(residual, layer, h, seqLen, options);
    blockOutputs.push(residual.slice());
  }

  const finalNormed = rmsNorm(residual, get('model.norm.weight'), h, config);
  const lmHead = config.tieWordEmbeddings ? embedding : get('lm_head.weight');
  const logits = linear(finalNormed, lmHead, seqLen, h, vocabSize);
  return { logits, blockOutputs };
}

function applyInterventions(residual: Float64Array, layer: number, h: number, seqLen: number, options: ReferenceOptions): void {
  for (const steer of options.steer ?? []) {
    if (steer.layer !== layer) continue;
    for (const s of steer.positions) {
      if (s < 0 || s >= seqLen) continue;
      for (let i = 0; i < h; i++) residual[s * h + i] = residual[s * h + i]! + steer.vector[i]!;
    }
  }
  for (const clamp of options.clamp ?? []) {
    if (clamp.layer !== layer) continue;
    const clampedPositions = clamp.positions ?? Array.from({ length: seqLen }, (_, s) => s);
    for (const s of clampedPositions) {
      if (s < 0 || s >= seqLen) continue;
      const row = residual.subarray(s * h, (s + 1) * h);
      const corrections = clamp.directions.map((u, k) => {
        let projection = 0;
        for (let i = 0; i < h; i++) projection += row[i]! * u[i]!;
        const clipped = Math.max(clamp.lower[k]!, Math.min(projection, clamp.upper[k]!));
        return clipped - projection;
      });
      clamp.directions.forEach((u, k) => {
        for (let i = 0; i < h; i++) row[i] = row[i]! + u[i]! * corrections[k]!;
      });
    }
  }
}

function rmsNorm(x: Float64Array, weight: Float32Array, width: number, config: DecoderConfig): Float64Array {
  const rows = x.length / width;
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let sumSquares = 0;
    for (let i = 0; i < width; i++) sumSquares += x[r * width + i]! ** 2;
    const inverse = 1 / Math.sqrt(sumSquares / width + config.rmsNormEps);
    for (let i = 0; i < width; i++) {
      const scale = config.gemmaNorms ? 1 + weight[i]! : weight[i]!;
      out[r * width + i] = x[r * width + i]! * inverse * scale;
    }
  }
  return out;
}

/** y = x Wᵀ (+ b) with W in the Hugging Face [out, in] layout. */
function linear(x: Float64Array, weight: Float32Array, rows: number, inFeatures: number, outFeatures: number, bias?: Float32Array): Float64Array {
  const out = new Float64Array(rows * outFeatures);
  for (let r = 0; r < rows; r++) {
    const xOffset = r * inFeatures;
    for (let o = 0; o < outFeatures; o++) {
      const wOffset = o * inFeatures;
      let sum = bias ? bias[o]! : 0;
      for (let i = 0; i < inFeatures; i++) sum += x[xOffset + i]! * weight[wOffset + i]!;
      out[r * outFeatures + o] = sum;
    }
  }
  return out;
}

function addInPlace(target: Float64Array, addend: Float64Array): void {
  for (let i = 0; i < target.length; i++) target[i] = target[i]! + addend[i]!;
}

/** Hugging Face rotate_half rotary embedding, in place on [S × heads × D]. */
function applyRotary(x: Float64Array, seqLen: number, heads: number, headDim: number, positions: readonly number[], theta: number): void {
  const half = headDim / 2;
  for (let s = 0; s < seqLen; s++) {
    for (let head = 0; head < heads; head++) {
      const base = (s * heads + head) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = positions[s]! / theta ** ((2 * i) / headDim);
        const cos = Math.cos(angle);
        const sin = Math.sin(angle);
        const a = x[base + i]!;
        const b = x[base + i + half]!;
        x[base + i] = a * cos - b * sin;
        x[base + i + half] = b * cos + a * sin;
      }
    }
  }
}

function attentionBlock(config: DecoderConfig, weights: DecoderWeights, prefix: string, x: Float64Array, seqLen: number, positions: readonly number[]): Float64Array {
  const { hiddenSize: h, numHeads, numKvHeads, headDim } = config;
  const get = (name: string) => weights.get(name)!;
  const qFeatures = numQueryFeatures(config);
  const kvFeatures = numKvFeatures(config);
  const bias = (name: string) => (config.attentionBias ? get(`${prefix}.self_attn.${name}.bias`) : undefined);
  const q = linear(x, get(`${prefix}.self_attn.q_proj.weight`), seqLen, h, qFeatures, bias('q_proj'));
  const k = linear(x, get(`${prefix}.self_attn.k_proj.weight`), seqLen, h, kvFeatures, bias('k_proj'));
  const v = linear(x, get(`${prefix}.self_attn.v_proj.weight`), seqLen, h, kvFeatures, bias('v_proj'));
  if (config.qkNorm) {
    q.set(rmsNorm(q, get(`${prefix}.self_attn.q_norm.weight`), headDim, config));
    k.set(rmsNorm(k, get(`${prefix}.self_attn.k_norm.weight`), headDim, config));
  }
  applyRotary(q, seqLen, numHeads, headDim, positions, config.ropeTheta);
  applyRotary(k, seqLen, numKvHeads, headDim, positions, config.ropeTheta);

  const groupSize = numHeads / numKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(seqLen * qFeatures);
  const scores = new Float64Array(seqLen);
  for (let head = 0; head < numHeads; head++) {
    const kvHead = Math.floor(head / groupSize);
    for (let s = 0; s < seqLen; s++) {
      let max = -Infinity;
      for (let t = 0; t <= s; t++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[(s * numHeads + head) * headDim + d]! * k[(t * numKvHeads + kvHead) * headDim + d]!;
        scores[t] = dot * scale;
        if (scores[t]! > max) max = scores[t]!;
      }
      let total = 0;
      for (let t = 0; t <= s; t++) {
        scores[t] = Math.exp(scores[t]! - max);
        total += scores[t]!;
      }
      for (let t = 0; t <= s; t++) {
        const weight = scores[t]! / total;
        for (let d = 0; d < headDim; d++) {
          const o = (s * numHeads + head) * headDim + d;
          out[o] = out[o]! + weight * v[(t * numKvHeads + kvHead) * headDim + d]!;
        }
      }
    }
  }
  return out;
}

function activation(x: number, kind: DecoderConfig['hiddenActivation']): number {
  if (kind === 'silu') return x / (1 + Math.exp(-x));
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

function mlp(config: DecoderConfig, weights: DecoderWeights, prefix: string, x: Float64Array, seqLen: number): Float64Array {
  const { hiddenSize: h, intermediateSize: inter } = config;
  const gate = linear(x, weights.get(`${prefix}.mlp.gate_proj.weight`)!, seqLen, h, inter);
  const up = linear(x, weights.get(`${prefix}.mlp.up_proj.weight`)!, seqLen, h, inter);
  for (let i = 0; i < gate.length; i++) gate[i] = activation(gate[i]!, config.hiddenActivation) * up[i]!;
  return linear(gate, weights.get(`${prefix}.mlp.down_proj.weight`)!, seqLen, inter, h);
}
