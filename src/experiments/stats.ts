/** Two-sided 97.5% quantiles of Student's t for 1-30 degrees of freedom; the normal 1.96 beyond. */
const T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

export interface MeanInterval {
  mean: number;
  low: number;
  high: number;
  n: number;
}

/** Mean with its 95% confidence interval (Student's t); undefined for no values, a zero-width interval for one. */
export function meanInterval(values: readonly number[]): MeanInterval | undefined {
  const n = values.length;
  if (n === 0) return undefined;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, low: mean, high: mean, n };
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1);
  const halfWidth = (T_975[n - 2] ?? 1.96) * Math.sqrt(variance / n);
  return { mean, low: mean - halfWidth, high: mean + halfWidth, n };
}

/** The p-th percentile (0-100) by linear interpolation between order statistics. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (rank - below) * (sorted[above]! - sorted[below]!);
}
