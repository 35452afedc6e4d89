/** Search state and primitives shared by GCG and EPO: options, statistics, swap lists, candidate proposals. */
import { topIndices, type Decoder } from '../decode.js';
import type { Scorer } from './scorers.js';

export interface SearchOptions {
  /** Positions that may change. */
  free: number[];
  steps: number;
  candidates: number;
  swapTopk: number;
  seed: number;
  /** Allowed-token mask (null: all). */
  allowed: Uint8Array | null;
  /** Extra acceptance test for a candidate (the retokenisation check); the start is exempt. */
  accept?: (ids: number[]) => boolean;
  /** GCG: stop as soon as the score reaches this (a known optimum, e.g. 0 for a distance). */
  stopAt?: number;
}

export interface SearchStats {
  steps: number;
  evaluations: number;
  improvements: number;
  /** Candidates drawn but refused by `accept`. */
  rejected: number;
  /** GCG: true when every single-token swap was tried and none was better, and pairs of swaps found nothing either. EPO: no candidate could be proposed. */
  converged: boolean;
}


export const key = (ids: number[]) => ids.join(',');

/** Per free position, the top-k allowed tokens by g_t · E[v], excluding the current token. */
export function swapLists(decoder: Decoder, grad: Float32Array, cur: number[], free: number[], k: number, allowed: Uint8Array | null): number[][] {
  const { data, vocab: V, dim: D } = decoder.table;
  return free.map((t) => {
    const scores = new Float64Array(V);
    const g = grad.subarray(t * D, (t + 1) * D);
    for (let v = 0; v < V; v++) {
      if ((allowed && !allowed[v]) || v === cur[t]) {
        scores[v] = NaN;
        continue;
      }
      let s = 0;
      const base = v * D;
      for (let i = 0; i < D; i++) s += g[i]! * data[base + i]!;
      scores[v] = s;
    }
    return topIndices(scores, k);
  });
}

/** Mark a drawn candidate as seen and apply the acceptance test (the retokenisation check), counting refusals. */
export function admit(c: number[], seen: Set<string>, stats: { rejected: number }, accept?: (ids: number[]) => boolean): boolean {
  seen.add(key(c));
  if (!accept || accept(c)) return true;
  stats.rejected++;
  return false;
}

/**
 * Single-swap candidates from the per-position lists, skipping prompts already seen: all of them when they fit in
 * `count` (then `complete` is true), else `count` drawn at random without replacement.
 */
export function propose(
  cur: number[],
  lists: number[][],
  free: number[],
  count: number,
  uniform: () => number,
  seen: Set<string>,
  stats: { rejected: number },
  accept?: (ids: number[]) => boolean,
): { cands: number[][]; complete: boolean } {
  const pool: number[][] = [];
  lists.forEach((l, i) =>
    l.forEach((v) => {
      const c = cur.slice();
      c[free[i]!] = v;
      if (!seen.has(key(c))) pool.push(c);
    }),
  );
  const complete = pool.length <= count;
  const cands: number[][] = [];
  // A partial Fisher–Yates shuffle draws from the pool until `count` candidates pass `accept`.
  for (let i = 0; i < pool.length && cands.length < count; i++) {
    const j = complete ? i : i + Math.floor(uniform() * (pool.length - i));
    const c = pool[j]!;
    pool[j] = pool[i]!;
    pool[i] = c;
    if (admit(c, seen, stats, accept)) cands.push(c);
  }
  return { cands, complete };
}

/**
 * GCG at a single-swap local optimum: steps of `count` random two-position swaps (each token from its position's
 * top-k list) it tries, without improvement, before it stops.
 */
export const PAIR_PATIENCE = 4;

/** Up to `count` unseen prompts that differ from `cur` at two free positions, tokens drawn from the lists. */
export function proposePairs(
  cur: number[],
  lists: number[][],
  free: number[],
  count: number,
  uniform: () => number,
  seen: Set<string>,
  stats: { rejected: number },
  accept?: (ids: number[]) => boolean,
): number[][] {
  const out: number[][] = [];
  const n = free.length;
  // Bounded draws: a small neighbourhood may hold fewer unseen pairs than asked for.
  for (let tries = 0; tries < count * 8 && out.length < count; tries++) {
    const i = Math.floor(uniform() * n);
    const j = (i + 1 + Math.floor(uniform() * (n - 1))) % n;
    const li = lists[i]!;
    const lj = lists[j]!;
    if (!li.length || !lj.length) continue;
    const c = cur.slice();
    c[free[i]!] = li[Math.floor(uniform() * li.length)]!;
    c[free[j]!] = lj[Math.floor(uniform() * lj.length)]!;
    if (!seen.has(key(c)) && admit(c, seen, stats, accept)) out.push(c);
  }
  return out;
}

/** Replace disallowed tokens at free positions by the allowed token with the best linearised score. */
export async function sanitize(scorer: Scorer, decoder: Decoder, start: number[], free: number[], allowed: Uint8Array | null): Promise<number[]> {
  if (!allowed || free.every((t) => allowed[start[t]!])) return start.slice();
  const [g] = await scorer.gradient([start]);
  const lists = swapLists(decoder, g!, start, free, 1, allowed);
  const out = start.slice();
  free.forEach((t, i) => {
    if (!allowed[out[t]!]) out[t] = lists[i]![0]!;
  });
  return out;
}

/** Greedy coordinate gradient from `start` (see the file comment). Never returns a lower score than its start's. */
