import { GraphBuilder } from '../onnx/graphBuilder.js';
import { ElemType, type ModelProto } from '../onnx/proto.js';
import { numKvFeatures, numQueryFeatures, type DecoderConfig } from './architecture.js';
import { activationType, emitFloatWeight, emitLinear, inverseFrequencies, normScale, weight, type GraphDtype } from './graphCommon.js';
import { layerPrefix, type DecoderWeights } from './weights.js';

/**
 * A decoder graph as Optimum / torch.onnx exports it: primitive ops only, node names from the Hugging Face module
 * tree (`/model/layers.N/Add_1` is the residual after block N), tensors named `<node>_output_0`. fp16 graphs keep
 * float32 inputs and outputs and cast inside (transformers.js `keep_io_types`); q4 graphs use MatMulNBits with
 * float32 activations. Gemma has no `position_ids` input: positions are the token's index in the padded sequence.
 */
export function buildOptimumGraph(config: DecoderConfig, weights: DecoderWeights, dtype: GraphDtype): { model: ModelProto; effectiveWeights: Map<string, Float32Array> } {
  const g = new GraphBuilder((node, i) => `${node}_output_${i}`);
  const effective = new Map<string, Float32Array>();
  const T = activationType(dtype);
  const fp16 = dtype === 'fp16';
  const { hiddenSize: h, numHeads, numKvHeads, headDim, vocabSize, intermediateSize } = config;
  const qFeatures = numQueryFeatures(config);
  const kvFeatures = numKvFeatures(config);
  const hasPositionIds = config.family !== 'gemma';
  let counter = 0;
  const initName = () => `onnx::MatMul_${++counter}`;
  const cast = (x: string, to: number, name: string) => g.op('Cast', [x], { name, attrs: { to: { int: to } } });
  const toT = (x: string, name: string) => (fp16 ? cast(x, ElemType.FLOAT16, name) : x);
  const toFloat = (x: string, name: string) => (fp16 ? cast(x, ElemType.FLOAT, name) : x);

  const inputIds = g.input('input_ids', ElemType.INT64, ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', ElemType.INT64, ['batch_size', 'past_sequence_length + sequence_length']);
  const positionIdsInput = hasPositionIds ? g.input('position_ids', ElemType.INT64, ['batch_size', 'sequence_length']) : undefined;
  const pastNames: { key: string; value: string }[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const dims = ['batch_size', numKvHeads, 'past_sequence_length', headDim];
    pastNames.push({
      key: g.input(`past_key_values.${layer}.key`, ElemType.FLOAT, dims),
      value: g.input(`past_key_values.${layer}.value`, ElemType.FLOAT, dims),
    });
  }

  // Additive attention mask [B, 1, S, T]: causal over absolute positions and zero at padded keys.
  const sequenceLength = g.op('Gather', [g.op('Shape', [inputIds], { name: '/model/Shape' }), g.int64Scalar(1)], { name: '/model/Gather', attrs: { axis: { int: 0 } } });
  const totalLength = g.op('Gather', [g.op('Shape', [attentionMask], { name: '/model/Shape_1' }), g.int64Scalar(1)], { name: '/model/Gather_1', attrs: { axis: { int: 0 } } });
  const pastLength = g.op('Sub', [totalLength, sequenceLength], { name: '/model/Sub' });
  const queryPositions = g.op('Range', [pastLength, totalLength, g.int64Scalar(1)], { name: '/model/Range' });
  const keyPositions = g.op('Range', [g.int64Scalar(0), totalLength, g.int64Scalar(1)], { name: '/model/Range_1' });
  const causal = g.op(
    'LessOrEqual',
    [g.op('Unsqueeze', [keyPositions, g.int64s([0])], { name: '/model/Unsqueeze' }), g.op('Unsqueeze', [queryPositions, g.int64s([1])], { name: '/model/Unsqueeze_1' })],
    { name: '/model/LessOrEqual' },
  );
  const notPadded = g.op('Unsqueeze', [cast(attentionMask, ElemType.BOOL, '/model/Cast'), g.int64s([1, 2])], { name: '/model/Unsqueeze_2' });
  const allowed = g.op('And', [causal, notPadded], { name: '/model/And' });
  const maskMinimum = fp16 ? -65504 : -3.4028234663852886e38;
  const attentionBias = g.op('Where', [allowed, g.constant([0], [], T), g.constant([maskMinimum], [], T)], { name: '/model/Where' });

  // Rotary cos/sin [B, 1, S, D], computed in float32.
  const positionIds = positionIdsInput ?? g.op('Unsqueeze', [queryPositions, g.int64s([0])], { name: '/model/rotary_emb/Unsqueeze' });
  const positionsFloat = g.op('Unsqueeze', [cast(positionIds, ElemType.FLOAT, '/model/rotary_emb/Cast'), g.int64s([2])], { name: '/model/rotary_emb/Unsqueeze_1' });
  const invFreq = g.floatInitializer('model.rotary_emb.inv_freq', inverseFrequencies(config), [headDim / 2], ElemType.FLOAT);
  const freqs = g.op('Mul', [positionsFloat, invFreq], { name: '/model/rotary_emb/Mul' });
  const angles = g.op('Concat', [freqs, freqs], { name: '/model/rotary_emb/Concat', attrs: { axis: { int: -1 } } });
  const cos = toT(g.op('Unsqueeze', [g.op('Cos', [angles], { name: '/model/rotary_emb/Cos' }), g.int64s([1])], { name: '/model/rotary_emb/Unsqueeze_2' }), '/model/rotary_emb/Cast_1');
  const sin = toT(g.op('Unsqueeze', [g.op('Sin', [angles], { name: '/model/rotary_emb/Sin' }), g.int64s([1])], { name: '/model/rotary_emb/Unsqueeze_3' }), '/model/rotary_emb/Cast_2');

  const rmsNorm = (x: string, scope: string, weightName: string, width: number): string => {
    const xf = toFloat(x, `${scope}/Cast`);
    const squared = g.op('Pow', [xf, g.constant([2], [], ElemType.FLOAT)], { name: `${scope}/Pow` });
    const meanSquare = g.op('ReduceMean', [squared], { name: `${scope}/ReduceMean`, attrs: { axes: { ints: [-1] }, keepdims: { int: 1 } } });
    const withEps = g.op('Add', [meanSquare, g.constant([config.rmsNormEps], [], ElemType.FLOAT)], { name: `${scope}/Add` });
    const inverse = g.op('Reciprocal', [g.op('Sqrt', [withEps], { name: `${scope}/Sqrt` })], { name: `${scope}/Reciprocal` });
    const normalised = toT(g.op('Mul', [xf, inverse], { name: `${scope}/Mul` }), `${scope}/Cast_1`);
    const scale = emitFloatWeight(g, effective, dtype, { weight: weightName, initializer: weightName }, normScale(config, weight(weights, weightName)), [width], config.gemmaNorms ? (w) => w - 1 : undefined);
    return g.op('Mul', [scale, normalised], { name: `${scope}/Mul_1` });
  };

  const rotate = (x: string, scope: string): string => {
    const half = headDim / 2;
    const first = g.op('Slice', [x, g.int64s([0]), g.int64s([half]), g.int64s([3])], { name: `${scope}/Slice` });
    const second = g.op('Slice', [x, g.int64s([half]), g.int64s([headDim]), g.int64s([3])], { name: `${scope}/Slice_1` });
    const rotated = g.op('Concat', [g.op('Neg', [second], { name: `${scope}/Neg` }), first], { name: `${scope}/Concat`, attrs: { axis: { int: -1 } } });
    return g.op('Add', [g.op('Mul', [x, cos], { name: `${scope}/Mul` }), g.op('Mul', [rotated, sin], { name: `${scope}/Mul_1` })], { name: `${scope}/Add` });
  };

  const embedding = emitFloatWeight(g, effective, dtype, { weight: 'model.embed_tokens.weight', initializer: 'model.embed_tokens.weight' }, weight(weights, 'model.embed_tokens.weight'), [vocabSize, h]);
  let residual = g.op('Gather', [embedding, inputIds], { name: '/model/embed_tokens/Gather' });
  if (config.gemmaNorms) residual = g.op('Mul', [residual, g.constant([Math.sqrt(h)], [], T)], { name: '/model/Mul' });

  for (let layer = 0; layer < config.numLayers; layer++) {
    const scope = `/model/layers.${layer}`;
    const p = layerPrefix(layer);
    const normed = rmsNorm(residual, `${scope}/input_layernorm`, `${p}.input_layernorm.weight`, h);
    const project = (name: 'q_proj' | 'k_proj' | 'v_proj', outFeatures: number, heads: number): string => {
      let y = emitLinear(g, weights, effective, dtype, {
        name: `${scope}/self_attn/${name}/MatMul`, input: normed, weightName: `${p}.self_attn.${name}.weight`, initializerName: initName(), outFeatures, inFeatures: h,
      });
      if (config.attentionBias) {
        const biasName = `${p}.self_attn.${name}.bias`;
        const bias = emitFloatWeight(g, effective, dtype, { weight: biasName, initializer: biasName }, weight(weights, biasName), [outFeatures]);
        y = g.op('Add', [bias, y], { name: `${scope}/self_attn/${name}/Add` });
      }
      y = g.op('Reshape', [y, g.int64s([0, 0, heads, headDim])], { name: `${scope}/self_attn/Reshape_${name}` });
      if (config.qkNorm && name !== 'v_proj') {
        const normName = name === 'q_proj' ? 'q_norm' : 'k_norm';
        y = rmsNorm(y, `${scope}/self_attn/${normName}`, `${p}.self_attn.${normName}.weight`, headDim);
      }
      return g.op('Transpose', [y], { name: `${scope}/self_attn/Transpose_${name}`, attrs: { perm: { ints: [0, 2, 1, 3] } } });
    };
    const query = rotate(project('q_proj', qFeatures, numHeads), `${scope}/self_attn/rotary_q`);
    const key = rotate(project('k_proj', kvFeatures, numKvHeads), `${scope}/self_attn/rotary_k`);
    const value = project('v_proj', kvFeatures, numKvHeads);

    const past = pastNames[layer]!;
    const presentKey = g.op('Concat', [toT(past.key, `${scope}/self_attn/Cast_past_key`), key], { name: `${scope}/self_attn/Concat_key`, attrs: { axis: { int: 2 } }, ...(fp16 ? {} : { outputs: [`present.${layer}.key`] }) });
    const presentValue = g.op('Concat', [toT(past.value, `${scope}/self_attn/Cast_past_value`), value], { name: `${scope}/self_attn/Concat_value`, attrs: { axis: { int: 2 } }, ...(fp16 ? {} : { outputs: [`present.${layer}.value`] }) });
    if (fp16) {
      g.node('Cast', [presentKey], { name: `${scope}/self_attn/Cast_present_key`, attrs: { to: { int: ElemType.FLOAT } }, outputs: [`present.${layer}.key`] });
      g.node('Cast', [presentValue], { name: `${scope}/self_attn/Cast_present_value`, attrs: { to: { int: ElemType.FLOAT } }, outputs: [`present.${layer}.value`] });
    }
    const repeatKv = (x: string, label: string): string => {
      const groups = numHeads / numKvHeads;
      if (groups === 1) return x;
      const expanded = g.op('Expand', [g.op('Unsqueeze', [x, g.int64s([2])], { name: `${scope}/self_attn/Unsqueeze_${label}` }), g.int64s([1, 1, groups, 1, 1])], { name: `${scope}/self_attn/Expand_${label}` });
      return g.op('Reshape', [expanded, g.int64s([0, numHeads, -1, headDim])], { name: `${scope}/self_attn/Reshape_repeat_${label}` });
    };
    const keys = repeatKv(presentKey, 'key');
    const values = repeatKv(presentValue, 'value');
    const scores = g.op('Mul', [
      g.op('MatMul', [query, g.op('Transpose', [keys], { name: `${scope}/self_attn/Transpose_scores`, attrs: { perm: { ints: [0, 1, 3, 2] } } })], { name: `${scope}/self_attn/MatMul` }),
      g.constant([1 / Math.sqrt(headDim)], [], T),
    ], { name: `${scope}/self_attn/Mul` });
    const probabilities = g.op('Softmax', [g.op('Add', [scores, attentionBias], { name: `${scope}/self_attn/Add` })], { name: `${scope}/self_attn/Softmax`, attrs: { axis: { int: -1 } } });
    const context = g.op('MatMul', [probabilities, values], { name: `${scope}/self_attn/MatMul_1` });
    const merged = g.op('Reshape', [g.op('Transpose', [context], { name: `${scope}/self_attn/Transpose_out`, attrs: { perm: { ints: [0, 2, 1, 3] } } }), g.int64s([0, 0, qFeatures])], { name: `${scope}/self_attn/Reshape_out` });
    const attentionOut = emitLinear(g, weights, effective, dtype, {
      name: `${scope}/self_attn/o_proj/MatMul`, input: merged, weightName: `${p}.self_attn.o_proj.weight`, initializerName: initName(), outFeatures: h, inFeatures: qFeatures,
    });
    residual = g.op('Add', [residual, attentionOut], { name: `${scope}/Add` });

    const normed2 = rmsNorm(residual, `${scope}/post_attention_layernorm`, `${p}.post_attention_layernorm.weight`, h);
    const mlpLinear = (name: 'gate_proj' | 'up_proj') =>
      emitLinear(g, weights, effective, dtype, { name: `${scope}/mlp/${name}/MatMul`, input: normed2, weightName: `${p}.mlp.${name}.weight`, initializerName: initName(), outFeatures: intermediateSize, inFeatures: h });
    const gate = mlpLinear('gate_proj');
    const up = mlpLinear('up_proj');
    let activated: string;
    if (config.hiddenActivation === 'silu') {
      activated = g.op('Mul', [gate, g.op('Sigmoid', [gate], { name: `${scope}/mlp/act_fn/Sigmoid` })], { name: `${scope}/mlp/act_fn/Mul` });
    } else {
      // gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      const a = `${scope}/mlp/act_fn`;
      const cubic = g.op('Mul', [g.op('Pow', [gate, g.constant([3], [], T)], { name: `${a}/Pow` }), g.constant([0.044715], [], T)], { name: `${a}/Mul` });
      const inner = g.op('Mul', [g.op('Add', [gate, cubic], { name: `${a}/Add` }), g.constant([Math.sqrt(2 / Math.PI)], [], T)], { name: `${a}/Mul_1` });
      const onePlusTanh = g.op('Add', [g.op('Tanh', [inner], { name: `${a}/Tanh` }), g.constant([1], [], T)], { name: `${a}/Add_1` });
      activated = g.op('Mul', [g.op('Mul', [gate, g.constant([0.5], [], T)], { name: `${a}/Mul_2` }), onePlusTanh], { name: `${a}/Mul_3` });
    }
    const product = g.op('Mul', [activated, up], { name: `${scope}/mlp/Mul` });
    const mlpOut = emitLinear(g, weights, effective, dtype, {
      name: `${scope}/mlp/down_proj/MatMul`, input: product, weightName: `${p}.mlp.down_proj.weight`, initializerName: initName(), outFeatures: h, inFeatures: intermediateSize,
    });
    residual = g.op('Add', [residual, mlpOut], { name: `${scope}/Add_1` });
  }

  const finalNormed = rmsNorm(residual, '/model/norm', 'model.norm.weight', h);
  // The head stays float for q4 graphs, as transformers.js' q4 files keep it; tied heads read the embedding.
  const logits = emitLinear(g, weights, effective, dtype === 'q4' ? 'fp32' : dtype, {
    name: '/lm_head/MatMul', input: finalNormed, weightName: config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
    initializerName: 'lm_head.weight_T', outFeatures: vocabSize, inFeatures: h, ...(fp16 ? {} : { output: 'logits' }),
  });
  if (fp16) g.node('Cast', [logits], { name: '/lm_head/Cast', attrs: { to: { int: ElemType.FLOAT } }, outputs: ['logits'] });

  g.output('logits', ElemType.FLOAT, ['batch_size', 'sequence_length', vocabSize]);
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const kind of ['key', 'value']) g.output(`present.${layer}.${kind}`, ElemType.FLOAT, ['batch_size', numKvHeads, 'past_sequence_length + sequence_length', headDim]);
  }
  const opsets: Record<string, number> = { '': 17 };
  if (dtype === 'q4') opsets['com.microsoft'] = 1;
  return { model: g.toModel({ producer: 'pytorch', irVersion: 8, opsets }), effectiveWeights: effective };
}

