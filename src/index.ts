/**
 * persona-steer's library API: everything the CLI does, for scripts and notebooks.
 */
export * from './runtime/index.js';
export * from './vectors/index.js';
export { buildModel, decoderFamilies, exportStyles, graphDtypes, loadWeights, parseDecoderConfig, randomWeights, referenceForward, saveWeights, type BuildOptions, type BuiltModel, type DecoderConfig, type ExportStyle, type GraphDtype } from './builder/index.js';
export { findResidualStream, fullLayout, instrumentNames, loadInstrumentedGraph, writeInstrumentedModel, type InstrumentationLayout, type ResidualStream } from './instrument/index.js';
export { pullModel, type PullOptions, type PullProgress, type PullSummary } from './hub/index.js';
export * from './judges/index.js';
export * from './plots/index.js';
export * from './demo/index.js';
export { loadTrait, listTraits, systemPromptFor, generateTraitFiles, type TraitDefinition } from './experiments/traits.js';
export { UserError } from './errors.js';
