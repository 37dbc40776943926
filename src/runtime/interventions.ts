import ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { instrumentNames } from '../instrument/index.js';
import { allFinite, dot, norm, normalize } from '../vectors/linalg.js';

/**
 * Where and when interventions apply, as plain serialisable data (the same spec drives capture and generation):
 * - `all`: every token of the row (never padding);
 * - `prompt`: the prompt tokens only (the prefill);
 * - `response`: the positions that produce response tokens — the last prompt token and every generated token —
 *   as the Persona Vectors code steers (`steering_type=response`).
 */
export type PositionMode = 'all' | 'prompt' | 'response';
export const positionModes: readonly PositionMode[] = ['all', 'prompt', 'response'];

/** Adds coefficient · vector to the residual after block `layer`. */
export interface SteerSpec {
  layer: number;
  vector: ArrayLike<number>;
  coefficient?: number;
  positions?: PositionMode;
}

/**
 * Keeps the projection of the residual after each of `layers` on the unit direction within [lower, upper]:
 * a floor (Assistant Axis capping) is `lower = τ`, a ceiling is `upper = τ`.
 */
export interface ClampSpec {
  layers: readonly number[];
  direction: ArrayLike<number>;
  lower?: number;
  upper?: number;
  positions?: PositionMode;
}

export interface InterventionSpec {
  steer?: readonly SteerSpec[];
  clamp?: readonly ClampSpec[];
}

/** Reads the projection of the residual after `layer` on the unit direction at every generated token. */
export interface MonitorSpec {
  name: string;
  layer: number;
  direction: ArrayLike<number>;
}

export function validateInterventions(spec: InterventionSpec | undefined, hiddenSize: number, numLayers: number): void {
  const checkLayer = (layer: number, what: string) => {
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
      throw new UserError(`${what} layer ${layer} is out of range: the model has layers 0-${numLayers - 1}`);
    }
  };
  const checkVector = (vector: ArrayLike<number>, what: string) => {
    if (vector.length !== hiddenSize) throw new UserError(`${what} has ${vector.length} values but the model's hidden size is ${hiddenSize}`);
    if (!allFinite(vector)) throw new UserError(`${what} contains NaN or Infinity`);
  };
  const checkMode = (mode: string | undefined, what: string) => {
    if (mode !== undefined && !(positionModes as readonly string[]).includes(mode)) throw new UserError(`${what} positions must be one of ${positionModes.join(', ')}, got ${mode}`);
  };
  for (const steer of spec?.steer ?? []) {
    checkLayer(steer.layer, 'steering');
    checkVector(steer.vector, `steering vector for layer ${steer.layer}`);
    if (steer.coefficient !== undefined && !Number.isFinite(steer.coefficient)) throw new UserError(`steering coefficient must be a finite number, got ${steer.coefficient}`);
    checkMode(steer.positions, 'steering');
  }
  for (const clamp of spec?.clamp ?? []) {
    if (clamp.layers.length === 0) throw new UserError('a clamp needs at least one layer');
    clamp.layers.forEach((layer) => checkLayer(layer, 'clamp'));
    checkVector(clamp.direction, 'clamp direction');
    if (norm(clamp.direction) === 0) throw new UserError('clamp direction is the zero vector');
    const lower = clamp.lower ?? -Infinity;
    const upper = clamp.upper ?? Infinity;
    if (Number.isNaN(lower) || Number.isNaN(upper)) throw new UserError('clamp bounds must be numbers');
    if (lower > upper) throw new UserError(`clamp lower bound ${lower} is above its upper bound ${upper}`);
    checkMode(clamp.positions, 'clamp');
  }
}

export function clampedLayers(specs: readonly (InterventionSpec | undefined)[]): number[] {
  return [...new Set(specs.flatMap((s) => (s?.clamp ?? []).flatMap((x) => [...x.layers])))].sort((a, b) => a - b);
}

/** Whether a token at `index` in a row whose prompt has `promptLength` tokens is covered by `mode`. */
export function positionSelected(mode: PositionMode, index: number, promptLength: number): boolean {
  if (index < 0) return false;
  if (mode === 'all') return true;
  if (mode === 'prompt') return index < promptLength;
  return index >= promptLength - 1;
}

interface LayerSteer {
  vectors: Float32Array;
  modes: (PositionMode | undefined)[];
}

interface LayerClamp {
  directions: Float32Array;
  count: number;
  lower: Float32Array;
  upper: Float32Array;
  modes: (PositionMode | undefined)[];
}

/**
 * The per-row specs of one batch compiled into graph feeds: per layer, a [B, H] matrix of summed steering vectors and
 * the K distinct unit clamp directions with [B, K] bounds (±∞ where a row does not use a direction). Gates are
 * computed per step from each row's position mode.
 */
export class CompiledInterventions {
  private readonly steer = new Map<number, LayerSteer>();
  private readonly clamp = new Map<number, LayerClamp>();
  /** Tensors that do not change between steps (vectors, directions, bounds), and gates by content. */
  private readonly constantTensors = new Map<string, ort.Tensor>();
  private readonly gateTensors = new Map<string, ort.Tensor>();

  constructor(specs: readonly (InterventionSpec | undefined)[], readonly hiddenSize: number, numLayers: number) {
    const batch = specs.length;
    specs.forEach((spec) => validateInterventions(spec, hiddenSize, numLayers));
    specs.forEach((spec, row) => {
      for (const steer of spec?.steer ?? []) {
        let entry = this.steer.get(steer.layer);
        if (!entry) {
          entry = { vectors: new Float32Array(batch * hiddenSize), modes: new Array(batch).fill(undefined) };
          this.steer.set(steer.layer, entry);
        }
        const mode = steer.positions ?? 'all';
        if (entry.modes[row] !== undefined && entry.modes[row] !== mode) {
          throw new UserError(`row ${row} steers layer ${steer.layer} twice with different positions (${entry.modes[row]} and ${mode})`);
        }
        entry.modes[row] = mode;
        const coefficient = steer.coefficient ?? 1;
        for (let i = 0; i < hiddenSize; i++) {
          const at = row * hiddenSize + i;
          entry.vectors[at] = entry.vectors[at]! + Math.fround(coefficient * steer.vector[i]!);
          if (!Number.isFinite(entry.vectors[at]!)) {
            throw new UserError(`steering at layer ${steer.layer} overflows float32 (coefficient ${coefficient} × the vector); use a smaller coefficient`);
          }
        }
      }
    });
    for (const layer of clampedLayers(specs)) {
      const keys = new Map<string, number>();
      const directions: Float32Array[] = [];
      const uses: { row: number; index: number; lower: number; upper: number; mode: PositionMode }[] = [];
      specs.forEach((spec, row) => {
        for (const clamp of spec?.clamp ?? []) {
          if (!clamp.layers.includes(layer)) continue;
          const unit = normalize(clamp.direction);
          const key = Array.from(unit).join(',');
          let index = keys.get(key);
          if (index === undefined) {
            index = directions.length;
            keys.set(key, index);
            directions.push(unit);
          }
          uses.push({ row, index, lower: clamp.lower ?? -Infinity, upper: clamp.upper ?? Infinity, mode: clamp.positions ?? 'all' });
        }
      });
      const count = directions.length;
      const entry: LayerClamp = {
        directions: new Float32Array(count * hiddenSize),
        count,
        lower: new Float32Array(batch * count).fill(-Infinity),
        upper: new Float32Array(batch * count).fill(Infinity),
        modes: new Array(batch).fill(undefined),
      };
      directions.forEach((unit, k) => entry.directions.set(unit, k * hiddenSize));
      for (const use of uses) {
        if (entry.modes[use.row] !== undefined && entry.modes[use.row] !== use.mode) {
          throw new UserError(`row ${use.row} clamps layer ${layer} with different positions (${entry.modes[use.row]} and ${use.mode})`);
        }
        entry.modes[use.row] = use.mode;
        const at = use.row * count + use.index;
        entry.lower[at] = Math.max(entry.lower[at]!, use.lower);
        entry.upper[at] = Math.min(entry.upper[at]!, use.upper);
        if (entry.lower[at]! > entry.upper[at]!) {
          throw new UserError(`row ${use.row} clamps layer ${layer} to an empty range: floor ${entry.lower[at]} above ceiling ${entry.upper[at]}`);
        }
      }
      // Corrections along several directions are computed from the same residual; they only hold every bound at
      // once when the directions a row uses are orthogonal.
      for (let row = 0; row < batch; row++) {
        const used = [...new Set(uses.filter((u) => u.row === row).map((u) => u.index))];
        for (let a = 0; a < used.length; a++) {
          for (let b = a + 1; b < used.length; b++) {
            const overlap = dot(directions[used[a]!]!, directions[used[b]!]!);
            if (Math.abs(overlap) > 1e-3) {
              throw new UserError(`row ${row} clamps layer ${layer} along directions that are not orthogonal (cosine ${overlap.toFixed(3)}); the corrections would interfere — clamp one of them, or orthogonalise them first`);
            }
          }
        }
      }
      this.clamp.set(layer, entry);
    }
  }

  get steerLayers(): number[] {
    return [...this.steer.keys()].sort((a, b) => a - b);
  }

  get clampLayers(): number[] {
    return [...this.clamp.keys()].sort((a, b) => a - b);
  }

  /**
   * Graph feeds for one step. `tokenIndex(row, position)` gives the index within its row of the token at a padded
   * position (−1 for padding); `promptLengths` says where each row's prompt ends.
   */
  feeds(sequenceLength: number, tokenIndex: (row: number, position: number) => number, promptLengths: readonly number[]): Record<string, ort.Tensor> {
    const batch = promptLengths.length;
    const gate = (modes: (PositionMode | undefined)[]) => {
      const values = new Float32Array(batch * sequenceLength);
      for (let row = 0; row < batch; row++) {
        const mode = modes[row];
        if (!mode) continue;
        for (let position = 0; position < sequenceLength; position++) {
          if (positionSelected(mode, tokenIndex(row, position), promptLengths[row]!)) values[row * sequenceLength + position] = 1;
        }
      }
      // Decode steps mostly repeat the same gate; reuse its tensor rather than making one per layer per step.
      const key = sequenceLength === 1 ? values.join('') : undefined;
      const cached = key === undefined ? undefined : this.gateTensors.get(key);
      if (cached) return cached;
      const tensor = new ort.Tensor('float32', values, [batch, sequenceLength, 1]);
      if (key !== undefined) this.gateTensors.set(key, tensor);
      return tensor;
    };
    const constant = (name: string, values: Float32Array, dims: number[]) => {
      let tensor = this.constantTensors.get(name);
      if (!tensor) {
        tensor = new ort.Tensor('float32', values, dims);
        this.constantTensors.set(name, tensor);
      }
      return tensor;
    };
    const feeds: Record<string, ort.Tensor> = {};
    for (const [layer, entry] of this.steer) {
      feeds[instrumentNames.steerVector(layer)] = constant(instrumentNames.steerVector(layer), entry.vectors, [batch, 1, this.hiddenSize]);
      feeds[instrumentNames.steerGate(layer)] = gate(entry.modes);
    }
    for (const [layer, entry] of this.clamp) {
      feeds[instrumentNames.clampDirections(layer)] = constant(instrumentNames.clampDirections(layer), entry.directions, [entry.count, this.hiddenSize]);
      feeds[instrumentNames.clampLower(layer)] = constant(instrumentNames.clampLower(layer), entry.lower, [batch, 1, entry.count]);
      feeds[instrumentNames.clampUpper(layer)] = constant(instrumentNames.clampUpper(layer), entry.upper, [batch, 1, entry.count]);
      feeds[instrumentNames.clampGate(layer)] = gate(entry.modes);
    }
    return feeds;
  }
}
