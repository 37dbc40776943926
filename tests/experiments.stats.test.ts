import { describe, expect, it } from 'vitest';
import { meanInterval, percentile } from '../src/experiments/stats.js';

describe('sweep statistics', () => {
  it('gives the mean with a Student-t 95% interval', () => {
    // mean 3, sample sd √2.5, standard error √0.5, t(0.975, 4) = 2.776.
    const interval = meanInterval([1, 2, 3, 4, 5])!;
    expect(interval.mean).toBe(3);
    expect(interval.n).toBe(5);
    expect(interval.high - interval.mean).toBeCloseTo(2.776 * Math.sqrt(0.5), 6);
    expect(interval.mean - interval.low).toBeCloseTo(2.776 * Math.sqrt(0.5), 6);
    // Two values: t(0.975, 1) = 12.706 over a standard error of 0.5.
    const pair = meanInterval([10, 11])!;
    expect(pair.high - pair.low).toBeCloseTo(2 * 12.706 * 0.5, 6);
    // Beyond 31 values the normal quantile takes over.
    const many = Array.from({ length: 100 }, (_, i) => i % 2);
    const sd = Math.sqrt(many.reduce((s, v) => s + (v - 0.5) ** 2, 0) / 99);
    expect(meanInterval(many)!.high - 0.5).toBeCloseTo((1.96 * sd) / 10, 9);
  });

  it('has no interval for one value and nothing for none', () => {
    expect(meanInterval([7])).toEqual({ mean: 7, low: 7, high: 7, n: 1 });
    expect(meanInterval([])).toBeUndefined();
  });

  it('interpolates percentiles between order statistics, whatever the input order', () => {
    expect(percentile([5, 1, 4, 2, 3], 25)).toBe(2);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 0)).toBe(1);
    expect(percentile([1, 2, 3, 4], 100)).toBe(4);
    expect(percentile([0, 10], 90)).toBeCloseTo(9, 12);
    expect(percentile([3], 37)).toBe(3);
    expect(() => percentile([], 50)).toThrow(/no values/);
  });
});
