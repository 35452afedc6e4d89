/**
 * The exhaustive single-token baseline: what the best single real token does for a selection, found by trying every
 * token of the vocabulary.
 *
 * - repeated: token v at every free position (fixed context positions keep their tokens);
 * - in context (selections of one position p only): token v at p, every other free position holding a fixed random
 *   context of normal tokens (seeded by (seed, p) alone, so every feature at p sees the same context).
 *
 * One pass over the vocabulary (batches of `batch` sequences through the token-id graph) serves every run of a
 * selection: a run's activation is Σ report ⊙ O, its reported activation, applied to the shared hook output O.
 */
import { displayText } from '../tokenizers/display.js';
import type { ModelRunner } from '../engine/runner.js';
import type { Hook } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import type { FeatureMap } from '../engine/runner.js';
import type { BlockRange } from '../models/block-range.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { deriveSeed, uniformStream } from '../util/random.js';
import { topIndices } from './decode.js';
import { objectiveWeights, type ObjectiveSpec } from './objective.js';
import type { SelectionRun } from './selection.js';

export interface ExhaustiveLayout {
  T: number;
  /** Positions the baseline fills. */
  free: number[];
  /** Fixed context: position → token id. */
  fixed: Map<number, number>;
}

export interface ExhaustiveOptions {
  blocks: BlockRange;
  hook: Hook;
  /** An SAE's latents as the feature axis (features/sae.ts); absent: the hook's features. */
  map?: FeatureMap;
  layout: ExhaustiveLayout;
  /** Only the reported activation matters: a direction, or the mean of the selected outputs. */
  objective: ObjectiveSpec;
  seed: number;
  /** Sequences per forward pass (default 64). */
  batch?: number;
  /** Token ids the random context draws from (e.g. normal tokens). */
  contextIds: number[];
}

export interface ExhaustiveScores {
  run: SelectionRun;
  /** Activation of every vocabulary token repeated at all free positions [V]. */
  repeated: Float64Array;
  /** One-position runs at a free position: activation of every token at that position in the fixed context [V]. */
  context: { position: number; ids: number[]; scores: Float64Array } | null;
}

/** The random context for position p: normal tokens at free positions, fixed tokens where the layout has them. */
export function contextFor(layout: ExhaustiveLayout, position: number, seed: number, contextIds: number[]): number[] {
  const uniform = uniformStream(deriveSeed(seed, `exhaustive|context|${position}`));
  return Array.from({ length: layout.T }, (_, t) => layout.fixed.get(t) ?? contextIds[Math.floor(uniform() * contextIds.length)]!);
}

/** The position of a one-position run that the context baseline can fill, or null. */
function onePosition(run: SelectionRun, layout: ExhaustiveLayout): number | null {
  if (run.positions.all || run.positions.indices.length !== 1) return null;
  const p = run.positions.indices[0]!;
  return layout.free.includes(p) ? p : null;
}

export async function exhaustiveScores(runner: ModelRunner, runs: SelectionRun[], opts: ExhaustiveOptions): Promise<ExhaustiveScores[]> {
  runner.checkRange(opts.blocks);
  const { T } = opts.layout;
  const V = runner.config.vocabSize;
  const F = opts.map ? opts.map.width : hookWidth(runner.config, opts.hook);
  const B = Math.max(1, Math.min(opts.batch ?? 64, V));
  const reports = runs.map((r) => objectiveWeights(opts.objective, r, T, F).report);

  /** For every token v: build(v) → sequence; returns out[run][v] for the given runs. */
  const pass = async (build: (v: number) => number[], which: number[]): Promise<Float64Array[]> => {
    const out = which.map(() => new Float64Array(V));
    for (let v0 = 0; v0 < V; v0 += B) {
      const seqs = Array.from({ length: B }, (_, b) => build(Math.min(v0 + b, V - 1)));
      const { data } = await runner.hidden(seqs, opts.blocks, opts.hook, opts.map);
      for (let b = 0; b < B && v0 + b < V; b++) {
        which.forEach((r, k) => {
          const w = reports[r]!;
          let s = 0;
          const base = b * T * F;
          for (let i = 0; i < w.length; i++) if (w[i] !== 0) s += w[i]! * data[base + i]!;
          out[k]![v0 + b] = s;
        });
      }
    }
    return out;
  };

  const lay = opts.layout;
  const repeated = await pass((v) => Array.from({ length: T }, (_, t) => lay.fixed.get(t) ?? v), runs.map((_, i) => i));
  const results: ExhaustiveScores[] = runs.map((run, i) => ({ run, repeated: repeated[i]!, context: null }));
  const byPosition = new Map<number, number[]>();
  runs.forEach((run, i) => {
    const p = onePosition(run, lay);
    if (p !== null) byPosition.set(p, [...(byPosition.get(p) ?? []), i]);
  });
  for (const [p, which] of byPosition) {
    const ctx = contextFor(lay, p, opts.seed, opts.contextIds);
    const scores = await pass((v) => ctx.map((id, t) => (t === p ? v : id)), which);
    which.forEach((r, k) => (results[r]!.context = { position: p, ids: ctx, scores: scores[k]! }));
  }
  return results;
}

/** 1-based rank of a token in a score list: 1 + the number of tokens that score strictly higher. */
export function rankOf(scores: ArrayLike<number>, id: number): number {
  const s = scores[id]!;
  let above = 0;
  for (let v = 0; v < scores.length; v++) if (scores[v]! > s) above++;
  return above + 1;
}

export interface TokenScore {
  id: number;
  text: string;
  activation: number;
}

export interface RankedToken {
  id: number;
  /** Where the token sits in the prompt it came from (visualize: its free position), when known. */
  position: number | null;
  text: string;
  /** Rank (1 = best) and activation in the repeated list. */
  repeated_rank: number;
  repeated_activation: number;
  /** Rank and activation in the in-context list (null when the run has none). */
  context_rank: number | null;
  context_activation: number | null;
}

/** A run's exhaustive baseline as reported. */
export interface ExhaustiveResult {
  kind: 'exhaustive';
  select: string;
  /** Tokens tried (the whole vocabulary). */
  vocab: number;
  repeated: { best: TokenScore[] };
  context: { position: number; context_ids: number[]; context_text: string; best: TokenScore[] } | null;
  /** Where given tokens (visualize's decoded tokens at the free positions) fall in these lists. */
  ranked: RankedToken[];
}

/** The reported form: the `topk` best tokens of each list, and where the tokens `rank` (at `positions`) fall. */
export function summarizeExhaustive(s: ExhaustiveScores, topk: number, tokenizer: Tokenizer | null, rank: number[] = [], positions?: number[]): ExhaustiveResult {
  const text = (ids: number[]) => displayText(tokenizer, ids);
  const piece = (id: number) => (tokenizer ? tokenizer.piece(id) : String(id));
  const best = (scores: Float64Array) => topIndices(scores, topk).map((id) => ({ id, text: piece(id), activation: scores[id]! }));
  return {
    kind: 'exhaustive',
    select: s.run.label,
    vocab: s.repeated.length,
    repeated: { best: best(s.repeated) },
    context: s.context ? { position: s.context.position, context_ids: s.context.ids, context_text: text(s.context.ids), best: best(s.context.scores) } : null,
    ranked: rank.map((id, i) => ({
      id,
      position: positions?.[i] ?? null,
      text: piece(id),
      repeated_rank: rankOf(s.repeated, id),
      repeated_activation: s.repeated[id]!,
      context_rank: s.context ? rankOf(s.context.scores, id) : null,
      context_activation: s.context ? s.context.scores[id]! : null,
    })),
  };
}
