import { describe, expect, it } from 'vitest';
import { decoderFamilies, exportStyles, referenceForward } from '../src/builder/index.js';
import { maxAbsDiff, tinyModel } from './helpers/models.js';
import { runWithCache } from './helpers/teacherForced.js';
import { openModel } from './helpers/open.js';

const prompts = [
  [11, 42, 7, 250, 99],
  [3, 180, 64],
];
const continuations = [
  [5, 77, 123, 9],
  [201, 18, 45, 290],
];
const tolerance = { fp32: 1e-4, q4: 1e-4, fp16: 2e-2 } as const;
describe('built graphs agree with the reference forward pass (KV cache, batch 2, padded)', () => {
  for (const family of decoderFamilies) {
    for (const style of exportStyles) {
      for (const dtype of ['fp32', 'fp16', 'q4'] as const) {
        it(`${family} ${style} ${dtype}`, async () => {
          const built = tinyModel(family, style, dtype);
          const model = await openModel(built.dir);
          const layers = Array.from({ length: model.numLayers }, (_, i) => i);
          const session = await model.session({ capture: layers });
          expect(session.signature.paddingSide).toBe(style === 'builder' ? 'right' : 'left');
          const run = await runWithCache(session, prompts, continuations, { capture: layers });
          let worstLogit = 0;
          let worstResidual = 0;
          prompts.forEach((prompt, row) => {
            const sequence = [...prompt, ...continuations[row]!];
            const reference = referenceForward(built.config, built.effectiveWeights, sequence);
            const vocab = built.config.vocabSize;
            run.logits[row]!.forEach((logits, step) => {
              const position = prompt.length - 1 + step;
              worstLogit = Math.max(worstLogit, maxAbsDiff(logits, reference.logits.subarray(position * vocab, (position + 1) * vocab)));
            });
            for (const layer of layers) {
              const captured = run.residuals.get(layer)![row]!;
              expect(captured).toHaveLength(sequence.length);
              captured.forEach((residual, position) => {
                const h = built.config.hiddenSize;
                worstResidual = Math.max(worstResidual, maxAbsDiff(residual, reference.blockOutputs[layer]!.subarray(position * h, (position + 1) * h)));
              });
            }
          });
          expect(worstLogit).toBeLessThan(tolerance[dtype]);
          expect(worstResidual).toBeLessThan(tolerance[dtype]);
        });
      }
    }
  }
});
