import * as path from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { encodeModel, makeExternal, type ModelProto } from './proto.js';

/** Initializers smaller than this stay inside the graph file even when weights go to external data. */
const INLINE_LIMIT_BYTES = 1024;

/**
 * Writes a model, moving weights into `<file>_data` (the onnx-community naming, e.g. `model.onnx_data`) when asked
 * or when they would make the graph file large. Both files are written atomically.
 */
export function writeModelFile(file: string, model: ModelProto, options: { externalData: boolean | 'auto'; autoThresholdBytes?: number }): { externalDataFile?: string } {
  const initializers = model.graph!.initializer;
  const totalBytes = initializers.reduce((sum, t) => sum + t.rawData.byteLength, 0);
  const external = options.externalData === 'auto' ? totalBytes > (options.autoThresholdBytes ?? 256 * 1024 * 1024) : options.externalData;
  if (!external) {
    writeFileAtomic(file, encodeModel(model));
    return {};
  }
  const dataName = `${path.basename(file)}_data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of initializers) {
    const length = tensor.rawData.byteLength;
    if (length < INLINE_LIMIT_BYTES) continue;
    const padding = (64 - (offset % 64)) % 64;
    if (padding) {
      chunks.push(new Uint8Array(padding));
      offset += padding;
    }
    chunks.push(tensor.rawData);
    makeExternal(tensor, dataName, offset, length);
    offset += length;
  }
  const dataFile = path.join(path.dirname(file), dataName);
  writeFileAtomic(dataFile, chunks);
  writeFileAtomic(file, encodeModel(model));
  return { externalDataFile: dataFile };
}
