/** Evolutionary prompt optimisation: a population trading activation against fluency; see index.ts for the method. */
import { uniformStream } from '../../util/random.js';
import type { Decoder } from '../decode.js';
import type { Scorer } from './scorers.js';
import { key, propose, sanitize, swapLists, type SearchOptions, type SearchStats } from './search.js';
import { paramError } from '../../errors.js';

export interface ParetoPoint {
  ids: number[];
  activation: number;
  crossEntropy: number;
}

export interface EpoResult extends SearchStats {
  lambdas: number[];
  start: ParetoPoint;
  /** Best prompt for each member's λ over everything evaluated. */
  members: (ParetoPoint & { lambda: number })[];
  /** Non-dominated prompts (higher activation, lower cross-entropy), by activation, best first (at most 32). */
  frontier: ParetoPoint[];
}

/** λ for each member: see RefineSettings.fluency. */
export function fluencyWeights(fluency: number[], population: number): number[] {
  if (fluency.length === 0 || fluency.some((l) => !Number.isFinite(l) || l < 0)) throw paramError('refine.fluency', 'expected non-negative numbers');
  if (fluency.length === population) return fluency.slice();
  if (fluency.length === 1) return Array(population).fill(fluency[0]);
  if (fluency.length !== 2) throw paramError('refine.fluency', `give one value, a range "MIN,MAX", or ${population} values (one per member)`);
  const [a, b] = fluency as [number, number];
  if (population === 1) return [a];
  if (a <= 0 || b <= 0) {
    // No log scale through zero: linear instead.
    return Array.from({ length: population }, (_, i) => a + ((b - a) * i) / (population - 1));
  }
  return Array.from({ length: population }, (_, i) => Math.exp(Math.log(a) + ((Math.log(b) - Math.log(a)) * i) / (population - 1)));
}

/** The Pareto frontier of (activation ↑, cross-entropy ↓), by activation descending. */
export function paretoFrontier(points: ParetoPoint[], limit = 32): ParetoPoint[] {
  const sorted = points.filter((p) => Number.isFinite(p.activation)).sort((p, q) => q.activation - p.activation || p.crossEntropy - q.crossEntropy);
  const front: ParetoPoint[] = [];
  let best = Infinity;
  for (const p of sorted) {
    if (p.crossEntropy < best) {
      front.push(p);
      best = p.crossEntropy;
    }
  }
  if (front.length <= limit) return front;
  // Keep both ends and an even spread between them.
  return Array.from({ length: limit }, (_, i) => front[Math.round((i * (front.length - 1)) / (limit - 1))]!);
}

/** Evolutionary prompt optimisation (see the file comment). */
export async function epo(
  activation: Scorer,
  fluency: Scorer,
  decoder: Decoder,
  start: number[],
  opts: SearchOptions & { population: number; fluency: number[]; restartEvery: number },
): Promise<EpoResult> {
  const uniform = uniformStream(opts.seed);
  const N = opts.population;
  const lambdas = fluencyWeights(opts.fluency, N);
  const first = await sanitize(activation, decoder, start, opts.free, opts.allowed);
  const archive = new Map<string, ParetoPoint>();
  const evaluate = async (seqs: number[][]): Promise<ParetoPoint[]> => {
    const [a, c] = [await activation.score(seqs), await fluency.score(seqs)];
    const pts = seqs.map((ids, i) => ({ ids, activation: a[i]!, crossEntropy: c[i]! }));
    for (const p of pts) archive.set(key(p.ids), p);
    return pts;
  };
  const fitness = (p: ParetoPoint, l: number) => p.activation - l * (Number.isFinite(p.crossEntropy) ? p.crossEntropy : 0);
  const bestFor = (l: number, pool: Iterable<ParetoPoint>) => {
    let best: ParetoPoint | null = null;
    for (const p of pool) if (!best || fitness(p, l) > fitness(best, l)) best = p;
    return best!;
  };
  const [startPoint] = await evaluate([first]);
  let members: ParetoPoint[] = Array(N).fill(startPoint);
  const stats = { steps: 0, evaluations: 1, improvements: 0, rejected: 0, converged: false };
  const per = Math.max(1, Math.floor(opts.candidates / N));
  while (stats.steps < opts.steps) {
    if (opts.restartEvery > 0 && stats.steps > 0 && stats.steps % opts.restartEvery === 0) {
      members = lambdas.map((l) => bestFor(l, archive.values()));
    }
    stats.steps++;
    const ga = await activation.gradient(members.map((m) => m.ids));
    const gf = lambdas.some((l) => l !== 0) ? await fluency.gradient(members.map((m) => m.ids)) : null;
    const seen = new Set(archive.keys());
    const owner: number[] = [];
    const cands: number[][] = [];
    members.forEach((m, i) => {
      const g = ga[i]!.slice();
      if (gf) for (let k = 0; k < g.length; k++) g[k]! -= lambdas[i]! * gf[i]![k]!;
      const lists = swapLists(decoder, g, m.ids, opts.free, opts.swapTopk, opts.allowed);
      const { cands: mine } = propose(m.ids, lists, opts.free, per, uniform, seen, stats, opts.accept);
      for (const c of mine) {
        cands.push(c);
        owner.push(i);
      }
    });
    if (cands.length === 0) {
      stats.converged = true;
      break;
    }
    const pts = await evaluate(cands);
    stats.evaluations += pts.length;
    // Every member picks the best new candidate for its own λ, from the whole pool, even if worse than where it was.
    members = members.map((m, i) => {
      const next = bestFor(lambdas[i]!, pts);
      if (fitness(next, lambdas[i]!) > fitness(m, lambdas[i]!)) stats.improvements++;
      return next;
    });
  }
  const all = [...archive.values()];
  return {
    ...stats,
    lambdas,
    start: startPoint,
    members: lambdas.map((l) => ({ ...bestFor(l, all), lambda: l })),
    frontier: paretoFrontier(all),
  };
}

