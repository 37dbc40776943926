import * as path from 'node:path';
import { buildPlantedModel } from '../demo/index.js';
import { generate, SteerableModel, type GenerationRow } from '../runtime/index.js';
import { Rng } from '../vectors/random.js';
import { benchDir, ensureBenchModel, smallRealConfig } from './harness.js';

export interface SweepBatchingRow {
  model: string;
  baseline: string;
  batchedSeconds: number;
  baselineSeconds: number;
  speedup: number;
}

/**
 * A sweep's generations (8 coefficient cells × 16 prompts, 16 new tokens) the way `persona sweep` runs them — rows
 * of every cell sharing batches, each row with its own coefficient — against one generation run per cell (its 16
 * prompts batched) and against one prompt at a time, on the same model in one run.
 */
export async function sweepBatching(options: { log?: (line: string) => void; batchSize?: number } = {}): Promise<SweepBatchingRow[]> {
  const out: SweepBatchingRow[] = [];
  const plantedDir = path.join(benchDir(), 'planted-cheerful');
  const planted = await buildPlantedModel(plantedDir);
  const models = [
    { label: 'Llama-shaped 12 × 512, vocabulary 32000', dir: ensureBenchModel('llama-12x512', smallRealConfig), vector: new Rng(3).normalArray(512, 1) },
    { label: 'planted demo model (4 × 64, vocabulary 151669)', dir: plantedDir, vector: planted.direction },
  ];
  const coefficients = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
  for (const entry of models) {
    const model = await SteerableModel.load(entry.dir, { withoutTokenizer: true });
    const layer = Math.floor(model.numLayers / 2);
    const prompts = Array.from({ length: 16 }, (_, p) => Array.from({ length: 20 + (p % 5) }, (_, i) => (p * 977 + i * 31 + 7) % 30000));
    const rowsOf = (coefficient: number): GenerationRow[] =>
      prompts.map((inputIds, p) => ({ inputIds, seed: p, interventions: { steer: [{ layer, vector: entry.vector, coefficient }] } }));
    const generation = { maxNewTokens: 16, temperature: 1, eosTokenIds: [] as number[], monitors: [{ name: 'v', layer, direction: entry.vector }] };
    const time = async (run: () => Promise<void>) => {
      const started = process.hrtime.bigint();
      await run();
      return Number(process.hrtime.bigint() - started) / 1e9;
    };
    const batchSize = options.batchSize ?? 64;
    const shared = async () => {
      const rows = coefficients.flatMap(rowsOf);
      for (let start = 0; start < rows.length; start += batchSize) await generate(model, rows.slice(start, start + batchSize), generation);
    };
    const perCell = async () => {
      for (const coefficient of coefficients) await generate(model, rowsOf(coefficient), generation);
    };
    const perPrompt = async () => {
      for (const coefficient of coefficients) for (const row of rowsOf(coefficient)) await generate(model, [row], generation);
    };
    await time(perCell); // warm-up: sessions and allocations
    const sharedSeconds: number[] = [];
    const cellSeconds: number[] = [];
    for (let round = 0; round < 3; round++) {
      if (round % 2) {
        cellSeconds.push(await time(perCell));
        sharedSeconds.push(await time(shared));
      } else {
        sharedSeconds.push(await time(shared));
        cellSeconds.push(await time(perCell));
      }
    }
    const promptSeconds = await time(perPrompt);
    const batched = Math.min(...sharedSeconds);
    for (const [baseline, seconds] of [['one run per cell (16 prompts batched)', Math.min(...cellSeconds)], ['one prompt at a time', promptSeconds]] as const) {
      out.push({ model: entry.label, baseline, batchedSeconds: batched, baselineSeconds: seconds, speedup: seconds / batched });
      options.log?.(`${entry.label}: shared batches ${batched.toFixed(2)} s vs ${baseline} ${seconds.toFixed(2)} s: ${(seconds / batched).toFixed(2)}×`);
    }
    await model.dispose();
  }
  return out;
}
