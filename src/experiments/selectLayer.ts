import type { JudgeFactory } from '../judges/index.js';
import type { PositionMode, SteerableModel } from '../runtime/index.js';
import { readVectorFile } from '../vectors/vectorFile.js';
import { runSweep, type SweepSummary } from './sweep.js';
import type { SweepSpec } from './sweepSpec.js';
import type { TraitDefinition } from './traits.js';

export interface SelectLayerOptions {
  model: SteerableModel;
  trait: TraitDefinition;
  judge: JudgeFactory;
  vectorFile: string;
  /** The fixed coefficient every layer is steered with (raw vector units, as the paper does). */
  coefficient: number;
  outDir: string;
  positions?: PositionMode;
  questions?: number;
  samples?: number;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  coherenceFloor?: number;
  batchSize?: number;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Persona Vectors' layer choice (§A.8): steer at each layer in turn with the same coefficient on the evaluation
 * questions and keep the layer with the highest trait score, here among layers whose coherence stays above a floor.
 * It is a one-coefficient sweep over every layer, run by the sweep machinery.
 */
export async function selectLayer(options: SelectLayerOptions): Promise<SweepSummary> {
  const { model } = options;
  const spec: SweepSpec = {
    name: 'select-layer',
    file: '(persona extract --select-layer)',
    outDir: options.outDir,
    model: model.folder.dir,
    device: 'cpu',
    questions: options.trait.evalQuestions.slice(0, options.questions ?? options.trait.evalQuestions.length),
    samples: options.samples ?? 1,
    generation: { maxTokens: options.maxTokens ?? 200, temperature: options.temperature ?? 1, topP: 1, topK: 0 },
    seed: options.seed ?? 0,
    judge: options.judge.spec,
    trait: options.trait,
    batchSize: options.batchSize ?? 16,
    grid: {
      vectors: [{ name: options.trait.name, file: options.vectorFile, units: 'raw', loaded: readVectorFile(options.vectorFile, { hiddenSize: model.hiddenSize, numLayers: model.numLayers, modelId: model.folder.modelId }) }],
      layers: Array.from({ length: model.numLayers }, (_, i) => i),
      coefficients: [options.coefficient],
      positions: [options.positions ?? 'response'],
      clamps: [null],
    },
    calibration: { samples: 1 },
    select: { coefficient: options.coefficient, coherenceFloor: options.coherenceFloor ?? 50 },
    numLayers: model.numLayers,
    hiddenSize: model.hiddenSize,
  };
  // The folder belongs to this extraction run: a new vector or other settings start it over.
  return runSweep(spec, { model, judge: options.judge, onSettingsChange: 'restart', ...(options.log ? { log: options.log } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
}
