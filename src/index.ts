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
export { extractPersonaVectors, type ExtractOptions, type ExtractReport } from './experiments/extract.js';
export { poolings, type Pooling } from './experiments/pooling.js';
export { projectExamples, projectionDifference, type ProjectionType } from './experiments/project.js';
export { expandCells, runSweep, type SweepCell, type SweepResultRow, type SweepSummary } from './experiments/sweep.js';
export { meanTrajectory, readSweepResults, sweepFigures, writeSweepReport } from './experiments/sweepReport.js';
export { readSweepSpec, type SweepSpec } from './experiments/sweepSpec.js';
export { meanInterval, percentile } from './experiments/stats.js';
