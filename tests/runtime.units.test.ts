import { describe, expect, it } from 'vitest';
import { BatchLayout } from '../src/runtime/batch.js';
import { CompiledInterventions, positionSelected, validateInterventions, type InterventionSpec, type PositionMode } from '../src/runtime/interventions.js';
import { argmax, sampleToken, validateSampling, type SamplingOptions } from '../src/runtime/sampling.js';
import { Rng } from '../src/vectors/random.js';
import { userErrorOf } from './helpers/errors.js';

function softmax(logits: readonly number[], temperature: number): number[] {
  const max = Math.max(...logits);
  const weights = logits.map((l) => Math.exp((l - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

function frequencies(logits: Float32Array, options: SamplingOptions, draws: number, seed: number): number[] {
  const rng = new Rng(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, options, rng)]! += 1;
  return counts.map((c) => c / draws);
}

/**
 * Tolerance for an empirical frequency over N independent draws of a token with probability p: its standard error is
 * sqrt(p(1-p)/N) (≤ 0.0035 at N = 20 000). Five standard errors put a wrong failure below 6e-7 per token, so changing
 * the seed cannot make the test flaky, while a sampler that ignores the temperature (or renormalises wrongly) misses
 * by 0.05–0.3, tens of standard errors. The 1e-9 admits p = 0 exactly.
 */
function tolerance(p: number, draws: number): number {
  return 5 * Math.sqrt((p * (1 - p)) / draws) + 1e-9;
}

const DRAWS = 20_000;

describe('argmax and greedy decoding', () => {
  it('returns the index of the largest logit, the first on ties, within an offset window', () => {
    expect(argmax([0.1, 3, -2, 2.9])).toBe(1);
    expect(argmax([5, 5, 1])).toBe(0);
    expect(argmax([-Infinity, -1e30, -1e29])).toBe(2);
    // Window [2, 5) of a flat [batch × vocab] buffer: index relative to the window.
    expect(argmax(new Float32Array([9, 9, 1, 4, 2, 9]), 2, 3)).toBe(1);
  });

  it('temperature 0 (the default) is argmax and consumes no randomness', () => {
    const logits = new Float32Array([0.3, -1, 2.5, 2.4, 0]);
    const rng = new Rng(1);
    for (let i = 0; i < 50; i++) expect(sampleToken(logits, {}, rng)).toBe(2);
    expect(sampleToken(logits, { temperature: 0, topK: 3, topP: 0.1 }, rng)).toBe(2);
    // The RNG was never advanced: it still yields what a fresh one with the same seed yields.
    expect(rng.uniform()).toBe(new Rng(1).uniform());
  });
});

describe('sampling with temperature', () => {
  const logitValues = [1.2, 0.4, -0.3, 2.0, 0.0, -1.5];
  const logits = new Float32Array(logitValues);

  for (const temperature of [1, 0.5, 2]) {
    it(`empirical frequencies over ${DRAWS} draws match softmax(logits / ${temperature})`, () => {
      const expected = softmax(Array.from(logits), temperature);
      const observed = frequencies(logits, { temperature }, DRAWS, 1234 + temperature * 10);
      observed.forEach((f, i) => expect(Math.abs(f - expected[i]!), `token ${i}: ${f} vs ${expected[i]}`).toBeLessThanOrEqual(tolerance(expected[i]!, DRAWS)));
      // Pearson chi-square with 5 degrees of freedom: its 99.999% quantile is 28.3.
      const chi2 = observed.reduce((sum, f, i) => sum + (DRAWS * (f - expected[i]!) ** 2) / expected[i]!, 0);
      expect(chi2).toBeLessThan(28.3);
    });
  }

  it('the temperature matters: T = 0.5 and T = 2 give distributions tens of standard errors apart', () => {
    const cold = frequencies(logits, { temperature: 0.5 }, DRAWS, 5);
    const hot = frequencies(logits, { temperature: 2 }, DRAWS, 5);
    // Token 3 (the largest logit): p = 0.66 at T = 0.5 and 0.33 at T = 2.
    expect(cold[3]!).toBeGreaterThan(0.6);
    expect(hot[3]!).toBeLessThan(0.4);
  });

  it('top-k never returns a token outside the k largest logits and renormalises over them', () => {
    const values = [0.5, 2.0, 1.0, 1.5, -0.5, 0.9, 1.8];
    const wide = new Float32Array(values);
    // Top 3: indices 1 (2.0), 6 (1.8), 3 (1.5).
    const observed = frequencies(wide, { temperature: 1, topK: 3 }, DRAWS, 77);
    const top = [1, 6, 3];
    const expected = softmax(top.map((i) => values[i]!), 1);
    observed.forEach((f, i) => {
      if (!top.includes(i)) expect(f, `token ${i} is outside the top 3`).toBe(0);
    });
    top.forEach((token, j) => expect(Math.abs(observed[token]! - expected[j]!)).toBeLessThanOrEqual(tolerance(expected[j]!, DRAWS)));
    // k = 1 is greedy.
    const rng = new Rng(3);
    for (let i = 0; i < 200; i++) expect(sampleToken(wide, { temperature: 5, topK: 1 }, rng)).toBe(1);
    // k ≥ vocabulary is plain sampling: every token appears.
    expect(frequencies(wide, { temperature: 1, topK: 50 }, 5000, 9).every((f) => f > 0)).toBe(true);
  });

  it('top-p returns only tokens of the smallest nucleus whose mass reaches p', () => {
    // Probabilities 0.05, 0.5, 0.15, 0.3 at T = 1; sorted: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05).
    const probabilities = [0.05, 0.5, 0.15, 0.3];
    const logits4 = new Float32Array(probabilities.map(Math.log));
    const cases: [number, number[]][] = [
      [0.3, [1]], // 0.5 already reaches 0.3
      [0.7, [1, 3]], // 0.5 < 0.7 ≤ 0.8
      [0.9, [1, 3, 2]], // 0.8 < 0.9 ≤ 0.95
      [0.99, [0, 1, 2, 3]],
    ];
    for (const [topP, nucleus] of cases) {
      const observed = frequencies(logits4, { temperature: 1, topP }, DRAWS, 100 + topP * 100);
      const mass = nucleus.reduce((sum, i) => sum + probabilities[i]!, 0);
      observed.forEach((f, i) => {
        if (nucleus.includes(i)) {
          const p = probabilities[i]! / mass;
          expect(Math.abs(f - p), `top-p ${topP}, token ${i}`).toBeLessThanOrEqual(tolerance(p, DRAWS));
        } else {
          expect(f, `top-p ${topP}: token ${i} is outside the nucleus ${nucleus}`).toBe(0);
        }
      });
    }
  });

  it('top-k applies before top-p: p is measured on the renormalised top-k mass', () => {
    // Probabilities 0.4, 0.3, 0.2, 0.1; top-2 renormalised: 4/7 ≈ 0.571, 3/7; top-p 0.5 keeps token 0 only.
    const logits4 = new Float32Array([0.4, 0.3, 0.2, 0.1].map(Math.log));
    const observed = frequencies(logits4, { temperature: 1, topK: 2, topP: 0.5 }, 2000, 8);
    expect(observed).toEqual([1, 0, 0, 0]);
    // Without top-k, 0.4 < 0.5 so the nucleus is {0, 1}.
    const withoutK = frequencies(logits4, { temperature: 1, topP: 0.5 }, DRAWS, 8);
    expect(withoutK[2]).toBe(0);
    expect(withoutK[3]).toBe(0);
    expect(Math.abs(withoutK[0]! - 4 / 7)).toBeLessThanOrEqual(tolerance(4 / 7, DRAWS));
  });

  it('the same seed gives the same draws; another seed gives others', () => {
    const flat = new Float32Array(50).map((_, i) => Math.sin(i) * 0.5);
    const draw = (seed: number, options: SamplingOptions) => {
      const rng = new Rng(seed);
      return Array.from({ length: 300 }, () => sampleToken(flat, options, rng));
    };
    for (const options of [{ temperature: 1 }, { temperature: 0.8, topK: 10 }, { temperature: 1.3, topP: 0.9 }]) {
      const a = draw(42, options);
      expect(draw(42, options)).toEqual(a);
      const b = draw(43, options);
      expect(b).not.toEqual(a);
      // Near-uniform logits over 50 tokens: 300 draws hit many different tokens.
      expect(new Set(a).size).toBeGreaterThan(options.topK ? 9 : 25);
    }
  });
});

describe('validateSampling', () => {
  it('accepts defaults and valid settings', () => {
    expect(validateSampling({})).toBeUndefined();
    expect(validateSampling({ temperature: 0.7, topP: 0.9, topK: 50 })).toBeUndefined();
    expect(validateSampling({ temperature: 0, topP: 1, topK: 0 })).toBeUndefined();
  });

  const bad: [SamplingOptions, RegExp][] = [
    [{ temperature: -0.1 }, /^temperature must be ≥ 0, got -0.1$/],
    [{ temperature: NaN }, /^temperature must be ≥ 0, got NaN$/],
    [{ temperature: Infinity }, /^temperature must be ≥ 0, got Infinity$/],
    [{ topP: 0 }, /^top-p must be in \(0, 1\], got 0$/],
    [{ topP: 1.5 }, /^top-p must be in \(0, 1\], got 1.5$/],
    [{ topP: NaN }, /^top-p must be in \(0, 1\], got NaN$/],
    [{ topK: -1 }, /^top-k must be a non-negative integer, got -1$/],
    [{ topK: 2.5 }, /^top-k must be a non-negative integer, got 2.5$/],
  ];
  for (const [options, message] of bad) {
    it(`refuses ${JSON.stringify(options, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}`, () => {
      expect(userErrorOf(() => validateSampling(options))).toMatch(message);
    });
  }
});

const big = (values: readonly number[]) => Array.from(values, (v) => BigInt(v));

describe('BatchLayout', () => {
  const lengths = [5, 2, 3];
  const rows = [
    [10, 11, 12, 13, 14],
    [20, 21],
    [30, 31, 32],
  ];
  const PAD = 9;

  it('left padding: pads before each prompt, positions count from each row’s first token', () => {
    const layout = new BatchLayout(lengths, 'left');
    expect(layout.batch).toBe(3);
    expect(layout.promptWidth).toBe(5);
    const prefill = layout.prefill(rows, PAD);
    expect(Array.from(prefill.inputIds)).toEqual(big([10, 11, 12, 13, 14, 9, 9, 9, 20, 21, 9, 9, 30, 31, 32]));
    expect(Array.from(prefill.attentionMask)).toEqual(big([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1]));
    // Pads get position 1 (Hugging Face's convention); real tokens 0, 1, …
    expect(Array.from(prefill.positionIds)).toEqual(big([0, 1, 2, 3, 4, 1, 1, 1, 0, 1, 1, 1, 0, 1, 2]));
    expect(prefill.lastPositions).toEqual([4, 4, 4]);
    expect([0, 1, 2, 3, 4].map((p) => layout.prefillTokenIndex(1, p))).toEqual([-1, -1, -1, 0, 1]);
    expect([0, 1, 2, 3, 4].map((p) => layout.prefillTokenIndex(2, p))).toEqual([-1, -1, 0, 1, 2]);
    expect([0, 1, 2, 3, 4].map((p) => layout.prefillTokenIndex(0, p))).toEqual([0, 1, 2, 3, 4]);
  });

  it('left padding: three decode steps grow the mask by one column, ones at the right end of each row', () => {
    const layout = new BatchLayout(lengths, 'left');
    layout.prefill(rows, PAD);
    const expectedMasks = [
      // step 1, width 6
      [
        [1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
      ],
      // step 2, width 7
      [
        [1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1],
      ],
      // step 3, width 8
      [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1, 1],
      ],
    ];
    expectedMasks.forEach((mask, s) => {
      const step = s + 1;
      const tokens = [100 + step, 200 + step, 250 + step];
      const feeds = layout.decode(tokens);
      expect(feeds.totalLength).toBe(5 + step);
      expect(Array.from(feeds.attentionMask)).toEqual(big(mask.flat()));
      expect(Array.from(feeds.inputIds)).toEqual(big(tokens));
      // The new token's position is its index in the row: length + step − 1.
      expect(Array.from(feeds.positionIds)).toEqual(big([5, 2, 3].map((l) => l + step - 1)));
      expect([0, 1, 2].map((r) => layout.decodeTokenIndex(r))).toEqual([5, 2, 3].map((l) => l + step - 1));
    });
  });

  it('right padding: pads after each prompt, last positions at each row’s own end', () => {
    const layout = new BatchLayout(lengths, 'right');
    const prefill = layout.prefill(rows, PAD);
    expect(Array.from(prefill.inputIds)).toEqual(big([10, 11, 12, 13, 14, 20, 21, 9, 9, 9, 30, 31, 32, 9, 9]));
    expect(Array.from(prefill.attentionMask)).toEqual(big([1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]));
    expect(Array.from(prefill.positionIds)).toEqual(big([0, 1, 2, 3, 4, 0, 1, 1, 1, 1, 0, 1, 2, 1, 1]));
    expect(prefill.lastPositions).toEqual([4, 1, 2]);
    expect([0, 1, 2, 3, 4].map((p) => layout.prefillTokenIndex(1, p))).toEqual([0, 1, -1, -1, -1]);
    expect([0, 1, 2, 3, 4].map((p) => layout.prefillTokenIndex(2, p))).toEqual([0, 1, 2, -1, -1]);
  });

  it('right padding: each row’s mask is a prefix of length + step ones (GroupQueryAttention reads lengths from its sum)', () => {
    const layout = new BatchLayout(lengths, 'right');
    layout.prefill(rows, PAD);
    for (let step = 1; step <= 3; step++) {
      const feeds = layout.decode([1, 2, 3]);
      const width = 5 + step;
      expect(feeds.totalLength).toBe(width);
      const mask = Array.from(feeds.attentionMask, Number);
      lengths.forEach((length, row) => {
        const rowMask = mask.slice(row * width, (row + 1) * width);
        expect(rowMask).toEqual(Array.from({ length: width }, (_, c) => (c < length + step ? 1 : 0)));
        expect(rowMask.reduce((a, b) => a + b, 0)).toBe(length + step);
      });
      expect(Array.from(feeds.positionIds)).toEqual(big(lengths.map((l) => l + step - 1)));
      expect([0, 1, 2].map((r) => layout.decodeTokenIndex(r))).toEqual(lengths.map((l) => l + step - 1));
    }
  });
});

describe('positionSelected', () => {
  const table: Record<PositionMode, (index: number, prompt: number) => boolean> = {
    all: (index) => index >= 0,
    prompt: (index, prompt) => index >= 0 && index < prompt,
    response: (index, prompt) => index >= prompt - 1,
  };
  it('all / prompt / response over prompt lengths 1-4 and indices −1 … 6', () => {
    for (const promptLength of [1, 2, 3, 4]) {
      for (let index = -1; index <= 6; index++) {
        for (const mode of ['all', 'prompt', 'response'] as const) {
          expect(positionSelected(mode, index, promptLength), `${mode} index ${index} prompt ${promptLength}`).toBe(table[mode](index, promptLength));
        }
      }
    }
    // Spelled out for a 3-token prompt and two generated tokens (indices 0-4), padding (−1) never selected.
    const row = [-1, 0, 1, 2, 3, 4];
    expect(row.map((i) => positionSelected('all', i, 3))).toEqual([false, true, true, true, true, true]);
    expect(row.map((i) => positionSelected('prompt', i, 3))).toEqual([false, true, true, true, false, false]);
    expect(row.map((i) => positionSelected('response', i, 3))).toEqual([false, false, false, true, true, true]);
  });
});

describe('CompiledInterventions', () => {
  const H = 4;
  const L = 3;
  const left = new BatchLayout([5, 2, 3], 'left');
  const promptLengths = [5, 2, 3];
  const prefillIndex = (row: number, position: number) => left.prefillTokenIndex(row, position);

  function valuesOf(feeds: Record<string, { data: unknown; dims: readonly number[]; type: string }>, name: string): number[] {
    expect(feeds[name], `feed ${name}`).toBeDefined();
    expect(feeds[name]!.type).toBe('float32');
    return Array.from(feeds[name]!.data as Float32Array);
  }

  it('sums each row’s steering vectors times their coefficients in float32, zero for rows that do not steer', () => {
    const specs: (InterventionSpec | undefined)[] = [
      { steer: [{ layer: 1, vector: [1, 2, 3, 4], coefficient: 2 }, { layer: 1, vector: [0.5, -1, 0, 8], coefficient: -0.5 }] },
      { steer: [{ layer: 2, vector: [1, 1, 1, 1], positions: 'response' }] },
      { steer: [{ layer: 1, vector: [0.1, 0.2, 0.3, -0.7], coefficient: 3, positions: 'prompt' }, { layer: 1, vector: [0.2, 0, 0, 0], coefficient: 0.7, positions: 'prompt' }] },
    ];
    const compiled = new CompiledInterventions(specs, H, L);
    expect(compiled.steerLayers).toEqual([1, 2]);
    expect(compiled.clampLayers).toEqual([]);
    const feeds = compiled.feeds(5, prefillIndex, promptLengths);
    expect(Object.keys(feeds).sort()).toEqual(['steer.1.gate', 'steer.1.vector', 'steer.2.gate', 'steer.2.vector']);
    expect(feeds['steer.1.vector']!.dims).toEqual([3, 1, H]);
    expect(feeds['steer.1.gate']!.dims).toEqual([3, 5, 1]);
    // Row 0: 2·[1,2,3,4] − 0.5·[0.5,−1,0,8] (exact); row 1: zeros; row 2: float32 sums of float32 products.
    const f = Math.fround;
    const row2 = [f(f(3 * 0.1) + f(0.7 * 0.2)), f(3 * 0.2), f(3 * 0.3), f(3 * -0.7)];
    expect(valuesOf(feeds, 'steer.1.vector')).toEqual([1.75, 4.5, 6, 4, 0, 0, 0, 0, ...row2]);
    expect(valuesOf(feeds, 'steer.2.vector')).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]);
    // Layer 1 gates: row 0 every token ('all'), row 1 nothing, row 2 its three prompt tokens (never its padding).
    expect(valuesOf(feeds, 'steer.1.gate')).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    // Layer 2: row 1 'response' → only its last prompt token.
    expect(valuesOf(feeds, 'steer.2.gate')).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);

    // A decode step (sequence length 1): 'prompt' rows stop, 'response' rows continue.
    const decode = compiled.feeds(1, (row) => promptLengths[row]!, promptLengths);
    expect(decode['steer.1.gate']!.dims).toEqual([3, 1, 1]);
    expect(valuesOf(decode, 'steer.1.gate')).toEqual([1, 0, 0]);
    expect(valuesOf(decode, 'steer.2.gate')).toEqual([0, 1, 0]);
    // Vectors do not change between steps: the same tensor object is fed again.
    expect(decode['steer.1.vector']).toBe(feeds['steer.1.vector']);
  });

  it('teacher-forced rows: response gates start at the last prompt token of each row', () => {
    const compiled = new CompiledInterventions([{ steer: [{ layer: 0, vector: [1, 0, 0, 0], positions: 'response' }] }, { steer: [{ layer: 0, vector: [0, 1, 0, 0], positions: 'prompt' }] }], H, L);
    const layout = new BatchLayout([5, 4], 'right');
    const feeds = compiled.feeds(5, (r, p) => layout.prefillTokenIndex(r, p), [2, 3]);
    expect(valuesOf(feeds, 'steer.0.gate')).toEqual([0, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  });

  it('clamps: unit directions deduplicated across rows, bounds intersected per row, ±Infinity where unused', () => {
    const d1 = [3, 0, 4, 0];
    const specs: (InterventionSpec | undefined)[] = [
      { clamp: [{ layers: [0, 2], direction: d1, lower: -1 }] },
      {
        clamp: [
          { layers: [2], direction: [6, 0, 8, 0], upper: 5 }, // the same unit direction as d1
          { layers: [2], direction: [0, 2, 0, 0], lower: 0, upper: 1 },
          { layers: [2], direction: [0.3, 0, 0.4, 0], lower: -3, upper: 4 }, // d1 again: bounds intersect to [−3, 4]
        ],
      },
      undefined,
    ];
    const compiled = new CompiledInterventions(specs, H, L);
    expect(compiled.clampLayers).toEqual([0, 2]);
    expect(compiled.steerLayers).toEqual([]);
    const feeds = compiled.feeds(5, prefillIndex, promptLengths);
    expect(Object.keys(feeds).sort()).toEqual([
      'clamp.0.directions', 'clamp.0.gate', 'clamp.0.lower', 'clamp.0.upper',
      'clamp.2.directions', 'clamp.2.gate', 'clamp.2.lower', 'clamp.2.upper',
    ]);
    expect(feeds['clamp.0.directions']!.dims).toEqual([1, H]);
    expect(feeds['clamp.0.lower']!.dims).toEqual([3, 1, 1]);
    expect(feeds['clamp.0.upper']!.dims).toEqual([3, 1, 1]);
    expect(feeds['clamp.0.gate']!.dims).toEqual([3, 5, 1]);
    expect(valuesOf(feeds, 'clamp.0.directions')).toEqual([0.6, 0, 0.8, 0].map(Math.fround));
    expect(valuesOf(feeds, 'clamp.0.lower')).toEqual([-1, -Infinity, -Infinity]);
    expect(valuesOf(feeds, 'clamp.0.upper')).toEqual([Infinity, Infinity, Infinity]);

    expect(feeds['clamp.2.directions']!.dims).toEqual([2, H]);
    expect(feeds['clamp.2.lower']!.dims).toEqual([3, 1, 2]);
    expect(valuesOf(feeds, 'clamp.2.directions')).toEqual([0.6, 0, 0.8, 0, 0, 1, 0, 0].map(Math.fround));
    // [row][k]: row 0 uses d1 only, row 1 both, row 2 neither.
    expect(valuesOf(feeds, 'clamp.2.lower')).toEqual([-1, -Infinity, -3, 0, -Infinity, -Infinity]);
    expect(valuesOf(feeds, 'clamp.2.upper')).toEqual([Infinity, Infinity, 4, 1, Infinity, Infinity]);
    // Gates: rows 0 and 1 clamp every real token, row 2 none.
    expect(valuesOf(feeds, 'clamp.2.gate')).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    expect(valuesOf(feeds, 'clamp.0.gate')).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('no interventions compile to no feeds', () => {
    const compiled = new CompiledInterventions([undefined, {}, { steer: [], clamp: [] }], H, L);
    expect(compiled.steerLayers).toEqual([]);
    expect(compiled.clampLayers).toEqual([]);
    expect(compiled.feeds(5, prefillIndex, promptLengths)).toEqual({});
  });

  it('a row may steer and clamp one layer with different positions (separate gates)', () => {
    const compiled = new CompiledInterventions([{ steer: [{ layer: 1, vector: [1, 0, 0, 0], positions: 'prompt' }], clamp: [{ layers: [1], direction: [1, 0, 0, 0], upper: 0, positions: 'response' }] }], H, L);
    const feeds = compiled.feeds(3, (_, p) => p, [3]);
    expect(valuesOf(feeds, 'steer.1.gate')).toEqual([1, 1, 1]);
    expect(valuesOf(feeds, 'clamp.1.gate')).toEqual([0, 0, 1]);
  });

  it('conflicting positions for one row and layer are a UserError', () => {
    expect(
      userErrorOf(() => new CompiledInterventions([undefined, { steer: [{ layer: 1, vector: [1, 0, 0, 0] }, { layer: 1, vector: [0, 1, 0, 0], positions: 'prompt' }] }], H, L)),
    ).toBe('row 1 steers layer 1 twice with different positions (all and prompt)');
    expect(
      userErrorOf(() => new CompiledInterventions([{ clamp: [{ layers: [0, 2], direction: [1, 0, 0, 0], lower: 0 }, { layers: [2], direction: [0, 1, 0, 0], upper: 1, positions: 'response' }] }], H, L)),
    ).toBe('row 0 clamps layer 2 with different positions (all and response)');
    // The same positions twice, or different positions in different rows or layers, are fine.
    expect(() => new CompiledInterventions([{ steer: [{ layer: 1, vector: [1, 0, 0, 0], positions: 'prompt' }, { layer: 1, vector: [1, 0, 0, 0], positions: 'prompt' }] }, { steer: [{ layer: 1, vector: [1, 0, 0, 0], positions: 'response' }] }], H, L)).not.toThrow();
  });

  describe('validation', () => {
    const cases: [string, InterventionSpec, string][] = [
      ['steering vector of the wrong size', { steer: [{ layer: 0, vector: [1, 2, 3] }] }, 'steering vector for layer 0 has 3 values but the model\'s hidden size is 4'],
      ['steering vector with NaN', { steer: [{ layer: 1, vector: [1, NaN, 0, 0] }] }, 'steering vector for layer 1 contains NaN or Infinity'],
      ['steering vector with Infinity', { steer: [{ layer: 1, vector: [1, Infinity, 0, 0] }] }, 'steering vector for layer 1 contains NaN or Infinity'],
      ['steering layer past the end', { steer: [{ layer: 3, vector: [1, 0, 0, 0] }] }, 'steering layer 3 is out of range: the model has layers 0-2'],
      ['negative steering layer', { steer: [{ layer: -1, vector: [1, 0, 0, 0] }] }, 'steering layer -1 is out of range: the model has layers 0-2'],
      ['fractional steering layer', { steer: [{ layer: 1.5, vector: [1, 0, 0, 0] }] }, 'steering layer 1.5 is out of range: the model has layers 0-2'],
      ['NaN coefficient', { steer: [{ layer: 0, vector: [1, 0, 0, 0], coefficient: NaN }] }, 'steering coefficient must be a finite number, got NaN'],
      ['unknown positions', { steer: [{ layer: 0, vector: [1, 0, 0, 0], positions: 'middle' as PositionMode }] }, 'steering positions must be one of all, prompt, response, got middle'],
      ['clamp layer out of range', { clamp: [{ layers: [0, 7], direction: [1, 0, 0, 0], lower: 0 }] }, 'clamp layer 7 is out of range: the model has layers 0-2'],
      ['clamp without layers', { clamp: [{ layers: [], direction: [1, 0, 0, 0], lower: 0 }] }, 'a clamp needs at least one layer'],
      ['clamp direction of the wrong size', { clamp: [{ layers: [0], direction: [1, 0, 0, 0, 0], lower: 0 }] }, 'clamp direction has 5 values but the model\'s hidden size is 4'],
      ['clamp direction with NaN', { clamp: [{ layers: [0], direction: [NaN, 0, 0, 0], lower: 0 }] }, 'clamp direction contains NaN or Infinity'],
      ['zero clamp direction', { clamp: [{ layers: [0], direction: [0, 0, 0, 0], lower: 0 }] }, 'clamp direction is the zero vector'],
      ['lower above upper', { clamp: [{ layers: [0], direction: [1, 0, 0, 0], lower: 2, upper: 1 }] }, 'clamp lower bound 2 is above its upper bound 1'],
      ['NaN bound', { clamp: [{ layers: [0], direction: [1, 0, 0, 0], upper: NaN }] }, 'clamp bounds must be numbers'],
    ];
    for (const [label, spec, message] of cases) {
      it(`${label} → UserError`, () => {
        expect(userErrorOf(() => validateInterventions(spec, H, L))).toBe(message);
        // The compiler validates every row, not only the first.
        expect(userErrorOf(() => new CompiledInterventions([undefined, spec], H, L))).toBe(message);
      });
    }

    it('accepts equal bounds and one-sided clamps', () => {
      expect(validateInterventions({ clamp: [{ layers: [0, 1, 2], direction: [1, 0, 0, 0], lower: 1, upper: 1 }, { layers: [0], direction: [0, 1, 0, 0] }] }, H, L)).toBeUndefined();
    });
  });
});
