import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { UserError } from '../errors.js';
import { parseJudgeSpec } from '../judges/index.js';
import { devices, positionModes, resolveModelFolder, type PositionMode } from '../runtime/index.js';
import { norm } from '../vectors/linalg.js';
import { readVectorFile, vectorAtLayer, type VectorFile } from '../vectors/vectorFile.js';
import { loadTrait, type TraitDefinition } from './traits.js';

/**
 * An experiment spec: which model, which questions, how to generate and judge, and a grid of interventions
 * (vectors × layers × coefficients × positions × clamps). Everything is checked here, before any model is loaded:
 * unknown keys by name, types and ranges, files, vector shapes against the model's config.
 */

export interface SweepVector {
  name: string;
  file: string;
  /** `raw` multiplies the stored vector (Persona Vectors); `unit` scales it to length 1 first. */
  units: 'raw' | 'unit';
  loaded: VectorFile;
}

/** A clamp bound: a number, or a percentile (0-100) of the calibration set's projections. */
export type SweepBound = { value: number } | { percentile: number };

export interface SweepClamp {
  name: string;
  vector: string;
  layers: number[];
  mode: 'floor' | 'ceiling';
  bound: SweepBound;
}

export interface SweepSpec {
  name: string;
  file: string;
  outDir: string;
  model: string;
  dtype?: string;
  device: string;
  questions: string[];
  system?: string;
  samples: number;
  generation: { maxTokens: number; temperature: number; topP: number; topK: number };
  seed: number;
  judge: string;
  trait: TraitDefinition;
  batchSize: number;
  grid: {
    vectors: SweepVector[];
    layers: number[];
    coefficients: number[];
    positions: PositionMode[];
    /** `null` stands for "no clamp". */
    clamps: (SweepClamp | null)[];
  };
  calibration: { samples: number };
  select: { coefficient: number; coherenceFloor: number };
  numLayers: number;
  hiddenSize: number;
}

type Json = Record<string, unknown>;

class SpecReader {
  constructor(readonly file: string) {}

  fail(where: string, message: string): never {
    throw new UserError(`${this.file}: ${where}: ${message}`);
  }

  object(value: unknown, where: string, allowed: readonly string[], required: readonly string[] = []): Json {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(where, 'must be a mapping');
    const record = value as Json;
    for (const key of Object.keys(record)) {
      if (!allowed.includes(key)) this.fail(where, `unknown key "${key}" (allowed: ${allowed.join(', ')})`);
    }
    for (const key of required) if (record[key] === undefined) this.fail(where, `"${key}" is required`);
    return record;
  }

  number(value: unknown, where: string, check?: (n: number) => boolean, expectation = 'a number'): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || (check && !check(value))) this.fail(where, `must be ${expectation}, got ${JSON.stringify(value)}`);
    return value as number;
  }

  integer(value: unknown, where: string, minimum: number): number {
    return this.number(value, where, (n) => Number.isInteger(n) && n >= minimum, `an integer ≥ ${minimum}`);
  }

  boolean(value: unknown, where: string): boolean {
    if (typeof value !== 'boolean') this.fail(where, `must be true or false, got ${JSON.stringify(value)}`);
    return value as boolean;
  }

  string(value: unknown, where: string): string {
    if (typeof value !== 'string' || value.trim() === '') this.fail(where, `must be a non-empty string, got ${JSON.stringify(value)}`);
    return value as string;
  }

  list(value: unknown, where: string): unknown[] {
    if (!Array.isArray(value) || value.length === 0) this.fail(where, `must be a non-empty list, got ${JSON.stringify(value)}`);
    return value as unknown[];
  }

  /** Cells are identified by their grid values, so a value listed twice would run (and count) one cell twice. */
  distinct<T>(values: T[], where: string, label: (value: T) => string = (value) => JSON.stringify(value)): T[] {
    const seen = new Set<string>();
    values.forEach((value, i) => {
      if (seen.has(label(value))) this.fail(`${where}[${i}]`, `${label(value)} is listed twice`);
      seen.add(label(value));
    });
    return values;
  }

  /** `L`, `A-B`, or a list of layers. */
  layers(value: unknown, where: string, numLayers: number): number[] {
    let layers: unknown[];
    if (typeof value === 'string' && /^\d+-\d+$/.test(value)) {
      const [a, b] = value.split('-').map(Number) as [number, number];
      if (a > b) this.fail(where, `layer range ${value} is backwards`);
      layers = Array.from({ length: b - a + 1 }, (_, i) => a + i);
    } else layers = Array.isArray(value) ? value : [value];
    if (layers.length === 0) this.fail(where, 'needs at least one layer');
    return layers.map((layer, i) => {
      if (typeof layer !== 'number' || !Number.isInteger(layer)) this.fail(`${where}[${i}]`, `layer must be an integer, got ${JSON.stringify(layer)}`);
      if ((layer as number) < 0 || (layer as number) >= numLayers) this.fail(where, `layer ${layer} is out of range: the model has layers 0-${numLayers - 1}`);
      return layer as number;
    });
  }
}

function readQuestions(reader: SpecReader, value: unknown, where: string): { questions: string[]; trait?: string } {
  const record = reader.object(value, where, ['trait', 'file', 'count']);
  if ((record.trait === undefined) === (record.file === undefined)) reader.fail(where, 'give either "trait" (its evaluation questions) or "file" (JSONL of {"prompt"} rows)');
  let questions: string[];
  let trait: string | undefined;
  if (record.trait !== undefined) {
    trait = reader.string(record.trait, `${where}.trait`);
    questions = loadTrait(trait).evalQuestions;
  } else {
    const file = reader.string(record.file, `${where}.file`);
    if (!fs.existsSync(file)) reader.fail(`${where}.file`, `not found: ${file}`);
    questions = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.trim())
      .map((line, i) => {
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          reader.fail(`${where}.file`, `${file} line ${i + 1} is not valid JSON`);
        }
        const prompt = (row as { prompt?: unknown }).prompt;
        if (typeof prompt !== 'string' || !prompt.trim()) reader.fail(`${where}.file`, `${file} line ${i + 1} needs a "prompt" string`);
        return prompt as string;
      });
    if (questions.length === 0) reader.fail(`${where}.file`, `${file} has no prompts`);
  }
  if (record.count !== undefined) questions = questions.slice(0, reader.integer(record.count, `${where}.count`, 1));
  return { questions, ...(trait ? { trait } : {}) };
}

function readBound(reader: SpecReader, value: unknown, where: string): SweepBound {
  if (typeof value === 'number') return { value: reader.number(value, where) };
  if (typeof value === 'string' && /^p\d{1,2}(\.\d+)?$|^p100$/.test(value)) return { percentile: Number(value.slice(1)) };
  return reader.fail(where, `must be a number or a percentile like p25, got ${JSON.stringify(value)}`);
}

/** Reads and checks an experiment spec; reads the model's config and the vector files, loads no model. */
export function readSweepSpec(file: string, options: { experimentsDir?: string; modelsDir?: string } = {}): SweepSpec {
  if (!fs.existsSync(file)) throw new UserError(`experiment spec not found: ${file}`);
  let document: unknown;
  try {
    document = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UserError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const reader: SpecReader = new SpecReader(file);
  const top = reader.object(
    document,
    'spec',
    ['model', 'dtype', 'device', 'questions', 'system', 'samples', 'generation', 'seed', 'judge', 'trait', 'batch_size', 'grid', 'calibration', 'select'],
    ['model', 'questions', 'judge', 'grid'],
  );
  const model = reader.string(top.model, 'model');
  const dtype = top.dtype === undefined ? undefined : reader.string(top.dtype, 'dtype');
  let folder;
  try {
    folder = resolveModelFolder(model, { dtype, modelsDir: options.modelsDir });
  } catch (error) {
    reader.fail('model', (error as Error).message);
  }
  const { numLayers, hiddenSize } = folder;
  const questions = readQuestions(reader, top.questions, 'questions');
  const traitName = top.trait === undefined ? questions.trait : reader.string(top.trait, 'trait');
  if (!traitName) reader.fail('trait', 'is required when questions come from a file (the judge needs the trait\'s evaluation prompt)');
  let trait: TraitDefinition;
  try {
    trait = loadTrait(traitName);
  } catch (error) {
    reader.fail('trait', (error as Error).message);
  }
  const judge = reader.string(top.judge, 'judge');
  try {
    parseJudgeSpec(judge);
  } catch (error) {
    reader.fail('judge', (error as Error).message);
  }
  const generation = reader.object(top.generation ?? {}, 'generation', ['max_tokens', 'temperature', 'top_p', 'top_k']);

  const grid = reader.object(top.grid, 'grid', ['vectors', 'layers', 'coefficients', 'positions', 'clamps'], ['vectors', 'layers', 'coefficients']);
  const vectorsRecord = reader.object(grid.vectors, 'grid.vectors', Object.keys((grid.vectors ?? {}) as Json));
  if (Object.keys(vectorsRecord).length === 0) reader.fail('grid.vectors', 'needs at least one vector');
  const vectors: SweepVector[] = Object.entries(vectorsRecord).map(([name, value]) => {
    const where = `grid.vectors.${name}`;
    const entry = typeof value === 'string' ? { file: value } : reader.object(value, where, ['file', 'units', 'allow_other_model'], ['file']);
    const vectorFile = reader.string(entry.file, `${where}.file`);
    if (!fs.existsSync(vectorFile)) reader.fail(`${where}.file`, `vector file not found: ${vectorFile}`);
    const units = entry.units === undefined ? 'raw' : entry.units;
    if (units !== 'raw' && units !== 'unit') reader.fail(`${where}.units`, `must be raw or unit, got ${JSON.stringify(units)}`);
    const allowOtherModel = entry.allow_other_model === undefined ? false : reader.boolean(entry.allow_other_model, `${where}.allow_other_model`);
    let loaded: VectorFile;
    try {
      loaded = readVectorFile(vectorFile, { hiddenSize, numLayers, modelId: folder.modelId, allowOtherModel });
    } catch (error) {
      reader.fail(`${where}.file`, (error as Error).message);
    }
    return { name, file: vectorFile, units: units as 'raw' | 'unit', loaded };
  });
  const layers = reader.distinct(reader.layers(grid.layers, 'grid.layers', numLayers), 'grid.layers');
  const coefficients = reader.distinct(
    reader.list(grid.coefficients, 'grid.coefficients').map((c, i) => reader.number(c, `grid.coefficients[${i}]`)),
    'grid.coefficients',
  );
  const positions = reader.distinct(
    (grid.positions === undefined ? ['all'] : reader.list(grid.positions, 'grid.positions')).map((p, i) => {
      if (typeof p !== 'string' || !(positionModes as readonly string[]).includes(p)) reader.fail(`grid.positions[${i}]`, `must be one of ${positionModes.join(', ')}, got ${JSON.stringify(p)}`);
      return p as PositionMode;
    }),
    'grid.positions',
  );
  for (const vector of vectors) {
    for (const layer of layers) {
      if (vector.units === 'unit' && norm(vectorAtLayer(vector.loaded, layer, numLayers)) === 0) {
        reader.fail(`grid.vectors.${vector.name}`, `the vector at layer ${layer} is zero and cannot be scaled to unit length`);
      }
    }
  }
  const clamps = (grid.clamps === undefined ? ['none'] : reader.list(grid.clamps, 'grid.clamps')).map((entry, i): SweepClamp | null => {
    const where = `grid.clamps[${i}]`;
    if (entry === 'none') return null;
    const record = reader.object(entry, where, ['name', 'vector', 'layers', 'mode', 'bound'], ['vector', 'layers', 'mode', 'bound']);
    const vector = reader.string(record.vector, `${where}.vector`);
    if (!vectors.some((v) => v.name === vector)) reader.fail(`${where}.vector`, `"${vector}" is not one of grid.vectors (${vectors.map((v) => v.name).join(', ')})`);
    if (record.mode !== 'floor' && record.mode !== 'ceiling') reader.fail(`${where}.mode`, `must be floor or ceiling, got ${JSON.stringify(record.mode)}`);
    const bound = readBound(reader, record.bound, `${where}.bound`);
    const clampLayers = reader.layers(record.layers, `${where}.layers`, numLayers);
    const name = record.name === undefined ? `${record.mode}-${vector}-${typeof record.bound === 'string' ? record.bound : String(record.bound)}` : reader.string(record.name, `${where}.name`);
    return { name, vector, layers: clampLayers, mode: record.mode as 'floor' | 'ceiling', bound };
  });
  reader.distinct(clamps, 'grid.clamps', (clamp) => (clamp ? `clamp name "${clamp.name}"` : '"none"'));
  const calibration = reader.object(top.calibration ?? {}, 'calibration', ['samples']);
  const select = reader.object(top.select ?? {}, 'select', ['coefficient', 'coherence_floor']);
  const selectCoefficient = select.coefficient === undefined ? coefficients[coefficients.length - 1]! : reader.number(select.coefficient, 'select.coefficient');
  if (!coefficients.includes(selectCoefficient)) reader.fail('select.coefficient', `${selectCoefficient} is not one of grid.coefficients`);
  const name = path.basename(file).replace(/\.ya?ml$/, '');
  return {
    name,
    file,
    outDir: path.join(options.experimentsDir ?? path.dirname(file), name),
    model,
    ...(dtype ? { dtype } : {}),
    device: top.device === undefined ? 'cpu' : (devices as readonly string[]).includes(String(top.device)) ? String(top.device) : reader.fail('device', `must be one of ${devices.join(', ')}, got ${JSON.stringify(top.device)}`),
    questions: questions.questions,
    ...(top.system !== undefined ? { system: reader.string(top.system, 'system') } : {}),
    samples: top.samples === undefined ? 1 : reader.integer(top.samples, 'samples', 1),
    generation: {
      maxTokens: generation.max_tokens === undefined ? 64 : reader.integer(generation.max_tokens, 'generation.max_tokens', 1),
      temperature: generation.temperature === undefined ? 1 : reader.number(generation.temperature, 'generation.temperature', (t) => t >= 0, 'a number ≥ 0'),
      topP: generation.top_p === undefined ? 1 : reader.number(generation.top_p, 'generation.top_p', (p) => p > 0 && p <= 1, 'in (0, 1]'),
      topK: generation.top_k === undefined ? 0 : reader.integer(generation.top_k, 'generation.top_k', 0),
    },
    seed: top.seed === undefined ? 0 : reader.integer(top.seed, 'seed', 0),
    judge,
    trait,
    batchSize: top.batch_size === undefined ? 16 : reader.integer(top.batch_size, 'batch_size', 1),
    grid: { vectors, layers, coefficients, positions, clamps },
    calibration: { samples: calibration.samples === undefined ? 1 : reader.integer(calibration.samples, 'calibration.samples', 1) },
    select: {
      coefficient: selectCoefficient,
      coherenceFloor: select.coherence_floor === undefined ? 50 : reader.number(select.coherence_floor, 'select.coherence_floor', (c) => c >= 0 && c <= 100, 'between 0 and 100'),
    },
    numLayers,
    hiddenSize,
  };
}
