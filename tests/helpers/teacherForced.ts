import { BatchLayout } from '../../src/runtime/batch.js';
import type { CompiledInterventions } from '../../src/runtime/interventions.js';
import type { DecoderSession, KvCache } from '../../src/runtime/session.js';

export interface CachedRun {
  /** logits[row][t]: logits predicting the token after position t of the row, for the prompt's last position and each fed token. */
  logits: Float32Array[][];
  /** residuals[layer][row][t]: the residual at position t, for every position of the row. */
  residuals: Map<number, Float32Array[][]>;
}

/**
 * Runs rows through a session the way generation does — a padded prefill, then one token per row per step with
 * the KV cache — but with the continuation tokens given (teacher forcing), collecting logits and residuals.
 */
export async function runWithCache(
  session: DecoderSession,
  prompts: number[][],
  continuations: number[][],
  options: { capture?: number[]; interventions?: CompiledInterventions; padId?: number } = {},
): Promise<CachedRun> {
  const batch = prompts.length;
  const capture = options.capture ?? [];
  const hidden = session.folder.hiddenSize;
  const lengths = prompts.map((p) => p.length);
  const layout = new BatchLayout(lengths, session.signature.paddingSide, session.signature.positionOffset);
  const prefill = layout.prefill(prompts, options.padId ?? 0);
  const width = layout.promptWidth;
  const logits: Float32Array[][] = prompts.map(() => []);
  const residuals = new Map<number, Float32Array[][]>(capture.map((layer) => [layer, prompts.map(() => [])]));
  let result = await session.step({
    batch, sequenceLength: width, inputIds: prefill.inputIds, attentionMask: prefill.attentionMask, totalLength: width,
    positionIds: prefill.positionIds, logitPositions: prefill.lastPositions, capture,
    interventionFeeds: options.interventions?.feeds(width, (row, position) => layout.prefillTokenIndex(row, position), lengths),
  });
  const vocab = result.vocabSize;
  const collect = (sequenceLength: number, positionOf: (row: number, tokenIndex: number) => number, tokenIndices: (row: number) => number[]) => {
    for (let row = 0; row < batch; row++) {
      logits[row]!.push(result.logits.slice(row * vocab, (row + 1) * vocab));
      for (const layer of capture) {
        const values = result.residuals.get(layer)!;
        for (const index of tokenIndices(row)) {
          const start = (row * sequenceLength + positionOf(row, index)) * hidden;
          residuals.get(layer)![row]!.push(values.slice(start, start + hidden));
        }
      }
    }
  };
  collect(width, (row, index) => (layout.side === 'left' ? width - lengths[row]! + index : index), (row) => Array.from({ length: lengths[row]! }, (_, i) => i));
  let past: KvCache = result.present;
  const steps = Math.max(...continuations.map((c) => c.length));
  for (let step = 0; step < steps; step++) {
    const tokens = continuations.map((c) => c[step] ?? c.at(-1)!);
    const next = layout.decode(tokens);
    result = await session.step({
      batch, sequenceLength: 1, inputIds: next.inputIds, attentionMask: next.attentionMask, totalLength: next.totalLength,
      positionIds: next.positionIds, past, logitPositions: new Array(batch).fill(0), capture,
      interventionFeeds: options.interventions?.feeds(1, (row) => layout.decodeTokenIndex(row), lengths),
    });
    past = result.present;
    collect(1, () => 0, () => [0]);
  }
  return { logits, residuals };
}
