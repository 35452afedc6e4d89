/**
 * Feature visualization: optimise input embeddings so that blocks A..B drive a selected slice of a hook, decode them
 * to tokens, and check the decode against the continuous optimum and random tokens.
 *
 * Every run's random start comes from (seed, its selection) alone, and runs of one batch never interact (padding rows
 * have zero weights), so a run gives the same result whatever it is batched with.
 */
import { displayText } from '../tokenizers/display.js';
import { paramError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { BlockRange } from '../models/block-range.js';
import type { Hook } from '../models/config.js';
import { featureMapOf, featureWidth, type SaeFile, type SaeObjective } from './sae.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { deriveSeed, normalStream, uniformStream } from '../util/random.js';
import { Decoder, topIndices, typicalNeighbourCosine, type DecodeMode } from './decode.js';
import { objectiveStep, objectiveWeights, type ObjectiveFeeds, type ObjectiveSpec, type ObjectiveWeights } from './objective.js';
import { learningRate, Optimizer, type OptimizerKind } from './optimize.js';
import { exhaustiveScores, summarizeExhaustive, type ExhaustiveResult } from './exhaustive.js';
import { allowedTokens, checkRefineSettings, refineActivation, type Refined, type RefineSettings } from './refine/index.js';
import { checkSettings, defaultSettings, settingsRecord } from './settings.js';
import { expandSelection, MAX_VISUALIZE_RUNS, type SelectionRun } from './selection.js';
import { applyPercentiles, type CalibrationInfo, type Percentiles, type ReferenceProvider } from './calibrate.js';
import { optimizedPositions } from './optimized.js';
import { verdictOf, type Finding } from './verdict.js';
import { tokenCells } from '../tokenizers/cells.js';

export type InitKind = { kind: 'randn' } | { kind: 'random-tokens' } | { kind: 'tokens'; ids: number[] };
export type { OptimizerKind } from './optimize.js';

export interface VisualizeSettings {
  blocks: BlockRange;
  hook: Hook;
  /** Free (optimised) positions. */
  tokens: number;
  steps: number;
  lr: number;
  lrEnd: number;
  optimizer: OptimizerKind;
  objective: ObjectiveSpec;
  topk: number;
  decode: DecodeMode;
  init: InitKind;
  /** Fixed, not optimised, context around the free positions (token ids). */
  prefix: number[];
  suffix: number[];
  bos: boolean;
  seed: number;
  batch: number;
  /** Random token sequences averaged for the "random" activation. */
  randomDraws: number;
  /** Discrete refinement of the decoded prompt (GCG or EPO); null or absent: none. */
  refine?: RefineSettings | null;
  /** Also run the exhaustive single-token baseline (every vocabulary token; see exhaustive.ts). */
  exhaustive?: boolean;
  /** An SAE on the hook (sae.ts): the feature axis is its latents. Absent or null: the hook's own features. */
  sae?: SaeFile | null;
  /** The latent's side the objective drives (reported activations are always post); default pre. */
  saeObjective?: SaeObjective;
}

/** The settings table's defaults for visualize (src/features/settings.ts states them; this is their typed view). */
export const DEFAULT_SETTINGS = defaultSettings('visualize') as unknown as Omit<VisualizeSettings, 'blocks' | 'hook'>;

export interface RunResult {
  select: string;
  blocks: [number, number];
  hook: Hook;
  settings: Record<string, unknown>;
  /** Full input sequence: fixed context ids and, at free positions, the top-1 decode. */
  ids: number[];
  /** Indices of the free positions within `ids`. */
  free: number[];
  /** The free positions the objective can change (optimized.ts): positions after the last selected one get no gradient. */
  optimized?: number[];
  /** k rows; row i = the i-th ranked token at every position (fixed positions repeat their token). */
  topk: number[][];
  topk_text: string[];
  /** The rows token by token (tokenizers/cells.ts): `·` between tokens, ⟨…⟩ byte/special tokens, [x] not optimised. */
  topk_cells?: string[];
  /** Per position: cosine between the optimised embedding and the top-1 token's embedding. */
  cosine: number[];
  /**
   * For scale: the model's typical (median) nearest-neighbour cosine between real token embeddings, byte-fallback and
   * special tokens excluded (they are near-duplicates). A decode cosine far below it means the optimum is not near any
   * real token.
   */
  cosine_scale: number;
  activation: { continuous: number | null; decoded: number | null; random: number | null };
  objective: { initial: number | null; final: number | null };
  baseline: Baseline | null;
  /** The refined prompt (`settings.refine`), next to `activation.decoded`; null when not asked for or failed. */
  refined?: Refined | null;
  /** The exhaustive single-token baseline (`settings.exhaustive`), with the decoded tokens' ranks; null when off. */
  exhaustive?: ExhaustiveResult | null;
  /** Sampled loss curve: [step, loss]. */
  loss: [number, number][];
  status: 'ok' | 'failed';
  error?: string;
  /** The direction vector of a `--direction` objective, kept with the result (the record names it by content hash). */
  direction?: number[];
  /** With `--sae`: which SAE's latents the selection indexes (the record's settings name it by content hash). */
  sae?: { hash: string; path: string; architecture: string; d_sae: number; hook_name: string | null; objective: SaeObjective };
  /** Run options and the llm-features version that computed the record (atlas build): provenance, not settings. */
  provenance?: Record<string, unknown>;
  /** Every activation as a percentile of real text (calibrate.ts); null without a reference (--corpus / --scan-db). */
  percentile?: Percentiles | null;
  calibration?: CalibrationInfo | null;
  /** Findings with documented thresholds (verdict.ts); `status` only says the run completed. */
  verdict?: Finding[];
  /**
   * optimize_ms, decode_ms, verify_ms: the whole batch's (`batch_runs` runs optimised together in one graph), not this
   * run's alone; refine_ms: this run's refinement; exhaustive_ms: the selection's exhaustive pass divided among its runs.
   */
  timings: { optimize_ms: number; decode_ms: number; verify_ms: number; batch_runs?: number; refine_ms?: number; exhaustive_ms?: number };
}

/** The skip-connection baseline for a single `resid` feature: decode the feature's unit vector, no model needed. */
export interface Baseline {
  kind: 'skip-connection';
  /** Top-k tokens of the unit vector's pseudoinverse decode. */
  tokens: number[];
  tokens_text: string[];
  /** Share of free positions whose top-1 decode equals the baseline's top-1 token. */
  agreement: number;
  /** Activation with the baseline's top-1 token at every free position. */
  activation: number | null;
}

export interface VisualizeRequest {
  select: string;
  settings: VisualizeSettings;
  /** Optional warm start: initial embeddings [T × D] per run index (library use; NaNs here make a failing run). */
  initialEmbeddings?: (runIndex: number) => Float32Array | undefined;
  onProgress?: (done: number, total: number) => void;
  /** Reference distributions of real text to calibrate every activation against (calibrate.ts: --corpus, --scan-db). */
  reference?: ReferenceProvider;
}

/** Token ids eligible as random or decoded "real" tokens: not byte-fallback, not control tokens. */
export function normalTokenIds(tokenizer: Tokenizer | null, vocab: number): number[] {
  const out: number[] = [];
  for (let id = 0; id < vocab; id++) {
    if (tokenizer) {
      if (id === tokenizer.bosId || id === tokenizer.eosId) continue;
      const p = tokenizer.piece(id);
      if (/^<0x[0-9A-Fa-f]{2}>$/.test(p) || /^<[^\s<>]{1,16}>$/.test(p)) continue;
    }
    out.push(id);
  }
  return out;
}

export interface Layout {
  T: number;
  free: number[];
  fixed: Map<number, number>;
}

/** Where the free positions and the fixed context (BOS, prefix, suffix) go. */
export function layout(s: VisualizeSettings, bosId: number | null): Layout {
  const head = [...(s.bos ? [bosId!] : []), ...s.prefix];
  const fixed = new Map<number, number>();
  head.forEach((id, i) => fixed.set(i, id));
  const free = Array.from({ length: s.tokens }, (_, i) => head.length + i);
  s.suffix.forEach((id, i) => fixed.set(head.length + s.tokens + i, id));
  return { T: head.length + s.tokens + s.suffix.length, free, fixed };
}

export class Visualizer {
  readonly decoder: Decoder;
  readonly normalIds: number[];

  constructor(
    readonly runner: ModelRunner,
    readonly tokenizer: Tokenizer | null,
    decoder: Decoder,
  ) {
    this.decoder = decoder;
    this.normalIds = normalTokenIds(tokenizer, runner.config.vocabSize);
  }

  private scale: number | null = null;

  /** Median nearest-neighbour cosine among normal tokens (a sample of 256 for large vocabularies), computed once. */
  cosineScale(): number {
    this.scale ??= typicalNeighbourCosine(this.decoder, this.normalIds, { sample: 256 }).median;
    return this.scale;
  }

  private text(ids: number[]): string {
    return displayText(this.tokenizer, ids);
  }

  /** Optimise, decode and verify every run of a selection under one settings set. */
  async run(req: VisualizeRequest): Promise<RunResult[]> {
    const s = req.settings;
    const cfg = this.runner.config;
    checkSettings('visualize', s);
    this.runner.checkRange(s.blocks);
    if (s.bos && (this.tokenizer?.bosId ?? null) === null) throw paramError('bos', 'the model has no BOS token');
    const lay = layout(s, this.tokenizer?.bosId ?? null);
    if (lay.T > cfg.maxSeqLen) throw paramError('tokens', `${lay.T} positions exceed the model's context of ${cfg.maxSeqLen}`);
    const F = featureWidth(cfg, s.hook, featureMapOf(s));
    const runs = expandSelection(req.select, lay.T, F, { maxRuns: MAX_VISUALIZE_RUNS, hint: 'sweep features with `atlas build --features A-B` (resumable)' });
    if (s.refine) {
      // Refinement settings and token filters are checked before any optimisation runs.
      checkRefineSettings(s.refine);
      allowedTokens(this.tokenizer, cfg.vocabSize, s.refine.filter);
      if (s.refine.retokenize && !this.tokenizer) throw paramError('refine.retokenize', 'needs a tokenizer');
    }
    const results: RunResult[] = [];
    // A request with fewer runs than --batch gets a graph of its own size (a lone feature should not pay for 31 padding
    // rows); the last, partial chunk of a longer request is padded, so every chunk reuses one session.
    const B = Math.min(s.batch, runs.length);
    for (let start = 0; start < runs.length; start += s.batch) {
      const chunk = runs.slice(start, start + s.batch);
      const batch = await this.runBatch(chunk, B, start, s, lay, F, req);
      if (s.refine) await this.refineRuns(batch, chunk, s, lay, F);
      results.push(...batch);
      req.onProgress?.(Math.min(start + s.batch, runs.length), runs.length);
    }
    if (s.exhaustive) await this.exhaustiveRuns(results, runs, s, lay);
    if (req.reference) {
      const refs = await req.reference(runs, s, lay);
      results.forEach((r, i) => applyPercentiles(r, refs[i]!));
    }
    for (const r of results) {
      r.percentile ??= null;
      r.calibration ??= null;
      r.verdict = verdictOf(r);
    }
    return results;
  }

  /** Discrete refinement of each successful run's decoded prompt, for that run's activation. */
  private async refineRuns(results: RunResult[], runs: SelectionRun[], s: VisualizeSettings, lay: Layout, F: number): Promise<void> {
    for (const [b, r] of results.entries()) {
      if (r.status !== 'ok') continue;
      const t0 = performance.now();
      const run = runs[b]!;
      r.refined = await refineActivation(this.runner, this.decoder, this.tokenizer, {
        blocks: s.blocks,
        hook: s.hook,
        map: featureMapOf(s),
        report: objectiveWeights(s.objective, run, lay.T, F).report,
        start: r.ids,
        // The decode's next rows, as further GCG starts (fixed positions repeat their token in every row).
        alternatives: r.topk.slice(1),
        free: lay.free,
        settings: { ...s.refine!, seed: deriveSeed(s.refine!.seed, `${run.label}|refine`) },
      });
      r.timings.refine_ms = round(performance.now() - t0);
    }
  }

  /** The exhaustive baseline for every run, one pass over the vocabulary for all of them. */
  private async exhaustiveRuns(results: RunResult[], runs: SelectionRun[], s: VisualizeSettings, lay: Layout): Promise<void> {
    const t0 = performance.now();
    const scores = await exhaustiveScores(this.runner, runs, { blocks: s.blocks, hook: s.hook, map: featureMapOf(s), layout: lay, objective: s.objective, seed: s.seed, contextIds: this.normalIds });
    const ms = round((performance.now() - t0) / Math.max(1, runs.length));
    results.forEach((r, i) => {
      // Only optimised positions are ranked: the others keep their random start and are no decode.
      const positions = r.optimized ?? lay.free;
      const decoded = r.status === 'ok' ? positions.map((t) => r.ids[t]!) : [];
      r.exhaustive = summarizeExhaustive(scores[i]!, s.topk, this.tokenizer, decoded, positions);
      r.timings.exhaustive_ms = ms;
    });
  }

  /** Optimise one batch of runs together; rows past the chunk are zero-weight padding so every batch has one shape. */
  private async runBatch(runs: SelectionRun[], B: number, offset: number, s: VisualizeSettings, lay: Layout, F: number, req: VisualizeRequest): Promise<RunResult[]> {
    const { T } = lay;
    const D = this.runner.config.dim;
    const shape = { B, T };
    const map = featureMapOf(s);
    const weights = runs.map((r) => objectiveWeights(s.objective, r, T, F));
    const feeds = {
      x: new Float32Array(B * T * D),
      l1: new Float32Array(B * T * F),
      lin: new Float32Array(B * T * F),
      C: new Float32Array(B),
      report: new Float32Array(B * T * F),
    };
    weights.forEach((w, b) => {
      feeds.l1.set(w.l1, b * T * F);
      feeds.lin.set(w.lin, b * T * F);
      feeds.C[b] = w.C;
      feeds.report.set(w.report, b * T * F);
    });
    runs.forEach((r, b) => feeds.x.set(this.initial(r, offset + b, s, lay, req), b * T * D));

    const failed: (string | null)[] = runs.map(() => null);
    const curves: [number, number][][] = runs.map(() => []);
    const every = Math.max(1, Math.floor(s.steps / 100));
    const optimizer = new Optimizer(s.optimizer, B * T * D);
    let initialLoss: Float32Array | null = null;
    const t0 = performance.now();
    for (let step = 0; step < s.steps; step++) {
      const res = await objectiveStep(this.runner, s.blocks, s.hook, feeds, shape, map);
      if (step === 0) initialLoss = res.loss.slice();
      const lr = learningRate(s, step);
      runs.forEach((_, b) => {
        if (failed[b]) return;
        const loss = res.loss[b]! + weights[b]!.offset;
        if (!Number.isFinite(loss)) {
          failed[b] = `loss became ${loss} at step ${step}`;
          return;
        }
        if (step % every === 0) curves[b]!.push([step, loss]);
        for (const t of lay.free) optimizer.update(feeds.x, res.grad, (b * T + t) * D, D, lr, step);
      });
    }
    const final = await objectiveStep(this.runner, s.blocks, s.hook, feeds, shape, map);
    const optimizeMs = performance.now() - t0;

    // Decode each run's free positions and rebuild full id sequences.
    const t1 = performance.now();
    const decoded = runs.map((_, b) => {
      if (failed[b] || !Number.isFinite(final.loss[b]!)) {
        failed[b] ??= `final loss is ${final.loss[b]}`;
        return null;
      }
      const rows: number[][] = [];
      const cos: number[] = [];
      for (let t = 0; t < T; t++) {
        const fixedId = lay.fixed.get(t);
        if (fixedId !== undefined) {
          rows.push(Array(s.topk).fill(fixedId));
          cos.push(1);
          continue;
        }
        const e = feeds.x.subarray((b * T + t) * D, (b * T + t + 1) * D);
        const top = topIndices(this.decoder.scores(e, s.decode), s.topk);
        rows.push(top);
        cos.push(this.decoder.cosine(e, top[0]!));
      }
      return { rows, cos };
    });
    const decodeMs = performance.now() - t1;

    // Verification: decoded tokens fed back as real tokens, and random real tokens.
    const t2 = performance.now();
    const idsOf = (b: number) => decoded[b]!.rows.map((r) => r[0]!);
    const decodedAct = await this.activationOf(runs.map((_, b) => (decoded[b] ? idsOf(b) : null)), s, feeds, shape);
    const randomSum = new Float64Array(runs.length);
    for (let draw = 0; draw < s.randomDraws; draw++) {
      const act = await this.activationOf(runs.map((r) => this.randomSequence(r, draw, s, lay)), s, feeds, shape);
      act.forEach((a, b) => (randomSum[b]! += a ?? NaN));
    }
    const baselines = await this.baselines(runs, weights, s, lay, F, feeds, shape, decoded.map((d) => (d ? d.rows.map((r) => r[0]!) : null)));
    const verifyMs = performance.now() - t2;

    return runs.map((run, b): RunResult => {
      const d = decoded[b];
      const ok = !failed[b] && d !== null;
      const topk = ok ? Array.from({ length: s.topk }, (_, i) => d!.rows.map((r) => r[i] ?? r[0]!)) : [];
      const optimized = optimizedPositions(run, lay.free);
      return {
        select: run.label,
        blocks: [s.blocks[0], s.blocks[1]],
        hook: s.hook,
        settings: settingsRecord(s),
        ids: ok ? idsOf(b) : [],
        free: lay.free,
        optimized,
        topk,
        topk_text: topk.map((row) => this.text(row)),
        topk_cells: topk.map((row) => tokenCells(this.tokenizer, row, new Set(optimized))),
        cosine: ok ? d!.cos : [],
        cosine_scale: this.cosineScale(),
        activation: {
          continuous: ok ? final.act[b]! : null,
          decoded: ok ? decodedAct[b]! : null,
          random: s.randomDraws > 0 ? randomSum[b]! / s.randomDraws : null,
        },
        objective: {
          initial: initialLoss ? initialLoss[b]! + weights[b]!.offset : null,
          final: ok ? final.loss[b]! + weights[b]!.offset : null,
        },
        baseline: baselines[b] ?? null,
        ...(s.objective.direction ? { direction: Array.from(s.objective.direction) } : {}),
        ...(s.sae ? { sae: { hash: s.sae.hash, path: s.sae.path, architecture: s.sae.architecture, d_sae: s.sae.dSae, hook_name: s.sae.hookName, objective: s.saeObjective ?? 'pre' } } : {}),
        refined: null,
        exhaustive: null,
        loss: curves[b]!,
        status: ok ? 'ok' : 'failed',
        ...(ok ? {} : { error: failed[b]! }),
        timings: { optimize_ms: round(optimizeMs), decode_ms: round(decodeMs), verify_ms: round(verifyMs), batch_runs: runs.length },
      };
    });
  }

  /** Starting embeddings [T × D]: fixed positions hold their tokens; free ones follow `init`. */
  private initial(run: SelectionRun, index: number, s: VisualizeSettings, lay: Layout, req: VisualizeRequest): Float32Array {
    const D = this.runner.config.dim;
    const given = req.initialEmbeddings?.(index);
    if (given) {
      if (given.length !== lay.T * D) throw new Error(`initial embeddings for run ${index} have ${given.length} values, expected ${lay.T * D}`);
      return given.slice();
    }
    const x = new Float32Array(lay.T * D);
    for (const [t, id] of lay.fixed) x.set(this.decoder.embedding(id), t * D);
    const seed = deriveSeed(s.seed, run.label);
    if (s.init.kind === 'randn') {
      const normal = normalStream(seed);
      for (const t of lay.free) for (let i = 0; i < D; i++) x[t * D + i] = normal();
    } else {
      const uniform = uniformStream(seed);
      const ids = s.init.kind === 'tokens' ? s.init.ids : lay.free.map(() => this.normalIds[Math.floor(uniform() * this.normalIds.length)]!);
      lay.free.forEach((t, i) => x.set(this.decoder.embedding(ids[i % ids.length]!), t * D));
    }
    return x;
  }

  private randomSequence(run: SelectionRun, draw: number, s: VisualizeSettings, lay: Layout): number[] {
    const uniform = uniformStream(deriveSeed(s.seed, `${run.label}|random|${draw}`));
    return Array.from({ length: lay.T }, (_, t) => lay.fixed.get(t) ?? this.normalIds[Math.floor(uniform() * this.normalIds.length)]!);
  }

  /** The objective graph's activation for real token sequences (null rows are skipped). */
  private async activationOf(seqs: (number[] | null)[], s: VisualizeSettings, feeds: ObjectiveFeeds, shape: { B: number; T: number }): Promise<(number | null)[]> {
    const D = this.runner.config.dim;
    const x = new Float32Array(shape.B * shape.T * D);
    seqs.forEach((ids, b) => ids?.forEach((id, t) => x.set(this.decoder.embedding(id), (b * shape.T + t) * D)));
    const res = await objectiveStep(this.runner, s.blocks, s.hook, { ...feeds, x }, shape, featureMapOf(s));
    return seqs.map((ids, b) => (ids ? res.act[b]! : null));
  }

  private async baselines(
    runs: SelectionRun[],
    _weights: ObjectiveWeights[],
    s: VisualizeSettings,
    lay: Layout,
    F: number,
    feeds: ObjectiveFeeds,
    shape: { B: number; T: number },
    top1: (number[] | null)[],
  ): Promise<(Baseline | null)[]> {
    // An SAE latent is not a unit vector of the residual stream: its model-free decode (of its encoder column) is for
    // the lead to wire into issue 13's generalised baseline; until then none.
    if (s.hook !== 'resid' || s.sae) return runs.map(() => null);
    const D = this.runner.config.dim;
    const out: (Baseline | null)[] = runs.map((r, b) => {
      if (r.features.all || r.features.indices.length !== 1 || F !== D) return null;
      const unit = new Float64Array(D);
      unit[r.features.indices[0]!] = 1;
      const tokens = topIndices(this.decoder.scores(unit, 'pinv'), s.topk);
      const mine = top1[b];
      // Positions without gradient keep their random start: they are not part of the result and are not counted.
      const counted = optimizedPositions(r, lay.free);
      const agreement = mine && counted.length ? counted.filter((t) => mine[t] === tokens[0]).length / counted.length : 0;
      return { kind: 'skip-connection', tokens, tokens_text: tokens.map((id) => this.text([id])), agreement, activation: null };
    });
    const seqs = out.map((bl) => (bl ? Array.from({ length: lay.T }, (_, t) => lay.fixed.get(t) ?? bl.tokens[0]!) : null));
    if (seqs.some((x) => x)) {
      const acts = await this.activationOf(seqs, s, feeds, shape);
      out.forEach((bl, b) => bl && (bl.activation = acts[b]!));
    }
    return out;
  }

  /** The same as run(): the name the CLI and the README use. */
  async visualize(req: VisualizeRequest): Promise<RunResult[]> {
    return this.run(req);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
