/**
 * Runs a loaded model's graphs: builds each (request shape → graph) once, keeps its onnxruntime session in a
 * per-process cache, and binds only the weights the graph touches.
 */
import { UserError } from '../errors.js';
import { grad } from '../graph/autodiff.js';
import { Graph } from '../graph/graph.js';
import { abs, add, div, mul, reduceSum, softmax, sqrt, sub } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { hookWidth, HOOKS, type Hook, type ModelConfig } from '../models/config.js';
import type { LoadedModel } from '../models/load.js';
import { architectureOf, fullLogits, runBlocks, type BlockRange, type Weights } from '../models/transformer.js';
import { GraphSession, type SessionSettings } from './session.js';
import { mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { activationBytes, checkMemory, estimate } from './memory.js';
import { WeightCache } from './weight-cache.js';
import { commonAncestor, WeightBinder } from './weights.js';

export interface Hidden {
  /** [B, T, F] */
  shape: [number, number, number];
  data: Float32Array;
}


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

export interface FluencyFeeds {
  /** Input embeddings [B, T, D] (through the full model, from block 1). */
  x: Float32Array;
  /** Next-token targets as weighted one-hots [B, T, V]: row t holds w_t at the id that follows position t. */
  targets: Float32Array;
  /** The row weights w_t [B, T, 1] (0 where a position predicts nothing). */
  rows: Float32Array;
}

export class ModelRunner {
  private readonly sessions = new Map<string, Promise<GraphSession>>();
  private readonly folder: string;
  private readonly cache: WeightCache;

  constructor(
    readonly model: LoadedModel,
    readonly settings: SessionSettings & { cacheDir?: string } = {},
  ) {
    // F32 tensors are bound in place; others are converted once into the weight cache, on first use. The external-data
    // folder must hold both, so it is their common ancestor (decided without converting anything).
    this.cache = new WeightCache(settings.cacheDir);
    const tensors = [...model.tensors.values()];
    const dirs = new Set(tensors.filter((t) => t.dtype === 'F32').map((t) => path.dirname(realpathSync(t.file))));
    if (tensors.some((t) => t.dtype !== 'F32')) {
      mkdirSync(this.cache.dir, { recursive: true });
      dirs.add(realpathSync(this.cache.dir));
    }
    this.folder = commonAncestor([...dirs]);
  }

  get config() {
    return this.model.config;
  }

  /** Check a 1-based inclusive block range against the model. */
  checkRange(range: BlockRange, flag = '--blocks'): void {
    const n = this.config.nLayers;
    const [a, b] = range;
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b > n || a > b) {
      throw new UserError(`${flag}: block range ${a}-${b} is outside the model's blocks 1-${n}`);
    }
  }

  checkIds(ids: number[][], flag = '--ids'): void {
    const V = this.config.vocabSize;
    for (const row of ids) {
      // Positions past the context have no trained RoPE/position meaning, and an unbounded T is an unbounded [T, T]
      // attention allocation: refuse before any graph is built.
      if (row.length > this.config.maxSeqLen) throw new UserError(`${flag}: ${row.length} tokens exceed the model's context of ${this.config.maxSeqLen}`);
      for (const id of row) {
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new UserError(`${flag}: token id ${id} is outside the vocabulary 0-${V - 1}`);
      }
    }
  }

  /**
   * A graph over this model's weights; `build` wires inputs and outputs. Before anything is converted or mapped, the
   * request's memory is estimated from the tensors the graph binds and refused if it cannot fit.
   */
  private session(key: string, build: (g: Graph, w: Weights) => void, request?: { range: BlockRange | null; B: number; T: number }): Promise<GraphSession> {
    let s = this.sessions.get(key);
    if (!s) {
      const g = new Graph({ float: 'float32' });
      const binder = new WeightBinder(g, this.model.tensors, (t) => this.cache.locate(t), this.folder);
      build(g, binder);
      if (request) this.checkMemory(binder.boundNames(), request);
      binder.materialize();
      s = GraphSession.create(g, { ...this.settings, externalFolder: this.folder });
      this.sessions.set(key, s);
      // A failed creation must not poison the cache.
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  private checkMemory(bound: string[], req: { range: BlockRange | null; B: number; T: number }): void {
    const cfg = this.config;
    const bytesOf = (names: string[]) => {
      let all = 0;
      let matrices = 0;
      for (const n of names) {
        const t = this.model.tensors.get(n)!;
        const b = 4 * t.shape.reduce((x, y) => x * y, 1);
        all += b;
        if (t.shape.length === 2) matrices += b;
      }
      return { all, matrices };
    };
    const prepack = !this.settings.lowMemory;
    const [a, b] = req.range ?? [1, cfg.nLayers];
    const layerOf = (n: string) => Number(/^(?:blk|h)\.(\d+)\./.exec(n)?.[1] ?? -1);
    const totalFor = (blocks: number) => {
      const names = bound.filter((n) => layerOf(n) < a - 1 + blocks);
      const w = bytesOf(names);
      return estimate(w.all, w.matrices, activationBytes(cfg, blocks, req.B, req.T), prepack).total;
    };
    const w = bytesOf(bound);
    const est = estimate(w.all, w.matrices, activationBytes(cfg, b - a + 1, req.B, req.T), prepack);
    checkMemory(req.range ? `--blocks ${a}-${b}` : this.model.path, est, req.range, req.range ? totalFor : undefined);
  }

  /** Hook output of block B after applying blocks A..B directly to the token embeddings of `ids` ([B, T]). */
  async hidden(ids: number[][], range: BlockRange, hook: Hook): Promise<Hidden> {
    this.checkRange(range);
    this.checkIds(ids);
    if (!HOOKS.includes(hook)) throw new UserError(`--hook: unknown hook "${hook}" (expected ${HOOKS.join(', ')})`);
    const [B, T] = [ids.length, ids[0]!.length];
    const session = await this.session(`hidden|${B}|${T}|${range.join('-')}|${hook}`, (g, w) => {
      const x = this.embedIds(g, w, B, T);
      g.output(runBlocks(g, this.config, w, x, range, hook), 'out');
    }, { range, B, T });
    const out = await session.run({ ids: toInt64(ids) });
    return { shape: [B, T, hookWidth(this.config, hook)], data: out.out as Float32Array };
  }

  /**
   * One gradient evaluation for B independent problems on input embeddings x [B, T, D] through blocks A..B:
   *   loss[b] = Σ l1[b] ⊙ |C[b] − O[b]|  −  Σ lin[b] ⊙ O[b]      (O = the hook output, [T, F] per problem)
   *   act[b]  = Σ report[b] ⊙ O[b]
   * and d(loss[b])/d(x[b]). Every objective is one of these two forms (L1 to a constant, or a weighted sum: `sum`,
   * `max` and `--direction`), so one graph per shape serves any mix of objectives in a batch. Problems never mix: a NaN
   * in one stays in its own row.
   */
  async objective(range: BlockRange, hook: Hook, feeds: ObjectiveFeeds, shape: { B: number; T: number }): Promise<ObjectiveResult> {
    this.checkRange(range);
    const { B, T } = shape;
    const session = await this.session(`objective|${B}|${T}|${range.join('-')}|${hook}`, (g, w) => buildObjective(g, this.config, w, range, hook, shape), { range, B, T });
    const out = await session.run({ ...feeds });
    return { loss: out.loss as Float32Array, act: out.act as Float32Array, grad: out.grad as Float32Array };
  }

  /**
   * Matching a target hook output, for input recovery: on embeddings x [B, T, D] through blocks A..B,
   *   loss[b] = l1[b] · Σ |O[b] − target[b]|  +  cos[b] · Σ_t (1 − cos(O[b,t], target[b,t]))
   * and d(loss[b])/d(x[b]). Problems never mix.
   */
  async match(range: BlockRange, hook: Hook, feeds: MatchFeeds, shape: { B: number; T: number }): Promise<{ loss: Float32Array; grad: Float32Array }> {
    this.checkRange(range);
    const { B, T } = shape;
    const D = this.config.dim;
    const F = hookWidth(this.config, hook);
    const session = await this.session(`match|${B}|${T}|${range.join('-')}|${hook}`, (g, w) => {
      const x = g.input('x', [B, T, D], { grad: true });
      const O = runBlocks(g, this.config, w, architectureOf(this.config).inputFromEmbeddings(x, this.config, w), range, hook);
      const target = g.input('target', [B, T, F]);
      const l1w = g.input('l1', [B]);
      const cosw = g.input('cos', [B]);
      const l1 = reduceSum(abs(sub(O, target)), [1, 2]);
      const norm = (v: Value) => sqrt(add(reduceSum(mul(v, v), [2]), 1e-12));
      const cos = div(reduceSum(mul(O, target), [2]), mul(norm(O), norm(target)));
      const loss = add(mul(l1w, l1), mul(cosw, reduceSum(sub(1, cos), [1])));
      g.output(loss, 'loss');
      g.output(grad(loss, [x])[0]!, 'grad');
    }, { range, B, T });
    const out = await session.run({ ...feeds });
    return { loss: out.loss as Float32Array, grad: out.grad as Float32Array };
  }

  /**
   * Full-model next-token logits [B, T, V] for embeddings x [B, T, D], and the gradient with respect to x of the
   * weighted cross-entropy Σ_t w_t · (logsumexp(logits_t) − logits_t[target_t]). The cross-entropy itself is computed
   * from the logits by the caller (the graph has no log); its gradient with respect to the logits, softmax · w − onehot · w,
   * is fed to the backward pass as the upstream gradient.
   */
  async fluencyGrad(feeds: FluencyFeeds, shape: { B: number; T: number }): Promise<{ logits: Float32Array; grad: Float32Array }> {
    const { B, T } = shape;
    const { dim: D, vocabSize: V } = this.config;
    const session = await this.session(`fluency|${B}|${T}`, (g, w) => {
      const x = g.input('x', [B, T, D], { grad: true });
      const logits = fullLogits(g, this.config, w, architectureOf(this.config).inputFromEmbeddings(x, this.config, w));
      const targets = g.input('targets', [B, T, V]);
      const rows = g.input('rows', [B, T, 1]);
      const seed = sub(mul(softmax(logits, -1), rows), targets);
      g.output(logits, 'logits');
      g.output(grad(logits, [x], seed)[0]!, 'grad');
    }, { range: null, B, T });
    const out = await session.run({ ...feeds });
    return { logits: out.logits as Float32Array, grad: out.grad as Float32Array };
  }

  /**
   * The model's own mean next-token cross-entropy (nats) of each sequence [B, T]: the mean over positions 1..T−1 of
   * −log p(ids[t] | ids[<t]). A sequence of one token has none (NaN).
   */
  async crossEntropy(ids: number[][]): Promise<Float64Array> {
    const V = this.config.vocabSize;
    const T = ids[0]!.length;
    const { data } = await this.logits(ids);
    return Float64Array.from(ids, (row, b) => {
      let sum = 0;
      for (let t = 0; t + 1 < T; t++) sum += logSumExp(data, (b * T + t) * V, V) - data[(b * T + t) * V + row[t + 1]!]!;
      return T > 1 ? sum / (T - 1) : NaN;
    });
  }

  /** Hook output for embeddings x [B, T, D] given directly (the decoded-token check and attribution use ids instead). */
  async hiddenFromEmbeddings(x: Float32Array, range: BlockRange, hook: Hook, shape: { B: number; T: number }): Promise<Hidden> {
    this.checkRange(range);
    const { B, T } = shape;
    const session = await this.session(`hiddenEmb|${B}|${T}|${range.join('-')}|${hook}`, (g, w) => {
      const e = g.input('x', [B, T, this.config.dim]);
      g.output(runBlocks(g, this.config, w, architectureOf(this.config).inputFromEmbeddings(e, this.config, w), range, hook), 'out');
    });
    const out = await session.run({ x });
    return { shape: [B, T, hookWidth(this.config, hook)], data: out.out as Float32Array };
  }

  /** Full-model logits [B, T, V]. */
  async logits(ids: number[][]): Promise<Hidden> {
    this.checkIds(ids);
    const [B, T] = [ids.length, ids[0]!.length];
    const session = await this.session(`logits|${B}|${T}`, (g, w) => {
      g.output(fullLogits(g, this.config, w, this.embedIds(g, w, B, T)), 'out');
    }, { range: null, B, T });
    const out = await session.run({ ids: toInt64(ids) });
    return { shape: [B, T, this.config.vocabSize], data: out.out as Float32Array };
  }

  /**
   * Logits at one position of a sequence padded to `length` (a bucket). Attention is causal, so padding after the
   * position cannot change it; one session per bucket serves a whole generation.
   */
  async logitsAt(ids: number[], position: number, length: number): Promise<Float32Array> {
    const session = await this.session(`logitsAt|${length}`, (g, w) => {
      const x = this.embedIds(g, w, 1, length);
      const pos = g.input('pos', [1], { dtype: 'int64' });
      g.output(fullLogits(g, this.config, w, x, pos), 'out');
    }, { range: null, B: 1, T: length });
    const padded = [...ids, ...Array(length - ids.length).fill(0)];
    const out = await session.run({ ids: toInt64([padded]), pos: BigInt64Array.from([BigInt(position)]) });
    return out.out as Float32Array;
  }

  private embedIds(g: Graph, w: Weights, B: number, T: number): Value {
    const ids = g.input('ids', [B, T], { dtype: 'int64' });
    return architectureOf(this.config).embed(ids, this.config, w);
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await (await s.catch(() => null))?.release();
    this.sessions.clear();
  }
}

/** log Σ exp over data[offset .. offset + n), computed stably in float64. */
/**
 * The graph behind ModelRunner.objective (see there): inputs x, l1, lin, C, report; outputs loss, act, grad. Exported
 * so the benchmark profiles exactly the graph the optimiser runs.
 */
export function buildObjective(g: Graph, cfg: ModelConfig, w: Weights, range: BlockRange, hook: Hook, shape: { B: number; T: number }): void {
  const { B, T } = shape;
  const F = hookWidth(cfg, hook);
  const x = g.input('x', [B, T, cfg.dim], { grad: true });
  const O = runBlocks(g, cfg, w, architectureOf(cfg).inputFromEmbeddings(x, cfg, w), range, hook);
  const l1 = g.input('l1', [B, T, F]);
  const lin = g.input('lin', [B, T, F]);
  const C = g.input('C', [B, 1, 1]);
  const report = g.input('report', [B, T, F]);
  const loss = sub(reduceSum(mul(l1, abs(sub(C, O))), [1, 2]), reduceSum(mul(lin, O), [1, 2]));
  g.output(loss, 'loss');
  g.output(reduceSum(mul(report, O), [1, 2]), 'act');
  g.output(grad(loss, [x])[0]!, 'grad');
}

export function logSumExp(data: ArrayLike<number>, offset: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, data[offset + i]!);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(data[offset + i]! - max);
  return max + Math.log(s);
}

function toInt64(rows: number[][]): BigInt64Array {
  return BigInt64Array.from(rows.flat(), (x) => BigInt(x));
}
