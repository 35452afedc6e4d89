/**
 * Runs a loaded model's graphs: builds each (request shape → graph) once, keeps its onnxruntime session in a
 * per-process cache, and binds only the weights the graph touches.
 */
import { paramError, UserError } from '../errors.js';
import { grad } from '../graph/autodiff.js';
import { Graph } from '../graph/graph.js';
import type { Value } from '../graph/value.js';
import { hookWidth, HOOKS, type Hook, type ModelConfig } from '../models/config.js';
import type { LoadedModel } from '../models/load.js';
import { tensorsByName } from '../models/registry.js';
import { architectureOf, fullLogits, runBlocks, type BlockRange, type Weights } from '../models/transformer.js';
import type { Device } from './device.js';
import { deviceMemory } from './device-memory.js';
import { GraphSession, type SessionSettings } from './session.js';
import { mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { activationBytes, checkMemory, estimate } from './memory.js';
import { WeightCache } from './weight-cache.js';
import { commonAncestor, WeightBinder } from './weights.js';

/**
 * A map applied in the graph to a hook output [B, T, F] → [B, T, width] (an SAE encoder, src/features/sae.ts): the
 * feature axis a selection then indexes. `activation` is what is reported; `objective` what an optimiser drives
 * (they differ for an SAE optimised on its pre-activation). `key` names it in session keys.
 */
export interface FeatureMap {
  key: string;
  inWidth: number;
  width: number;
  build(g: Graph, O: Value): { objective: Value; activation: Value };
}

export interface Hidden {
  /** [B, T, F] */
  shape: [number, number, number];
  data: Float32Array;
}


export class ModelRunner {
  private readonly sessions = new Map<string, Promise<GraphSession>>();
  /** Sessions this runner has built and the wall time that took (graph, weight binding, ORT session creation). */
  readonly sessionStats = { created: 0, ms: 0 };
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

  /** Where this runner's sessions execute (provenance for atlas records; not a setting: results agree to ~1e-6). */
  get device(): Device {
    return this.settings.device ?? 'cpu';
  }

  /** Check a 1-based inclusive block range against the model. */
  checkRange(range: BlockRange, param = 'blocks'): void {
    const n = this.config.nLayers;
    const [a, b] = range;
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b > n || a > b) {
      throw new UserError(`${param}: block range ${a}-${b} is outside the model's blocks 1-${n}`, undefined, param);
    }
  }

  checkIds(ids: number[][], param = 'ids'): void {
    const V = this.config.vocabSize;
    for (const row of ids) {
      // Positions past the context have no trained RoPE/position meaning, and an unbounded T is an unbounded [T, T]
      // attention allocation: refuse before any graph is built.
      if (row.length > this.config.maxSeqLen) throw new UserError(`${param}: ${row.length} tokens exceed the model's context of ${this.config.maxSeqLen}`, undefined, param);
      for (const id of row) {
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new UserError(`${param}: token id ${id} is outside the vocabulary 0-${V - 1}`, undefined, param);
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
      const t0 = performance.now();
      // --low-memory keeps weights file-backed and shared: folding them (concatenated q/k/v, gains moved into
      // matrices) would make anonymous copies, so that mode runs the unfolded graph.
      const g = new Graph({ float: 'float32', target: this.settings.device ?? 'cpu', foldWeights: !this.settings.lowMemory });
      const binder = new WeightBinder(g, this.model.tensors, (t) => this.cache.locate(t), this.folder, this.model.notDownloaded);
      build(g, binder);
      // The spec's tensor list is the single source of what a family binds; anything else is a bug in a block.
      const listed = tensorsByName(this.config);
      const stray = binder.boundNames().find((n) => !listed.has(n));
      if (stray) throw new Error(`graph binds ${stray}, which the ${this.config.arch} spec does not list`);
      if (request) this.checkMemory(binder.boundNames(), request);
      binder.materialize();
      s = GraphSession.create(g, { ...this.settings, externalFolder: this.folder });
      s.then(
        () => {
          this.sessionStats.created++;
          this.sessionStats.ms += performance.now() - t0;
        },
        () => {},
      );
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
    // Prepacking is the CPU provider's; on a GPU each weight is one device buffer.
    const prepack = !this.settings.lowMemory && this.device === 'cpu';
    const [a, b] = req.range ?? [1, cfg.nLayers];
    // Which block a tensor belongs to comes from the family's spec, so a new family cannot silently skew this.
    const specTensors = tensorsByName(cfg);
    const layerOf = (n: string) => specTensors.get(n)?.layer ?? -1;
    const totalFor = (blocks: number) => {
      const names = bound.filter((n) => layerOf(n) < a - 1 + blocks);
      const w = bytesOf(names);
      return estimate(w.all, w.matrices, activationBytes(cfg, blocks, req.B, req.T), prepack).total;
    };
    const w = bytesOf(bound);
    const est = estimate(w.all, w.matrices, activationBytes(cfg, b - a + 1, req.B, req.T), prepack);
    const what = `${req.range ? `blocks ${a}-${b}` : this.model.path}${this.device === 'cpu' ? '' : ` on ${this.device}`}`;
    checkMemory(what, est, req.range, req.range ? totalFor : undefined, deviceMemory(this.device), req.range ? 'blocks' : undefined);
  }

  /** Hook output of block B after applying blocks A..B directly to the token embeddings of `ids` ([B, T]). */
  async hidden(ids: number[][], range: BlockRange, hook: Hook, map?: FeatureMap): Promise<Hidden> {
    this.checkRange(range);
    this.checkIds(ids);
    if (!HOOKS.includes(hook)) throw paramError('hook', `unknown hook "${hook}" (expected ${HOOKS.join(', ')})`);
    const [B, T] = [ids.length, ids[0]!.length];
    const session = await this.session(`hidden|${B}|${T}|${range.join('-')}|${hook}${map ? `|${map.key}` : ''}`, (g, w) => {
      const x = this.embedIds(g, w, B, T);
      const O = runBlocks(g, this.config, w, x, range, hook);
      g.output(map ? map.build(g, O).activation : O, 'out');
    }, { range, B, T });
    const out = await session.run({ ids: toInt64(ids) });
    return { shape: [B, T, map ? map.width : hookWidth(this.config, hook)], data: out.out as Float32Array };
  }

  /**
   * Run a graph a caller builds over this model's weights — the feature objectives (src/features/objective.ts) are
   * such graphs: the engine runs graphs, it does not define what they optimise. The session is built once per `key`
   * (which must name everything the graph depends on: its kind, shape, blocks, hook) and cached; `request` sizes the
   * memory check made before anything is bound.
   */
  async runGraph(
    key: string,
    build: (g: Graph, w: Weights) => void,
    feeds: Record<string, Float32Array | BigInt64Array>,
    request?: { range: BlockRange | null; B: number; T: number },
  ): Promise<Record<string, Float32Array>> {
    if (request?.range) this.checkRange(request.range);
    const session = await this.session(key, build, request);
    return (await session.run(feeds)) as Record<string, Float32Array>;
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
  async hiddenFromEmbeddings(x: Float32Array, range: BlockRange, hook: Hook, shape: { B: number; T: number }, map?: FeatureMap): Promise<Hidden> {
    this.checkRange(range);
    const { B, T } = shape;
    const session = await this.session(`hiddenEmb|${B}|${T}|${range.join('-')}|${hook}${map ? `|${map.key}` : ''}`, (g, w) => {
      const e = g.input('x', [B, T, this.config.dim]);
      const O = runBlocks(g, this.config, w, architectureOf(this.config).inputFromEmbeddings(e, this.config, w), range, hook);
      g.output(map ? map.build(g, O).activation : O, 'out');
    });
    const out = await session.run({ x });
    return { shape: [B, T, map ? map.width : hookWidth(this.config, hook)], data: out.out as Float32Array };
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
