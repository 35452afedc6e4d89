/**
 * Input recovery: given a text, find input embeddings whose output through blocks A..B matches the text's own output
 * there, decode them to tokens, and compare with the text's ids. It measures how much of the input a block's output
 * still determines, and checks the optimise-then-decode pipeline end to end.
 *
 * The objective is l1 · Σ |O − O*| + cosine · Σ_t (1 − cos(O_t, O*_t)) over the hook output O of block B (O* for the
 * text's ids), minimised with Adam (or SGD) from random embeddings; several restarts run as one batch and the lowest
 * final loss wins. Positions holding a leading BOS are fixed. Optionally the decoded prompt is refined by GCG on the
 * same loss, with real tokens.
 */
import { paramError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { Hook } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import type { BlockRange } from '../models/block-range.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { deriveSeed, normalStream } from '../util/random.js';
import { topIndices, type Decoder, type DecodeMode } from './decode.js';
import { matchStep } from './objective.js';
import { learningRate, Optimizer } from './optimize.js';
import { allowedTokens, checkRefineSettings, gcg, roundTrips, type RefineSettings, type Scorer } from './refine/index.js';
import { checkSettings, defaultSettings, settingsRecord } from './settings.js';

export interface InvertSettings {
  blocks: BlockRange;
  hook: Hook;
  steps: number;
  lr: number;
  /** Learning rate at the last step (linear schedule). */
  lrEnd: number;
  optimizer: 'adam' | 'sgd';
  /** Weight of the L1 distance. */
  l1: number;
  /** Weight of the per-position cosine distance (0: off). */
  cosine: number;
  decode: DecodeMode;
  /** Standard deviation of the random start (relative to the embedding table's per-element RMS). */
  initScale: number;
  /** Absolute standard deviation of the start; when set it replaces initScale × the table's RMS. */
  initStd?: number;
  /** Independent random starts, optimised together as one batch; the lowest final loss is kept. */
  restarts: number;
  seed: number;
  /** GCG on the same loss over real tokens, from the decoded prompt (EPO is not used here). */
  refine: RefineSettings | null;
}

/** The settings table's defaults for invert (src/features/settings.ts states them; this is their typed view). */
export const DEFAULT_INVERT = { hook: 'resid', ...defaultSettings('invert') } as unknown as Omit<InvertSettings, 'blocks'>;

export interface InvertResult {
  /** The original text (null when given as ids without a tokenizer). */
  text: string | null;
  /** The recovered prompt's text. */
  recovered: string | null;
  ids: number[];
  recovered_ids: number[];
  /** Top-1 decode of the optimised embeddings (before refinement). */
  decoded_ids: number[];
  /** Share of optimised positions whose recovered token equals the original. */
  exact: number;
  /** Every optimised position recovered. */
  exact_match: boolean;
  /** Optimised positions whose recovered token differs. */
  hamming: number;
  /** Optimised positions (a leading BOS is fixed). */
  free: number[];
  /** Per position: rank (1 = top) of the original token in the decode of the optimised embedding (null if fixed). */
  original_rank: (number | null)[];
  /** Per position: cosine between the optimised embedding and the original token's embedding (null if fixed). */
  cosine: (number | null)[];
  blocks: [number, number];
  hook: Hook;
  settings: Record<string, unknown>;
  loss: {
    initial: number;
    /** Continuous optimum. */
    final: number;
    /** The decoded tokens' loss, and the recovered (refined, else decoded) tokens' loss. */
    decoded: number;
    recovered: number;
  };
  refined: { ids: number[]; text: string | null; loss: number; start_loss: number; steps: number; evaluations: number; improvements: number; converged: boolean; retokenizes: boolean | null } | null;
  /** Sampled loss curve of the kept restart: [step, loss]. */
  curve: [number, number][];
  timings: { optimize_ms: number; decode_ms: number; refine_ms: number };
}

/** The matching loss of real token sequences (the same formula, computed from the hook output in float64). */
export function matchScorer(
  runner: ModelRunner,
  decoder: Decoder,
  opts: { blocks: BlockRange; hook: Hook; target: Float32Array; T: number; l1: number; cosine: number; batch: number },
): Scorer {
  const { T, target } = opts;
  const D = runner.config.dim;
  const F = hookWidth(runner.config, opts.hook);
  const lossOf = (data: Float32Array, offset: number) => {
    let l1 = 0;
    let cos = 0;
    for (let t = 0; t < T; t++) {
      let dot = 0;
      let nn = 0;
      let tt = 0;
      for (let f = 0; f < F; f++) {
        const o = data[offset + t * F + f]!;
        const y = target[t * F + f]!;
        l1 += Math.abs(o - y);
        dot += o * y;
        nn += o * o;
        tt += y * y;
      }
      cos += 1 - dot / (Math.sqrt(nn + 1e-12) * Math.sqrt(tt + 1e-12));
    }
    return opts.l1 * l1 + opts.cosine * cos;
  };
  return {
    async score(seqs) {
      const out = new Float64Array(seqs.length);
      for (let i = 0; i < seqs.length; i += opts.batch) {
        const chunk = Array.from({ length: opts.batch }, (_, b) => seqs[i + b] ?? seqs[i]!);
        const { data } = await runner.hidden(chunk, opts.blocks, opts.hook);
        for (let b = 0; b < opts.batch && i + b < seqs.length; b++) out[i + b] = -lossOf(data, b * T * F);
      }
      return out;
    },
    async gradient(seqs) {
      return Promise.all(
        seqs.map(async (ids) => {
          const x = new Float32Array(T * D);
          ids.forEach((id, t) => x.set(decoder.embedding(id), t * D));
          const res = await matchStep(runner, opts.blocks, opts.hook, { x, target, l1: Float32Array.of(opts.l1), cos: Float32Array.of(opts.cosine) }, { B: 1, T });
          return res.grad.map((g) => -g);
        }),
      );
    },
  };
}

export async function invert(runner: ModelRunner, decoder: Decoder, tokenizer: Tokenizer | null, ids: number[], s: InvertSettings): Promise<InvertResult> {
  checkSettings('invert', s);
  runner.checkRange(s.blocks);
  runner.checkIds([ids]);
  if (ids.length === 0) throw paramError('text', 'encodes to no tokens');
  if (s.refine) {
    checkRefineSettings(s.refine);
    if (s.refine.retokenize && !tokenizer) throw paramError('refine.retokenize', 'needs a tokenizer');
  }
  const R = s.restarts;
  const T = ids.length;
  const D = runner.config.dim;
  const F = hookWidth(runner.config, s.hook);
  const fixed = new Set(tokenizer?.bosId !== null && tokenizer?.bosId !== undefined && ids[0] === tokenizer.bosId ? [0] : []);
  const free = ids.map((_, t) => t).filter((t) => !fixed.has(t));
  const text = (x: number[]) => (tokenizer ? tokenizer.decode(x) : null);
  const target1 = (await runner.hidden([ids], s.blocks, s.hook)).data;
  const target = new Float32Array(R * T * F);
  for (let r = 0; r < R; r++) target.set(target1, r * T * F);

  // Random starts, scaled to the table's typical entry.
  const { data: E } = decoder.table;
  let ss = 0;
  for (let i = 0; i < E.length; i++) ss += E[i]! * E[i]!;
  const rms = Math.sqrt(ss / E.length);
  const std = s.initStd ?? s.initScale * rms;
  const x = new Float32Array(R * T * D);
  for (let r = 0; r < R; r++) {
    const normal = normalStream(deriveSeed(s.seed, `invert|${r}`));
    for (let t = 0; t < T; t++) {
      if (fixed.has(t)) x.set(decoder.embedding(ids[t]!), (r * T + t) * D);
      else for (let i = 0; i < D; i++) x[(r * T + t) * D + i] = std * normal();
    }
  }
  const feeds = { x, target, l1: new Float32Array(R).fill(s.l1), cos: new Float32Array(R).fill(s.cosine) };
  const shape = { B: R, T };
  const optimizer = new Optimizer(s.optimizer, x.length);
  const every = Math.max(1, Math.floor(s.steps / 100));
  const curves: [number, number][][] = Array.from({ length: R }, () => []);
  let initial: Float32Array | null = null;
  const t0 = performance.now();
  for (let step = 0; step < s.steps; step++) {
    const res = await matchStep(runner, s.blocks, s.hook, feeds, shape);
    if (step === 0) initial = res.loss.slice();
    if (step % every === 0) for (let r = 0; r < R; r++) curves[r]!.push([step, res.loss[r]!]);
    const lr = learningRate(s, step);
    for (let r = 0; r < R; r++) for (const t of free) optimizer.update(x, res.grad, (r * T + t) * D, D, lr, step);
  }
  const final = await matchStep(runner, s.blocks, s.hook, feeds, shape);
  initial ??= final.loss;
  const optimizeMs = performance.now() - t0;
  let r = 0;
  for (let k = 1; k < R; k++) if (final.loss[k]! < final.loss[r]! || !Number.isFinite(final.loss[r]!)) r = k;
  if (!Number.isFinite(final.loss[r]!)) throw new Error(`invert: the loss became ${final.loss[r]}`);

  const t1 = performance.now();
  const decoded = ids.slice();
  const originalRank: (number | null)[] = ids.map(() => null);
  const cosine: (number | null)[] = ids.map(() => null);
  for (const t of free) {
    const e = x.subarray((r * T + t) * D, (r * T + t + 1) * D);
    const scores = decoder.scores(e, s.decode);
    decoded[t] = topIndices(scores, 1)[0]!;
    const mine = scores[ids[t]!]!;
    let above = 0;
    for (let v = 0; v < scores.length; v++) if (scores[v]! > mine) above++;
    originalRank[t] = above + 1;
    cosine[t] = decoder.cosine(e, ids[t]!);
  }
  const decodeMs = performance.now() - t1;

  const t2 = performance.now();
  const scorer = matchScorer(runner, decoder, { blocks: s.blocks, hook: s.hook, target: target1, T, l1: s.l1, cosine: s.cosine, batch: s.refine?.candidates ?? 1 });
  const decodedLoss = -(await scorer.score([decoded]))[0]!;
  let recovered = decoded;
  let recoveredLoss = decodedLoss;
  let refined: InvertResult['refined'] = null;
  if (s.refine) {
    const allowed = allowedTokens(tokenizer, runner.config.vocabSize, s.refine.filter);
    const accept = s.refine.retokenize ? (c: number[]) => roundTrips(tokenizer!, c) : undefined;
    const g = await gcg(scorer, decoder, decoded, { free, steps: s.refine.steps, candidates: s.refine.candidates, swapTopk: s.refine.swapTopk, seed: deriveSeed(s.refine.seed, 'invert|refine'), allowed, accept, stopAt: 0 });
    recovered = g.ids;
    recoveredLoss = -g.score;
    refined = {
      ids: g.ids,
      text: text(g.ids),
      loss: -g.score,
      start_loss: -g.startScore,
      steps: g.steps,
      evaluations: g.evaluations,
      improvements: g.improvements,
      converged: g.converged,
      retokenizes: tokenizer ? roundTrips(tokenizer, g.ids) : null,
    };
  }
  const refineMs = performance.now() - t2;

  const hamming = free.filter((t) => recovered[t] !== ids[t]).length;
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return {
    text: text(ids),
    recovered: text(recovered),
    ids,
    recovered_ids: recovered,
    decoded_ids: decoded,
    exact: free.length ? (free.length - hamming) / free.length : 1,
    exact_match: hamming === 0,
    hamming,
    free,
    original_rank: originalRank,
    cosine,
    blocks: [s.blocks[0], s.blocks[1]],
    hook: s.hook,
    settings: invertRecord(s),
    loss: { initial: initial[r]!, final: final.loss[r]!, decoded: decodedLoss, recovered: recoveredLoss },
    refined,
    curve: curves[r]!,
    timings: { optimize_ms: round(optimizeMs), decode_ms: round(decodeMs), refine_ms: round(refineMs) },
  };
}

/** The settings as reported with the result (the settings table's record for invert; refinement is one climb). */
export function invertRecord(s: InvertSettings): Record<string, unknown> {
  return settingsRecord(s, undefined, 'invert');
}
