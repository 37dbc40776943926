import { fullLayout, type InstrumentationLayout } from '../instrument/index.js';
import { BatchLayout, CompiledInterventions, SteerableModel, type DecoderSession, type InterventionSpec, type KvCache } from '../runtime/index.js';
import { Rng } from '../vectors/random.js';
import { ensureBenchModel, median, smallRealConfig } from './harness.js';

export interface DecodeOverheadRow {
  variant: string;
  batch: number;
  tokensPerSecond: number;
  originalTokensPerSecond: number;
  ratio: number;
  /** Interquartile range of the per-round ratios. */
  ratioQuartiles: [number, number];
  /** Median ratio to the instrumented graph with an empty layout (the interventions' own cost). */
  ratioToEmptyLayout: number;
}

interface Variant {
  name: string;
  layout?: InstrumentationLayout;
  interventions?: (batch: number, hidden: number) => InterventionSpec;
  capture?: number[];
}

/**
 * Decode throughput of instrumented graphs relative to the original, measured in the same run: prefill once, then
 * time `steps` single-token steps with the KV cache, the interventions' feeds built every step as generation does.
 */
export async function decodeOverhead(options: { steps?: number; rounds?: number; batches?: number[]; log?: (line: string) => void } = {}): Promise<DecodeOverheadRow[]> {
  const log = options.log ?? (() => undefined);
  const steps = options.steps ?? 16;
  const dir = ensureBenchModel('llama-12x512', smallRealConfig);
  const model = await SteerableModel.load(dir, { withoutTokenizer: true });
  const numLayers = model.numLayers;
  const rng = new Rng(5);
  const vector = rng.normalArray(model.hiddenSize, 0.5);
  const direction = rng.normalArray(model.hiddenSize, 1);
  const everyLayer = Array.from({ length: numLayers }, (_, i) => i);
  const clampLayers = everyLayer.slice(2, 10);
  const variants: Variant[] = [
    { name: 'original graph' },
    // The original against itself: how far apart two identical runs land on this machine (the noise floor).
    { name: 'original again (noise floor)' },
    // Only the last-position logit selection every instrumented graph has: the baseline for the interventions' own cost.
    { name: 'instrumented, empty layout', layout: { capture: [], steer: [], clamp: [] } },
    { name: 'instrumented, interventions off (every layer instrumented)', layout: fullLayout(numLayers) },
    { name: 'one steered layer', layout: { capture: [], steer: [6], clamp: [] }, interventions: () => ({ steer: [{ layer: 6, vector, coefficient: 4 }] }) },
    { name: 'clamps on 8 layers', layout: { capture: [], steer: [], clamp: clampLayers }, interventions: () => ({ clamp: [{ layers: clampLayers, direction, upper: 0 }] }) },
    { name: 'capture of every layer', layout: { capture: everyLayer, steer: [], clamp: [] }, capture: everyLayer },
    {
      name: 'clamps on 8 layers + capture of every layer',
      layout: { capture: everyLayer, steer: [], clamp: clampLayers },
      interventions: () => ({ clamp: [{ layers: clampLayers, direction, upper: 0 }] }),
      capture: everyLayer,
    },
  ];
  const sessions = new Map<string, DecoderSession>();
  for (const variant of variants) sessions.set(variant.name, variant.layout ? await model.session(variant.layout) : await model.originalSession());
  const spread = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return [sorted[Math.floor(sorted.length * 0.25)]!, sorted[Math.floor(sorted.length * 0.75)]!] as const;
  };

  const rows: DecodeOverheadRow[] = [];
  for (const batch of options.batches ?? [1, 8]) {
    const prompts = Array.from({ length: batch }, (_, r) => Array.from({ length: 16 + r }, (_, i) => (r * 131 + i * 17) % 32000));
    const lengths = prompts.map((p) => p.length);
    /** Tokens per second of one block: a prefill, then `steps` timed decode steps. */
    const block = async (variant: Variant): Promise<number> => {
      const session = sessions.get(variant.name)!;
      const compiled = new CompiledInterventions(prompts.map(() => variant.interventions?.(batch, model.hiddenSize)), model.hiddenSize, numLayers);
      const layout = new BatchLayout(lengths, session.signature.paddingSide, session.signature.positionOffset);
      const prefill = layout.prefill(prompts, 0);
      let result = await session.step({
        batch, sequenceLength: layout.promptWidth, inputIds: prefill.inputIds, attentionMask: prefill.attentionMask, totalLength: layout.promptWidth,
        positionIds: prefill.positionIds, logitPositions: prefill.lastPositions,
        interventionFeeds: compiled.feeds(layout.promptWidth, (row, position) => layout.prefillTokenIndex(row, position), lengths),
      });
      let past: KvCache = result.present;
      const started = process.hrtime.bigint();
      for (let step = 0; step < steps; step++) {
        const next = layout.decode(prompts.map((_, r) => (step * 7 + r) % 32000));
        result = await session.step({
          batch, sequenceLength: 1, inputIds: next.inputIds, attentionMask: next.attentionMask, totalLength: next.totalLength,
          positionIds: next.positionIds, past, logitPositions: new Array(batch).fill(0),
          interventionFeeds: compiled.feeds(1, (row) => layout.decodeTokenIndex(row), lengths),
          capture: variant.capture ?? [],
        });
        past = result.present;
      }
      return (steps * batch) / (Number(process.hrtime.bigint() - started) / 1e9);
    };
    const original = variants[0]!;
    const empty = variants.find((v) => v.name === 'instrumented, empty layout')!;
    for (const variant of variants) await block(variant); // warm-up
    for (const variant of variants.slice(1)) {
      // Each round runs the original, the empty layout and the variant back to back, in rotating order, and takes the
      // ratios within the round, so slow drift in the machine's speed cancels; medians discard disturbed rounds.
      const ratios: number[] = [];
      const ratiosToEmpty: number[] = [];
      const rates: number[] = [];
      const originalRates: number[] = [];
      const trio = [original, empty, variant];
      for (let round = 0; round < (options.rounds ?? 21); round++) {
        const measured = new Map<Variant, number>();
        for (let i = 0; i < trio.length; i++) {
          const next = trio[(i + round) % trio.length]!;
          measured.set(next, await block(next));
        }
        // The noise-floor variant is the original itself: pair it with a second original block of the round.
        const value = variant.layout ? measured.get(variant)! : await block(original);
        ratios.push(value / measured.get(original)!);
        ratiosToEmpty.push(value / measured.get(empty)!);
        rates.push(value);
        originalRates.push(measured.get(original)!);
      }
      const [low, high] = spread(ratios);
      const row = {
        variant: variant.name, batch, tokensPerSecond: median(rates), originalTokensPerSecond: median(originalRates),
        ratio: median(ratios), ratioQuartiles: [low, high] as [number, number], ratioToEmptyLayout: median(ratiosToEmpty),
      };
      rows.push(row);
      log(`batch ${batch}: ${variant.name}: ${row.tokensPerSecond.toFixed(1)} tok/s vs ${row.originalTokensPerSecond.toFixed(1)}, ratio ${row.ratio.toFixed(3)} (IQR ${low.toFixed(3)}-${high.toFixed(3)}), vs empty layout ${row.ratioToEmptyLayout.toFixed(3)}`);
    }
  }
  await model.dispose();
  return rows;
}
