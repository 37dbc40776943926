import * as fs from 'node:fs';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  ModelProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import { UserError } from '../errors.js';

export type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto };

/** ONNX TensorProto.DataType values used by decoder graphs. */
export const ElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

export const elemTypeName: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 16: 'bfloat16',
};

export type Dim = number | string;

export function decodeModel(bytes: Uint8Array, label = 'ONNX model'): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (error) {
    throw new UserError(`${label} is not a valid ONNX model: ${(error as Error).message}`);
  }
  if (!model.graph || model.graph.node.length === 0) throw new UserError(`${label} has no graph nodes; is it an ONNX model?`);
  return model;
}

export function readModel(file: string): ModelProto {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new UserError(`ONNX model not found: ${file}`);
  }
  return decodeModel(bytes, file);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

export function valueInfo(name: string, elemType?: number, dims?: readonly Dim[]): ValueInfoProto {
  if (elemType === undefined) return create(ValueInfoProtoSchema, { name });
  return create(ValueInfoProtoSchema, {
    name,
    type: {
      value: {
        case: 'tensorType',
        value: {
          elemType,
          shape: dims
            ? {
                dim: dims.map((d) =>
                  typeof d === 'string' ? { value: { case: 'dimParam' as const, value: d } } : { value: { case: 'dimValue' as const, value: BigInt(d) } },
                ),
              }
            : undefined,
        },
      },
    },
  });
}

/** Element type and dims of a graph input or output, where declared. */
export function describeValueInfo(info: ValueInfoProto): { elemType: number | undefined; dims: Dim[] | undefined } {
  const type = info.type?.value;
  if (!type || type.case !== 'tensorType') return { elemType: undefined, dims: undefined };
  const dims = type.value.shape?.dim.map((d): Dim => {
    if (d.value.case === 'dimValue') return Number(d.value.value);
    if (d.value.case === 'dimParam') return d.value.value;
    return '?';
  });
  return { elemType: type.value.elemType, dims };
}

export type AttributeValue =
  | { int: number | bigint }
  | { float: number }
  | { ints: readonly (number | bigint)[] }
  | { floats: readonly number[] }
  | { string: string }
  | { tensor: TensorProto };

export function attribute(name: string, value: AttributeValue): AttributeProto {
  const T = AttributeProto_AttributeType;
  if ('int' in value) return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(value.int) });
  if ('float' in value) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: value.float });
  if ('ints' in value) return create(AttributeProtoSchema, { name, type: T.INTS, ints: value.ints.map((v) => BigInt(v)) });
  if ('floats' in value) return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: [...value.floats] });
  if ('string' in value) return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(value.string) });
  return create(AttributeProtoSchema, { name, type: T.TENSOR, t: value.tensor });
}

export function getIntAttribute(node: NodeProto, name: string): number | undefined {
  const found = node.attribute.find((a) => a.name === name);
  return found ? Number(found.i) : undefined;
}

export function tensorProto(name: string, elemType: number, dims: readonly number[], rawData: Uint8Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType: elemType,
    dims: dims.map((d) => BigInt(d)),
    rawData: rawData as Uint8Array<ArrayBuffer>,
  });
}

/** Points a tensor at a byte range of an external data file instead of carrying its bytes. */
export function makeExternal(tensor: TensorProto, location: string, offset: number, length: number): void {
  tensor.rawData = new Uint8Array(0);
  tensor.dataLocation = TensorProto_DataLocation.EXTERNAL;
  tensor.externalData = [
    { key: 'location', value: location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ].map((entry) => ({ ...entry, $typeName: 'onnx.StringStringEntryProto' as const }));
}

export function externalLocation(tensor: TensorProto): string | undefined {
  return tensor.externalData.find((entry) => entry.key === 'location')?.value;
}
