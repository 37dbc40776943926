import { UserError } from '../errors.js';
import { Rng } from '../vectors/random.js';

export interface SamplingOptions {
  /** 0 (the default) decodes greedily. */
  temperature?: number;
  topP?: number;
  topK?: number;
}

export function validateSampling(options: SamplingOptions): void {
  const { temperature = 0, topP = 1, topK = 0 } = options;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new UserError(`temperature must be ≥ 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new UserError(`top-p must be in (0, 1], got ${topP}`);
  if (!Number.isInteger(topK) || topK < 0) throw new UserError(`top-k must be a non-negative integer, got ${topK}`);
}

export function argmax(logits: ArrayLike<number>, offset = 0, length = logits.length): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const value = logits[offset + i]!;
    if (value > bestValue) {
      bestValue = value;
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token from one row's logits: greedy at temperature 0, otherwise softmax(logits / T) restricted to
 * the top-k tokens and then to the smallest set whose probability reaches top-p, sampled with the row's own RNG so a
 * row's samples do not depend on what else is in the batch.
 */
export function sampleToken(logits: Float32Array, options: SamplingOptions, rng: Rng): number {
  const temperature = options.temperature ?? 0;
  if (temperature === 0) return argmax(logits);
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  let candidates = Array.from(logits.keys());
  if (topK > 0 && topK < logits.length) {
    candidates.sort((a, b) => logits[b]! - logits[a]!);
    candidates = candidates.slice(0, topK);
  }
  let max = -Infinity;
  for (const id of candidates) max = Math.max(max, logits[id]!);
  const weights = candidates.map((id) => Math.exp((logits[id]! - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    const order = candidates.map((_, i) => i).sort((a, b) => weights[b]! - weights[a]!);
    const kept: number[] = [];
    let mass = 0;
    for (const i of order) {
      kept.push(i);
      mass += weights[i]! / total;
      if (mass >= topP) break;
    }
    candidates = kept.map((i) => candidates[i]!);
    const keptWeights = kept.map((i) => weights[i]!);
    weights.length = 0;
    weights.push(...keptWeights);
    total = weights.reduce((a, b) => a + b, 0);
  }
  let threshold = rng.uniform() * total;
  for (let i = 0; i < candidates.length; i++) {
    threshold -= weights[i]!;
    if (threshold < 0) return candidates[i]!;
  }
  return candidates[candidates.length - 1]!;
}
