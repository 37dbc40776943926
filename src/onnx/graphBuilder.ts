import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, NodeProtoSchema, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import { float32ArrayToFloat16 } from '../vectors/float16.js';
import { attribute, ElemType, tensorProto, valueInfo, type AttributeValue, type Dim } from './proto.js';

export interface NodeOptions {
  /** Node name; also the stem of output names unless `outputs` is given. */
  name: string;
  domain?: string;
  attrs?: Record<string, AttributeValue>;
  /** Explicit output names; `''` marks an unused optional output. */
  outputs?: readonly string[];
  /** Number of outputs to name automatically (default 1). */
  numOutputs?: number;
}

/**
 * Accumulates an ONNX graph in topological order. Exporters name tensors differently (torch.onnx:
 * `<node>_output_0`, the onnxruntime-genai builder: `<node>/output_0`), so the naming rule is a constructor argument.
 */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private readonly constantNames = new Map<string, string>();

  constructor(private readonly outputName: (nodeName: string, index: number) => string) {}

  input(name: string, elemType: number, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType?: number, dims?: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  initializer(name: string, elemType: number, dims: readonly number[], raw: Uint8Array): string {
    this.initializers.push(tensorProto(name, elemType, dims, raw));
    return name;
  }

  /** A float weight stored as float32 or float16. */
  floatInitializer(name: string, values: Float32Array, dims: readonly number[], elemType: number): string {
    const raw = elemType === ElemType.FLOAT16 ? new Uint8Array(float32ArrayToFloat16(values).buffer) : new Uint8Array(values.slice().buffer);
    return this.initializer(name, elemType, dims, raw);
  }

  /** A shared small constant (axes, shapes, scalars), created once per distinct value. */
  constant(values: readonly number[], dims: readonly number[], elemType: number): string {
    const key = `${elemType}|${dims.join(',')}|${values.join(',')}`;
    const existing = this.constantNames.get(key);
    if (existing) return existing;
    const typeName = { [ElemType.INT64]: 'INT64', [ElemType.INT32]: 'INT32', [ElemType.FLOAT]: 'FLOAT', [ElemType.FLOAT16]: 'FLOAT16' }[elemType] ?? String(elemType);
    const name = `/model/constants/${typeName}/${dims.length}D/${values.join(',')}`;
    let raw: Uint8Array;
    switch (elemType) {
      case ElemType.INT64: raw = new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer); break;
      case ElemType.INT32: raw = new Uint8Array(Int32Array.from(values).buffer); break;
      case ElemType.FLOAT: raw = new Uint8Array(Float32Array.from(values).buffer); break;
      case ElemType.FLOAT16: raw = new Uint8Array(float32ArrayToFloat16(values).buffer); break;
      default: throw new Error(`constant of element type ${elemType} is not supported`);
    }
    this.initializer(name, elemType, dims, raw);
    this.constantNames.set(key, name);
    return name;
  }

  int64s(values: readonly number[]): string {
    return this.constant(values, [values.length], ElemType.INT64);
  }

  int64Scalar(value: number): string {
    return this.constant([value], [], ElemType.INT64);
  }

  /** Adds a node and returns its output names. */
  node(opType: string, inputs: readonly string[], options: NodeOptions): string[] {
    const outputs = options.outputs
      ? [...options.outputs]
      : Array.from({ length: options.numOutputs ?? 1 }, (_, i) => this.outputName(options.name, i));
    this.nodes.push(
      create(NodeProtoSchema, {
        opType,
        domain: options.domain ?? '',
        name: options.name,
        input: [...inputs],
        output: outputs,
        attribute: Object.entries(options.attrs ?? {}).map(([key, value]) => attribute(key, value)),
      }),
    );
    return outputs;
  }

  /** Single-output shorthand. */
  op(opType: string, inputs: readonly string[], options: NodeOptions): string {
    return this.node(opType, inputs, options)[0]!;
  }

  toModel(options: { producer: string; irVersion: number; opsets: Record<string, number>; graphName?: string }): ModelProto {
    return create(ModelProtoSchema, {
      irVersion: BigInt(options.irVersion),
      producerName: options.producer,
      opsetImport: Object.entries(options.opsets).map(([domain, version]) => ({ domain, version: BigInt(version) })),
      graph: {
        name: options.graphName ?? 'main_graph',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }
}
