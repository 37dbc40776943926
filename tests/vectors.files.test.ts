import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.js';
import {
  bfloat16BitsToFloat32,
  encodeSafetensors,
  entryToFloat32,
  float32ToFloat16Bits,
  float16BitsToFloat32,
  LAYER_CONVENTION,
  readSafetensors,
  readVectorFile,
  vectorAtLayer,
  writeSafetensors,
  writeVectorFile,
} from '../src/vectors/index.js';
import { float32ToBfloat16Bits } from '../src/vectors/float16.js';
import { tempDir } from './helpers/models.js';
import { userErrorOf } from './helpers/errors.js';

let dir: string;
beforeAll(() => {
  dir = tempDir('vector-files');
});

/** A safetensors file from a raw header object (or text) and data bytes, the way another tool might write it. */
function rawSafetensors(file: string, header: unknown, data: Uint8Array = new Uint8Array(0), headerLengthOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const headerBytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(headerLengthOverride ?? BigInt(headerBytes.byteLength));
  fs.writeFileSync(file, Buffer.concat([length, headerBytes, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  return file;
}

function f32Bytes(values: readonly number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

describe('safetensors round trip', () => {
  it('F32, F16, BF16 and I64 tensors with metadata come back with their dtype, shape and values', () => {
    const file = path.join(dir, 'roundtrip.safetensors');
    const f32 = [1.5, -0.1, 3.4028234663852886e38, 1e-40, 0, -0];
    const f16 = [0.5, -2, 65504, 0.1, 6e-8, -1 / 3];
    const bf16 = [1.5, -3.25, 0.1, 1e30, -7e-20, 2];
    const i64 = new BigInt64Array([0n, -5n, 2n ** 62n, -(2n ** 63n), 9007199254740993n, 1n]);
    writeSafetensors(
      file,
      {
        a: { dtype: 'F32', shape: [2, 3], data: f32 },
        b: { dtype: 'F16', shape: [6], data: f16 },
        c: { dtype: 'BF16', shape: [3, 1, 2], data: bf16 },
        ids: { dtype: 'I64', shape: [2, 3], data: i64 },
        small: { dtype: 'I64', shape: [3], data: [7, -8, 9] },
      },
      { model: 'tiny', note: 'x:y', counts: '{"pos":5}' },
    );
    const read = readSafetensors(file);
    expect(read.metadata).toEqual({ model: 'tiny', note: 'x:y', counts: '{"pos":5}' });
    expect([...read.tensors.keys()].sort()).toEqual(['a', 'b', 'c', 'ids', 'small']);
    const a = read.tensors.get('a')!;
    expect(a.dtype).toBe('F32');
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(entryToFloat32(a))).toEqual(f32.map(Math.fround));
    expect(Object.is(entryToFloat32(a)[5], -0)).toBe(true);
    const b = read.tensors.get('b')!;
    expect(b.dtype).toBe('F16');
    expect(b.bytes.byteLength).toBe(12);
    expect(Array.from(entryToFloat32(b))).toEqual(f16.map((v) => float16BitsToFloat32(float32ToFloat16Bits(v))));
    // Exactly representable values survive unchanged; 0.1 becomes the nearest half, 0.0999755859375.
    expect(Array.from(entryToFloat32(b)).slice(0, 4)).toEqual([0.5, -2, 65504, 0.0999755859375]);
    const c = read.tensors.get('c')!;
    expect(c.dtype).toBe('BF16');
    expect(c.shape).toEqual([3, 1, 2]);
    expect(Array.from(entryToFloat32(c))).toEqual(bf16.map((v) => bfloat16BitsToFloat32(float32ToBfloat16Bits(v))));
    expect(entryToFloat32(c)[0]).toBe(1.5);
    expect(entryToFloat32(c)[1]).toBe(-3.25);
    // bfloat16 keeps 8 significant bits: 0.1 → 0.10009765625 (round to nearest).
    expect(entryToFloat32(c)[2]).toBe(0.10009765625);
    const ids = read.tensors.get('ids')!;
    expect(ids.dtype).toBe('I64');
    expect(Array.from(new BigInt64Array(ids.bytes.slice().buffer))).toEqual(Array.from(i64));
    expect(Array.from(new BigInt64Array(read.tensors.get('small')!.bytes.slice().buffer))).toEqual([7n, -8n, 9n]);
    expect(() => entryToFloat32(ids)).toThrow(UserError);
  });

  it('an empty tensor and a file without metadata round-trip', () => {
    const file = path.join(dir, 'empty.safetensors');
    writeSafetensors(file, { e: { dtype: 'F32', shape: [0, 4], data: [] } });
    const read = readSafetensors(file);
    expect(read.metadata).toEqual({});
    expect(read.tensors.get('e')!.shape).toEqual([0, 4]);
    expect(entryToFloat32(read.tensors.get('e')!)).toHaveLength(0);
    const header = JSON.parse(fs.readFileSync(file).subarray(8, 8 + Number(fs.readFileSync(file).readBigUInt64LE(0))).toString()) as Record<string, unknown>;
    expect(header).not.toHaveProperty('__metadata__');
  });

  it('the header is padded with spaces so the data starts at a multiple of 8 bytes', () => {
    for (let extra = 0; extra < 12; extra++) {
      const bytes = Buffer.concat(encodeSafetensors({ v: { dtype: 'F32', shape: [3], data: [1, 2, 3] } }, { model: 'm'.repeat(extra) }));
      const headerLength = Number(bytes.readBigUInt64LE(0));
      expect((8 + headerLength) % 8, `metadata of ${extra} characters`).toBe(0);
      const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
      expect(headerText).toMatch(/^\{.*\} *$/);
      expect(headerText.length - headerText.trimEnd().length).toBeLessThan(8);
      expect(bytes.byteLength).toBe(8 + headerLength + 12);
      expect(Array.from(new Float32Array(Uint8Array.from(bytes.subarray(8 + headerLength)).buffer))).toEqual([1, 2, 3]);
    }
  });

  // Padding is counted in UTF-8 bytes: a UTF-16 count let non-ASCII metadata misalign the data.
  it('the 8-byte alignment also holds when the metadata has non-ASCII characters', () => {
    for (const text of ['é', 'naïve café', '日本語', '😀']) {
      const bytes = Buffer.concat(encodeSafetensors({ v: { dtype: 'F32', shape: [1], data: [1] } }, { trait: text }));
      expect((8 + Number(bytes.readBigUInt64LE(0))) % 8, `metadata ${text}`).toBe(0);
    }
  });

  it('non-ASCII metadata still reads back correctly', () => {
    const file = path.join(dir, 'unicode.safetensors');
    writeSafetensors(file, { v: { dtype: 'F32', shape: [2], data: [1, 2] } }, { trait: 'naïve café 日本語' });
    const read = readSafetensors(file);
    expect(read.metadata.trait).toBe('naïve café 日本語');
    expect(Array.from(entryToFloat32(read.tensors.get('v')!))).toEqual([1, 2]);
  });

  it('tensors are laid out back to back in the order given, offsets in the header', () => {
    const bytes = Buffer.concat(encodeSafetensors({ x: { dtype: 'F16', shape: [3], data: [1, 2, 3] }, y: { dtype: 'I32', shape: [2], data: [4, 5] } }));
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString()) as Record<string, { data_offsets: number[] }>;
    expect(header.x!.data_offsets).toEqual([0, 6]);
    expect(header.y!.data_offsets).toEqual([6, 14]);
  });

  it('a shape that does not hold the data is a programming error on write', () => {
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] } })).toThrow('tensor x: shape [2, 2] holds 4 values, data has 3');
  });
});

describe('safetensors parse errors are one-line UserErrors naming the file', () => {
  const good = { v: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, () => string, RegExp][] = [
    ['a file shorter than the length prefix', () => (fs.writeFileSync(path.join(dir, 'short.safetensors'), Buffer.from([1, 2, 3])), path.join(dir, 'short.safetensors')), /shorter than its 8-byte header length/],
    ['a header length past the end', () => rawSafetensors(path.join(dir, 'long.safetensors'), good, f32Bytes([1, 2]), 10_000n), /header length 10000 is impossible/],
    ['an absurd header length', () => rawSafetensors(path.join(dir, 'huge.safetensors'), good, f32Bytes([1, 2]), 2n ** 63n), /header length \d+ is impossible/],
    ['a header that is not JSON', () => rawSafetensors(path.join(dir, 'badjson.safetensors'), '{"v": {"dtype": "F32",'), /header is not JSON/],
    ['a header that is a JSON array', () => rawSafetensors(path.join(dir, 'array.safetensors'), '[1, 2]'), /header is not a JSON object/],
    ['a header that is null', () => rawSafetensors(path.join(dir, 'null.safetensors'), 'null'), /header is not a JSON object/],
    ['metadata that is not an object', () => rawSafetensors(path.join(dir, 'meta.safetensors'), { __metadata__: 'x', ...good }, f32Bytes([1, 2])), /__metadata__ is not an object/],
    ['offsets outside the data', () => rawSafetensors(path.join(dir, 'offsets.safetensors'), { v: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32Bytes([1, 2])), /tensor v has data_offsets \[0, 16\] outside the 8 data bytes/],
    ['negative offsets', () => rawSafetensors(path.join(dir, 'negative.safetensors'), { v: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, f32Bytes([1, 2])), /tensor v has data_offsets \[-4, 0\] outside/],
    ['reversed offsets', () => rawSafetensors(path.join(dir, 'reversed.safetensors'), { v: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, f32Bytes([1, 2])), /tensor v has data_offsets \[8, 4\] outside/],
    ['missing offsets', () => rawSafetensors(path.join(dir, 'nooffsets.safetensors'), { v: { dtype: 'F32', shape: [2] } }, f32Bytes([1, 2])), /tensor v has bad data_offsets/],
    ['a shape that does not match the bytes', () => rawSafetensors(path.join(dir, 'shape.safetensors'), { v: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32Bytes([1, 2])), /tensor v of shape \[3\] F32 needs 12 bytes, has 8/],
    ['a negative dimension', () => rawSafetensors(path.join(dir, 'negdim.safetensors'), { v: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32Bytes([1, 2])), /tensor v has a bad shape/],
    ['an unknown dtype', () => rawSafetensors(path.join(dir, 'dtype.safetensors'), { v: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, f32Bytes([1, 2])), /tensor v has unsupported dtype F8_E4M3/],
    ['a truncated data section', () => {
      const file = path.join(dir, 'truncated.safetensors');
      writeSafetensors(file, { v: { dtype: 'F32', shape: [16], data: new Float32Array(16).fill(1) } });
      const bytes = fs.readFileSync(file);
      fs.writeFileSync(file, bytes.subarray(0, bytes.byteLength - 10));
      return file;
    }, /tensor v has data_offsets \[0, 64\] outside the 54 data bytes/],
    ['a file cut inside its header', () => {
      const file = path.join(dir, 'cut-header.safetensors');
      writeSafetensors(file, { v: { dtype: 'F32', shape: [2], data: [1, 2] } }, { model: 'm' });
      fs.writeFileSync(file, fs.readFileSync(file).subarray(0, 20));
      return file;
    }, /header length \d+ is impossible/],
  ];
  for (const [label, make, detail] of cases) {
    it(label, () => {
      const file = make();
      const message = userErrorOf(() => readSafetensors(file));
      expect(message.startsWith(`${file} is not a valid safetensors file: `), message).toBe(true);
      expect(message).toMatch(detail);
    });
  }

  it('a missing file', () => {
    const file = path.join(dir, 'absent.safetensors');
    expect(userErrorOf(() => readSafetensors(file))).toBe(`safetensors file not found: ${file}`);
  });

  it('an integer tensor read as a vector', () => {
    const file = path.join(dir, 'int-vector.safetensors');
    writeSafetensors(file, { vector: { dtype: 'I32', shape: [2], data: [1, 2] } });
    expect(userErrorOf(() => readVectorFile(file))).toBe('tensor vector is I32, not a floating-point tensor');
  });
});

describe('vector files', () => {
  const H = 8;
  const L = 3;
  const shape = { hiddenSize: H, numLayers: L };
  const ramp = (offset: number) => Float32Array.from({ length: H }, (_, i) => offset + i * 0.25);

  it('a single vector round-trips with metadata; hidden_size and layer_convention are filled in', () => {
    const file = path.join(dir, 'single.safetensors');
    const vector = Float32Array.from({ length: H }, (_, i) => Math.sin(i) * 3);
    writeVectorFile(file, { vector, metadata: { model: 'org/tiny', method: 'planted direction', trait: 'cheerful', counts: { pos: 5, neg: 4 }, seed: 3, norms: [1.5, 2] } });
    const raw = readSafetensors(file);
    expect([...raw.tensors.keys()]).toEqual(['vector']);
    expect(raw.tensors.get('vector')!.dtype).toBe('F32');
    expect(raw.tensors.get('vector')!.shape).toEqual([H]);
    // Non-string metadata is stored as JSON text (safetensors metadata is string → string).
    expect(raw.metadata).toEqual({ model: 'org/tiny', method: 'planted direction', trait: 'cheerful', counts: '{"pos":5,"neg":4}', seed: '3', norms: '[1.5,2]', hidden_size: String(H), layer_convention: 'block_output' });
    const read = readVectorFile(file, shape);
    expect(read.file).toBe(file);
    expect(read.vectors).toBeUndefined();
    expect(Array.from(read.vector!)).toEqual(Array.from(vector));
    expect(read.metadata).toEqual({ model: 'org/tiny', method: 'planted direction', trait: 'cheerful', counts: { pos: 5, neg: 4 }, seed: 3, norms: [1.5, 2], hidden_size: H, layer_convention: LAYER_CONVENTION });
    // A single vector applies at whatever layer is named.
    for (let layer = 0; layer < L; layer++) expect(vectorAtLayer(read, layer, L)).toBe(read.vector);
  });

  it('per-layer vectors round-trip as rows [layers, hidden]; row L is block L', () => {
    const file = path.join(dir, 'layers.safetensors');
    const rows = [ramp(0), ramp(10), ramp(-5)];
    writeVectorFile(file, { vectors: rows, metadata: { model: 'tiny', method: 'mean difference' } });
    const raw = readSafetensors(file);
    expect(raw.tensors.get('vectors')!.shape).toEqual([L, H]);
    const read = readVectorFile(file, shape);
    expect(read.vector).toBeUndefined();
    expect(read.vectors!.map((r) => Array.from(r))).toEqual(rows.map((r) => Array.from(r)));
    expect(read.metadata.layer_convention).toBe('block_output');
    expect(read.metadata.hidden_size).toBe(H);
    expect(Array.from(vectorAtLayer(read, 1, L))).toEqual(Array.from(ramp(10)));
    expect(Array.from(vectorAtLayer(read, 2))).toEqual(Array.from(ramp(-5)));
  });

  it('model-shape checks: hidden size, layer count', () => {
    const single = path.join(dir, 'shape-single.safetensors');
    writeVectorFile(single, { vector: ramp(1), metadata: { model: 'a', method: 'm' } });
    expect(userErrorOf(() => readVectorFile(single, { hiddenSize: 16, numLayers: L }))).toBe(`${single} holds vectors of size ${H} but the model's hidden size is 16`);
    // A single vector fits any layer count.
    expect(readVectorFile(single, { hiddenSize: H, numLayers: 40 }).vector).toHaveLength(H);

    const perLayer = path.join(dir, 'shape-layers.safetensors');
    writeVectorFile(perLayer, { vectors: [ramp(0), ramp(1)], metadata: { model: 'b', method: 'm' } });
    expect(userErrorOf(() => readVectorFile(perLayer, shape))).toBe(`${perLayer} has vectors for 2 layers but the model has 3; it was made for another model`);
    expect(userErrorOf(() => readVectorFile(perLayer, { hiddenSize: 4, numLayers: 2 }))).toBe(`${perLayer} holds vectors of size ${H} but the model's hidden size is 4`);
    // Without a model, any file is read as is.
    expect(readVectorFile(perLayer).vectors).toHaveLength(2);
  });

  it('refuses to write NaN or Infinity, and leaves no file behind', () => {
    const file = path.join(dir, 'nan-write.safetensors');
    const bad = ramp(0);
    bad[3] = NaN;
    expect(userErrorOf(() => writeVectorFile(file, { vector: bad, metadata: { model: 'a', method: 'm' } }))).toBe(`refusing to write ${file}: the vectors contain NaN or Infinity`);
    expect(fs.existsSync(file)).toBe(false);
    const inf = ramp(0);
    inf[0] = -Infinity;
    expect(userErrorOf(() => writeVectorFile(file, { vectors: [ramp(0), inf], metadata: { model: 'a', method: 'm' } }))).toMatch(/NaN or Infinity/);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('nan-write'))).toEqual([]);
  });

  it('refuses to read NaN or Infinity, naming the layer of a per-layer file', () => {
    const single = rawSafetensors(path.join(dir, 'nan-read.safetensors'), { vector: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32Bytes([1, NaN, 0, 0]));
    expect(userErrorOf(() => readVectorFile(single))).toBe(`${single} contains NaN or Infinity`);
    const perLayer = rawSafetensors(path.join(dir, 'inf-read.safetensors'), { vectors: { dtype: 'F32', shape: [3, 2], data_offsets: [0, 24] } }, f32Bytes([1, 2, 3, 4, Infinity, 0]));
    expect(userErrorOf(() => readVectorFile(perLayer))).toBe(`${perLayer} contains NaN or Infinity (layer 2)`);
  });

  it('other malformed vector files', () => {
    const neither = path.join(dir, 'neither.safetensors');
    writeSafetensors(neither, { weights: { dtype: 'F32', shape: [2], data: [1, 2] } });
    expect(userErrorOf(() => readVectorFile(neither))).toBe(`${neither} is not a vector file: it has neither a "vector" nor a "vectors" tensor`);
    const twoD = path.join(dir, 'vector-2d.safetensors');
    writeSafetensors(twoD, { vector: { dtype: 'F32', shape: [1, 2], data: [1, 2] } });
    expect(userErrorOf(() => readVectorFile(twoD))).toBe(`${twoD}: tensor "vector" must be 1-D [hidden], has shape [1, 2]`);
    const oneD = path.join(dir, 'vectors-1d.safetensors');
    writeSafetensors(oneD, { vectors: { dtype: 'F32', shape: [2], data: [1, 2] } });
    expect(userErrorOf(() => readVectorFile(oneD))).toBe(`${oneD}: tensor "vectors" must be 2-D [layers, hidden], has shape [2]`);
    const convention = path.join(dir, 'convention.safetensors');
    writeSafetensors(convention, { vectors: { dtype: 'F32', shape: [1, 2], data: [1, 2] } }, { layer_convention: 'mystery' });
    expect(userErrorOf(() => readVectorFile(convention))).toBe(`${convention}: unknown layer_convention mystery (expected block_output or hf_hidden_states)`);
    const missing = path.join(dir, 'no-such-vector.safetensors');
    expect(userErrorOf(() => readVectorFile(missing))).toBe(`safetensors file not found: ${missing}`);
  });

  it('F16 and BF16 vector files written by other tools are widened to float32', () => {
    const file = path.join(dir, 'half.safetensors');
    writeSafetensors(file, { vectors: { dtype: 'BF16', shape: [2, 2], data: [1.5, -2, 0.25, 8] } }, { model: 'x' });
    expect(readVectorFile(file).vectors!.map((r) => Array.from(r))).toEqual([[1.5, -2], [0.25, 8]]);
  });

  it('vectorAtLayer refuses layers out of range', () => {
    const file = path.join(dir, 'at-layer.safetensors');
    writeVectorFile(file, { vectors: [ramp(0), ramp(1), ramp(2)], metadata: { model: 'a', method: 'm' } });
    const read = readVectorFile(file, shape);
    expect(userErrorOf(() => vectorAtLayer(read, 3, L))).toBe('layer 3 is out of range: the model has layers 0-2');
    expect(userErrorOf(() => vectorAtLayer(read, -1, L))).toBe('layer -1 is out of range: the model has layers 0-2');
    expect(userErrorOf(() => vectorAtLayer(read, 0.5))).toBe('layer 0.5 is out of range');
    // Without the model's layer count, a per-layer file still knows its own rows.
    expect(userErrorOf(() => vectorAtLayer(read, 3))).toBe(`${file} has no vector for layer 3 (it covers layers 0-2)`);
    const single = path.join(dir, 'at-layer-single.safetensors');
    writeVectorFile(single, { vector: ramp(0), metadata: { model: 'a', method: 'm' } });
    expect(userErrorOf(() => vectorAtLayer(readVectorFile(single), 5, L))).toBe('layer 5 is out of range: the model has layers 0-2');
  });

  it('layer_convention hf_hidden_states: L + 1 rows are read as L block rows, row 0 (embeddings) dropped', () => {
    const file = path.join(dir, 'hf-hidden.safetensors');
    const rows = [ramp(100), ramp(0), ramp(1), ramp(2)]; // row 0 = embeddings, row k = block k − 1
    writeSafetensors(file, { vectors: { dtype: 'F32', shape: [L + 1, H], data: Float32Array.from(rows.flatMap((r) => Array.from(r))) } }, { model: 'pv', layer_convention: 'hf_hidden_states', method: 'persona vectors' });
    const read = readVectorFile(file, shape);
    expect(read.vectors).toHaveLength(L);
    expect(read.vectors!.map((r) => Array.from(r))).toEqual([ramp(0), ramp(1), ramp(2)].map((r) => Array.from(r)));
    expect(Array.from(vectorAtLayer(read, 0, L))).toEqual(Array.from(ramp(0)));
    // The rows are block outputs now, and the metadata says so (the file's own claim does not win).
    expect(read.metadata.layer_convention).toBe('block_output');
    expect(read.metadata.hidden_size).toBe(H);
    // An hf_hidden_states file with only L rows belongs to a model with L − 1 blocks.
    const short = path.join(dir, 'hf-hidden-short.safetensors');
    writeSafetensors(short, { vectors: { dtype: 'F32', shape: [L, H], data: Float32Array.from(rows.slice(1).flatMap((r) => Array.from(r))) } }, { layer_convention: 'hf_hidden_states' });
    expect(userErrorOf(() => readVectorFile(short, shape))).toBe(`${short} has vectors for 2 layers but the model has 3; it was made for another model`);
  });
});
