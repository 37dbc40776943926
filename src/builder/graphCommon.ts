import type { GraphBuilder } from '../onnx/graphBuilder.js';
import { ElemType } from '../onnx/proto.js';
import { roundToFloat16 } from '../vectors/float16.js';
import type { DecoderConfig } from './architecture.js';
import type { DecoderWeights } from './weights.js';

export type GraphDtype = 'fp32' | 'fp16' | 'q4';

/** Element type of activations inside the graph. */
export function activationType(dtype: GraphDtype): number {
  return dtype === 'fp16' ? ElemType.FLOAT16 : ElemType.FLOAT;
}

/** [rows, cols] row-major → [cols, rows]: Hugging Face [out, in] weights become MatMul's [in, out]. */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}

export function weight(weights: DecoderWeights, name: string): Float32Array {
  const tensor = weights.get(name);
  if (!tensor) throw new Error(`missing weight ${name}`);
  return tensor;
}

/** Norm scale as the graph applies it: Gemma's (1 + w) is folded into the stored weight, as exporters do. */
export function normScale(config: DecoderConfig, values: Float32Array): Float32Array {
  return config.gemmaNorms ? values.map((w) => 1 + w) : values;
}

/** inv_freq of the default (unscaled) rotary embedding. */
export function inverseFrequencies(config: DecoderConfig): Float32Array {
  const half = config.headDim / 2;
  return Float32Array.from({ length: half }, (_, i) => 1 / config.ropeTheta ** ((2 * i) / config.headDim));
}

/** cos/sin caches [maxPositions, headDim / 2] as the onnxruntime-genai builder stores them. */
export function rotaryCaches(config: DecoderConfig, maxPositions: number): { cos: Float32Array; sin: Float32Array } {
  const half = config.headDim / 2;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p / config.ropeTheta ** ((2 * i) / config.headDim);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

export const Q4_BLOCK_SIZE = 32;

/**
 * Symmetric 4-bit block quantisation in MatMulNBits' layout: for each output feature, blocks of 32 input features
 * share a float scale; codes are w/scale + 8 in [0, 15] (zero point 8, the op's default), two per byte, low nibble
 * first. Returns the packed codes, the scales and the dequantised weight in the original [out, in] layout.
 */
export function quantizeQ4(values: Float32Array, outFeatures: number, inFeatures: number): { packed: Uint8Array; scales: Float32Array; dequantized: Float32Array; blocks: number } {
  const blocks = Math.ceil(inFeatures / Q4_BLOCK_SIZE);
  const blobBytes = Q4_BLOCK_SIZE / 2;
  const packed = new Uint8Array(outFeatures * blocks * blobBytes);
  const scales = new Float32Array(outFeatures * blocks);
  const dequantized = new Float32Array(values.length);
  for (let o = 0; o < outFeatures; o++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * Q4_BLOCK_SIZE;
      const end = Math.min(start + Q4_BLOCK_SIZE, inFeatures);
      let maxAbs = 0;
      for (let i = start; i < end; i++) maxAbs = Math.max(maxAbs, Math.abs(values[o * inFeatures + i]!));
      const scale = Math.fround(maxAbs > 0 ? maxAbs / 7 : 1);
      scales[o * blocks + b] = scale;
      for (let i = start; i < end; i++) {
        const code = Math.max(0, Math.min(15, Math.round(values[o * inFeatures + i]! / scale) + 8));
        dequantized[o * inFeatures + i] = Math.fround((code - 8) * scale);
        const byte = (o * blocks + b) * blobBytes + ((i - start) >> 1);
        packed[byte] = packed[byte]! | (((i - start) & 1) === 0 ? code : code << 4);
      }
      // Padding codes past the end of the input features dequantise to 0.
      for (let i = end; i < start + Q4_BLOCK_SIZE; i++) {
        const byte = (o * blocks + b) * blobBytes + ((i - start) >> 1);
        packed[byte] = packed[byte]! | (((i - start) & 1) === 0 ? 8 : 8 << 4);
      }
    }
  }
  return { packed, scales, dequantized, blocks };
}

export interface LinearSpec {
  /** Node name of the MatMul (MatMulNBits for q4). */
  name: string;
  input: string;
  /** Hugging Face weight name, [out, in]. */
  weightName: string;
  /** Initializer name for the stored weight. */
  initializerName: string;
  outFeatures: number;
  inFeatures: number;
  /** Explicit output name (e.g. `logits`). */
  output?: string;
}

/**
 * Emits x·Wᵀ as MatMul over a transposed float initializer, or as MatMulNBits over 4-bit codes for q4. Records the
 * weight exactly as stored (fp16-rounded or dequantised) in `effective`, so the reference can use the same values.
 */
export function emitLinear(
  g: GraphBuilder,
  weights: DecoderWeights,
  effective: Map<string, Float32Array>,
  dtype: GraphDtype,
  spec: LinearSpec,
): string {
  const values = weight(weights, spec.weightName);
  const outputs = spec.output ? { outputs: [spec.output] } : {};
  if (dtype === 'q4') {
    const { packed, scales, dequantized, blocks } = quantizeQ4(values, spec.outFeatures, spec.inFeatures);
    effective.set(spec.weightName, dequantized);
    const codes = g.initializer(`${spec.initializerName}.q4`, ElemType.UINT8, [spec.outFeatures, blocks, Q4_BLOCK_SIZE / 2], packed);
    const scaleName = g.initializer(`${spec.initializerName}.scales`, ElemType.FLOAT, [spec.outFeatures * blocks], new Uint8Array(scales.buffer));
    return g.op('MatMulNBits', [spec.input, codes, scaleName], {
      name: spec.name.replace(/MatMul$/, 'MatMulNBits'),
      domain: 'com.microsoft',
      attrs: { K: { int: spec.inFeatures }, N: { int: spec.outFeatures }, bits: { int: 4 }, block_size: { int: Q4_BLOCK_SIZE } },
      ...outputs,
    });
  }
  const elemType = activationType(dtype);
  const stored = transpose(values, spec.outFeatures, spec.inFeatures);
  effective.set(spec.weightName, dtype === 'fp16' ? values.map(roundToFloat16) : values);
  const initializer = g.floatInitializer(spec.initializerName, stored, [spec.inFeatures, spec.outFeatures], elemType);
  return g.op('MatMul', [spec.input, initializer], { name: spec.name, ...outputs });
}

/**
 * A non-linear weight (norm scale, bias, embedding) stored in the activation dtype. `effective` receives the value
 * the reference should use, derived from what was actually stored (so fp16 rounding of Gemma's folded 1 + w is
 * accounted for).
 */
export function emitFloatWeight(
  g: GraphBuilder,
  effective: Map<string, Float32Array>,
  dtype: GraphDtype,
  names: { weight: string; initializer: string },
  stored: Float32Array,
  dims: readonly number[],
  storedToWeight: (stored: number) => number = (x) => x,
): string {
  const fp16 = dtype === 'fp16';
  const asStored = fp16 ? stored.map(roundToFloat16) : stored;
  effective.set(names.weight, asStored.map(storedToWeight));
  return g.floatInitializer(names.initializer, stored, dims, fp16 ? ElemType.FLOAT16 : ElemType.FLOAT);
}
