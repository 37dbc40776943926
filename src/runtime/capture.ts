import { UserError } from '../errors.js';
import { BatchLayout } from './batch.js';
import { CompiledInterventions, type InterventionSpec } from './interventions.js';
import type { SteerableModel } from './model.js';

export interface CaptureRow {
  inputIds: readonly number[];
  /** Tokens that belong to the prompt (the rest is the response); all of them when omitted. */
  promptLength?: number;
  interventions?: InterventionSpec;
}

export interface CaptureOptions {
  layers: readonly number[];
  /** Also return logits at every position of every row. */
  returnLogits?: boolean;
}

export interface CaptureResult {
  /** residuals.get(L)[row] is [length × hidden] for that row's tokens (padding removed), float32. */
  residuals: Map<number, Float32Array[]>;
  logits?: Float32Array[];
  vocabSize: number;
}

/** Teacher-forced forward pass over whole sequences, returning the residual after each requested block. */
export async function captureResiduals(model: SteerableModel, rows: readonly CaptureRow[], options: CaptureOptions): Promise<CaptureResult> {
  if (rows.length === 0) throw new UserError('nothing to capture: no inputs');
  for (const [i, row] of rows.entries()) {
    if (row.inputIds.length === 0) throw new UserError(`input ${i} is empty`);
    for (const id of row.inputIds) {
      if (!Number.isInteger(id) || id < 0 || id >= model.folder.vocabSize) throw new UserError(`input ${i} has token id ${id}, outside the vocabulary (0-${model.folder.vocabSize - 1})`);
    }
    if (row.promptLength !== undefined && !(row.promptLength >= 1 && row.promptLength <= row.inputIds.length)) {
      throw new UserError(`input ${i} has prompt length ${row.promptLength} outside 1-${row.inputIds.length}`);
    }
  }
  const layers = [...new Set(options.layers)].sort((a, b) => a - b);
  const compiled = new CompiledInterventions(rows.map((r) => r.interventions), model.hiddenSize, model.numLayers);
  if (layers.length === 0 && !options.returnLogits) throw new Error('capture needs layers or returnLogits');
  // Without logits the head and the cache outputs are pruned away: on a large vocabulary they cost more than the rest.
  const session = await model.session({ capture: layers, steer: compiled.steerLayers, clamp: compiled.clampLayers, captureOnly: !options.returnLogits });
  const lengths = rows.map((r) => r.inputIds.length);
  const promptLengths = rows.map((r) => r.promptLength ?? r.inputIds.length);
  const layout = new BatchLayout(lengths, session.signature.paddingSide, session.signature.positionOffset);
  const padId = model.folder.padTokenId ?? model.folder.eosTokenIds[0] ?? 0;
  const prefill = layout.prefill(rows.map((r) => r.inputIds), padId);
  const width = layout.promptWidth;
  const result = await session.step({
    batch: rows.length,
    sequenceLength: width,
    inputIds: prefill.inputIds,
    attentionMask: prefill.attentionMask,
    totalLength: width,
    positionIds: prefill.positionIds,
    ...(options.returnLogits ? {} : { logitPositions: prefill.lastPositions }),
    interventionFeeds: compiled.feeds(width, (row, position) => layout.prefillTokenIndex(row, position), promptLengths),
    capture: layers,
  });
  const hidden = model.hiddenSize;
  const firstPosition = (row: number) => (layout.side === 'left' ? width - lengths[row]! : 0);
  const unpad = (values: Float32Array, featureSize: number) =>
    rows.map((_, row) => {
      const start = (row * width + firstPosition(row)) * featureSize;
      return values.slice(start, start + lengths[row]! * featureSize);
    });
  const residuals = new Map<number, Float32Array[]>();
  for (const layer of layers) residuals.set(layer, unpad(result.residuals.get(layer)!, hidden));
  return {
    residuals,
    vocabSize: result.vocabSize,
    ...(options.returnLogits ? { logits: unpad(result.logits, result.vocabSize) } : {}),
  };
}
