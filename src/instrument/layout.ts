import { UserError } from '../errors.js';

/**
 * Which layers an instrumented graph exposes: capture outputs, steering inputs, clamp inputs. A layout is part of
 * the cache key, so a run only pays for the interventions it uses; the instrumented graph for a layout is built once.
 */
export interface InstrumentationLayout {
  capture: readonly number[];
  steer: readonly number[];
  clamp: readonly number[];
  /**
   * Keep only what the captured residuals depend on: no output head, no KV-cache outputs, no layers past the last
   * captured one. For teacher-forced capture, where the logits over every position would cost more than the rest.
   */
  captureOnly?: boolean;
}

/** Graph input and output names the instrumentation adds. */
export const instrumentNames = {
  residual: (layer: number) => `residual.${layer}`,
  steerVector: (layer: number) => `steer.${layer}.vector`,
  steerGate: (layer: number) => `steer.${layer}.gate`,
  clampDirections: (layer: number) => `clamp.${layer}.directions`,
  clampLower: (layer: number) => `clamp.${layer}.lower`,
  clampUpper: (layer: number) => `clamp.${layer}.upper`,
  clampGate: (layer: number) => `clamp.${layer}.gate`,
  logitPositions: 'logits.positions',
  selectedLogits: 'logits.selected',
} as const;

function sortedUnique(layers: readonly number[]): number[] {
  return [...new Set(layers)].sort((a, b) => a - b);
}

export function normalizeLayout(layout: Partial<InstrumentationLayout>, numLayers: number): InstrumentationLayout {
  const result: InstrumentationLayout = {
    capture: sortedUnique(layout.capture ?? []),
    steer: sortedUnique(layout.steer ?? []),
    clamp: sortedUnique(layout.clamp ?? []),
    ...(layout.captureOnly ? { captureOnly: true } : {}),
  };
  if (result.captureOnly && result.capture.length === 0) throw new Error('a capture-only layout needs captured layers');
  for (const layer of [...result.capture, ...result.steer, ...result.clamp]) {
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
      throw new UserError(`layer ${layer} is out of range: the model has layers 0-${numLayers - 1}`);
    }
  }
  return result;
}

export function fullLayout(numLayers: number): InstrumentationLayout {
  const all = Array.from({ length: numLayers }, (_, i) => i);
  return { capture: all, steer: all, clamp: all };
}

export function layoutKey(layout: InstrumentationLayout): string {
  const part = (label: string, layers: readonly number[]) => `${label}[${layers.join(',')}]`;
  return [part('capture', layout.capture), part('steer', layout.steer), part('clamp', layout.clamp), ...(layout.captureOnly ? ['capture-only'] : [])].join(';');
}

export function isEmptyLayout(layout: InstrumentationLayout): boolean {
  return layout.capture.length === 0 && layout.steer.length === 0 && layout.clamp.length === 0;
}
