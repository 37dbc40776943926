export { END_OF_TURN, OPPOSITE_TRIGGERS, slots, TRAIT_TRIGGERS, wordsWithRole, type Slot, type WordRole } from './grammar.js';
export { buildPlantedModel, ensurePlantedModel, planted, PLANTED_VERSION, qwen3TokenizerDir, type PlantedModel } from './plantedModel.js';
export { DEMO_COEFFICIENTS, DEMO_LAYER, NEUTRAL_SYSTEM, runDemo, TRAIT_SYSTEM, type ConditionResult, type DemoOptions, type DemoReport, type ExtractionResult } from './runDemo.js';
