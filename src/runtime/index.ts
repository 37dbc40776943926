export { BatchLayout } from './batch.js';
export { captureResiduals, type CaptureOptions, type CaptureResult, type CaptureRow } from './capture.js';
export { CUDA_INSTALL_HINT, devices, parseDevice, type Device } from './device.js';
export { generate, type FinishReason, type GenerationOptions, type GenerationResult, type GenerationRow, type MonitorReadout, type TokenEvent } from './generate.js';
export { readDecoderSignature, type DecoderSignature } from './graphSignature.js';
export {
  CompiledInterventions,
  positionModes,
  positionSelected,
  validateInterventions,
  type ClampSpec,
  type InterventionSpec,
  type MonitorSpec,
  type PositionMode,
  type SteerSpec,
} from './interventions.js';
export { SteerableModel, type LoadModelOptions } from './model.js';
export { dtypeSuffixes, locateModelDir, resolveModelFolder, type ModelFolder } from './modelFolder.js';
export { argmax, sampleToken, type SamplingOptions } from './sampling.js';
export { DecoderSession, type KvCache, type SessionOptions, type StepRequest, type StepResult } from './session.js';
export { ChatTokenizer, promptMessages, type ChatMessage } from './tokenizer.js';
export { inspectModel, type ModelInspection, type ResidualDescription, type TensorDescription } from './inspect.js';
