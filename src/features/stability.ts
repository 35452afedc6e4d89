/**
 * Seed stability (`--seeds K`): K independent starts of one selection, optimised together in the batch, summarised
 * in one result.
 *
 * Start k's random start comes from startSeed(seed, selection, k): start 0 uses the seed every run has always used,
 * deriveSeed(seed, selection), so a K-start result's start 0 is bit-identical to the single run; start k ≥ 1 uses
 * deriveSeed(seed, "selection|start|k"). The K starts are problems of the same batch graph and never interact.
 *
 * The record keeps the BEST start's decode: the successful start with the highest decoded activation (the tokens
 * themselves fed back, i.e. what the decode actually achieves; ties go to the lower start). `stability` says how far
 * the other starts agree with it.
 */
import { deriveSeed } from '../util/random.js';

export interface Stability {
  /** K, the starts asked for. */
  seeds: number;
  /**
   * Mean over pairs of successful starts of their top-1 agreement: the share of optimised positions where both
   * decode the same token. 1 = every start found the same tokens; chance is about 1 / (the vocabulary).
   */
  agreement: number;
  /** Decoded activation over the successful starts (std: population standard deviation). */
  decoded: { min: number; max: number; mean: number; std: number };
  /** Decoded percentile of real text over the successful starts; null without calibration. */
  percentile: { min: number; max: number } | null;
  /** Index (0..K−1) of the best start: its decode is the record's topk/ids. */
  best: number;
}

/** The seed of start `start` of a selection (see the module comment). */
export function startSeed(seed: number, label: string, start: number): number {
  return deriveSeed(seed, start === 0 ? label : `${label}|start|${start}`);
}

/**
 * Mean pairwise top-1 agreement of decodes (full id sequences) over `positions`: for each pair (i < j), the share of
 * positions where decodes[i][t] === decodes[j][t]; the mean over pairs. Needs two decodes and one position.
 */
export function pairwiseAgreement(decodes: readonly (readonly number[])[], positions: readonly number[]): number {
  if (decodes.length < 2) throw new Error('agreement needs at least two decodes');
  if (positions.length === 0) throw new Error('agreement needs at least one position');
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < decodes.length; i++) {
    for (let j = i + 1; j < decodes.length; j++) {
      let same = 0;
      for (const t of positions) if (decodes[i]![t] === decodes[j]![t]) same++;
      sum += same / positions.length;
      pairs++;
    }
  }
  return sum / pairs;
}

export interface StartOutcome {
  ok: boolean;
  /** The full id sequence (its free positions are the top-1 decode). */
  ids: readonly number[];
  decoded: number | null;
}

/** The best start: the successful one with the highest decoded activation (lowest index on ties; 0 if none succeeded). */
export function bestStart(starts: readonly StartOutcome[]): number {
  let best = -1;
  starts.forEach((s, k) => {
    if (!s.ok || s.decoded === null || !Number.isFinite(s.decoded)) return;
    if (best < 0 || s.decoded > starts[best]!.decoded!) best = k;
  });
  return Math.max(best, 0);
}

/**
 * The stability summary of K starts, agreement over `positions` (the optimised ones). Null when fewer than two
 * starts succeeded (nothing to compare). `rank` turns a decoded activation into its real-text percentile.
 */
export function stabilityOf(starts: readonly StartOutcome[], positions: readonly number[], rank?: (x: number) => number): Stability | null {
  const ok = starts.filter((s) => s.ok && s.decoded !== null && Number.isFinite(s.decoded));
  if (ok.length < 2 || positions.length === 0) return null;
  const values = ok.map((s) => s.decoded!);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  const pct = rank ? values.map(rank) : null;
  return {
    seeds: starts.length,
    agreement: pairwiseAgreement(ok.map((s) => s.ids), positions),
    decoded: { min: Math.min(...values), max: Math.max(...values), mean, std },
    percentile: pct ? { min: Math.min(...pct), max: Math.max(...pct) } : null,
    best: bestStart(starts),
  };
}
