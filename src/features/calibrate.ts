/**
 * Calibrated activations: a run's activation as a percentile of real text.
 *
 * A run reports one number per input: Σ report ⊙ O, the mean of the selected outputs over the selected positions
 * (for --direction: the mean dot product over the selected positions). Its reference distribution is the same
 * statistic on real inputs of the same shape: every stretch of as many consecutive tokens as the run has free
 * positions, from every story of a corpus (stride 1, never crossing a story), placed at the free positions with the
 * run's fixed context (BOS, prefix, suffix) around them. The percentile of a value v is the mid-rank
 * 100 · (#{x < v} + ½ · #{x = v}) / n over those n windows (quantiles.ts); above every real window it is 100.
 */
import type { ModelRunner } from '../engine/runner.js';
import { UserError } from '../errors.js';
import { hookWidth } from '../models/config.js';
import { featureMapOf } from './sae.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { readCorpus, slidingStarts, tokenizeStories } from './corpus.js';
import { objectiveWeights } from './objective.js';
import { lowerBound, percentileRank, quantileSorted, sortedCopy } from './quantiles.js';
import type { SelectionRun } from './selection.js';
import type { Layout, RunResult, VisualizeSettings } from './visualize.js';

/** Where a run's reference distribution came from and what it looks like. */
export interface CalibrationInfo {
  /** `corpus`: computed now from --corpus; `scan`: read from an atlas scan's stored grid (--scan-db). */
  source: 'corpus' | 'scan';
  corpus: string;
  corpus_hash: string;
  /** Real windows in the distribution. */
  windows: number;
  /** 1, or k when only every k-th window was kept to bound memory (MAX_REFERENCE_VALUES). */
  sample_every?: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Percentiles (0–100) of every activation a run reports; null where the activation is. */
export interface Percentiles {
  continuous: number | null;
  decoded: number | null;
  random: number | null;
  /** The skip-connection baseline's activation. */
  skip_baseline: number | null;
  refined: number | null;
  /** Aligned with exhaustive.repeated.best and exhaustive.context.best. */
  exhaustive_repeated: number[] | null;
  exhaustive_context: number[] | null;
}

/** At most this many reference values (float64) are held for one request, all runs together: 512 MiB. */
export const MAX_REFERENCE_VALUES = 1 << 26;

export interface CorpusSource {
  file: string;
  /** Cap on windows (the first ones in corpus order); default every window. */
  maxWindows?: number;
  batch?: number;
  /** Memory bound in values (default MAX_REFERENCE_VALUES; tests lower it). */
  maxValues?: number;
}

/** Sorted reference values per run: the statistic on every real window of the run's shape. */
export async function referenceDistributions(
  runner: ModelRunner,
  tokenizer: Tokenizer | null,
  runs: SelectionRun[],
  s: VisualizeSettings,
  lay: Layout,
  source: CorpusSource,
): Promise<{ info: BaseInfo; sorted: Float64Array[] }> {
  if (!tokenizer) throw new UserError(`--corpus: ${runner.model.path} has no tokenizer (give --tokenizer PATH)`);
  const corpus = readCorpus(source.file);
  // Stories without BOS: BOS, when asked for, is part of the run's fixed context.
  const stories = tokenizeStories(tokenizer, corpus.stories, { bos: false });
  const N = lay.free.length;
  let starts = slidingStarts(stories, N);
  if (source.maxWindows !== undefined) starts = starts.slice(0, source.maxWindows);
  if (starts.length === 0) throw new UserError(`--corpus: ${corpus.file} has no stretch of ${N} tokens within one story`);
  // A huge corpus with many runs would need runs × windows values: keep every k-th window instead (still stride-1
  // windows, evenly spread over the corpus) and say so in `sample_every`.
  const every = Math.max(1, Math.ceil((starts.length * Math.max(1, runs.length)) / (source.maxValues ?? MAX_REFERENCE_VALUES)));
  if (every > 1) starts = starts.filter((_, i) => i % every === 0);
  const map = featureMapOf(s);
  const F = map ? map.width : hookWidth(runner.config, s.hook);
  const T = lay.T;
  // Each run's statistic as a sparse dot product over its report weights.
  const sparse = runs.map((run) => {
    const w = objectiveWeights(s.objective, run, T, F).report;
    const idx: number[] = [];
    const val: number[] = [];
    w.forEach((x, i) => {
      if (x !== 0) {
        idx.push(i);
        val.push(x);
      }
    });
    return { idx, val };
  });
  const values = runs.map(() => new Float64Array(starts.length));
  const B = Math.min(source.batch ?? 256, starts.length);
  for (let i = 0; i < starts.length; i += B) {
    const chunk = starts.slice(i, i + B);
    const ids = Array.from({ length: B }, (_, b) => {
      const [story, start] = chunk[b] ?? chunk[0]!;
      const seq = new Array<number>(T);
      for (const [t, id] of lay.fixed) seq[t] = id;
      lay.free.forEach((t, j) => (seq[t] = stories[story]![start + j]!));
      return seq;
    });
    const h = await runner.hidden(ids, s.blocks, s.hook, map);
    chunk.forEach((_, b) => {
      const base = b * T * F;
      sparse.forEach(({ idx, val }, r) => {
        let acc = 0;
        for (let k = 0; k < idx.length; k++) acc += val[k]! * h.data[base + idx[k]!]!;
        values[r]![i + b] = acc;
      });
    });
  }
  return {
    info: { source: 'corpus', corpus: corpus.file, corpus_hash: corpus.hash, windows: starts.length, sample_every: every },
    sorted: values.map((v) => sortedCopy(v)),
  };
}

type BaseInfo = Omit<CalibrationInfo, 'p50' | 'p90' | 'p99' | 'max'>;

/** One run's reference distribution: its summary and the percentile rank of a value in it. */
export interface Reference {
  info: CalibrationInfo;
  rank: (value: number) => number;
}

/** Reference distributions for a request's runs (one per run, in order). */
export type ReferenceProvider = (runs: SelectionRun[], s: VisualizeSettings, lay: Layout) => Promise<Reference[]>;

/** A reference from every real value, exact (mid-rank). */
export function sortedReference(sorted: Float64Array, base: BaseInfo): Reference {
  return {
    info: { ...base, p50: quantileSorted(sorted, 0.5), p90: quantileSorted(sorted, 0.9), p99: quantileSorted(sorted, 0.99), max: sorted[sorted.length - 1]! },
    rank: (v) => percentileRank(sorted, v),
  };
}

/** The reference computed on the fly from a corpus (`visualize --corpus`). */
export function corpusReference(runner: ModelRunner, tokenizer: Tokenizer | null, source: CorpusSource): ReferenceProvider {
  return async (runs, s, lay) => {
    const ref = await referenceDistributions(runner, tokenizer, runs, s, lay, source);
    return ref.sorted.map((sorted) => sortedReference(sorted, ref.info));
  };
}

/**
 * What an atlas scan stores instead of every value: the GRID + 1 linear quantiles at 0, 1/GRID, …, 1 (so 0.01 %
 * steps; the last one is the maximum). A percentile read from the grid is exact at the grid points and linear in
 * between: within 0.01 percentile points (plus 100/n for the rank convention) of the exact mid-rank.
 */
export const GRID = 10_000;

export function quantileGrid(sorted: Float64Array): Float64Array {
  return Float64Array.from({ length: GRID + 1 }, (_, i) => quantileSorted(sorted, i / GRID));
}

/** Percentile (0–100) of a value from a quantile grid; a value equal to a run of grid points takes its middle. */
export function percentileFromGrid(grid: ArrayLike<number>, v: number): number {
  const n = grid.length - 1;
  if (!Number.isFinite(v) || n < 1) return NaN;
  if (v > grid[n]!) return 100;
  if (v < grid[0]!) return 0;
  const lo = lowerBound(grid, v);
  let hi = lo;
  while (hi <= n && grid[hi] === v) hi++;
  if (hi > lo) return (100 * ((lo + hi - 1) / 2)) / n;
  const a = grid[lo - 1]!;
  const b = grid[lo]!;
  return (100 * (lo - 1 + (v - a) / (b - a))) / n;
}

export function gridReference(grid: ArrayLike<number>, base: BaseInfo): Reference {
  const n = grid.length - 1;
  return {
    info: { ...base, p50: grid[Math.round(n * 0.5)]!, p90: grid[Math.round(n * 0.9)]!, p99: grid[Math.round(n * 0.99)]!, max: grid[n]! },
    rank: (v) => percentileFromGrid(grid, v),
  };
}

/** Attach `percentile` and `calibration` to a run from its reference distribution. */
export function applyPercentiles(r: RunResult, ref: Reference): void {
  const p = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : ref.rank(x));
  r.calibration = ref.info;
  r.percentile = {
    continuous: p(r.activation.continuous),
    decoded: p(r.activation.decoded),
    random: p(r.activation.random),
    skip_baseline: p(r.baseline?.activation),
    refined: p(r.refined?.activation),
    exhaustive_repeated: r.exhaustive ? r.exhaustive.repeated.best.map((b) => p(b.activation)!) : null,
    exhaustive_context: r.exhaustive?.context ? r.exhaustive.context.best.map((b) => p(b.activation)!) : null,
  };
}

/**
 * A percentile for reading: p99.9, p99.97 (two decimals from 99.9 up), p100 only above every real window. Digits are
 * truncated, never rounded up, so a value inside the real range never reads as p100.
 */
export function formatPercentile(x: number): string {
  if (x >= 100) return 'p100';
  const digits = x >= 99.9 ? 2 : 1;
  const f = 10 ** digits;
  return `p${(Math.floor(x * f) / f).toFixed(digits)}`;
}
