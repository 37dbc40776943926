import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildModel, loadWeights, parseDecoderConfig, randomWeights, saveWeights, type CheckpointDtype } from '../src/builder/index.js';
import { captureResiduals } from '../src/runtime/capture.js';
import { bfloat16BitsToFloat32, float32ToBfloat16Bits, roundToFloat16 } from '../src/vectors/float16.js';
import { readSafetensors, writeSafetensors } from '../src/vectors/safetensors.js';
import { tempDir, tinyConfig } from './helpers/models.js';
import { openModel } from './helpers/open.js';

const rounders: Record<CheckpointDtype, (x: number) => number> = {
  F32: (x) => x,
  F16: roundToFloat16,
  BF16: (x) => bfloat16BitsToFloat32(float32ToBfloat16Bits(x)),
};

async function logitsOf(dir: string, tokens: number[]): Promise<Float32Array> {
  const model = await openModel(dir);
  const result = await captureResiduals(model, [{ inputIds: tokens }], { layers: [1], returnLogits: true });
  return result.logits![0]!;
}

describe('a safetensors checkpoint round-trips to the same graph', () => {
  for (const storage of ['F32', 'F16', 'BF16'] as CheckpointDtype[]) {
    it(`${storage} storage with Hugging Face tensor names`, async () => {
      const dir = tempDir(`ckpt-${storage}`);
      const config = parseDecoderConfig(tinyConfig('qwen2'));
      const seeded = randomWeights(config, 11);
      const checkpoint = path.join(dir, 'model.safetensors');
      saveWeights(checkpoint, config, seeded, storage);
      const names = [...readSafetensors(checkpoint).tensors.keys()];
      expect(names).toContain('model.layers.0.self_attn.q_proj.bias');
      expect(names).toContain('model.layers.2.mlp.down_proj.weight');
      expect(names).toContain('lm_head.weight');
      const loaded = loadWeights(config, checkpoint);
      for (const [name, values] of seeded) expect(loaded.get(name)).toEqual(values.map(rounders[storage]));

      // The graph built from the checkpoint equals the graph built from the (equally rounded) seeded weights.
      const fromCheckpoint = buildModel({ config, weights: checkpoint, outDir: path.join(dir, 'from-checkpoint') });
      const rounded = new Map([...seeded].map(([name, values]) => [name, values.map(rounders[storage])]));
      const fromSeed = buildModel({ config, weights: rounded, outDir: path.join(dir, 'from-seed') });
      const tokens = [5, 60, 7, 299, 42];
      const a = await logitsOf(fromCheckpoint.dir, tokens);
      const b = await logitsOf(fromSeed.dir, tokens);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
      if (storage === 'F32') {
        const direct = buildModel({ config, seed: 11, outDir: path.join(dir, 'direct') });
        expect(Buffer.from((await logitsOf(direct.dir, tokens)).buffer).equals(Buffer.from(a.buffer))).toBe(true);
      }
    });
  }

  it('reads sharded checkpoints through model.safetensors.index.json', async () => {
    const dir = tempDir('ckpt-sharded');
    const config = parseDecoderConfig(tinyConfig('llama'));
    const seeded = randomWeights(config, 2);
    const names = [...seeded.keys()];
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(
        path.join(dir, file),
        Object.fromEntries(shard.map((name) => [name, { dtype: 'F32' as const, shape: [seeded.get(name)!.length], data: seeded.get(name)! }])),
      );
      for (const name of shard) weightMap[name] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    // Shapes are checked, so write them flat on purpose and expect the loader to say so.
    expect(() => loadWeights(config, dir)).toThrow(/has shape \[\d+\], the config needs \[\d+, \d+\]/);
  });
});
