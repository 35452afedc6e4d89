/**
 * Discrete refinement of a token prompt, starting from a decode: greedy coordinate gradient (GCG) and evolutionary
 * prompt optimisation (EPO).
 *
 * Both work on a `Scorer`: a score to maximise for whole token sequences (batched), and its gradient with respect to
 * the input embeddings. To first order, swapping the token at position t for v changes the score by g_t · (E[v] −
 * E[current]), so the promising swaps at t are the top-k of g_t · E[v] over the vocabulary. Each step proposes
 * single-token swaps from those lists, evaluates all of them in one batched forward pass, and moves.
 *
 * - GCG is a hill climb: it moves to the best candidate only if that beats the current prompt, so the result never
 *   scores below its start (as measured by the same scorer). Candidates already tried are not drawn again; once every
 *   swap of the current top-k lists has been tried without gain, the lists are doubled. When they hold the whole
 *   vocabulary the prompt is a local optimum under single-token swaps; the search then tries random pairs of swaps
 *   (from the top-k lists) for a few steps, goes back to single swaps after a pair move, and stops when pairs find
 *   nothing either or the steps run out.
 * - EPO keeps a population whose members weigh fluency differently (log-spaced λ): member i maximises
 *   activation − λ_i · cross-entropy, where the cross-entropy is the full model's own mean next-token loss on the
 *   prompt. Members move to their best candidate even when it is worse (exploration), are restarted every few steps
 *   from the best prompt for their λ seen so far, and everything evaluated goes into an archive whose Pareto frontier
 *   (activation up, cross-entropy down) is reported.
 *
 * Candidates can be restricted to allowed tokens (bans, printable or ASCII pieces) and to prompts that survive a
 * decode → encode round trip through the tokenizer.
 */
import { displayText } from '../tokenizers/display.js';
import { UserError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { Hook } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import type { BlockRange } from '../models/transformer.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { uniformStream } from '../util/random.js';
import { topIndices, type Decoder } from './decode.js';

export type RefineMethod = 'gcg' | 'epo';
export const REFINE_METHODS: readonly RefineMethod[] = ['gcg', 'epo'];

export interface TokenFilterSpec {
  /** Token ids never proposed. */
  ban: number[];
  /** Only tokens whose piece is printable text: no control, special or byte-fallback tokens, no control characters. */
  printable: boolean;
  /** Only printable tokens whose piece is ASCII (U+0020–U+007E). */
  ascii: boolean;
}

export interface RefineSettings {
  method: RefineMethod;
  /** Steps (each: one gradient, one batch of candidates). */
  steps: number;
  /** Candidates evaluated per step (EPO: in total, shared among the population). */
  candidates: number;
  /** Swaps considered per position: the top-k tokens of the linearised score. */
  swapTopk: number;
  /** GCG: climbs from this many starts — the decode's first rows (row i = the i-th ranked token at every position) —
   *  keeping the best. A single climb ends in a local optimum of its start; the runner-up rows are nearby, different
   *  starts for the cost of one more climb each. */
  starts: number;
  /** EPO: population size. */
  population: number;
  /** EPO: fluency weights λ. Two values: log-spaced from the first to the second over the population; one value: all
   *  members share it; `population` values: one each. */
  fluency: number[];
  /** EPO: restart each member from the best prompt for its λ every this many steps (0: never). */
  restartEvery: number;
  filter: TokenFilterSpec;
  /** Reject candidates whose text does not encode back to the same ids. */
  retokenize: boolean;
  seed: number;
}

export const DEFAULT_REFINE: RefineSettings = {
  method: 'gcg',
  steps: 100,
  candidates: 128,
  swapTopk: 16,
  starts: 3,
  population: 8,
  fluency: [0.01, 10],
  restartEvery: 5,
  filter: { ban: [], printable: false, ascii: false },
  retokenize: false,
  seed: 0,
};

/** Settings as stored with a result. */
export function refineRecord(r: RefineSettings): Record<string, unknown> {
  return {
    method: r.method,
    steps: r.steps,
    candidates: r.candidates,
    swap_topk: r.swapTopk,
    ...(r.method === 'gcg' ? { starts: r.starts } : {}),
    ...(r.method === 'epo' ? { population: r.population, fluency: r.fluency, restart_every: r.restartEvery } : {}),
    ban: r.filter.ban,
    printable: r.filter.printable,
    ascii: r.filter.ascii,
    retokenize: r.retokenize,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Token constraints

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
const SPECIAL_PIECE = /^<[^\s<>]{1,16}>$/;

/** Allowed-token mask over the vocabulary (1 = may be proposed), or null when nothing is restricted. */
export function allowedTokens(tokenizer: Tokenizer | null, vocab: number, spec: TokenFilterSpec): Uint8Array | null {
  if (spec.ban.length === 0 && !spec.printable && !spec.ascii) return null;
  if ((spec.printable || spec.ascii) && !tokenizer) throw new UserError(`--${spec.ascii ? 'ascii' : 'printable'}: needs a tokenizer to read token pieces`);
  const mask = new Uint8Array(vocab).fill(1);
  for (const id of spec.ban) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new UserError(`--ban: token id ${id} is outside the vocabulary 0-${vocab - 1}`);
    mask[id] = 0;
  }
  if (spec.printable || spec.ascii) {
    for (let id = 0; id < vocab; id++) {
      if (!mask[id]) continue;
      if (!isPrintable(tokenizer!, id) || (spec.ascii && !/^[\x20-\x7e]+$/.test(tokenizer!.piece(id)))) mask[id] = 0;
    }
  }
  if (!mask.some((m) => m === 1)) throw new UserError('--ban/--printable/--ascii: no token is left to propose');
  return mask;
}

function isPrintable(tok: Tokenizer, id: number): boolean {
  if (id === tok.bosId || id === tok.eosId) return false;
  const p = tok.piece(id);
  if (p.length === 0 || BYTE_PIECE.test(p) || SPECIAL_PIECE.test(p)) return false;
  // Control characters, and U+FFFD (a piece that is part of a multi-byte character).
  return !/[\p{Cc}\uFFFD]/u.test(p);
}

/** Does the prompt survive decode → encode? A leading BOS is re-added by the encoder; any other control token is not. */
export function roundTrips(tokenizer: Tokenizer, ids: number[]): boolean {
  const bos = ids.length > 0 && ids[0] === tokenizer.bosId;
  let back: number[];
  try {
    back = tokenizer.encode(tokenizer.decode(ids), { bos });
  } catch {
    return false;
  }
  return back.length === ids.length && back.every((id, i) => id === ids[i]);
}

// ---------------------------------------------------------------------------------------------------------------
// Scorers

/** Something to maximise over token sequences of one length, and its gradient with respect to their embeddings. */
export interface Scorer {
  /** One score per sequence, higher is better (any number of sequences: the scorer batches). */
  score(seqs: number[][]): Promise<Float64Array>;
  /** d score / d input embedding for each sequence, [T × D] each. */
  gradient(seqs: number[][]): Promise<Float32Array[]>;
}

/** Rows padded to a fixed batch so every call reuses one graph; padding rows copy the first sequence. */
function padded(seqs: number[][], B: number): number[][] {
  return Array.from({ length: B }, (_, b) => seqs[b] ?? seqs[0]!);
}

async function inChunks<T>(seqs: number[][], B: number, f: (chunk: number[][]) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < seqs.length; i += B) {
    const chunk = seqs.slice(i, i + B);
    out.push(...(await f(padded(chunk, B))).slice(0, chunk.length));
  }
  return out;
}

/**
 * The activation of a selection: Σ report ⊙ O over block B's hook output O for real tokens through blocks A..B (the
 * run's reported activation). Scores use the token-id graph in batches of `batch`; gradients use the objective graph
 * with the linear objective −activation, in batches of `gradBatch`.
 */
export function activationScorer(
  runner: ModelRunner,
  decoder: Decoder,
  opts: { blocks: BlockRange; hook: Hook; report: Float32Array; T: number; batch: number; gradBatch?: number },
): Scorer {
  const { T, report, blocks, hook } = opts;
  const D = runner.config.dim;
  const F = hookWidth(runner.config, hook);
  if (report.length !== T * F) throw new Error(`activationScorer: report has ${report.length} weights, expected ${T * F}`);
  const gradBatch = opts.gradBatch ?? 1;
  return {
    async score(seqs) {
      const rows = await inChunks(seqs, opts.batch, async (chunk) => {
        const { data } = await runner.hidden(chunk, blocks, hook);
        return chunk.map((_, b) => dot(report, data, b * T * F));
      });
      return Float64Array.from(rows);
    },
    async gradient(seqs) {
      return inChunks(seqs, gradBatch, async (chunk) => {
        const B = chunk.length;
        const x = new Float32Array(B * T * D);
        chunk.forEach((ids, b) => ids.forEach((id, t) => x.set(decoder.embedding(id), (b * T + t) * D)));
        const lin = new Float32Array(B * T * F);
        for (let b = 0; b < B; b++) lin.set(report, b * T * F);
        const res = await runner.objective(blocks, hook, { x, l1: new Float32Array(B * T * F), lin, C: new Float32Array(B), report: lin }, { B, T });
        // loss = −activation, so the activation's gradient is the negated loss gradient.
        return chunk.map((_, b) => Float32Array.from(res.grad.subarray(b * T * D, (b + 1) * T * D), (g) => -g));
      });
    },
  };
}

/**
 * The full model's mean next-token cross-entropy of a prompt (nats), with BOS prepended when the model has one and the
 * prompt does not start with it, so every prompt token is predicted. `score` returns the cross-entropy itself (lower is
 * more fluent); `gradient` its gradient with respect to the prompt's embeddings.
 */
export function fluencyModel(runner: ModelRunner, decoder: Decoder, opts: { bosId: number | null; T: number; batch: number; gradBatch: number }): Scorer {
  const { T } = opts;
  const D = runner.config.dim;
  const V = runner.config.vocabSize;
  const lead = (ids: number[]) => opts.bosId !== null && ids[0] !== opts.bosId;
  // Sequences of one shape per call: a prompt with a BOS of its own is scored as is (its first token is not predicted).
  const withBos = (ids: number[]) => (lead(ids) ? [opts.bosId!, ...ids] : ids);
  return {
    async score(seqs) {
      const out = new Float64Array(seqs.length);
      for (const has of [true, false]) {
        const idx = seqs.map((s, i) => (lead(s) === has ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0) continue;
        const ce = await inChunks(idx.map((i) => withBos(seqs[i]!)), opts.batch, async (chunk) => Array.from(await runner.crossEntropy(chunk)));
        idx.forEach((i, k) => (out[i] = ce[k]!));
      }
      return out;
    },
    async gradient(seqs) {
      const out: Float32Array[] = new Array(seqs.length);
      for (const has of [true, false]) {
        const idx = seqs.map((s, i) => (lead(s) === has ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0) continue;
        const L = has ? T + 1 : T;
        const grads = await inChunks(idx.map((i) => withBos(seqs[i]!)), opts.gradBatch, async (chunk) => {
          const B = chunk.length;
          const x = new Float32Array(B * L * D);
          const targets = new Float32Array(B * L * V);
          const rows = new Float32Array(B * L);
          const w = L > 1 ? 1 / (L - 1) : 0;
          chunk.forEach((ids, b) => {
            ids.forEach((id, t) => x.set(decoder.embedding(id), (b * L + t) * D));
            for (let t = 0; t + 1 < L; t++) {
              rows[b * L + t] = w;
              targets[(b * L + t) * V + ids[t + 1]!] = w;
            }
          });
          const res = await runner.fluencyGrad({ x, targets, rows }, { B, T: L });
          // Drop the prepended BOS row: its embedding is not ours to change.
          const skip = L - T;
          return chunk.map((_, b) => res.grad.slice((b * L + skip) * D, (b + 1) * L * D));
        });
        idx.forEach((i, k) => (out[i] = grads[k]!));
      }
      return out;
    },
  };
}

function dot(w: Float32Array, data: Float32Array, offset: number): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) s += w[i]! * data[offset + i]!;
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Search

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

const key = (ids: number[]) => ids.join(',');

/** Per free position, the top-k allowed tokens by g_t · E[v], excluding the current token. */
function swapLists(decoder: Decoder, grad: Float32Array, cur: number[], free: number[], k: number, allowed: Uint8Array | null): number[][] {
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
function admit(c: number[], seen: Set<string>, stats: { rejected: number }, accept?: (ids: number[]) => boolean): boolean {
  seen.add(key(c));
  if (!accept || accept(c)) return true;
  stats.rejected++;
  return false;
}

/**
 * Single-swap candidates from the per-position lists, skipping prompts already seen: all of them when they fit in
 * `count` (then `complete` is true), else `count` drawn at random without replacement.
 */
function propose(
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
const PAIR_PATIENCE = 4;

/** Up to `count` unseen prompts that differ from `cur` at two free positions, tokens drawn from the lists. */
function proposePairs(
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
async function sanitize(scorer: Scorer, decoder: Decoder, start: number[], free: number[], allowed: Uint8Array | null): Promise<number[]> {
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
  if (fluency.length === 0 || fluency.some((l) => !Number.isFinite(l) || l < 0)) throw new UserError('--fluency: expected non-negative numbers');
  if (fluency.length === population) return fluency.slice();
  if (fluency.length === 1) return Array(population).fill(fluency[0]);
  if (fluency.length !== 2) throw new UserError(`--fluency: give one value, a range "MIN,MAX", or ${population} values (one per member)`);
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

// ---------------------------------------------------------------------------------------------------------------
// Refining a visualization run

export interface RefinedPoint {
  ids: number[];
  text: string;
  activation: number;
  cross_entropy: number | null;
}

/** A run's `refined` entry. */
export interface Refined {
  method: RefineMethod;
  ids: number[];
  text: string;
  /** Activation of `ids` (token-id graph; ≥ start_activation for GCG). */
  activation: number;
  /** The full model's mean next-token cross-entropy of the prompt (nats; BOS prepended when the model has one). */
  cross_entropy: number | null;
  /** The search's start: the decoded prompt, with disallowed tokens replaced when a token filter is on. */
  start_ids: number[];
  start_activation: number;
  start_cross_entropy: number | null;
  /** GCG: which start the result climbed from (0 = the decode, i = the decode's row i), and how many were climbed.
   *  steps, evaluations, improvements and rejected count all climbs. */
  start_row?: number;
  starts?: number;
  steps: number;
  evaluations: number;
  improvements: number;
  rejected: number;
  converged: boolean;
  /** GCG: the swap-list length reached (it doubles whenever every swap of the lists was tried without gain). */
  swap_topk_final?: number;
  /** Whether `ids` survives decode → encode (null without a tokenizer). */
  retokenizes: boolean | null;
  settings: Record<string, unknown>;
  /** EPO: the best prompt for each λ, and the Pareto frontier (activation vs cross-entropy), best activation first. */
  members?: (RefinedPoint & { lambda: number })[];
  frontier?: RefinedPoint[];
}

export interface RefineRequest {
  blocks: BlockRange;
  hook: Hook;
  /** Activation weights over [T × F] (the run's `report` weights). */
  report: Float32Array;
  /** Full starting sequence (fixed context included): the decode. */
  start: number[];
  /** GCG: further starting sequences (the decode's next rows), of which the first `settings.starts − 1` are climbed
   *  from too; duplicates of an earlier start are skipped. */
  alternatives?: number[][];
  free: number[];
  settings: RefineSettings;
}

/** Refine a decoded prompt for a selection's activation, by GCG or EPO. */
export async function refineActivation(runner: ModelRunner, decoder: Decoder, tokenizer: Tokenizer | null, req: RefineRequest): Promise<Refined> {
  const s = req.settings;
  checkRefineSettings(s);
  const T = req.start.length;
  if (s.retokenize && !tokenizer) throw new UserError('--retokenize: needs a tokenizer');
  const allowed = allowedTokens(tokenizer, runner.config.vocabSize, s.filter);
  const text = (ids: number[]) => displayText(tokenizer, ids);
  const accept = s.retokenize ? (ids: number[]) => roundTrips(tokenizer!, ids) : undefined;
  const search: SearchOptions = { free: req.free, steps: s.steps, candidates: s.candidates, swapTopk: s.swapTopk, seed: s.seed, allowed, accept };
  const act = activationScorer(runner, decoder, { blocks: req.blocks, hook: req.hook, report: req.report, T, batch: s.candidates, gradBatch: s.method === 'epo' ? s.population : 1 });
  const flu = fluencyModel(runner, decoder, { bosId: tokenizer?.bosId ?? null, T, batch: s.candidates, gradBatch: s.population });
  const finite = (x: number) => (Number.isFinite(x) ? x : null);
  const common = { settings: refineRecord(s) };
  if (s.method === 'gcg') {
    const starts = [req.start];
    for (const alt of req.alternatives ?? []) {
      if (starts.length >= s.starts) break;
      if (alt.length === T && !starts.some((x) => key(x) === key(alt))) starts.push(alt);
    }
    let r = await gcg(act, decoder, starts[0]!, search);
    const first = r;
    let row = 0;
    const total = { steps: r.steps, evaluations: r.evaluations, improvements: r.improvements, rejected: r.rejected };
    for (let i = 1; i < starts.length; i++) {
      const ri = await gcg(act, decoder, starts[i]!, { ...search, seed: search.seed + i });
      total.steps += ri.steps;
      total.evaluations += ri.evaluations;
      total.improvements += ri.improvements;
      total.rejected += ri.rejected;
      if (ri.score > r.score) {
        r = ri;
        row = i;
      }
    }
    const [ce, ce0] = await flu.score([r.ids, first.start]);
    return {
      method: 'gcg',
      ids: r.ids,
      text: text(r.ids),
      activation: r.score,
      cross_entropy: finite(ce!),
      start_ids: first.start,
      start_activation: first.startScore,
      start_cross_entropy: finite(ce0!),
      start_row: row,
      starts: starts.length,
      ...total,
      converged: r.converged,
      swap_topk_final: r.swapTopk,
      retokenizes: tokenizer ? roundTrips(tokenizer, r.ids) : null,
      ...common,
    };
  }
  const r = await epo(act, flu, decoder, req.start, { ...search, population: s.population, fluency: s.fluency, restartEvery: s.restartEvery });
  const point = (p: ParetoPoint): RefinedPoint => ({ ids: p.ids, text: text(p.ids), activation: p.activation, cross_entropy: finite(p.crossEntropy) });
  const top = r.frontier[0] ?? r.start;
  return {
    method: 'epo',
    ids: top.ids,
    text: text(top.ids),
    activation: top.activation,
    cross_entropy: finite(top.crossEntropy),
    start_ids: r.start.ids,
    start_activation: r.start.activation,
    start_cross_entropy: finite(r.start.crossEntropy),
    steps: r.steps,
    evaluations: r.evaluations,
    improvements: r.improvements,
    rejected: r.rejected,
    converged: r.converged,
    retokenizes: tokenizer ? roundTrips(tokenizer, top.ids) : null,
    ...common,
    members: r.members.map((m) => ({ ...point(m), lambda: m.lambda })),
    frontier: r.frontier.map(point),
  };
}

export function checkRefineSettings(s: RefineSettings): void {
  if (!REFINE_METHODS.includes(s.method)) throw new UserError(`--refine: "${s.method}" is not one of ${REFINE_METHODS.join(', ')}`);
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new UserError(`--${name}: must be an integer ≥ ${min}, got ${v}`);
  };
  int('refine-steps', s.steps, 0);
  int('candidates', s.candidates, 1);
  int('refine-starts', s.starts, 1);
  int('swap-topk', s.swapTopk, 1);
  int('population', s.population, 1);
  int('restart-every', s.restartEvery, 0);
  fluencyWeights(s.fluency, s.population);
}
