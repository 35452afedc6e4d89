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
import type { Tokenizer } from '../tokenizers/types.js';
import { readCorpus, slidingStarts, tokenizeStories } from './corpus.js';
import { objectiveWeights } from './objective.js';
import { percentileRank, quantileSorted, sortedCopy } from './quantiles.js';
import type { SelectionRun } from './selection.js';
import type { Layout, RunResult, VisualizeSettings } from './visualize.js';

/** Where a run's reference distribution came from and what it looks like. */
export interface CalibrationInfo {
  corpus: string;
  corpus_hash: string;
  /** Real windows in the distribution. */
  windows: number;
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

export interface CorpusSource {
  file: string;
  /** Cap on windows (the first ones in corpus order); default every window. */
  maxWindows?: number;
  batch?: number;
}

/** Sorted reference values per run: the statistic on every real window of the run's shape. */
export async function referenceDistributions(
  runner: ModelRunner,
  tokenizer: Tokenizer | null,
  runs: SelectionRun[],
  s: VisualizeSettings,
  lay: Layout,
  source: CorpusSource,
): Promise<{ info: Omit<CalibrationInfo, 'p50' | 'p90' | 'p99' | 'max'>; sorted: Float64Array[] }> {
  if (!tokenizer) throw new UserError(`--corpus: ${runner.model.path} has no tokenizer (give --tokenizer PATH)`);
  const corpus = readCorpus(source.file);
  // Stories without BOS: BOS, when asked for, is part of the run's fixed context.
  const stories = tokenizeStories(tokenizer, corpus.stories, { bos: false });
  const N = lay.free.length;
  let starts = slidingStarts(stories, N);
  if (source.maxWindows !== undefined) starts = starts.slice(0, source.maxWindows);
  if (starts.length === 0) throw new UserError(`--corpus: ${corpus.file} has no stretch of ${N} tokens within one story`);
  const F = hookWidth(runner.config, s.hook);
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
    const h = await runner.hidden(ids, s.blocks, s.hook);
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
    info: { corpus: corpus.file, corpus_hash: corpus.hash, windows: starts.length },
    sorted: values.map((v) => sortedCopy(v)),
  };
}

/** Attach `percentile` and `calibration` to a run from its sorted reference values. */
export function applyPercentiles(r: RunResult, sorted: Float64Array, info: Omit<CalibrationInfo, 'p50' | 'p90' | 'p99' | 'max'>): void {
  const p = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : percentileRank(sorted, x));
  r.calibration = {
    ...info,
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    max: sorted[sorted.length - 1]!,
  };
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
