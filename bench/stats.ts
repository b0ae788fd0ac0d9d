/**
 * Percentiles and latency summaries used by every section of the benchmark.
 * @module
 */

/** P50/P95/P99 (and mean) of a sample, in the sample's unit. */
export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
}

/**
 * The p-th percentile (0..100) of `values` with linear interpolation between closest ranks
 * (numpy's default): the sample need not be sorted; an empty sample gives 0.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  if (p < 0 || p > 100 || Number.isNaN(p)) throw new RangeError(`percentile ${p} outside 0..100`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Count, mean and P50/P95/P99 of a sample. */
export function summarize(values: readonly number[]): Percentiles {
  const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
  return {
    count: values.length,
    mean,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
  };
}

/** Multiplies every field but `count` by `factor` (e.g. seconds -> milliseconds). */
export function scalePercentiles(s: Percentiles, factor: number): Percentiles {
  return {
    count: s.count,
    mean: s.mean * factor,
    p50: s.p50 * factor,
    p95: s.p95 * factor,
    p99: s.p99 * factor,
  };
}
