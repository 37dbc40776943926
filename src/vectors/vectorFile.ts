import { UserError } from '../errors.js';
import { allFinite, norm } from './linalg.js';
import { entryToFloat32, readSafetensors, writeSafetensors, type TensorToWrite } from './safetensors.js';

/**
 * The one format for every vector the toolkit reads or writes: safetensors, float32, holding either `vector`
 * [hidden] (applied at whatever layer the caller names) or `vectors` [numLayers, hidden] (row L for the residual
 * after block L). Metadata says which model it belongs to, the layer convention and how it was made.
 */

export const LAYER_CONVENTION = 'block_output';

export interface VectorMetadata {
  model: string;
  hidden_size: number;
  layer_convention: string;
  /** How the vector was made, e.g. "persona-vectors mean difference" or "planted direction". */
  method: string;
  /** Any further fields (trait, pooling, counts, thresholds, judge, seed, per-layer norms, …). */
  [key: string]: unknown;
}

export interface VectorFile {
  file: string;
  /** Set for single-vector files. */
  vector?: Float32Array;
  /** Set for per-layer files: vectors[L] belongs to the residual after block L. */
  vectors?: Float32Array[];
  metadata: VectorMetadata;
}

export interface ModelShape {
  hiddenSize: number;
  numLayers: number;
  /** The model's id (`org/name`, or its folder's name); a file made for a differently named model is refused. */
  modelId?: string;
  /** Accept a file made for another model of the same shape (a base model's vector on its instruct variant, say). */
  allowOtherModel?: boolean;
}

/** Models are compared by name only, so the same model pulled or copied to another folder still matches. */
function modelName(id: string): string {
  return id.split('/').filter(Boolean).at(-1)?.toLowerCase() ?? '';
}

function decodeMetadata(raw: Readonly<Record<string, string>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    try {
      out[key] = JSON.parse(value);
    } catch {
      out[key] = value;
    }
  }
  return out;
}

/** Reads a vector file and checks it against the model it will be used with. */
export function readVectorFile(file: string, model?: ModelShape): VectorFile {
  const { tensors, metadata: rawMetadata } = readSafetensors(file);
  const metadata = decodeMetadata(rawMetadata);
  const single = tensors.get('vector');
  const perLayer = tensors.get('vectors');
  if (!single && !perLayer) throw new UserError(`${file} is not a vector file: it has neither a "vector" nor a "vectors" tensor`);
  const convention = String(metadata.layer_convention ?? LAYER_CONVENTION);
  if (convention !== LAYER_CONVENTION && convention !== 'hf_hidden_states') {
    throw new UserError(`${file}: unknown layer_convention ${convention} (expected ${LAYER_CONVENTION} or hf_hidden_states)`);
  }
  let vector: Float32Array | undefined;
  let vectors: Float32Array[] | undefined;
  let hidden: number;
  if (single) {
    if (single.shape.length !== 1) throw new UserError(`${file}: tensor "vector" must be 1-D [hidden], has shape [${single.shape.join(', ')}]`);
    vector = entryToFloat32(single);
    hidden = single.shape[0]!;
  } else {
    if (perLayer!.shape.length !== 2) throw new UserError(`${file}: tensor "vectors" must be 2-D [layers, hidden], has shape [${perLayer!.shape.join(', ')}]`);
    const [rows, width] = perLayer!.shape as [number, number];
    const values = entryToFloat32(perLayer!);
    vectors = Array.from({ length: rows }, (_, r) => values.slice(r * width, (r + 1) * width));
    hidden = width;
    // Persona Vectors files count layers as Hugging Face hidden_states (row 0 = embeddings); keep block outputs only.
    if (convention === 'hf_hidden_states') vectors = vectors.slice(1);
  }
  const all = vector ? [vector] : vectors!;
  all.forEach((v, row) => {
    if (!allFinite(v)) throw new UserError(`${file} contains NaN or Infinity${vectors ? ` (layer ${row})` : ''}`);
  });
  if (model) {
    const madeFor = typeof metadata.model === 'string' ? metadata.model : undefined;
    if (model.modelId !== undefined && !model.allowOtherModel && madeFor !== undefined && madeFor !== 'unknown' && modelName(madeFor) !== modelName(model.modelId)) {
      throw new UserError(`${file} was made for model ${madeFor}, not ${model.modelId}; allow it explicitly to use it anyway (--allow-other-model, or allow_other_model: true in a sweep spec)`);
    }
    if (hidden !== model.hiddenSize) throw new UserError(`${file} holds vectors of size ${hidden} but the model's hidden size is ${model.hiddenSize}`);
    if (vectors && vectors.length !== model.numLayers) {
      const hint = vectors.length === model.numLayers + 1 ? ' (if row 0 holds the embeddings, as in Persona Vectors files, set its layer_convention to hf_hidden_states)' : '';
      throw new UserError(`${file} has vectors for ${vectors.length} layers but the model has ${model.numLayers}; it was made for another model${hint}`);
    }
  }
  return {
    file,
    ...(vector ? { vector } : { vectors }),
    // What the reader established (shape, the convention the rows are now in) wins over what the file claims.
    metadata: { ...metadata, model: String(metadata.model ?? 'unknown'), method: String(metadata.method ?? 'unknown'), hidden_size: hidden, layer_convention: LAYER_CONVENTION },
  };
}

/** The vector to use at `layer`: row L of a per-layer file, or the file's single vector. */
export function vectorAtLayer(file: VectorFile, layer: number, numLayers?: number): Float32Array {
  if (!Number.isInteger(layer) || layer < 0 || (numLayers !== undefined && layer >= numLayers)) {
    throw new UserError(`layer ${layer} is out of range${numLayers !== undefined ? `: the model has layers 0-${numLayers - 1}` : ''}`);
  }
  if (file.vector) return file.vector;
  const row = file.vectors![layer];
  if (!row) throw new UserError(`${file.file} has no vector for layer ${layer} (it covers layers 0-${file.vectors!.length - 1})`);
  return row;
}

export interface VectorToWrite {
  vector?: ArrayLike<number>;
  vectors?: readonly ArrayLike<number>[];
  metadata: Omit<VectorMetadata, 'hidden_size' | 'layer_convention'> & Partial<Pick<VectorMetadata, 'hidden_size' | 'layer_convention'>>;
}

export function writeVectorFile(file: string, content: VectorToWrite): void {
  const tensors: Record<string, TensorToWrite> = {};
  let hidden: number;
  if (content.vector) {
    hidden = content.vector.length;
    tensors.vector = { dtype: 'F32', shape: [hidden], data: content.vector };
  } else if (content.vectors && content.vectors.length > 0) {
    hidden = content.vectors[0]!.length;
    const flat = new Float32Array(content.vectors.length * hidden);
    content.vectors.forEach((row, r) => {
      if (row.length !== hidden) throw new Error('all rows of a per-layer vector file must have the same size');
      flat.set(row, r * hidden);
    });
    tensors.vectors = { dtype: 'F32', shape: [content.vectors.length, hidden], data: flat };
  } else {
    throw new Error('a vector file needs a vector or per-layer vectors');
  }
  for (const values of content.vector ? [content.vector] : content.vectors!) {
    if (!allFinite(values)) throw new UserError(`refusing to write ${file}: the vectors contain NaN or Infinity`);
  }
  const metadata: Record<string, string> = {};
  const fields = { ...content.metadata, hidden_size: hidden, layer_convention: LAYER_CONVENTION };
  for (const [key, value] of Object.entries(fields)) metadata[key] = typeof value === 'string' ? value : JSON.stringify(value);
  writeSafetensors(file, tensors, metadata);
}

export function perLayerNorms(vectors: readonly ArrayLike<number>[]): number[] {
  return vectors.map((v) => norm(v));
}
