import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PooledMeans } from '../experiments/pooling.js';
import { BatchLayout, captureResiduals, SteerableModel } from '../runtime/index.js';
import { ensureBenchModel, median, smallRealConfig } from './harness.js';

/** Synthetic teacher-forced samples: a 64-token prompt and a 64-token response each. */
function sampleRows(count: number, seed: number): { inputIds: number[]; promptLength: number }[] {
  return Array.from({ length: count }, (_, r) => ({ inputIds: Array.from({ length: 128 }, (_, i) => (seed * 7919 + r * 131 + i * 17) % 32000), promptLength: 64 }));
}

export interface CaptureThroughputResult {
  captureTokensPerSecond: number;
  forwardTokensPerSecond: number;
  ratio: number;
  rounds: number;
}

/**
 * Teacher-forced capture of every layer with the three poolings accumulated (what extraction does per sample),
 * against a plain forward pass of the original graph over the same rows, in alternating rounds of 32 rows.
 */
export async function captureThroughput(options: { rounds?: number; log?: (line: string) => void } = {}): Promise<CaptureThroughputResult> {
  const dir = ensureBenchModel('llama-12x512', smallRealConfig);
  const model = await SteerableModel.load(dir, { withoutTokenizer: true });
  const layers = Array.from({ length: model.numLayers }, (_, i) => i);
  const rows = sampleRows(32, 1);
  const tokens = rows.reduce((s, r) => s + r.inputIds.length, 0);
  const original = await model.originalSession();
  const capture = async () => {
    const means = new PooledMeans(model.numLayers, model.hiddenSize);
    const started = process.hrtime.bigint();
    for (let start = 0; start < rows.length; start += 8) {
      const batch = rows.slice(start, start + 8);
      const result = await captureResiduals(model, batch, { layers });
      batch.forEach((row, i) => means.add(layers.map((layer) => result.residuals.get(layer)![i]!), row.promptLength));
    }
    return tokens / (Number(process.hrtime.bigint() - started) / 1e9);
  };
  const forward = async () => {
    const started = process.hrtime.bigint();
    for (let start = 0; start < rows.length; start += 8) {
      const batch = rows.slice(start, start + 8);
      const layout = new BatchLayout(batch.map((r) => r.inputIds.length), original.signature.paddingSide, original.signature.positionOffset);
      const prefill = layout.prefill(batch.map((r) => r.inputIds), 0);
      await original.step({ batch: batch.length, sequenceLength: layout.promptWidth, inputIds: prefill.inputIds, attentionMask: prefill.attentionMask, totalLength: layout.promptWidth, positionIds: prefill.positionIds, logitPositions: prefill.lastPositions });
    }
    return tokens / (Number(process.hrtime.bigint() - started) / 1e9);
  };
  await capture();
  await forward();
  const ratios: number[] = [];
  const captureRates: number[] = [];
  const forwardRates: number[] = [];
  const rounds = options.rounds ?? 9;
  for (let round = 0; round < rounds; round++) {
    const [a, b] = round % 2 ? [await forward(), await capture()] : [await capture(), await forward()];
    const [c, f] = round % 2 ? [b, a] : [a, b];
    captureRates.push(c);
    forwardRates.push(f);
    ratios.push(c / f);
  }
  await model.dispose();
  const result = { captureTokensPerSecond: median(captureRates), forwardTokensPerSecond: median(forwardRates), ratio: median(ratios), rounds };
  options.log?.(`capture ${result.captureTokensPerSecond.toFixed(0)} tok/s vs forward ${result.forwardTokensPerSecond.toFixed(0)} tok/s, ratio ${result.ratio.toFixed(3)}`);
  return result;
}

/** Runs the pooling loop over `samples` rows and reports the process's peak resident memory (in a fresh process). */
export async function capturePeakMemoryWorker(samples: number): Promise<number> {
  const dir = ensureBenchModel('llama-12x512', smallRealConfig);
  const model = await SteerableModel.load(dir, { withoutTokenizer: true });
  const layers = Array.from({ length: model.numLayers }, (_, i) => i);
  const means = new PooledMeans(model.numLayers, model.hiddenSize);
  for (let start = 0; start < samples; start += 8) {
    const batch = sampleRows(Math.min(8, samples - start), start);
    const result = await captureResiduals(model, batch, { layers });
    batch.forEach((row, i) => means.add(layers.map((layer) => result.residuals.get(layer)![i]!), row.promptLength));
  }
  await model.dispose();
  return process.resourceUsage().maxRSS * 1024;
}

export interface PeakMemoryResult {
  samples: number;
  peakBytes: number;
}

/** Peak RSS of the streaming capture + pooling at each sample count, each in its own process. */
export function capturePeakMemory(sampleCounts: readonly number[], log?: (line: string) => void): PeakMemoryResult[] {
  const worker = fileURLToPath(new URL('./captureMemoryWorker.js', import.meta.url));
  return sampleCounts.map((samples) => {
    const run = spawnSync(process.execPath, [worker, String(samples)], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`memory worker failed: ${run.stderr}`);
    const peakBytes = Number(run.stdout.trim());
    log?.(`${samples} samples: peak RSS ${(peakBytes / 2 ** 20).toFixed(0)} MiB`);
    return { samples, peakBytes };
  });
}
