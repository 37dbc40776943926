import { UserError } from '../errors.js';
import { describeValueInfo, ElemType, type ModelProto } from '../onnx/proto.js';

/** How the generation loop must talk to a decoder graph. */
export interface DecoderSignature {
  hasPositionIds: boolean;
  /** Newer exports take how many positions' logits to return (`num_logits_to_keep` or `logits_to_keep`). */
  logitsToKeep: { name: string; rank: number } | undefined;
  numLayers: number;
  pastKeys: string[];
  pastValues: string[];
  presentKeys: string[];
  presentValues: string[];
  /** 'float32' or 'float16' (the KV cache's element type at the graph boundary). */
  kvType: 'float32' | 'float16';
  numKvHeads: number;
  headDim: number;
  /**
   * GroupQueryAttention takes each row's length from the attention mask's sum and counts positions from 0, so its
   * batches are right-padded; graphs with an explicit mask (Optimum, MultiHeadAttention) are left-padded.
   */
  paddingSide: 'left' | 'right';
  /** First position id: transformers.js counts from 1 for Gemma 3 exports, from 0 otherwise. */
  positionOffset: number;
}

const ONE_BASED_POSITIONS = new Set(['gemma3', 'gemma3_text', 'paligemma']);

export function readDecoderSignature(model: ModelProto, expected: { numLayers: number; numKvHeads: number; headDim: number; modelType?: string }): DecoderSignature {
  const graph = model.graph!;
  const inputs = new Map(graph.input.map((i) => [i.name, i]));
  const outputs = new Set(graph.output.map((o) => o.name));
  for (const required of ['input_ids', 'attention_mask']) {
    if (!inputs.has(required)) throw new UserError(`the graph is not a decoder this toolkit can run: it has no ${required} input`);
  }
  if (!outputs.has('logits')) throw new UserError('the graph is not a decoder this toolkit can run: it has no logits output');
  const pastKeys: string[] = [];
  const pastValues: string[] = [];
  for (let layer = 0; inputs.has(`past_key_values.${layer}.key`); layer++) {
    pastKeys.push(`past_key_values.${layer}.key`);
    pastValues.push(`past_key_values.${layer}.value`);
  }
  if (pastKeys.length === 0) {
    throw new UserError('the graph has no past_key_values inputs: export it with a KV cache (text-generation-with-past)');
  }
  if (pastKeys.length !== expected.numLayers) {
    throw new UserError(`the graph has a KV cache for ${pastKeys.length} layers but the config says ${expected.numLayers}`);
  }
  const presentKeys = pastKeys.map((_, layer) => `present.${layer}.key`);
  const presentValues = pastKeys.map((_, layer) => `present.${layer}.value`);
  for (const name of [...presentKeys, ...presentValues]) {
    if (!outputs.has(name)) throw new UserError(`the graph has past_key_values inputs but no ${name} output`);
  }
  const past = describeValueInfo(inputs.get(pastKeys[0]!)!);
  const dims = past.dims ?? [];
  const numKvHeads = typeof dims[1] === 'number' ? dims[1] : expected.numKvHeads;
  const headDim = typeof dims[3] === 'number' ? dims[3] : expected.headDim;
  const usesGqa = graph.node.some((n) => n.opType === 'GroupQueryAttention');
  const keepInput = ['num_logits_to_keep', 'logits_to_keep'].map((name) => inputs.get(name)).find((input) => input !== undefined);
  return {
    hasPositionIds: inputs.has('position_ids'),
    logitsToKeep: keepInput ? { name: keepInput.name, rank: describeValueInfo(keepInput).dims?.length ?? 0 } : undefined,
    numLayers: pastKeys.length,
    pastKeys,
    pastValues,
    presentKeys,
    presentValues,
    kvType: past.elemType === ElemType.FLOAT16 ? 'float16' : 'float32',
    numKvHeads,
    headDim,
    paddingSide: usesGqa ? 'right' : 'left',
    positionOffset: ONE_BASED_POSITIONS.has(expected.modelType ?? '') ? 1 : 0,
  };
}
