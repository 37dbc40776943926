import * as fs from 'node:fs';
import * as path from 'node:path';
import ort from 'onnxruntime-node';
import { instrumentNames, loadInstrumentedGraph, type InstrumentationLayout, type ResidualStream } from '../instrument/index.js';
import { readModel } from '../onnx/proto.js';
import { float16ToFloat32Array } from '../vectors/float16.js';
import { executionProviders, explainSessionError, type Device } from './device.js';
import { readDecoderSignature, type DecoderSignature } from './graphSignature.js';
import type { ModelFolder } from './modelFolder.js';

export interface KvCache {
  keys: ort.Tensor[];
  values: ort.Tensor[];
}

export interface SessionOptions {
  device?: Device;
  cacheDir?: string;
  /** onnxruntime graph optimisation level; the same level applies to original and instrumented graphs. */
  optimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  intraOpThreads?: number;
}

export interface StepRequest {
  batch: number;
  sequenceLength: number;
  /** [batch × sequenceLength] token ids. */
  inputIds: BigInt64Array;
  /** [batch × totalLength] attention mask (past + current). */
  attentionMask: BigInt64Array;
  totalLength: number;
  /** [batch × sequenceLength], for graphs that take position_ids. */
  positionIds?: BigInt64Array;
  past?: KvCache;
  /** One position per row whose logits to return; all positions when omitted. */
  logitPositions?: readonly number[];
  /** Intervention inputs (steer.L.*, clamp.L.*); layout inputs not given are fed as "off". */
  interventionFeeds?: Record<string, ort.Tensor>;
  /** Layers whose residual to return (must be in the layout's capture list). */
  capture?: readonly number[];
}

export interface StepResult {
  /** [batch × vocab] when logitPositions was given, else [batch × sequenceLength × vocab]; empty for capture-only graphs. */
  logits: Float32Array;
  vocabSize: number;
  present: KvCache;
  /** Residual after each requested block, [batch × sequenceLength × hidden], float32. */
  residuals: Map<number, Float32Array>;
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float16') return float16ToFloat32Array(tensor.data as Uint16Array);
  return tensor.data as Float32Array;
}

/**
 * One onnxruntime session over a decoder graph: the original, or an instrumented one for a given layout. Fetches
 * only the outputs a step needs (logits at chosen positions, the KV cache, requested residuals).
 */
export class DecoderSession {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly folder: ModelFolder,
    readonly signature: DecoderSignature,
    readonly layout: InstrumentationLayout | undefined,
    readonly stream: ResidualStream | undefined,
  ) {}

  /** Opens the original graph, or the instrumented graph for `layout`. */
  static async open(folder: ModelFolder, layout: InstrumentationLayout | undefined, options: SessionOptions = {}): Promise<DecoderSession> {
    const device = options.device ?? 'cpu';
    const model = readModel(folder.onnxFile);
    const signature = readDecoderSignature(model, folder);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: options.optimizationLevel ?? 'all',
      // Errors reach the user through exceptions; onnxruntime's own warnings would only add noise on stderr.
      logSeverityLevel: 3,
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
    };
    // Original and instrumented graphs load the same way (bytes + the folder their external data is relative to),
    // so the comparison between them is of the graphs alone.
    const graph = layout
      ? loadInstrumentedGraph(folder.onnxFile, layout, { hiddenSize: folder.hiddenSize, numLayers: folder.numLayers, cacheDir: options.cacheDir })
      : { file: folder.onnxFile, externalDataDir: path.dirname(path.resolve(folder.onnxFile)), stream: undefined };
    const providers = executionProviders(device);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(fs.readFileSync(graph.file), {
        ...sessionOptions,
        executionProviders: providers,
        extra: { session: { model_external_initializers_file_folder_path: graph.externalDataDir } },
      });
    } catch (error) {
      return explainSessionError(error, device);
    }
    return new DecoderSession(session, folder, signature, layout, graph.stream);
  }

  emptyCache(batch: number): KvCache {
    const { kvType, numKvHeads, headDim, numLayers } = this.signature;
    const make = () => new ort.Tensor(kvType, kvType === 'float16' ? new Uint16Array(0) : new Float32Array(0), [batch, numKvHeads, 0, headDim]);
    return { keys: Array.from({ length: numLayers }, make), values: Array.from({ length: numLayers }, make) };
  }

  private readonly offFeedCache = new Map<string, ort.Tensor>();

  /**
   * Feeds for layout inputs the caller did not set: zero steering, ±∞ clamp bounds with one zero direction. Those
   * that depend only on the batch size (and decode-step gates) are made once and reused: onnxruntime copies inputs
   * and never writes them. Prefill gates vary with the prompt width, so they are made per call.
   */
  private offFeeds(batch: number, sequenceLength: number, given: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    if (!this.layout) return feeds;
    const hidden = this.folder.hiddenSize;
    const set = (name: string, perStep: boolean, make: () => ort.Tensor) => {
      if (name in given) return;
      const key = `${name}|${batch}|${perStep ? sequenceLength : ''}`;
      const reusable = !perStep || sequenceLength === 1;
      let tensor = reusable ? this.offFeedCache.get(key) : undefined;
      if (!tensor) {
        tensor = make();
        if (reusable) this.offFeedCache.set(key, tensor);
      }
      feeds[name] = tensor;
    };
    for (const layer of this.layout.steer) {
      set(instrumentNames.steerVector(layer), false, () => new ort.Tensor('float32', new Float32Array(batch * hidden), [batch, 1, hidden]));
      set(instrumentNames.steerGate(layer), true, () => new ort.Tensor('float32', new Float32Array(batch * sequenceLength), [batch, sequenceLength, 1]));
    }
    for (const layer of this.layout.clamp) {
      set(instrumentNames.clampDirections(layer), false, () => new ort.Tensor('float32', new Float32Array(hidden), [1, hidden]));
      set(instrumentNames.clampLower(layer), false, () => new ort.Tensor('float32', new Float32Array(batch).fill(-Infinity), [batch, 1, 1]));
      set(instrumentNames.clampUpper(layer), false, () => new ort.Tensor('float32', new Float32Array(batch).fill(Infinity), [batch, 1, 1]));
      set(instrumentNames.clampGate(layer), true, () => new ort.Tensor('float32', new Float32Array(batch * sequenceLength), [batch, sequenceLength, 1]));
    }
    return feeds;
  }

  async step(request: StepRequest): Promise<StepResult> {
    const { batch, sequenceLength } = request;
    const past = request.past ?? this.emptyCache(batch);
    const given = request.interventionFeeds ?? {};
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', request.inputIds, [batch, sequenceLength]),
      attention_mask: new ort.Tensor('int64', request.attentionMask, [batch, request.totalLength]),
      ...given,
      ...this.offFeeds(batch, sequenceLength, given),
    };
    if (this.signature.hasPositionIds) {
      if (!request.positionIds) throw new Error('this graph needs position_ids');
      feeds.position_ids = new ort.Tensor('int64', request.positionIds, [batch, sequenceLength]);
    }
    // 0 keeps the logits of every position (transformers' convention); selection happens after.
    if (this.signature.logitsToKeep) feeds[this.signature.logitsToKeep.name] = new ort.Tensor('int64', BigInt64Array.of(0n), this.signature.logitsToKeep.rank === 0 ? [] : [1]);
    this.signature.pastKeys.forEach((name, layer) => (feeds[name] = past.keys[layer]!));
    this.signature.pastValues.forEach((name, layer) => (feeds[name] = past.values[layer]!));

    const selectInGraph = request.logitPositions !== undefined && this.layout !== undefined;
    if (this.layout && !this.layout.captureOnly) {
      // A required input even when the selected logits are not fetched.
      feeds[instrumentNames.logitPositions] = new ort.Tensor('int64', BigInt64Array.from(request.logitPositions ?? new Array(batch).fill(0), (p) => BigInt(p)), [batch]);
    }
    const capture = request.capture ?? [];
    for (const layer of capture) {
      if (!this.layout?.capture.includes(layer)) throw new Error(`layer ${layer} is not captured by this session's layout`);
    }
    const residualNames = capture.map((layer) => instrumentNames.residual(layer));
    if (this.layout?.captureOnly) {
      // A capture-only graph has no head and no cache outputs: fetch the residuals alone.
      const outputs = await this.session.run(feeds, residualNames);
      return { logits: new Float32Array(0), vocabSize: 0, present: { keys: [], values: [] }, residuals: new Map(capture.map((layer, i) => [layer, toFloat32(outputs[residualNames[i]!]!)])) };
    }
    const fetches = [selectInGraph ? instrumentNames.selectedLogits : 'logits', ...this.signature.presentKeys, ...this.signature.presentValues, ...residualNames];
    const outputs = await this.session.run(feeds, fetches);
    const logitsTensor = outputs[fetches[0]!]!;
    const vocabSize = Number(logitsTensor.dims[logitsTensor.dims.length - 1]);
    let logits = toFloat32(logitsTensor);
    if (request.logitPositions !== undefined && !selectInGraph) {
      const selected = new Float32Array(batch * vocabSize);
      request.logitPositions.forEach((position, row) => {
        const start = (row * sequenceLength + position) * vocabSize;
        selected.set(logits.subarray(start, start + vocabSize), row * vocabSize);
      });
      logits = selected;
    }
    const residuals = new Map<number, Float32Array>();
    for (const layer of capture) residuals.set(layer, toFloat32(outputs[instrumentNames.residual(layer)]!));
    return {
      logits,
      vocabSize,
      present: {
        keys: this.signature.presentKeys.map((name) => outputs[name]!),
        values: this.signature.presentValues.map((name) => outputs[name]!),
      },
      residuals,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
