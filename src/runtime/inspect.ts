import { findResidualStream } from '../instrument/index.js';
import { describeValueInfo, elemTypeName, readModel, type Dim } from '../onnx/proto.js';
import { readDecoderSignature } from './graphSignature.js';
import { resolveModelFolder, type ModelFolder } from './modelFolder.js';

export interface TensorDescription {
  name: string;
  type: string;
  dims: Dim[] | null;
}

export interface ResidualDescription {
  layer: number;
  /** Tensor holding the residual after this block; null where the exporter does not materialise it. */
  tensor: string | null;
  node: string;
  op: string;
  note?: string;
}

export interface ModelInspection
  extends Pick<ModelFolder, 'dir' | 'format' | 'onnxFile' | 'dtype' | 'modelType' | 'numLayers' | 'hiddenSize' | 'numHeads' | 'numKvHeads' | 'headDim' | 'vocabSize' | 'eosTokenIds'> {
  family: 'optimum' | 'builder';
  producer: string;
  residualType: string;
  kvType: string;
  paddingSide: 'left' | 'right';
  hasPositionIds: boolean;
  inputs: TensorDescription[];
  outputs: TensorDescription[];
  embedding: string;
  residuals: ResidualDescription[];
}

/** Everything `persona models inspect` reports: shape, exporter family, I/O and the residual tensor per layer. */
export function inspectModel(location: string, options: { dtype?: string; modelsDir?: string } = {}): ModelInspection {
  const folder = resolveModelFolder(location, options);
  const model = readModel(folder.onnxFile);
  const stream = findResidualStream(model, folder.numLayers);
  const signature = readDecoderSignature(model, folder);
  const describe = (info: Parameters<typeof describeValueInfo>[0]): TensorDescription => {
    const { elemType, dims } = describeValueInfo(info);
    return { name: info.name, type: elemType === undefined ? 'unknown' : (elemTypeName[elemType] ?? String(elemType)), dims: dims ?? null };
  };
  return {
    dir: folder.dir,
    format: folder.format,
    onnxFile: folder.onnxFile,
    dtype: folder.dtype,
    family: stream.family,
    modelType: folder.modelType,
    producer: model.producerName,
    numLayers: folder.numLayers,
    hiddenSize: folder.hiddenSize,
    numHeads: folder.numHeads,
    numKvHeads: folder.numKvHeads,
    headDim: folder.headDim,
    vocabSize: folder.vocabSize,
    residualType: elemTypeName[stream.residualElemType] ?? String(stream.residualElemType),
    kvType: signature.kvType,
    paddingSide: signature.paddingSide,
    hasPositionIds: signature.hasPositionIds,
    eosTokenIds: folder.eosTokenIds,
    inputs: model.graph!.input.map(describe),
    outputs: model.graph!.output.map(describe),
    embedding: stream.embeddingOutput,
    residuals: stream.blockOutputs.map((update, layer) => ({
      layer,
      tensor: update.output ?? null,
      node: update.node.name,
      op: update.node.opType,
      ...(update.output ? {} : { note: 'the final norm does not output the residual sum; instrumentation adds its output 3' }),
    })),
  };
}
