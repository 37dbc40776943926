import { create } from '@bufbuild/protobuf';
import { NodeProtoSchema } from 'onnx-buf';
import { UserError } from '../errors.js';
import { attribute, ElemType, tensorProto, valueInfo, type AttributeValue, type ModelProto, type NodeProto } from '../onnx/proto.js';
import { instrumentNames as names, type InstrumentationLayout } from './layout.js';
import type { ResidualStream } from './residualStream.js';

/**
 * Rewrites a decoder graph so that, at chosen block outputs h (the residual after block L):
 *
 *   s = gate_steer ⊙ steer_vector                        (per row [B, 1, H], per token gate [B, S, 1])
 *   h' = h + s + Σₖ uₖ · gate_clamp · (clip(⟨h + s, uₖ⟩, loₖ, hiₖ) − ⟨h + s, uₖ⟩)
 *
 * and exposes h' as `residual.L`. The arithmetic runs in float32. With zero vectors and ±∞ bounds the added term is
 * exactly zero, so the graph computes bit for bit what the original did:
 * - Optimum graphs: h' = h + delta replaces the output of the residual `Add` for all its consumers. In float16
 *   graphs that Add stays a float16 Add like the exporter's own: onnxruntime's CPU provider runs those in float32
 *   and drops the float16 round trips between them, and an Add of the same type gets the same treatment, so a zero
 *   delta leaves the computation bit for bit as it was;
 * - builder graphs: the term is added to the skip norm's branch input, so the fused op still produces both the
 *   normalised tensor for the next layer and the residual sum (output 3, created where the exporter left it out).
 * Every graph also gets `logits.selected` = logits at one position per row, so prefill copies [B, V], not [B, S, V].
 */
export function instrumentModel(model: ModelProto, stream: ResidualStream, layout: InstrumentationLayout, hiddenSize: number): ModelProto {
  const graph = model.graph!;
  const opset = Number(model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0n);
  if (opset < 12) throw new UserError(`the graph uses ONNX opset ${opset}; instrumentation needs opset 12 or newer`);
  const before = new Map<NodeProto, NodeProto[]>();
  const after = new Map<NodeProto, NodeProto[]>();
  const appended: NodeProto[] = [];

  const makeNode = (sink: NodeProto[], opType: string, inputs: string[], name: string, attrs: Record<string, AttributeValue> = {}, output = `${name}/output_0`): string => {
    sink.push(create(NodeProtoSchema, { opType, name, input: inputs, output: [output], attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) }));
    return output;
  };
  const unsqueeze = (sink: NodeProto[], input: string, axis: number, name: string): string => {
    if (opset >= 13) return makeNode(sink, 'Unsqueeze', [input, axesInitializer(model, axis)], name);
    return makeNode(sink, 'Unsqueeze', [input], name, { axes: { ints: [axis] } });
  };
  const castTo = (sink: NodeProto[], input: string, to: number, name: string) => makeNode(sink, 'Cast', [input], name, { to: { int: to } });

  const steerLayers = new Set(layout.steer);
  const clampLayers = new Set(layout.clamp);
  const captureLayers = new Set(layout.capture);
  const layers = [...new Set([...layout.capture, ...layout.steer, ...layout.clamp])].sort((a, b) => a - b);
  const newInputs: ReturnType<typeof valueInfo>[] = [];
  const newOutputs: ReturnType<typeof valueInfo>[] = [];

  /** Builds delta (float32) from the float32 residual `h`; returns its name. */
  const deltaNodes = (sink: NodeProto[], layer: number, h32: () => string): string => {
    const scope = `/persona/layers.${layer}`;
    let steerTerm: string | undefined;
    if (steerLayers.has(layer)) {
      // Inputs come already shaped for broadcasting ([B, 1, H] × [B, S, 1]): fewer ops per step.
      newInputs.push(valueInfo(names.steerVector(layer), ElemType.FLOAT, ['batch_size', 1, hiddenSize]));
      newInputs.push(valueInfo(names.steerGate(layer), ElemType.FLOAT, ['batch_size', 'sequence_length', 1]));
      steerTerm = makeNode(sink, 'Mul', [names.steerVector(layer), names.steerGate(layer)], `${scope}/steer/Mul`);
    }
    if (!clampLayers.has(layer)) return steerTerm!;
    const k = `clamp_directions_${layer}`;
    newInputs.push(valueInfo(names.clampDirections(layer), ElemType.FLOAT, [k, hiddenSize]));
    newInputs.push(valueInfo(names.clampLower(layer), ElemType.FLOAT, ['batch_size', 1, k]));
    newInputs.push(valueInfo(names.clampUpper(layer), ElemType.FLOAT, ['batch_size', 1, k]));
    newInputs.push(valueInfo(names.clampGate(layer), ElemType.FLOAT, ['batch_size', 'sequence_length', 1]));
    const steered = steerTerm ? makeNode(sink, 'Add', [h32(), steerTerm], `${scope}/clamp/Add_steer`) : h32();
    const directionsT = makeNode(sink, 'Transpose', [names.clampDirections(layer)], `${scope}/clamp/Transpose`, { perm: { ints: [1, 0] } });
    const projection = makeNode(sink, 'MatMul', [steered, directionsT], `${scope}/clamp/MatMul_project`);
    const clipped = makeNode(sink, 'Max', [makeNode(sink, 'Min', [projection, names.clampUpper(layer)], `${scope}/clamp/Min`), names.clampLower(layer)], `${scope}/clamp/Max`);
    const correction = makeNode(sink, 'Mul', [makeNode(sink, 'Sub', [clipped, projection], `${scope}/clamp/Sub`), names.clampGate(layer)], `${scope}/clamp/Mul_gate`);
    const clampTerm = makeNode(sink, 'MatMul', [correction, names.clampDirections(layer)], `${scope}/clamp/MatMul_restore`);
    return steerTerm ? makeNode(sink, 'Add', [steerTerm, clampTerm], `${scope}/Add_delta`) : clampTerm;
  };

  for (const layer of layers) {
    const update = stream.blockOutputs[layer]!;
    const scope = `/persona/layers.${layer}`;
    const fp16 = update.elemType === ElemType.FLOAT16;
    const intervenes = steerLayers.has(layer) || clampLayers.has(layer);
    const node = update.node;
    let captured: string;
    if (update.kind === 'add') {
      const residual = update.output!;
      captured = residual;
      if (intervenes) {
        // The Add's own result gets a new name and ours takes the old one, so every consumer and any graph output
        // of that tensor sees the intervened residual without rewiring.
        const unsteered = `${residual}/before_intervention`;
        node.output[0] = unsteered;
        const sink: NodeProto[] = [];
        let h32Name: string | undefined;
        const h32 = () => (h32Name ??= fp16 ? castTo(sink, unsteered, ElemType.FLOAT, `${scope}/Cast_residual`) : unsteered);
        const delta = deltaNodes(sink, layer, h32);
        const deltaInType = fp16 ? castTo(sink, delta, ElemType.FLOAT16, `${scope}/Cast_delta`) : delta;
        makeNode(sink, 'Add', [unsteered, deltaInType], `${scope}/Add_intervention`, {}, residual);
        after.set(node, sink);
      }
    } else {
      if (intervenes) {
        const sink: NodeProto[] = [];
        const root = node.input[update.residualInput]!;
        const branch = node.input[update.branchInput]!;
        // SkipSimplifiedLayerNormalization's bias is input 3; SkipLayerNormalization has beta there and bias at 4.
        const bias = node.input[node.opType === 'SkipLayerNormalization' ? 4 : 3];
        let h32Name: string | undefined;
        const h32 = () => {
          if (h32Name) return h32Name;
          let sum = makeNode(sink, 'Add', [root, branch], `${scope}/Add_sum`);
          if (bias) sum = makeNode(sink, 'Add', [sum, bias], `${scope}/Add_bias`);
          h32Name = fp16 ? castTo(sink, sum, ElemType.FLOAT, `${scope}/Cast_residual`) : sum;
          return h32Name;
        };
        const delta = deltaNodes(sink, layer, h32);
        const deltaInType = fp16 ? castTo(sink, delta, ElemType.FLOAT16, `${scope}/Cast_delta`) : delta;
        node.input[update.branchInput] = makeNode(sink, 'Add', [branch, deltaInType], `${scope}/Add_branch`);
        before.set(node, sink);
      }
      if (!update.output) {
        while (node.output.length < 4) node.output.push('');
        node.output[3] = `${scope}/residual_sum`;
      }
      captured = node.output[3]!;
    }
    if (captureLayers.has(layer)) {
      makeNode(appended, 'Identity', [captured], `${scope}/capture`, {}, names.residual(layer));
      newOutputs.push(valueInfo(names.residual(layer)));
    }
  }

  const logitsOutput = graph.output.find((o) => o.name === 'logits');
  if (logitsOutput && !layout.captureOnly) {
    newInputs.push(valueInfo(names.logitPositions, ElemType.INT64, ['batch_size']));
    const index = unsqueeze(appended, names.logitPositions, 1, '/persona/logits/Unsqueeze');
    makeNode(appended, 'GatherND', ['logits', index], '/persona/logits/GatherND', { batch_dims: { int: 1 } }, names.selectedLogits);
    newOutputs.push(valueInfo(names.selectedLogits));
  }

  const nodes: NodeProto[] = [];
  for (const node of graph.node) {
    nodes.push(...(before.get(node) ?? []), node, ...(after.get(node) ?? []));
  }
  nodes.push(...appended);
  graph.node = nodes;
  graph.input.push(...newInputs);
  graph.output.push(...newOutputs);
  if (layout.captureOnly) keepOnlyCaptures(model, layout);
  return model;
}

/**
 * Drops every node and initializer the captured residuals do not depend on (the head, later layers). Outputs that
 * kept nodes still produce (the KV cache of earlier layers) stay declared: GroupQueryAttention may reuse its past
 * buffer for an output that is not a graph output, which fails when the shapes differ.
 */
function keepOnlyCaptures(model: ModelProto, layout: InstrumentationLayout): void {
  const graph = model.graph!;
  const wanted = new Set(layout.capture.map((layer) => names.residual(layer)));
  const needed = new Set(wanted);
  const kept: NodeProto[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const node = graph.node[i]!;
    if (!node.output.some((output) => needed.has(output))) continue;
    kept.push(node);
    for (const input of node.input) if (input) needed.add(input);
  }
  graph.node = kept.reverse();
  const produced = new Set(graph.node.flatMap((node) => node.output));
  graph.output = graph.output.filter((output) => produced.has(output.name));
  graph.initializer = graph.initializer.filter((tensor) => needed.has(tensor.name));
  // Inputs nothing reads any more (the logits position, caches of later layers) are dropped too.
  graph.input = graph.input.filter((input) => needed.has(input.name));
}

/** A shared int64 axes initializer for opset ≥ 13 Unsqueeze. */
function axesInitializer(model: ModelProto, axis: number): string {
  const graph = model.graph!;
  const name = `/persona/constants/axes_${axis}`;
  if (!graph.initializer.some((t) => t.name === name)) {
    graph.initializer.push(tensorProto(name, ElemType.INT64, [1], new Uint8Array(BigInt64Array.of(BigInt(axis)).buffer)));
  }
  return name;
}
