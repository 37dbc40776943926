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
 * Logits more than this many temperatures below the maximum carry < e^-40 of the top token's probability each (on a
 * 150k vocabulary, < 1e-12 together): sampling treats them as impossible and never computes their exponentials.
 */
const NEGLIGIBLE_LOGIT_GAP = 40;

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
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const floor = max - NEGLIGIBLE_LOGIT_GAP * temperature;
  if ((topK === 0 || topK >= logits.length) && topP >= 1) {
    // Plain softmax sampling: passes over the vocabulary without allocating (vocabularies run to 150k tokens).
    let total = 0;
    for (let i = 0; i < logits.length; i++) if (logits[i]! >= floor) total += Math.exp((logits[i]! - max) / temperature);
    let threshold = rng.uniform() * total;
    for (let i = 0; i < logits.length; i++) {
      if (logits[i]! < floor) continue;
      threshold -= Math.exp((logits[i]! - max) / temperature);
      if (threshold < 0) return i;
    }
    return argmax(logits);
  }
  let candidates: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i]! >= floor) candidates.push(i);
  candidates.sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (topK > 0) candidates = candidates.slice(0, topK);
  let weights = candidates.map((id) => Math.exp((logits[id]! - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    let mass = 0;
    let kept = 0;
    while (kept < candidates.length && mass < topP * total) mass += weights[kept++]!;
    candidates = candidates.slice(0, kept);
    weights = weights.slice(0, kept);
    total = mass;
  }
  let threshold = rng.uniform() * total;
  for (let i = 0; i < candidates.length; i++) {
    threshold -= weights[i]!;
    if (threshold < 0) return candidates[i]!;
  }
  return candidates[candidates.length - 1]!;
}
