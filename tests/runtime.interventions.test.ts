import { describe, expect, it } from 'vitest';
import { decoderFamilies, exportStyles, referenceForward, type BuiltModel } from '../src/builder/index.js';
import { captureResiduals, type CaptureRow } from '../src/runtime/capture.js';
import { CompiledInterventions, positionSelected, type PositionMode } from '../src/runtime/interventions.js';
import { dot, normalize } from '../src/vectors/linalg.js';
import { Rng } from '../src/vectors/random.js';
import { FIXTURE_DIR, hasFixture, maxAbsDiff, tinyModel } from './helpers/models.js';
import { runWithCache } from './helpers/teacherForced.js';
import { openModel } from './helpers/open.js';

interface Case {
  label: string;
  dir: string;
  fp16: boolean;
  built?: BuiltModel;
  tokens: number[][];
  promptLengths: number[];
}

const tinyTokens = [
  [11, 42, 7, 250, 99, 13, 5],
  [3, 180, 64, 201, 18],
];
const cases: Case[] = [];
for (const family of decoderFamilies) {
  for (const style of exportStyles) {
    for (const dtype of ['fp32', 'fp16'] as const) {
      cases.push({ label: `${family} ${style} ${dtype}`, dir: '', fp16: dtype === 'fp16', tokens: tinyTokens, promptLengths: [4, 3], built: undefined });
      Object.defineProperty(cases.at(-1)!, 'built', { get: () => tinyModel(family, style, dtype) });
      Object.defineProperty(cases.at(-1)!, 'dir', { get: () => tinyModel(family, style, dtype).dir });
    }
  }
}
if (hasFixture) {
  cases.push({ label: 'fixture builder-llama-fp16', dir: FIXTURE_DIR, fp16: true, tokens: [[1, 15043, 3186, 29892, 920, 526, 366], [1, 22172, 727, 1, 3]], promptLengths: [4, 3] });
}


function rowsOf(c: Case, interventions?: (row: number) => CaptureRow['interventions']): CaptureRow[] {
  return c.tokens.map((inputIds, row) => ({ inputIds, promptLength: c.promptLengths[row], interventions: interventions?.(row) }));
}

function vectorAt(values: Float32Array, position: number, hidden: number): Float32Array {
  return values.subarray(position * hidden, (position + 1) * hidden);
}

const STEER_LAYER = 1;
const coefficients = [2.5, -0.75];

describe('steering adds exactly c·v at the gated positions of the steered layer and nowhere else', () => {
  for (const c of cases) {
    it(c.label, async () => {
      const model = await openModel(c.dir);
      const hidden = model.hiddenSize;
      const layers = Array.from({ length: model.numLayers }, (_, i) => i);
      const vector = new Rng(3).normalArray(hidden, 1);
      const base = await captureResiduals(model, rowsOf(c), { layers });
      for (const mode of ['all', 'prompt', 'response'] as PositionMode[]) {
        const steered = await captureResiduals(
          model,
          rowsOf(c, (row) => ({ steer: [{ layer: STEER_LAYER, vector, coefficient: coefficients[row]!, positions: mode }] })),
          { layers },
        );
        c.tokens.forEach((tokens, row) => {
          for (const layer of layers.filter((l) => l <= STEER_LAYER)) {
            const before = base.residuals.get(layer)![row]!;
            const after = steered.residuals.get(layer)![row]!;
            // float16 sums round at the scale of the residual stream, not of the single coordinate.
            const scale = c.fp16 ? 2e-3 * before.reduce((m, x) => Math.max(m, Math.abs(x)), 0) : 0;
            for (let position = 0; position < tokens.length; position++) {
              const gated = layer === STEER_LAYER && positionSelected(mode, position, c.promptLengths[row]!);
              const h = vectorAt(before, position, hidden);
              const h2 = vectorAt(after, position, hidden);
              for (let i = 0; i < hidden; i++) {
                const expected = gated ? Math.fround(coefficients[row]! * vector[i]!) : 0;
                const shift = h2[i]! - h[i]!;
                if (!gated) expect(shift).toBe(0);
                else expect(Math.abs(shift - expected)).toBeLessThanOrEqual(scale + (c.fp16 ? 2e-3 : 2e-6) * (Math.abs(h[i]!) + Math.abs(expected)) + 1e-6);
              }
            }
          }
        });
        if (c.built) {
          // The interventions change everything downstream exactly as the reference forward pass predicts.
          const tolerance = c.fp16 ? 3e-2 : 1e-4;
          const withLogits = await captureResiduals(
            model,
            rowsOf(c, (row) => ({ steer: [{ layer: STEER_LAYER, vector, coefficient: coefficients[row]!, positions: mode }] })),
            { layers, returnLogits: true },
          );
          c.tokens.forEach((tokens, row) => {
            const positions = tokens.map((_, p) => p).filter((p) => positionSelected(mode, p, c.promptLengths[row]!));
            const scaled = vector.map((x) => Math.fround(coefficients[row]! * x));
            const reference = referenceForward(c.built!.config, c.built!.effectiveWeights, tokens, { steer: [{ layer: STEER_LAYER, vector: scaled, positions }] });
            expect(maxAbsDiff(withLogits.logits![row]!, reference.logits)).toBeLessThan(tolerance);
            for (const layer of layers) expect(maxAbsDiff(withLogits.residuals.get(layer)![row]!, reference.blockOutputs[layer]!)).toBeLessThan(tolerance);
          });
        }
      }
    });
  }
});

describe('steering during KV-cache generation follows the position mode at every decode step', () => {
  for (const c of cases.filter((x) => x.label.includes('optimum fp32') || x.label.includes('builder fp16') || x.label.startsWith('fixture'))) {
    it(c.label, async () => {
      const model = await openModel(c.dir);
      const hidden = model.hiddenSize;
      const vector = new Rng(4).normalArray(hidden, 1);
      const prompts = c.tokens.map((t, row) => t.slice(0, c.promptLengths[row]));
      const continuations = c.tokens.map((t, row) => t.slice(c.promptLengths[row]));
      const session = await model.session({ capture: [STEER_LAYER], steer: [STEER_LAYER] });
      const base = await runWithCache(session, prompts, continuations, { capture: [STEER_LAYER] });
      for (const mode of ['all', 'prompt', 'response'] as PositionMode[]) {
        const interventions = new CompiledInterventions(
          prompts.map((_, row) => ({ steer: [{ layer: STEER_LAYER, vector, coefficient: coefficients[row]!, positions: mode }] })),
          hidden,
          model.numLayers,
        );
        const steered = await runWithCache(session, prompts, continuations, { capture: [STEER_LAYER], interventions });
        prompts.forEach((prompt, row) => {
          const before = base.residuals.get(STEER_LAYER)![row]!;
          const after = steered.residuals.get(STEER_LAYER)![row]!;
          before.forEach((h, position) => {
            const gated = positionSelected(mode, position, prompt.length);
            const shift = after[position]!.map((x, i) => x - h[i]!);
            const expected = vector.map((x) => (gated ? Math.fround(coefficients[row]! * x) : 0));
            expect(maxAbsDiff(shift, expected)).toBeLessThanOrEqual(gated ? (c.fp16 ? 0.02 : 1e-5) : 0);
          });
        });
      }
    });
  }
});

describe('floor and ceiling clamps hold the projection within bounds and leave in-bound positions unchanged', () => {
  for (const c of cases) {
    it(c.label, async () => {
      const model = await openModel(c.dir);
      const hidden = model.hiddenSize;
      const layers = Array.from({ length: model.numLayers }, (_, i) => i);
      const rng = new Rng(5);
      const first = normalize(rng.normalArray(hidden));
      // A second direction orthogonal to the first, so both bounds can hold at once.
      const raw = rng.normalArray(hidden);
      const overlap = dot(raw, first);
      const second = normalize(raw.map((x, i) => x - overlap * first[i]!));
      const clampLayer = model.numLayers - 1;
      const base = await captureResiduals(model, rowsOf(c), { layers });
      const projections = (values: Float32Array, direction: Float32Array) =>
        Array.from({ length: values.length / hidden }, (_, p) => dot(vectorAt(values, p, hidden), direction));
      // A bound halfway between two neighbouring projections, so no position sits on it.
      const median = (xs: number[]) => {
        const sorted = [...xs].sort((a, b) => a - b);
        const middle = Math.floor(sorted.length / 2);
        return (sorted[middle - 1]! + sorted[middle]!) / 2;
      };
      const baseFirst = base.residuals.get(clampLayer)!.map((v) => projections(v, first));
      const baseSecond = base.residuals.get(clampLayer)!.map((v) => projections(v, second));
      // Per-row bounds: each row's floor on `first` and ceiling on `second` sit at its own median.
      const floors = baseFirst.map(median);
      const ceilings = baseSecond.map(median);
      const clamped = await captureResiduals(
        model,
        rowsOf(c, (row) => ({
          clamp: [
            { layers: [clampLayer], direction: first, lower: floors[row] },
            { layers: [clampLayer], direction: second, upper: ceilings[row] },
          ],
        })),
        { layers, returnLogits: Boolean(c.built) },
      );
      const tolerance = c.fp16 ? 0.03 : 1e-4;
      let changed = 0;
      c.tokens.forEach((_, row) => {
        const after = clamped.residuals.get(clampLayer)![row]!;
        const before = base.residuals.get(clampLayer)![row]!;
        projections(after, first).forEach((p) => expect(p).toBeGreaterThanOrEqual(floors[row]! - tolerance));
        projections(after, second).forEach((p) => expect(p).toBeLessThanOrEqual(ceilings[row]! + tolerance));
        baseFirst[row]!.forEach((p, position) => {
          const q = baseSecond[row]![position]!;
          const inside = p >= floors[row]! && q <= ceilings[row]!;
          // Projections read back from the captured residual carry its rounding; skip positions that close.
          const onBoundary = Math.abs(p - floors[row]!) < tolerance || Math.abs(q - ceilings[row]!) < tolerance;
          const diff = maxAbsDiff(vectorAt(after, position, hidden), vectorAt(before, position, hidden));
          if (inside && !onBoundary) expect(diff).toBe(0);
          if (!inside) changed++;
        });
        // Layers before the clamp are untouched.
        for (const layer of layers.filter((l) => l < clampLayer)) expect(maxAbsDiff(clamped.residuals.get(layer)![row]!, base.residuals.get(layer)![row]!)).toBe(0);
      });
      expect(changed).toBeGreaterThan(0);
      if (c.built) {
        c.tokens.forEach((tokens, row) => {
          const reference = referenceForward(c.built!.config, c.built!.effectiveWeights, tokens, {
            clamp: [{ layer: clampLayer, directions: [first, second], lower: [floors[row]!, -Infinity], upper: [Infinity, ceilings[row]!] }],
          });
          expect(maxAbsDiff(clamped.logits![row]!, reference.logits)).toBeLessThan(c.fp16 ? 3e-2 : 1e-4);
        });
      }
    });
  }
});
