/** Greedy coordinate gradient: a hill climb over single-token (then paired) swaps; see index.ts for the method. */
import { uniformStream } from '../../util/random.js';
import type { Decoder } from '../decode.js';
import type { Scorer } from './scorers.js';
import { admit, key, propose, proposePairs, sanitize, swapLists, PAIR_PATIENCE, type SearchOptions, type SearchStats } from './search.js';

export interface GcgResult extends SearchStats {
  /** The swap list length at the end: GCG doubles it whenever every swap of the current lists has been tried. */
  swapTopk: number;
  /** Moves made by a pair of swaps, after single swaps had reached a local optimum. */
  pairMoves: number;
  ids: number[];
  score: number;
  start: number[];
  startScore: number;
}

export async function gcg(scorer: Scorer, decoder: Decoder, start: number[], opts: SearchOptions): Promise<GcgResult> {
  const uniform = uniformStream(opts.seed);
  const first = await sanitize(scorer, decoder, start, opts.free, opts.allowed);
  let cur = first;
  let curScore = (await scorer.score([cur]))[0]!;
  const startScore = curScore;
  const stats = { steps: 0, evaluations: 1, improvements: 0, rejected: 0, converged: false, swapTopk: opts.swapTopk, pairMoves: 0 };
  const seen = new Set<string>([key(cur)]);
  let pairSteps = 0;
  let grad: Float32Array | null = null;
  let k = opts.swapTopk;
  const V = decoder.table.vocab;
  while (stats.steps < opts.steps && !(opts.stopAt !== undefined && curScore >= opts.stopAt)) {
    stats.steps++;
    grad ??= (await scorer.gradient([cur]))[0]!;
    const lists = swapLists(decoder, grad, cur, opts.free, k, opts.allowed);
    const { cands, complete } = propose(cur, lists, opts.free, opts.candidates, uniform, seen, stats, opts.accept);
    const scores = cands.length ? await scorer.score(cands) : new Float64Array(0);
    stats.evaluations += cands.length;
    let j = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[j]!) j = i;
    if (cands.length && scores[j]! > curScore) {
      cur = cands[j]!;
      curScore = scores[j]!;
      grad = null;
      stats.improvements++;
    } else if (complete) {
      // Every top-k swap around this prompt has been tried: widen the lists; once they hold every token the prompt is
      // a local optimum under single swaps, and the search tries pairs of swaps before it gives up.
      if (k < V) {
        k = Math.min(V, k * 2);
        continue;
      }
      if (opts.free.length < 2 || pairSteps >= PAIR_PATIENCE) {
        stats.converged = true;
        break;
      }
      while (stats.steps < opts.steps && pairSteps < PAIR_PATIENCE) {
        stats.steps++;
        pairSteps++;
        const pairs = proposePairs(cur, swapLists(decoder, grad, cur, opts.free, opts.swapTopk, opts.allowed), opts.free, opts.candidates, uniform, seen, stats, opts.accept);
        if (!pairs.length) break;
        const ps = await scorer.score(pairs);
        stats.evaluations += pairs.length;
        let b = 0;
        for (let i = 1; i < ps.length; i++) if (ps[i]! > ps[b]!) b = i;
        if (ps[b]! > curScore) {
          cur = pairs[b]!;
          curScore = ps[b]!;
          grad = null;
          stats.improvements++;
          stats.pairMoves++;
          // A new prompt: single swaps first again, from the short lists.
          k = opts.swapTopk;
          pairSteps = 0;
          break;
        }
      }
      if (pairSteps >= PAIR_PATIENCE) {
        stats.converged = true;
        break;
      }
    }
  }
  stats.swapTopk = k;
  return { ids: cur, score: curScore, start: first, startScore, ...stats };
}

