import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { InstrumentationLayout } from '../instrument/index.js';
import { allFinite, dot, normalize } from '../vectors/linalg.js';
import { Rng, hashString } from '../vectors/random.js';
import { BatchLayout } from './batch.js';
import { CompiledInterventions, type InterventionSpec, type MonitorSpec } from './interventions.js';
import type { SteerableModel } from './model.js';
import { sampleToken, validateSampling, type SamplingOptions } from './sampling.js';
import type { KvCache } from './session.js';

export interface GenerationRow {
  /** The prompt's token ids (already chat-templated). */
  inputIds: readonly number[];
  interventions?: InterventionSpec;
  /** Seed for this row's sampler; defaults to a hash of the global seed and the row index. */
  seed?: number;
}

export interface GenerationOptions extends SamplingOptions {
  maxNewTokens: number;
  seed?: number;
  /** Defaults to the model's eos ids. */
  eosTokenIds?: readonly number[];
  stopStrings?: readonly string[];
  monitors?: readonly MonitorSpec[];
  /** Run the uninstrumented graph (no interventions or monitors allowed); for parity checks and baselines. */
  original?: boolean;
  /** Layers to instrument beyond what the interventions need (fed as "off"); for parity checks and benchmarks. */
  instrumentation?: Partial<InstrumentationLayout>;
  /** Keep every step's logits ([row] → [step] → vocab). */
  returnLogits?: boolean;
  /** Append one JSON line per row with its monitored projections. */
  driftLog?: string;
  /** Called for each generated token. */
  onToken?: (event: TokenEvent) => void;
}

export interface TokenEvent {
  row: number;
  step: number;
  tokenId: number;
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface MonitorReadout {
  name: string;
  layer: number;
  /**
   * perToken[row][k]: projection on the unit direction of the residual at generated token k's own position (as
   * Persona Vectors and the Assistant Axis read response tokens); a final end-of-turn token is not read.
   */
  perToken: number[][];
  /** Mean of perToken per row: the response-average projection of the turn. */
  mean: number[];
  /** Projection at the last prompt token, the state the response starts from (Persona Vectors' prompt_last). */
  promptLast: number[];
}

export interface GenerationResult {
  /** Generated ids per row (eos included when it ended the row). */
  sequences: number[][];
  finishReasons: FinishReason[];
  /** Decoded text per row (special tokens skipped, cut before a stop string). */
  texts: string[];
  projections: MonitorReadout[];
  logits?: Float32Array[][];
}

function validateMonitors(monitors: readonly MonitorSpec[], model: SteerableModel): { name: string; layer: number; unit: Float32Array }[] {
  return monitors.map((monitor) => {
    if (!Number.isInteger(monitor.layer) || monitor.layer < 0 || monitor.layer >= model.numLayers) {
      throw new UserError(`monitor ${monitor.name} layer ${monitor.layer} is out of range: the model has layers 0-${model.numLayers - 1}`);
    }
    if (monitor.direction.length !== model.hiddenSize) throw new UserError(`monitor ${monitor.name} direction has ${monitor.direction.length} values, the model's hidden size is ${model.hiddenSize}`);
    if (!allFinite(monitor.direction)) throw new UserError(`monitor ${monitor.name} direction contains NaN or Infinity`);
    return { name: monitor.name, layer: monitor.layer, unit: normalize(monitor.direction) };
  });
}

/**
 * The generation loop: a left- or right-padded prefill, then one token per row per step with the KV cache, every
 * row carrying its own interventions and sampler. Rows that finish keep being fed (their outputs are ignored) so the
 * batch stays rectangular.
 */
export async function generate(model: SteerableModel, rows: readonly GenerationRow[], options: GenerationOptions): Promise<GenerationResult> {
  if (rows.length === 0) throw new UserError('nothing to generate: no prompts');
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1) throw new UserError(`max tokens must be a positive integer, got ${options.maxNewTokens}`);
  for (const [i, row] of rows.entries()) {
    if (row.inputIds.length === 0) throw new UserError(`prompt ${i} is empty`);
    for (const id of row.inputIds) {
      if (!Number.isInteger(id) || id < 0 || id >= model.folder.vocabSize) throw new UserError(`prompt ${i} has token id ${id}, outside the vocabulary (0-${model.folder.vocabSize - 1})`);
    }
  }
  validateSampling(options);
  const monitors = validateMonitors(options.monitors ?? [], model);
  const compiled = new CompiledInterventions(rows.map((r) => r.interventions), model.hiddenSize, model.numLayers);
  const captureLayers = [...new Set(monitors.map((m) => m.layer))].sort((a, b) => a - b);
  if (options.original && (compiled.steerLayers.length || compiled.clampLayers.length || captureLayers.length)) {
    throw new Error('the original graph cannot apply interventions or monitors');
  }
  const session = options.original
    ? await model.originalSession()
    : await model.session({
        capture: [...captureLayers, ...(options.instrumentation?.capture ?? [])],
        steer: [...compiled.steerLayers, ...(options.instrumentation?.steer ?? [])],
        clamp: [...compiled.clampLayers, ...(options.instrumentation?.clamp ?? [])],
      });

  const batch = rows.length;
  const lengths = rows.map((r) => r.inputIds.length);
  const layout = new BatchLayout(lengths, session.signature.paddingSide, session.signature.positionOffset);
  const eos = new Set(options.eosTokenIds ?? model.folder.eosTokenIds);
  const padId = model.folder.padTokenId ?? model.folder.eosTokenIds[0] ?? 0;
  const rngs = rows.map((row, i) => new Rng(row.seed ?? hashString(`${options.seed ?? 0}:${i}`)));
  const sequences: number[][] = rows.map(() => []);
  const finishReasons: (FinishReason | undefined)[] = rows.map(() => undefined);
  const perToken = monitors.map(() => rows.map((): number[] => []));
  const logitsTrace = options.returnLogits ? rows.map((): Float32Array[] => []) : undefined;
  const decode = (ids: readonly number[]) => (model.hasTokenizer ? model.tokenizer.decode(ids) : '');
  const stopCut: (number | undefined)[] = rows.map(() => undefined);

  const hidden = model.hiddenSize;
  const promptLast = monitors.map(() => rows.map(() => NaN));
  const project = (residuals: Map<number, Float32Array>, sequenceLength: number, row: number, position: number, monitor: (typeof monitors)[number]) => {
    const start = (row * sequenceLength + position) * hidden;
    return dot(residuals.get(monitor.layer)!.subarray(start, start + hidden), monitor.unit);
  };
  /** Generated token k is read at its own position, i.e. in the step that feeds it (a final eos is not read). */
  const unread = (row: number) => {
    const sequence = sequences[row]!;
    const readable = finishReasons[row] === 'eos' ? sequence.length - 1 : sequence.length;
    return perToken[0]![row]!.length < readable;
  };
  const readFedTokens = (residuals: Map<number, Float32Array>) => {
    if (monitors.length === 0) return;
    for (let row = 0; row < batch; row++) {
      if (!unread(row)) continue;
      monitors.forEach((monitor, m) => perToken[m]![row]!.push(project(residuals, 1, row, 0, monitor)));
    }
  };
  const sampleNext = (logits: Float32Array, vocab: number, step: number): number[] => {
    const next: number[] = [];
    for (let row = 0; row < batch; row++) {
      if (finishReasons[row]) {
        next.push(sequences[row]!.at(-1) ?? padId);
        continue;
      }
      const rowLogits = logits.subarray(row * vocab, (row + 1) * vocab);
      if (!rowLogits.some(Number.isFinite)) {
        throw new UserError(`the model produced no finite logits for row ${row} at step ${step}: an intervention is probably too large`);
      }
      logitsTrace?.[row]!.push(rowLogits.slice());
      const token = sampleToken(rowLogits, options, rngs[row]!);
      sequences[row]!.push(token);
      options.onToken?.({ row, step, tokenId: token });
      if (eos.has(token)) finishReasons[row] = 'eos';
      else if (options.stopStrings?.length) {
        const text = decode(sequences[row]!);
        const hits = options.stopStrings.map((s) => text.indexOf(s)).filter((i) => i >= 0);
        if (hits.length) {
          finishReasons[row] = 'stop';
          stopCut[row] = Math.min(...hits);
        }
      }
      if (!finishReasons[row] && sequences[row]!.length >= options.maxNewTokens) finishReasons[row] = 'length';
      next.push(token);
    }
    return next;
  };

  const prefill = layout.prefill(rows.map((r) => r.inputIds), padId);
  const width = layout.promptWidth;
  let result = await session.step({
    batch,
    sequenceLength: width,
    inputIds: prefill.inputIds,
    attentionMask: prefill.attentionMask,
    totalLength: width,
    positionIds: prefill.positionIds,
    logitPositions: prefill.lastPositions,
    interventionFeeds: compiled.feeds(width, (row, position) => layout.prefillTokenIndex(row, position), lengths),
    capture: captureLayers,
  });
  monitors.forEach((monitor, m) => rows.forEach((_, row) => (promptLast[m]![row] = project(result.residuals, width, row, prefill.lastPositions[row]!, monitor))));
  let tokens = sampleNext(result.logits, result.vocabSize, 0);
  let past: KvCache = result.present;
  const decodeStep = async (fed: number[]) => {
    const next = layout.decode(fed);
    result = await session.step({
      batch,
      sequenceLength: 1,
      inputIds: next.inputIds,
      attentionMask: next.attentionMask,
      totalLength: next.totalLength,
      positionIds: next.positionIds,
      past,
      logitPositions: new Array(batch).fill(0),
      interventionFeeds: compiled.feeds(1, (row) => layout.decodeTokenIndex(row), lengths),
      capture: captureLayers,
    });
    past = result.present;
    readFedTokens(result.residuals);
  };
  for (let step = 1; finishReasons.some((r) => r === undefined); step++) {
    await decodeStep(tokens);
    tokens = sampleNext(result.logits, result.vocabSize, step);
  }
  // The last generated tokens have not been fed yet: one more step reads them (only when monitoring).
  if (monitors.length && rows.some((_, row) => unread(row))) await decodeStep(tokens);

  const texts = sequences.map((ids, row) => {
    const text = decode(ids);
    return stopCut[row] !== undefined ? text.slice(0, stopCut[row]) : text;
  });
  const projections: MonitorReadout[] = monitors.map((monitor, m) => ({
    name: monitor.name,
    layer: monitor.layer,
    perToken: perToken[m]!,
    mean: perToken[m]!.map((values) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN)),
    promptLast: promptLast[m]!,
  }));
  if (options.driftLog && monitors.length) appendDriftLog(options.driftLog, sequences, projections);
  return { sequences, finishReasons: finishReasons as FinishReason[], texts, projections, ...(logitsTrace ? { logits: logitsTrace } : {}) };
}

function appendDriftLog(file: string, sequences: number[][], projections: MonitorReadout[]): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const lines = sequences.map((tokens, row) =>
    JSON.stringify({
      time: new Date().toISOString(),
      row,
      tokens,
      projections: Object.fromEntries(projections.map((p) => [p.name, { layer: p.layer, perToken: p.perToken[row], mean: p.mean[row], promptLast: p.promptLast[row] }])),
    }),
  );
  fs.appendFileSync(file, `${lines.join('\n')}\n`);
}
