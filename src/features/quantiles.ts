/**
 * Distribution summaries of activations: moments, quantiles, a histogram and percentile ranks.
 *
 * Quantiles are exact over the values given. A scan keeps every value up to EXACT_LIMIT values per feature; beyond
 * that it keeps a systematic sample (every k-th value in corpus order, k = ⌈n / EXACT_LIMIT⌉) and marks the summary
 * `exact: false`. That sketch is simple and unbiased for a corpus in random order; count, mean, std, max and the
 * share above 0 stay exact because they are accumulated over every value.
 */

/** Above this many values per feature a scan switches from all values to a systematic sample (see above). */
export const EXACT_LIMIT = 1 << 22;
export const QUANTILES = [0.5, 0.9, 0.99, 0.999] as const;
export const HISTOGRAM_BINS = 32;

/** Running count / mean / variance (Welford, float64), min, max and the count above 0. */
export class Moments {
  count = 0;
  private mean_ = 0;
  private m2 = 0;
  min = Infinity;
  max = -Infinity;
  positive = 0;

  add(x: number): void {
    this.count++;
    const d = x - this.mean_;
    this.mean_ += d / this.count;
    this.m2 += d * (x - this.mean_);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    if (x > 0) this.positive++;
  }

  get mean(): number {
    return this.count ? this.mean_ : NaN;
  }

  /** Population standard deviation. */
  get std(): number {
    return this.count ? Math.sqrt(this.m2 / this.count) : NaN;
  }
}

/**
 * The q-quantile of ascending `sorted` values by linear interpolation between closest ranks (numpy's default,
 * "linear"): position q·(n − 1).
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Percentile rank (0–100) of `value` among ascending `sorted` values, mid-rank: 100 · (#below + ½ · #equal) / n.
 * A value above every real value is 100, below every one 0; NaN when there are no values or the value is not finite.
 */
export function percentileRank(sorted: ArrayLike<number>, value: number): number {
  const n = sorted.length;
  if (n === 0 || !Number.isFinite(value)) return NaN;
  const below = lowerBound(sorted, value);
  let upper = below;
  while (upper < n && sorted[upper] === value) upper++;
  return (100 * (below + 0.5 * (upper - below))) / n;
}

/** First index whose value is ≥ x. */
export function lowerBound(sorted: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface Histogram {
  /** bins + 1 edges, from the smallest to the largest value. */
  edges: number[];
  counts: number[];
}

/** Equal-width bins over [min, max] of ascending values; the last bin includes max. */
export function histogram(sorted: ArrayLike<number>, bins = HISTOGRAM_BINS): Histogram {
  const n = sorted.length;
  if (n === 0) return { edges: [], counts: [] };
  const lo = sorted[0]!;
  const hi = sorted[n - 1]!;
  const width = (hi - lo) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + i * width));
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < n; i++) {
    const b = width > 0 ? Math.min(bins - 1, Math.floor((sorted[i]! - lo) / width)) : 0;
    counts[b]!++;
  }
  return { edges, counts };
}

export interface DistributionSummary {
  count: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  /** Share of values above 0 (what matters for `mlp` neurons after their activation function). */
  positive_share: number;
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  histogram: Histogram;
  /** False when quantiles and histogram come from a systematic sample (see the module comment). */
  exact: boolean;
  /** The sample's step k (1 when exact). */
  sample_every: number;
}

/** Summary from exact moments and the kept values (ascending). */
export function summarize(m: Moments, sorted: ArrayLike<number>, sampleEvery: number): DistributionSummary {
  return {
    count: m.count,
    mean: m.mean,
    std: m.std,
    min: m.count ? m.min : NaN,
    max: m.count ? m.max : NaN,
    positive_share: m.count ? m.positive / m.count : NaN,
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    p99_9: quantileSorted(sorted, 0.999),
    histogram: histogram(sorted),
    exact: sampleEvery === 1,
    sample_every: sampleEvery,
  };
}

/** Ascending copy as float64 (Float32 inputs are widened exactly). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values as ArrayLike<number>).sort();
}
