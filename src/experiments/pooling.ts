/**
 * How a sequence of residuals becomes one vector per layer (Persona Vectors §A.6):
 * - `response_avg`: mean over response tokens (the paper's vector);
 * - `prompt_avg`: mean over prompt tokens;
 * - `prompt_last`: the last prompt token (the position that produces the first response token).
 */
export type Pooling = 'response_avg' | 'prompt_avg' | 'prompt_last';
export const poolings: readonly Pooling[] = ['response_avg', 'prompt_avg', 'prompt_last'];

/** Token positions [start, end) a pooling averages over, for a sequence whose first `promptLength` tokens are the prompt. */
export function pooledRange(pooling: Pooling, promptLength: number, length: number): [number, number] {
  switch (pooling) {
    case 'response_avg':
      return [promptLength, length];
    case 'prompt_avg':
      return [0, promptLength];
    case 'prompt_last':
      return [promptLength - 1, promptLength];
  }
}

/** The pooled vector of one row's residuals ([length × hidden]) at one layer. */
export function poolResidual(residual: Float32Array, hidden: number, promptLength: number, pooling: Pooling): Float64Array {
  const [start, end] = pooledRange(pooling, promptLength, residual.length / hidden);
  const out = new Float64Array(hidden);
  for (let position = start; position < end; position++) {
    for (let i = 0; i < hidden; i++) out[i] = out[i]! + residual[position * hidden + i]!;
  }
  for (let i = 0; i < hidden; i++) out[i] = out[i]! / (end - start);
  return out;
}

/**
 * Running means of pooled residuals for every layer and pooling, accumulated in float64 as rows stream through, so
 * memory stays [layers × hidden] per pooling whatever the number of samples.
 */
export class PooledMeans {
  private readonly sums: Map<Pooling, Float64Array[]>;
  private rows = 0;

  constructor(readonly numLayers: number, readonly hidden: number) {
    this.sums = new Map(poolings.map((p) => [p, Array.from({ length: numLayers }, () => new Float64Array(hidden))]));
  }

  get count(): number {
    return this.rows;
  }

  /** Adds one row: its residual after every block ([length × hidden] each) and where its prompt ends. */
  add(residualsByLayer: readonly Float32Array[], promptLength: number): void {
    for (const pooling of poolings) {
      residualsByLayer.forEach((residual, layer) => {
        const pooled = poolResidual(residual, this.hidden, promptLength, pooling);
        const sum = this.sums.get(pooling)![layer]!;
        for (let i = 0; i < this.hidden; i++) sum[i] = sum[i]! + pooled[i]!;
      });
    }
    this.rows++;
  }

  mean(pooling: Pooling): Float64Array[] {
    return this.sums.get(pooling)!.map((sum) => sum.map((x) => x / this.rows));
  }
}

/** v_L = mean(pos) − mean(neg) per layer, unnormalised, as float32. */
export function meanDifference(positive: PooledMeans, negative: PooledMeans, pooling: Pooling): Float32Array[] {
  const pos = positive.mean(pooling);
  const neg = negative.mean(pooling);
  return pos.map((p, layer) => Float32Array.from(p, (x, i) => x - neg[layer]![i]!));
}
