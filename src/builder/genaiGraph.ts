import { UserError } from '../errors.js';
import { GraphBuilder } from '../onnx/graphBuilder.js';
import { ElemType, type ModelProto } from '../onnx/proto.js';
import { numKvFeatures, numQueryFeatures, type DecoderConfig } from './architecture.js';
import { activationType, emitFloatWeight, emitLinear, normScale, rotaryCaches, weight, type GraphDtype } from './graphCommon.js';
import { layerPrefix, type DecoderWeights } from './weights.js';

/** Positions the rotary caches cover; longer contexts need a rebuilt graph. */
const MAX_CACHED_POSITIONS = 4096;

/**
 * A decoder graph as the onnxruntime-genai model builder writes it: `SimplifiedLayerNormalization` for the first
 * norm, `SkipSimplifiedLayerNormalization` for the rest (the residual sum on output 3, none on the final norm),
 * `GroupQueryAttention` doing rotary from cos/sin caches, no `position_ids` input, and past/present/logits in the
 * activation dtype. GQA derives each row's length from the attention mask, so batches are right-padded.
 */
export function buildGenaiGraph(config: DecoderConfig, weights: DecoderWeights, dtype: GraphDtype): { model: ModelProto; effectiveWeights: Map<string, Float32Array> } {
  if (config.headDim % 16 !== 0) {
    throw new UserError(
      `GroupQueryAttention on the CPU provider needs a head size that is a multiple of 16; head_dim is ${config.headDim} (use --style optimum, or change hidden_size/num_attention_heads/head_dim)`,
    );
  }
  const g = new GraphBuilder((node, i) => `${node}/output_${i}`);
  const effective = new Map<string, Float32Array>();
  const T = activationType(dtype);
  const { hiddenSize: h, numHeads, numKvHeads, headDim, vocabSize, intermediateSize } = config;
  const qFeatures = numQueryFeatures(config);
  const kvFeatures = numKvFeatures(config);
  const ioType = dtype === 'fp16' ? ElemType.FLOAT16 : ElemType.FLOAT;
  const epsilon = { float: config.rmsNormEps };

  const inputIds = g.input('input_ids', ElemType.INT64, ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', ElemType.INT64, ['batch_size', 'total_sequence_length']);
  const pastNames: { key: string; value: string }[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    const dims = ['batch_size', numKvHeads, 'past_sequence_length', headDim];
    pastNames.push({
      key: g.input(`past_key_values.${layer}.key`, ioType, dims),
      value: g.input(`past_key_values.${layer}.value`, ioType, dims),
    });
  }

  const maskScope = '/model/attn_mask_reformat/attn_mask_subgraph';
  const rowLengths = g.op('ReduceSum', [attentionMask, g.int64s([1])], { name: `${maskScope}/ReduceSum`, attrs: { keepdims: { int: 0 } } });
  const seqlensK = g.op('Cast', [g.op('Sub', [rowLengths, g.int64Scalar(1)], { name: `${maskScope}/Sub` })], { name: `${maskScope}/Sub/Cast`, attrs: { to: { int: ElemType.INT32 } } });
  const totalLength = g.op(
    'Cast',
    [g.op('Gather', [g.op('Shape', [attentionMask], { name: `${maskScope}/Shape` }), g.int64Scalar(1)], { name: `${maskScope}/Gather`, attrs: { axis: { int: 0 } } })],
    { name: `${maskScope}/Gather/Cast`, attrs: { to: { int: ElemType.INT32 } } },
  );
  const caches = rotaryCaches(config, Math.min(config.maxPositionEmbeddings, MAX_CACHED_POSITIONS));
  const cacheRows = caches.cos.length / (headDim / 2);
  const cosCache = g.floatInitializer('cos_cache', caches.cos, [cacheRows, headDim / 2], T);
  const sinCache = g.floatInitializer('sin_cache', caches.sin, [cacheRows, headDim / 2], T);

  const normWeight = (weightName: string, initializer: string, width: number) =>
    emitFloatWeight(g, effective, dtype, { weight: weightName, initializer }, normScale(config, weight(weights, weightName)), [width], config.gemmaNorms ? (w) => w - 1 : undefined);

  const embedding = emitFloatWeight(g, effective, dtype, { weight: 'model.embed_tokens.weight', initializer: 'model.embed_tokens.weight' }, weight(weights, 'model.embed_tokens.weight'), [vocabSize, h]);
  let embedded = g.op('Gather', [embedding, inputIds], { name: '/model/embed_tokens/Gather' });
  if (config.gemmaNorms) embedded = g.op('Mul', [embedded, g.constant([Math.sqrt(h)], [], T)], { name: '/model/embed_tokens/Mul' });

  // The residual enters each skip norm as `root`; `pendingBranch` is the block output still to be added.
  let root = embedded;
  let pendingBranch: string | undefined;
  let normed = '';
  const skipNorm = (scope: string, weightName: string, initializer: string, last = false): void => {
    const scale = normWeight(weightName, initializer, h);
    if (pendingBranch === undefined) {
      normed = g.node('SimplifiedLayerNormalization', [root, scale], {
        name: `${scope}/LayerNorm`, attrs: { epsilon, axis: { int: -1 }, stash_type: { int: 1 } }, outputs: [`${scope}/output_0`],
      })[0]!;
      return;
    }
    const outputs = last ? [`${scope}/output_0`] : [`${scope}/output_0`, '', '', `${scope}/output_3`];
    g.node('SkipSimplifiedLayerNormalization', [root, pendingBranch, scale], { name: `${scope}/SkipLayerNorm`, domain: 'com.microsoft', attrs: { epsilon }, outputs });
    normed = outputs[0]!;
    if (!last) root = outputs[3]!;
  };

  for (let layer = 0; layer < config.numLayers; layer++) {
    const scope = `/model/layers.${layer}`;
    const p = layerPrefix(layer);
    skipNorm(`${scope}/input_layernorm`, `${p}.input_layernorm.weight`, `model.layers.${layer}.input_layernorm.weight`);
    const attentionInput = normed;
    const project = (name: 'q_proj' | 'k_proj' | 'v_proj', outFeatures: number, heads: number): string => {
      let y = emitLinear(g, weights, effective, dtype, {
        name: `${scope}/attn/${name}/MatMul`, input: attentionInput, weightName: `${p}.self_attn.${name}.weight`,
        initializerName: `model.layers.${layer}.attn.${name}.MatMul.weight`, outFeatures, inFeatures: h,
      });
      if (config.attentionBias) {
        const biasName = `${p}.self_attn.${name}.bias`;
        const bias = emitFloatWeight(g, effective, dtype, { weight: biasName, initializer: `model.layers.${layer}.attn.${name}.Add.bias` }, weight(weights, biasName), [outFeatures]);
        y = g.op('Add', [y, bias], { name: `${scope}/attn/${name}/Add` });
      }
      if (config.qkNorm && name !== 'v_proj') {
        const normName = name === 'q_proj' ? 'q_norm' : 'k_norm';
        const normScope = `${scope}/attn/${normName}`;
        const perHead = g.op('Reshape', [y, g.int64s([0, 0, heads, headDim])], { name: `${normScope}/Reshape_1` });
        const scale = normWeight(`${p}.self_attn.${normName}.weight`, `model.layers.${layer}.attn.${normName}.layernorm.weight`, headDim);
        const normalised = g.node('SimplifiedLayerNormalization', [perHead, scale], {
          name: `${normScope}/SimplifiedLayerNormalization`, attrs: { epsilon, axis: { int: -1 }, stash_type: { int: 1 } }, outputs: [`${normScope}/output_0`],
        })[0]!;
        y = g.op('Reshape', [normalised, g.int64s([0, 0, heads * headDim])], { name: `${normScope}/Reshape_2` });
      }
      return y;
    };
    const query = project('q_proj', qFeatures, numHeads);
    const key = project('k_proj', kvFeatures, numKvHeads);
    const value = project('v_proj', kvFeatures, numKvHeads);
    const past = pastNames[layer]!;
    const attention = g.node(
      'GroupQueryAttention',
      [query, key, value, past.key, past.value, seqlensK, totalLength, cosCache, sinCache],
      {
        name: `${scope}/attn/GroupQueryAttention`,
        domain: 'com.microsoft',
        attrs: {
          num_heads: { int: numHeads }, kv_num_heads: { int: numKvHeads }, do_rotary: { int: 1 }, rotary_interleaved: { int: 0 },
          scale: { float: 1 / Math.sqrt(headDim) }, local_window_size: { int: -1 }, softcap: { float: 0 },
        },
        outputs: [`${scope}/attn/GroupQueryAttention/output_0`, `present.${layer}.key`, `present.${layer}.value`],
      },
    )[0]!;
    pendingBranch = emitLinear(g, weights, effective, dtype, {
      name: `${scope}/attn/o_proj/MatMul`, input: attention, weightName: `${p}.self_attn.o_proj.weight`,
      initializerName: `model.layers.${layer}.attn.o_proj.MatMul.weight`, outFeatures: h, inFeatures: qFeatures,
    });
    skipNorm(`${scope}/post_attention_layernorm`, `${p}.post_attention_layernorm.weight`, `model.layers.${layer}.post_attention_layernorm.weight`);
    const mlpInput = normed;
    const mlpLinear = (name: 'gate_proj' | 'up_proj') =>
      emitLinear(g, weights, effective, dtype, {
        name: `${scope}/mlp/${name}/MatMul`, input: mlpInput, weightName: `${p}.mlp.${name}.weight`,
        initializerName: `model.layers.${layer}.mlp.${name}.MatMul.weight`, outFeatures: intermediateSize, inFeatures: h,
      });
    const gate = mlpLinear('gate_proj');
    const up = mlpLinear('up_proj');
    const activated =
      config.hiddenActivation === 'silu'
        ? g.op('Mul', [gate, g.op('Sigmoid', [gate], { name: `${scope}/mlp/act_fn/Sigmoid` })], { name: `${scope}/mlp/act_fn/Mul` })
        : g.op('FastGelu', [gate], { name: `${scope}/mlp/act_fn/FastGelu`, domain: 'com.microsoft' });
    const product = g.op('Mul', [activated, up], { name: `${scope}/mlp/Mul` });
    pendingBranch = emitLinear(g, weights, effective, dtype, {
      name: `${scope}/mlp/down_proj/MatMul`, input: product, weightName: `${p}.mlp.down_proj.weight`,
      initializerName: `model.layers.${layer}.mlp.down_proj.MatMul.weight`, outFeatures: h, inFeatures: intermediateSize,
    });
  }
  skipNorm(`/model/layers.${config.numLayers}/final_norm_layernorm`, 'model.norm.weight', `model.layers.${config.numLayers}.final_norm_layernorm.weight`, true);
  emitLinear(g, weights, effective, dtype === 'q4' ? 'fp32' : dtype, {
    name: '/lm_head/MatMul', input: normed, weightName: config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
    initializerName: 'lm_head.MatMul.weight', outFeatures: vocabSize, inFeatures: h, output: 'logits',
  });

  g.output('logits', ioType, ['batch_size', 'sequence_length', vocabSize]);
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const kind of ['key', 'value']) g.output(`present.${layer}.${kind}`, ioType, ['batch_size', numKvHeads, 'total_sequence_length', headDim]);
  }
  return { model: g.toModel({ producer: 'onnxruntime-genai', irVersion: 10, opsets: { '': 21, 'com.microsoft': 1 } }), effectiveWeights: effective };
}
