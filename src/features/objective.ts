/**
 * Feature objectives: each objective as the weight tensors the objective graph takes (every objective is either an L1
 * distance to a constant or a weighted sum of the hook output), and every loss graph a search optimises.
 */
import { paramError } from '../errors.js';
import type { FeatureMap, ModelRunner } from '../engine/runner.js';
import { grad } from '../graph/autodiff.js';
import type { Graph } from '../graph/graph.js';
import { abs, add, div, mul, reduceSum, softmax, sqrt, sub } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { hookWidth, type Hook, type ModelConfig } from '../models/config.js';
import { architectureOf, fullLogits, runBlocks, type BlockRange, type Weights } from '../models/transformer.js';
import { selectionMask, type SelectionRun } from './selection.js';

export type ObjectiveKind = 'l1' | 'sum' | 'max';
export const OBJECTIVES: readonly ObjectiveKind[] = ['l1', 'sum', 'max'];

export interface ObjectiveSpec {
  kind: ObjectiveKind;
  /** The constant of `l1` and `sum` (default 100, the original's). */
  C: number;
  /** A probe / SAE direction of length F: maximise its dot product with the hook output at the selected positions. */
  direction?: Float32Array;
}

/** The per-problem weights: loss = Σ l1 ⊙ |C − O| − Σ lin ⊙ O + offset; activation = Σ report ⊙ O. */
export interface ObjectiveWeights {
  l1: Float32Array;
  lin: Float32Array;
  C: number;
  report: Float32Array;
  /** Constant added to the graph's loss to report the objective's true value (`sum`: C per selected element). */
  offset: number;
}

export function objectiveWeights(spec: ObjectiveSpec, run: SelectionRun, T: number, F: number): ObjectiveWeights {
  const mask = selectionMask(run, T, F);
  const zero = new Float32Array(T * F);
  if (spec.direction) {
    if (spec.direction.length !== F) throw paramError('objective.direction', `vector has length ${spec.direction.length}, the hook has ${F} features`);
    // The direction replaces the feature axis: weight every feature of each selected position by the direction.
    const lin = new Float32Array(T * F);
    let positions = 0;
    for (let t = 0; t < T; t++) {
      let selected = false;
      for (let f = 0; f < F; f++) if (mask[t * F + f]) selected = true;
      if (!selected) continue;
      positions++;
      for (let f = 0; f < F; f++) lin[t * F + f] = spec.direction[f]!;
    }
    const report = lin.map((v) => v / positions);
    return { l1: zero, lin, C: 0, report, offset: 0 };
  }
  const count = mask.reduce((a, b) => a + b, 0);
  const mean = mask.map((v) => v / count);
  switch (spec.kind) {
    case 'l1':
      return { l1: mask, lin: zero, C: spec.C, report: mean, offset: 0 };
    case 'sum':
      return { l1: zero, lin: mask, C: 0, report: mean, offset: spec.C * count };
    case 'max':
      return { l1: zero, lin: mean, C: 0, report: mean, offset: 0 };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The loss graphs. Every search in src/features runs one of these through ModelRunner.runGraph; each is built once
// per (kind, shape, blocks, hook) and cached by the runner.

export interface ObjectiveFeeds {
  x: Float32Array;
  l1: Float32Array;
  lin: Float32Array;
  C: Float32Array;
  report: Float32Array;
}

export interface ObjectiveResult {
  loss: Float32Array;
  act: Float32Array;
  grad: Float32Array;
}

/**
 * The objective graph: for B independent problems on input embeddings x [B, T, D] through blocks A..B,
 *   loss[b] = Σ l1[b] ⊙ |C[b] − O[b]|  −  Σ lin[b] ⊙ O[b]      (O = the hook output, [T, F] per problem)
 *   act[b]  = Σ report[b] ⊙ O[b]
 * and d(loss[b])/d(x[b]). Every objective is one of these two forms (L1 to a constant, or a weighted sum: `sum`,
 * `max` and `--direction`), so one graph per shape serves any mix of objectives in a batch. Problems never mix: a NaN
 * in one stays in its own row. Exported so the benchmark profiles exactly the graph the optimiser runs.
 */
export function buildObjective(g: Graph, cfg: ModelConfig, w: Weights, range: BlockRange, hook: Hook, shape: { B: number; T: number }, map?: FeatureMap): void {
  const { B, T } = shape;
  const F = map ? map.width : hookWidth(cfg, hook);
  const x = g.input('x', [B, T, cfg.dim], { grad: true });
  const H = runBlocks(g, cfg, w, architectureOf(cfg).inputFromEmbeddings(x, cfg, w), range, hook);
  // With a feature map (an SAE), the loss drives its objective side (pre-activation by default) and `act` reports
  // its activation side (post); without one both are the hook output.
  const { objective: O, activation: A } = map ? map.build(g, H) : { objective: H, activation: H };
  const l1 = g.input('l1', [B, T, F]);
  const lin = g.input('lin', [B, T, F]);
  const C = g.input('C', [B, 1, 1]);
  const report = g.input('report', [B, T, F]);
  // One reduction over both terms (Σ (l1 ⊙ |C − O| − lin ⊙ O)): a node fewer forward and backward than two.
  const loss = reduceSum(sub(mul(l1, abs(sub(C, O))), mul(lin, O)), [1, 2]);
  g.output(loss, 'loss');
  g.output(reduceSum(mul(report, A), [1, 2]), 'act');
  g.output(grad(loss, [x])[0]!, 'grad');
}

/** One evaluation of the objective graph (see buildObjective): loss, activation and gradient per problem. */
export async function objectiveStep(runner: ModelRunner, range: BlockRange, hook: Hook, feeds: ObjectiveFeeds, shape: { B: number; T: number }, map?: FeatureMap): Promise<ObjectiveResult> {
  const { B, T } = shape;
  const key = `objective|${B}|${T}|${range.join('-')}|${hook}${map ? `|${map.key}` : ''}`;
  const out = await runner.runGraph(key, (g, w) => buildObjective(g, runner.config, w, range, hook, shape, map), { ...feeds }, { range, B, T });
  return { loss: out.loss!, act: out.act!, grad: out.grad! };
}

/**
 * The identity path's part of the objective's activation, for the `resid` hook: with X = what block A receives from
 * the embeddings x (x itself for Llama; x plus the position table for GPT-2), skip[b] = Σ report[b] ⊙ X[b] — the same
 * reduction `act` applies to O. Block A..B's resid output is O = X + Σ (attn_out + mlp_out) over the blocks, so
 * skip / act is the share of the activation the blocks did not add (visualize.ts: `skip.share`).
 */
export async function skipPathStep(runner: ModelRunner, feeds: { x: Float32Array; report: Float32Array }, shape: { B: number; T: number }): Promise<Float32Array> {
  const { B, T } = shape;
  const cfg = runner.config;
  const out = await runner.runGraph(`skip-path|${B}|${T}`, (g, w) => {
    const x = g.input('x', [B, T, cfg.dim]);
    const report = g.input('report', [B, T, cfg.dim]);
    g.output(reduceSum(mul(report, architectureOf(cfg).inputFromEmbeddings(x, cfg, w)), [1, 2]), 'skip');
  }, { ...feeds });
  return out.skip!;
}

export interface MatchFeeds {
  /** Input embeddings [B, T, D]. */
  x: Float32Array;
  /** The hook output to match [B, T, F]. */
  target: Float32Array;
  /** Per-problem weight of the L1 distance [B]. */
  l1: Float32Array;
  /** Per-problem weight of the cosine term Σ_t (1 − cos(O_t, O*_t)) [B]. */
  cos: Float32Array;
}

/**
 * Matching a target hook output, for input recovery: on embeddings x [B, T, D] through blocks A..B,
 *   loss[b] = l1[b] · Σ |O[b] − target[b]|  +  cos[b] · Σ_t (1 − cos(O[b,t], target[b,t]))
 * and d(loss[b])/d(x[b]). Problems never mix.
 */
export async function matchStep(runner: ModelRunner, range: BlockRange, hook: Hook, feeds: MatchFeeds, shape: { B: number; T: number }): Promise<{ loss: Float32Array; grad: Float32Array }> {
  const { B, T } = shape;
  const cfg = runner.config;
  const F = hookWidth(cfg, hook);
  const out = await runner.runGraph(`match|${B}|${T}|${range.join('-')}|${hook}`, (g, w) => {
    const x = g.input('x', [B, T, cfg.dim], { grad: true });
    const O = runBlocks(g, cfg, w, architectureOf(cfg).inputFromEmbeddings(x, cfg, w), range, hook);
    const target = g.input('target', [B, T, F]);
    const l1w = g.input('l1', [B]);
    const cosw = g.input('cos', [B]);
    const l1 = reduceSum(abs(sub(O, target)), [1, 2]);
    const norm = (v: Value) => sqrt(add(reduceSum(mul(v, v), [2]), 1e-12));
    const cos = div(reduceSum(mul(O, target), [2]), mul(norm(O), norm(target)));
    const loss = add(mul(l1w, l1), mul(cosw, reduceSum(sub(1, cos), [1])));
    g.output(loss, 'loss');
    g.output(grad(loss, [x])[0]!, 'grad');
  }, { ...feeds }, { range, B, T });
  return { loss: out.loss!, grad: out.grad! };
}

export interface FluencyFeeds {
  /** Input embeddings [B, T, D] (through the full model, from block 1). */
  x: Float32Array;
  /** Next-token targets as weighted one-hots [B, T, V]: row t holds w_t at the id that follows position t. */
  targets: Float32Array;
  /** The row weights w_t [B, T, 1] (0 where a position predicts nothing). */
  rows: Float32Array;
}

/**
 * Full-model next-token logits [B, T, V] for embeddings x [B, T, D], and the gradient with respect to x of the
 * weighted cross-entropy Σ_t w_t · (logsumexp(logits_t) − logits_t[target_t]). The cross-entropy itself is computed
 * from the logits by the caller (the graph has no log); its gradient with respect to the logits, softmax · w − onehot · w,
 * is fed to the backward pass as the upstream gradient.
 */
export async function fluencyStep(runner: ModelRunner, feeds: FluencyFeeds, shape: { B: number; T: number }): Promise<{ logits: Float32Array; grad: Float32Array }> {
  const { B, T } = shape;
  const cfg = runner.config;
  const out = await runner.runGraph(`fluency|${B}|${T}`, (g, w) => {
    const x = g.input('x', [B, T, cfg.dim], { grad: true });
    const logits = fullLogits(g, cfg, w, architectureOf(cfg).inputFromEmbeddings(x, cfg, w));
    const targets = g.input('targets', [B, T, cfg.vocabSize]);
    const rows = g.input('rows', [B, T, 1]);
    const seed = sub(mul(softmax(logits, -1), rows), targets);
    g.output(logits, 'logits');
    g.output(grad(logits, [x], seed)[0]!, 'grad');
  }, { ...feeds }, { range: null, B, T });
  return { logits: out.logits!, grad: out.grad! };
}
