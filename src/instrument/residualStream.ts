import { UserError } from '../errors.js';
import { ElemType, getIntAttribute, type GraphProto, type ModelProto, type NodeProto } from '../onnx/proto.js';

/** Optimum / torch.onnx graphs update the residual with `Add`; onnxruntime-genai builder graphs with skip norms. */
export type ExporterFamily = 'optimum' | 'builder';

/** One write into the residual stream: attention or MLP output added to the running residual. */
export interface ResidualUpdate {
  kind: 'add' | 'skipNorm';
  node: NodeProto;
  /** Input index of the incoming residual and of the branch (attention or MLP output) being added. */
  residualInput: number;
  branchInput: number;
  /** Tensor holding the residual after this update; undefined for a final skip norm that does not expose it. */
  output: string | undefined;
  /** ONNX element type of the residual at this update (float32 or float16; Casts on the path may change it). */
  elemType: number;
}

export interface ResidualStream {
  family: ExporterFamily;
  /** Residual stream entering block 0 (embedding, after any scale). */
  embeddingOutput: string;
  /** ONNX element type of the residual stream entering block 0 (float32 or float16). */
  residualElemType: number;
  /** Two updates per block: attention then MLP. */
  updates: ResidualUpdate[];
  /** blockOutputs[L] is the update whose result is the residual after block L. */
  blockOutputs: ResidualUpdate[];
  numLayers: number;
}

const SKIP_NORMS = new Set(['SkipSimplifiedLayerNormalization', 'SkipLayerNormalization']);
const TRANSPARENT = new Set(['Cast', 'Identity']);

class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  constructor(readonly nodes: readonly NodeProto[]) {
    for (const node of nodes) {
      for (const output of node.output) if (output) this.producer.set(output, node);
      for (const input of node.input) {
        if (!input) continue;
        const list = this.consumers.get(input);
        if (list) list.push(node);
        else this.consumers.set(input, [node]);
      }
    }
  }

  consumersOf(tensor: string): NodeProto[] {
    return this.consumers.get(tensor) ?? [];
  }

  /** Whether `target` is computed from `source` (an ancestor search over producers). */
  dependsOn(target: string, source: string): boolean {
    const seen = new Set<string>();
    const stack = [target];
    while (stack.length > 0) {
      const tensor = stack.pop()!;
      if (tensor === source) return true;
      if (seen.has(tensor)) continue;
      seen.add(tensor);
      const node = this.producer.get(tensor);
      if (node) for (const input of node.input) if (input && !seen.has(input)) stack.push(input);
    }
    return false;
  }
}

function findEmbeddingLookup(index: GraphIndex, inputIdsName: string): NodeProto | undefined {
  // input_ids may be cast (e.g. to int32) before the lookup.
  const idTensors = new Set([inputIdsName]);
  let frontier = [inputIdsName];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const tensor of frontier) {
      for (const node of index.consumersOf(tensor)) {
        if ((node.opType === 'Gather' || node.opType === 'GatherBlockQuantized') && node.input[1] === tensor) return node;
        if (TRANSPARENT.has(node.opType)) for (const output of node.output) if (!idTensors.has(output)) { idTensors.add(output); next.push(output); }
      }
    }
    frontier = next;
  }
  return undefined;
}

/** The embedding's float type: the table's (for 4-bit tables, their scales'), else what value_info declares. */
function embeddingElemType(graph: GraphProto, lookup: NodeProto): number {
  const tableInput = lookup.opType === 'GatherBlockQuantized' ? lookup.input[2] : lookup.input[0];
  const table = graph.initializer.find((t) => t.name === tableInput);
  if (table && (table.dataType === ElemType.FLOAT || table.dataType === ElemType.FLOAT16)) return table.dataType;
  const declared = graph.valueInfo.find((v) => v.name === lookup.output[0]);
  const type = declared?.type?.value;
  if (type?.case === 'tensorType' && (type.value.elemType === ElemType.FLOAT || type.value.elemType === ElemType.FLOAT16)) return type.value.elemType;
  return ElemType.FLOAT;
}

function updateAt(index: GraphIndex, residual: string, elemType: number): ResidualUpdate | undefined {
  for (const node of index.consumersOf(residual)) {
    if (SKIP_NORMS.has(node.opType) && (node.input[0] === residual || node.input[1] === residual)) {
      const residualInput = node.input[0] === residual ? 0 : 1;
      const output = node.output[3] ? node.output[3] : undefined;
      return { kind: 'skipNorm', node, residualInput, branchInput: 1 - residualInput, output, elemType };
    }
  }
  for (const node of index.consumersOf(residual)) {
    if (node.opType !== 'Add' || node.input.length !== 2) continue;
    const residualInput = node.input[0] === residual ? 0 : node.input[1] === residual ? 1 : -1;
    if (residualInput < 0) continue;
    const branch = node.input[1 - residualInput]!;
    if (branch !== residual && index.dependsOn(branch, residual)) {
      return { kind: 'add', node, residualInput, branchInput: 1 - residualInput, output: node.output[0], elemType };
    }
  }
  return undefined;
}

/**
 * The next update of the residual held in `residual`, looking through Cast/Identity nodes on the way (fp16
 * conversions and the builder's float32 layer-norm variants put them on the residual path).
 */
function nextUpdate(index: GraphIndex, residual: string, elemType: number, depth = 0): ResidualUpdate | undefined {
  const direct = updateAt(index, residual, elemType);
  if (direct || depth >= 4) return direct;
  for (const node of index.consumersOf(residual)) {
    if (!TRANSPARENT.has(node.opType) || !node.output[0]) continue;
    const found = nextUpdate(index, node.output[0], node.opType === 'Cast' ? (getIntAttribute(node, 'to') ?? elemType) : elemType, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Finds the residual stream by structure, not by names: start at the embedding lookup of `input_ids`, step through
 * a scale `Mul` or `Cast`, then follow the chain of updates — an `Add` whose other operand is computed from the
 * residual, or a skip norm taking the residual as input 0 or 1 (its output 3 carries the sum on). Each block makes
 * two updates, so the residual after block L is the result of update 2L + 1.
 */
export function findResidualStream(model: ModelProto, expectedLayers?: number): ResidualStream {
  const graph = model.graph;
  if (!graph) throw new UserError('the ONNX file has no graph');
  const inputNames = graph.input.map((i) => i.name);
  if (!inputNames.includes('input_ids')) {
    throw new UserError(`the graph is not a decoder: it has no input_ids input (inputs: ${inputNames.join(', ') || 'none'})`);
  }
  const index = new GraphIndex(graph.node);
  const lookup = findEmbeddingLookup(index, 'input_ids');
  if (!lookup) throw new UserError('the graph is not a decoder: no embedding lookup (Gather) reads input_ids');

  let residual = lookup.output[0]!;
  let residualElemType = embeddingElemType(graph, lookup);
  const updates: ResidualUpdate[] = [];
  const inputIds = 'input_ids';
  for (let guard = 0; guard < 8 && !nextUpdate(index, residual, residualElemType); guard++) {
    // Before the first update the embedding may be scaled (Gemma: × √hidden, by a constant that need not be folded).
    const step = index.consumersOf(residual).find(
      (node) => node.opType === 'Mul' && node.input.some((input) => input !== residual && !index.dependsOn(input, inputIds)),
    );
    if (!step) break;
    residual = step.output[0]!;
  }
  const embeddingOutput = residual;
  for (;;) {
    const update = nextUpdate(index, residual, residualElemType);
    if (!update) break;
    updates.push(update);
    residualElemType = update.elemType;
    if (!update.output) break;
    residual = update.output;
  }
  if (updates.length === 0 || updates.length % 2 !== 0) {
    throw new UserError(
      `the graph is not a decoder this toolkit understands: the residual walk from the embedding found ${updates.length} residual updates (a decoder has two per layer)`,
    );
  }
  const numLayers = updates.length / 2;
  if (expectedLayers !== undefined && numLayers !== expectedLayers) {
    throw new UserError(`the residual walk found ${numLayers} decoder layers but the config says num_hidden_layers = ${expectedLayers}`);
  }
  const family: ExporterFamily = updates.some((u) => u.kind === 'skipNorm') ? 'builder' : 'optimum';
  return { family, embeddingOutput, residualElemType: updates[0]!.elemType, updates, blockOutputs: updates.filter((_, i) => i % 2 === 1), numLayers };
}
