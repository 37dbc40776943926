export { bfloat16BitsToFloat32, float16BitsToFloat32, float16ToFloat32Array, float32ArrayToFloat16, float32ToFloat16Bits, roundToFloat16 } from './float16.js';
export { allFinite, cosine, dot, mean, norm, normalize, projection, scale, subtract } from './linalg.js';
export { hashString, Rng } from './random.js';
export { encodeSafetensors, entryToFloat32, parseSafetensors, readSafetensors, writeSafetensors, type SafetensorsEntry, type SafetensorsFile, type TensorToWrite } from './safetensors.js';
export { LAYER_CONVENTION, perLayerNorms, readVectorFile, vectorAtLayer, writeVectorFile, type ModelShape, type VectorFile, type VectorMetadata, type VectorToWrite } from './vectorFile.js';
