import { describe, expect, it } from 'vitest';
import { decoderFamilies, exportStyles } from '../src/builder/index.js';
import { fullLayout } from '../src/instrument/index.js';
import { captureResiduals } from '../src/runtime/capture.js';
import { generate } from '../src/runtime/generate.js';
import { SteerableModel } from '../src/runtime/model.js';
import { FIXTURE_DIR, hasFixture, maxAbsDiff, tinyModel } from './helpers/models.js';
import { openModel } from './helpers/open.js';


function bitIdentical(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Interventions off on the fully instrumented graph must reproduce the exported graph bit for bit. */
async function expectBitIdenticalGeneration(model: SteerableModel, prompts: number[][]): Promise<number[][]> {
  const options = { maxNewTokens: 8, returnLogits: true, eosTokenIds: [] };
  const original = await generate(model, prompts.map((inputIds) => ({ inputIds })), { ...options, original: true });
  const instrumented = await generate(model, prompts.map((inputIds) => ({ inputIds })), { ...options, instrumentation: fullLayout(model.numLayers) });
  expect(instrumented.sequences).toEqual(original.sequences);
  for (let row = 0; row < prompts.length; row++) {
    expect(original.logits![row]).toHaveLength(8);
    original.logits![row]!.forEach((logits, step) => expect(bitIdentical(instrumented.logits![row]![step]!, logits)).toBe(true));
  }
  return original.sequences;
}

/** Logits from KV-cache decoding against one full forward pass over prompt + generated tokens. */
async function maxCacheDeviation(model: SteerableModel, prompts: number[][]): Promise<number> {
  const generated = await generate(model, prompts.map((inputIds) => ({ inputIds })), { maxNewTokens: 8, returnLogits: true, eosTokenIds: [] });
  const full = await captureResiduals(
    model,
    prompts.map((prompt, row) => ({ inputIds: [...prompt, ...generated.sequences[row]!] })),
    { layers: [], returnLogits: true },
  );
  let worst = 0;
  prompts.forEach((prompt, row) => {
    generated.logits![row]!.forEach((stepLogits, step) => {
      const position = prompt.length - 1 + step;
      const vocab = full.vocabSize;
      worst = Math.max(worst, maxAbsDiff(stepLogits, full.logits![row]!.subarray(position * vocab, (position + 1) * vocab)));
    });
  });
  return worst;
}

const prompts = [
  [11, 42, 7, 250, 99, 13],
  [3, 180, 64],
];

describe('interventions off are bit-identical to the exported graph; KV cache matches full recomputation', () => {
  for (const family of decoderFamilies) {
    for (const style of exportStyles) {
      for (const dtype of ['fp32', 'fp16', 'q4'] as const) {
        it(`${family} ${style} ${dtype}`, async () => {
          const model = await openModel(tinyModel(family, style, dtype).dir);
          await expectBitIdenticalGeneration(model, prompts);
          expect(await maxCacheDeviation(model, prompts)).toBeLessThan(dtype === 'fp16' ? 1e-2 : 1e-4);
        });
      }
    }
  }

  it.skipIf(!hasFixture)('the real onnxruntime-genai export (builder-llama-fp16, MultiHeadAttention + RotaryEmbedding)', async () => {
    const model = await openModel(FIXTURE_DIR);
    const fixturePrompts = [
      [1, 15043, 3186, 29892, 920, 526],
      [1, 22172, 727],
    ];
    await expectBitIdenticalGeneration(model, fixturePrompts);
    expect(await maxCacheDeviation(model, fixturePrompts)).toBeLessThan(1e-2);
  });
});
