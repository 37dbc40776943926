import * as fs from 'node:fs';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/files.js';
import { float16BitsToFloat32, float32ArrayToFloat16, float32ToBfloat16Bits } from './float16.js';

/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
 * byte range, then the raw little-endian data. Used for checkpoints (Hugging Face tensor names) and for every vector
 * file the toolkit writes.
 */

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const bytesPerElement: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** A view into the file's bytes. */
  readonly bytes: Uint8Array;
}

export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Readonly<Record<string, string>>;
}

export function readSafetensors(file: string): SafetensorsFile {
  let buffer: Buffer;
  try {
    buffer = fs.readFileSync(file);
  } catch {
    throw new UserError(`safetensors file not found: ${file}`);
  }
  return parseSafetensors(new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength), file);
}

export function parseSafetensors(bytes: Uint8Array, label = 'safetensors data'): SafetensorsFile {
  const fail = (why: string): never => {
    throw new UserError(`${label} is not a valid safetensors file: ${why}`);
  };
  if (bytes.byteLength < 8) fail('shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.byteLength - 8 || headerLength > 100_000_000) fail(`header length ${headerLength} is impossible`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, unknown>;
  } catch (error) {
    return fail(`header is not JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = bytes.byteLength - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null) fail('__metadata__ is not an object');
      metadata = Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = info.dtype as SafetensorsDtype;
    if (!(typeof dtype === 'string' && dtype in bytesPerElement)) fail(`tensor ${name} has unsupported dtype ${String(info.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor ${name} has a bad shape`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2) fail(`tensor ${name} has bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    if (!(Number.isInteger(begin) && Number.isInteger(end) && begin >= 0 && end >= begin && end <= dataLength)) {
      fail(`tensor ${name} has data_offsets [${begin}, ${end}] outside the ${dataLength} data bytes`);
    }
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (count * bytesPerElement[dtype] !== end - begin) {
      fail(`tensor ${name} of shape [${(shape as number[]).join(', ')}] ${dtype} needs ${count * bytesPerElement[dtype]} bytes, has ${end - begin}`);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], bytes: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
}

/** Any floating-point safetensors entry as float32. */
export function entryToFloat32(entry: SafetensorsEntry): Float32Array {
  const { dtype } = entry;
  // Copy into a fresh aligned buffer: file offsets need not be aligned, and callers may keep the result.
  const bytes = entry.bytes.slice();
  switch (dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer);
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer));
    case 'F16': {
      const bits = new Uint16Array(bytes.buffer);
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i]!);
      return out;
    }
    case 'BF16': {
      const bits = new Uint16Array(bytes.buffer);
      const widened = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) widened[i] = bits[i]! << 16;
      return new Float32Array(widened.buffer);
    }
    default:
      throw new UserError(`tensor ${entry.name} is ${dtype}, not a floating-point tensor`);
  }
}

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';
  shape: readonly number[];
  /** Float values for float dtypes (converted on write), integers for integer dtypes. */
  data: ArrayLike<number> | BigInt64Array;
}

export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    if (count !== tensor.data.length) {
      throw new Error(`tensor ${name}: shape [${tensor.shape.join(', ')}] holds ${count} values, data has ${tensor.data.length}`);
    }
    const bytes = encodeTensorData(tensor);
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  // Pad the UTF-8 header (not the UTF-16 string: metadata may hold non-ASCII text) so tensor data starts 8-aligned.
  const unpadded = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(unpadded.byteLength + ((8 - (unpadded.byteLength % 8)) % 8)).fill(0x20);
  headerBytes.set(unpadded);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  return [prefix, headerBytes, ...chunks];
}

function encodeTensorData(tensor: TensorToWrite): Uint8Array {
  const count = tensor.data.length;
  switch (tensor.dtype) {
    case 'F32': {
      const out = Float32Array.from(tensor.data as ArrayLike<number>);
      return new Uint8Array(out.buffer);
    }
    case 'F16':
      return new Uint8Array(float32ArrayToFloat16(tensor.data as ArrayLike<number>).buffer);
    case 'BF16': {
      const out = new Uint16Array(count);
      for (let i = 0; i < count; i++) out[i] = float32ToBfloat16Bits((tensor.data as ArrayLike<number>)[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'I64': {
      const out = tensor.data instanceof BigInt64Array ? tensor.data : BigInt64Array.from(Array.from(tensor.data as ArrayLike<number>, (v) => BigInt(v)));
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    }
    case 'I32': {
      const out = Int32Array.from(tensor.data as ArrayLike<number>);
      return new Uint8Array(out.buffer);
    }
  }
}

/** Writes atomically: a crash never leaves a truncated file under the final name. */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
