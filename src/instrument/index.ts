import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { UserError } from '../errors.js';
import { decodeModel, describeValueInfo, elemTypeName, encodeModel, externalLocation, makeExternal, type ModelProto } from '../onnx/proto.js';
import { layoutKey, type InstrumentationLayout } from './layout.js';
import { instrumentModel } from './rewrite.js';
import { findResidualStream, type ResidualStream } from './residualStream.js';

export { fullLayout, instrumentNames, isEmptyLayout, layoutKey, normalizeLayout, type InstrumentationLayout } from './layout.js';
export { instrumentModel } from './rewrite.js';
export { findResidualStream, type ExporterFamily, type ResidualStream, type ResidualUpdate } from './residualStream.js';

/** Bumped whenever the rewrite changes, so stale cached graphs are not reused. */
const INSTRUMENTATION_VERSION = 4;
/** Graphs with more inline weight bytes than this get them moved to one shared cache file, not copied per layout. */
const INLINE_WEIGHTS_LIMIT = 64 * 1024 * 1024;

export function defaultCacheDir(): string {
  return process.env.PERSONA_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'persona-steer');
}

export interface InstrumentedGraph {
  /** The instrumented graph file in the cache. */
  file: string;
  /** Folder that the graph's external-data locations are relative to (the original model's, or the cache). */
  externalDataDir: string;
  layout: InstrumentationLayout;
  stream: ResidualStream;
  /** True when this call built the graph rather than finding it cached. */
  built: boolean;
}

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function usesExternalData(model: ModelProto): boolean {
  return model.graph!.initializer.some((t) => externalLocation(t) !== undefined);
}

/**
 * The instrumented graph for a model file and layout, from the cache (keyed by a hash of the source graph and the
 * layout) or built now. The original external data is referenced where it lies, never copied.
 */
export function loadInstrumentedGraph(
  onnxFile: string,
  layout: InstrumentationLayout,
  options: { hiddenSize: number; numLayers?: number; cacheDir?: string },
): InstrumentedGraph {
  const source = fs.readFileSync(onnxFile);
  const sourceHash = sha256(source).slice(0, 24);
  const cacheDir = path.join(options.cacheDir ?? defaultCacheDir(), 'instrumented');
  const key = `${sourceHash}-${sha256(`${INSTRUMENTATION_VERSION}|${layoutKey(layout)}`).slice(0, 16)}`;
  const file = path.join(cacheDir, `${key}.onnx`);
  const sharedWeights = path.join(cacheDir, `${sourceHash}.onnx_data`);

  const model = decodeModel(source, onnxFile);
  const stream = findResidualStream(model, options.numLayers);
  const sourceDir = path.dirname(path.resolve(onnxFile));
  if (fs.existsSync(file) && fs.existsSync(`${file}.json`)) {
    const sidecar = JSON.parse(fs.readFileSync(`${file}.json`, 'utf8')) as { weights: 'source' | 'cache' };
    return { file, externalDataDir: sidecar.weights === 'cache' ? cacheDir : sourceDir, layout, stream, built: false };
  }
  let weights: 'source' | 'cache' = 'source';
  if (!usesExternalData(model)) {
    const inlineBytes = model.graph!.initializer.reduce((sum, t) => sum + t.rawData.byteLength, 0);
    if (inlineBytes > INLINE_WEIGHTS_LIMIT) {
      moveInlineWeights(model, sharedWeights);
      weights = 'cache';
    }
  }
  writeFileAtomic(file, encodeModel(instrumentModel(model, stream, layout, options.hiddenSize)));
  // The sidecar is written last: a graph without one is treated as unfinished and rebuilt.
  writeFileAtomic(`${file}.json`, JSON.stringify({ source: path.resolve(onnxFile), weights, layout }, null, 2));
  return { file, externalDataDir: weights === 'cache' ? cacheDir : sourceDir, layout, stream, built: true };
}

/** Moves large inline initializers into one shared data file (written once per source graph). */
function moveInlineWeights(model: ModelProto, dataFile: string): void {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const location = path.basename(dataFile);
  for (const tensor of model.graph!.initializer) {
    const length = tensor.rawData.byteLength;
    if (length < 1024) continue;
    const padding = (64 - (offset % 64)) % 64;
    if (padding) chunks.push(new Uint8Array(padding));
    offset += padding;
    chunks.push(tensor.rawData);
    makeExternal(tensor, location, offset, length);
    offset += length;
  }
  if (!fs.existsSync(dataFile)) writeFileAtomic(dataFile, chunks);
}

export interface WrittenInstrumentation {
  file: string;
  addedInputs: { name: string; type: string; dims: (number | string)[] }[];
  addedOutputs: string[];
}

/**
 * Writes the instrumented graph as a standalone file for use outside the toolkit. External data is referenced by
 * its original relative location, so the file must sit in the same folder as the original graph.
 */
export function writeInstrumentedModel(onnxFile: string, layout: InstrumentationLayout, options: { hiddenSize: number; numLayers: number; outFile: string }): WrittenInstrumentation {
  const source = fs.readFileSync(onnxFile);
  const model = decodeModel(source, onnxFile);
  const sourceDir = path.dirname(path.resolve(onnxFile));
  const outDir = path.dirname(path.resolve(options.outFile));
  if (usesExternalData(model) && outDir !== sourceDir) {
    throw new UserError(`the instrumented graph must be written next to the original's external data in ${sourceDir}, not ${outDir}`);
  }
  if (path.resolve(options.outFile) === path.resolve(onnxFile)) throw new UserError('refusing to overwrite the original graph; choose another --out');
  const before = { inputs: new Set(model.graph!.input.map((i) => i.name)), outputs: new Set(model.graph!.output.map((o) => o.name)) };
  const instrumented = instrumentModel(model, findResidualStream(model, options.numLayers), layout, options.hiddenSize);
  try {
    writeFileAtomic(options.outFile, encodeModel(instrumented));
  } catch (error) {
    throw new UserError(`cannot write ${options.outFile}: ${(error as Error).message}`);
  }
  return {
    file: options.outFile,
    addedInputs: instrumented.graph!.input
      .filter((i) => !before.inputs.has(i.name))
      .map((i) => {
        const { elemType, dims } = describeValueInfo(i);
        return { name: i.name, type: elemTypeName[elemType ?? 0] ?? 'unknown', dims: dims ?? [] };
      }),
    addedOutputs: instrumented.graph!.output.filter((o) => !before.outputs.has(o.name)).map((o) => o.name),
  };
}
