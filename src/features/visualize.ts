/**
 * Feature visualization: optimise input embeddings so that blocks A..B drive a selected slice of a hook, decode them
 * to tokens, and check the decode against the continuous optimum and random tokens.
 *
 * Every run's random start comes from (seed, its selection, its start index) alone (stability.ts: startSeed), and runs
 * of one batch never interact (padding rows have zero weights), so a run gives the same result whatever it is batched
 * with. `--seeds K` makes K such problems per selection and keeps one result per selection (the best start's).
 */
import { displayText } from '../tokenizers/display.js';
import { paramError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { BlockRange } from '../models/block-range.js';
import type { Hook, ModelConfig } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import { decoderRow, featureMapOf, featureWidth, type SaeFile, type SaeObjective } from './sae.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { deriveSeed, normalStream, uniformStream } from '../util/random.js';
import { logitEffects, selectionVector, type LogitEffects } from './logit-effects.js';
import { bestStart, stabilityOf, startSeed, type Stability, type StartOutcome } from './stability.js';
import { Decoder, randomDecodeCosine, topIndices, typicalNeighbourCosine, type DecodeMode } from './decode.js';
import { objectiveStep, objectiveWeights, skipPathStep, type ObjectiveFeeds, type ObjectiveSpec, type ObjectiveWeights } from './objective.js';
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
  /** Independent starts per selection (stability.ts); absent or 1: one. */
  seeds?: number;
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
  /**
   * The yardstick below which a decode cosine means nothing: the median cosine between random N(0, I) vectors and
   * their own top-1 decode (same decode mode; 256 seeded draws). The optimised embeddings are only "near real tokens"
   * if their cosine clearly exceeds it.
   */
  cosine_random?: { median: number; draws: number };
  activation: { continuous: number | null; decoded: number | null; random: number | null };
  objective: { initial: number | null; final: number | null };
  baseline: Baseline | null;
  /**
   * `resid` only: the share of the optimum's activation carried by the identity path (skipShare); for other hooks
   * share null with the reason in `not_applicable`.
   */
  skip?: SkipShare;
  /** `--seeds K` > 1: how the K starts agree (stability.ts); the record's decode is the best start's. */
  stability?: Stability | null;
  /** Tokens the selection's direction promotes / suppresses through the final norm and head (logit-effects.ts). */
  logit_effects?: LogitEffects | null;
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

/**
 * The model-free (skip-connection) decode of a `resid` selection: the pseudoinverse decode of the selection's
 * direction in the residual stream — a feature's unit vector, the sum of the unit vectors of a combined selection
 * (`[:, :, 0:4]` → e0+e1+e2+e3; `:` → all ones), or the `--direction` vector. No model is needed: it is what the
 * identity path alone would ask for.
 */
export interface Baseline {
  kind: 'skip-connection';
  /** Top-k tokens of the direction's pseudoinverse decode. */
  tokens: number[];
  tokens_text: string[];
  /** Share of optimised positions (optimized.ts) whose top-1 decode equals the baseline's top-1 token. */
  agreement: number;
  /** Activation with the baseline's top-1 token at every free position. */
  activation: number | null;
}

/**
 * skip.share, for the `resid` hook: at the optimised embeddings e*, with X = the input of block A (e* itself, plus
 * the position table for GPT-2; for a range A..B starting above 1 still the optimised input) and O = block B's resid
 * output,
 *   share = Σ report ⊙ X / Σ report ⊙ O
 * where report is the objective's own reduction over the selected positions and features (objective.ts): the mean
 * over the selected elements for one feature or a combined selection — e.g. Σ_{t∈P} e*[t,f] / Σ_{t∈P} O[t,f] — and the
 * direction's weights for `--direction`. Since O = X + the blocks' branch outputs, 1 − share is what the blocks
 * added. Null with a reason when the denominator is ≤ 0 (no share of a non-positive activation is meaningful), when
 * the run failed, or for a hook without an identity path.
 */
export interface SkipShare {
  share: number | null;
  not_applicable?: string;
}

export function skipShare(hook: Hook, ok: boolean, skip: number | undefined, act: number | undefined): SkipShare {
  if (hook !== 'resid') return { share: null, not_applicable: `the ${hook} hook has no identity path (its output does not contain the block's input)` };
  if (!ok || skip === undefined || act === undefined) return { share: null, not_applicable: 'the run failed' };
  if (!Number.isFinite(skip) || !Number.isFinite(act)) return { share: null, not_applicable: `the activation or its skip part is not finite (${act}, ${skip})` };
  if (!(act > 0)) return { share: null, not_applicable: `the optimum's activation is ${act} ≤ 0, so a share of it is undefined` };
  return { share: skip / act };
}

/** One optimisation problem: start `start` (0..K−1) of selection run `index`. */
interface Problem {
  run: SelectionRun;
  index: number;
  start: number;
}

export interface VisualizeRequest {
  select: string;
  settings: VisualizeSettings;
  /**
   * Optional warm start: initial embeddings [T × D] per run (selection) index (library use; NaNs here make a failing
   * run). With `seeds` > 1 it replaces start 0 only.
   */
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

/**
 * A run's last step: every activation as a percentile of its reference (when one is given) and the verdict, which
 * reads the percentiles. Also applied afterwards to finished results: a queue collector calibrates its workers' runs
 * against a reference only it holds (calibrateResults).
 */
export async function finishRuns(results: RunResult[], runs: SelectionRun[], s: VisualizeSettings, lay: Layout, reference?: ReferenceProvider): Promise<void> {
  if (reference) {
    const refs = await reference(runs, s, lay);
    results.forEach((r, i) => {
      applyPercentiles(r, refs[i]!);
      // A percentile is monotonic in the activation, so the starts' spread maps through the reference directly.
      if (r.stability) r.stability.percentile = { min: refs[i]!.rank(r.stability.decoded.min), max: refs[i]!.rank(r.stability.decoded.max) };
    });
  }
  for (const r of results) {
    r.percentile ??= null;
    r.calibration ??= null;
    r.verdict = verdictOf(r);
  }
}

/** The runs of single-run selections (`[:, :, f]`, `[:, :, :]`) under settings, with their layout. */
export function runsOfSelects(selects: string[], s: VisualizeSettings, bosId: number | null, config: ModelConfig): { runs: SelectionRun[]; lay: Layout } {
  const lay = layout(s, bosId);
  const F = hookWidth(config, s.hook);
  return { runs: selects.map((sel) => expandSelection(sel, lay.T, F)[0]!), lay };
}

/** finishRuns for results that come without their runs: each is rebuilt from the result's selection. */
export async function calibrateResults(results: RunResult[], s: VisualizeSettings, bosId: number | null, config: ModelConfig, reference: ReferenceProvider): Promise<void> {
  const { runs, lay } = runsOfSelects(results.map((r) => r.select), s, bosId, config);
  await finishRuns(results, runs, s, lay, reference);
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

  private randomCosine = new Map<DecodeMode, { median: number; draws: number }>();

  /** randomDecodeCosine for a decode mode, computed once per mode. */
  cosineRandom(mode: DecodeMode): { median: number; draws: number } {
    let r = this.randomCosine.get(mode);
    if (!r) this.randomCosine.set(mode, (r = randomDecodeCosine(this.decoder, mode)));
    return r;
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
    const K = s.seeds ?? 1;
    const problems: Problem[] = runs.flatMap((run, index) => Array.from({ length: K }, (_, start) => ({ run, index, start })));
    const solved: RunResult[] = [];
    // A request with fewer problems than --batch gets a graph of its own size (a lone feature should not pay for 31
    // padding rows); the last, partial chunk of a longer request is padded, so every chunk reuses one session.
    const B = Math.min(s.batch, problems.length);
    for (let at = 0; at < problems.length; at += s.batch) {
      solved.push(...(await this.runBatch(problems.slice(at, at + s.batch), B, s, lay, F, req)));
      req.onProgress?.(Math.min(at + s.batch, problems.length), problems.length);
    }
    // One result per selection: the best of its K starts, holding how the starts agree.
    const starts: StartOutcome[][] = runs.map((_, i) =>
      solved.slice(i * K, (i + 1) * K).map((r) => ({ ok: r.status === 'ok', ids: r.ids, decoded: r.activation.decoded })),
    );
    const results = runs.map((run, i) => {
      if (K === 1) return solved[i]!;
      const r = solved[i * K + bestStart(starts[i]!)]!;
      r.stability = stabilityOf(starts[i]!, optimizedPositions(run, lay.free));
      return r;
    });
    if (s.refine) await this.refineRuns(results, runs, s, lay, F);
    if (s.exhaustive) await this.exhaustiveRuns(results, runs, s, lay);
    // A latent writes its decoder row into the hook's space (SAELens's W_dec), so that row is its output direction.
    const sae = s.sae;
    const vectorOf = (r: SelectionRun): Float32Array => {
      if (!sae) return selectionVector(r, F, s.objective.direction);
      const v = new Float32Array(sae.dIn);
      const latents = r.features.all ? Array.from({ length: sae.dSae }, (_, i) => i) : r.features.indices;
      for (const i of latents) decoderRow(sae, i).forEach((x, j) => (v[j]! += x));
      return v;
    };
    const effects = await logitEffects(this.runner, this.tokenizer, s.hook, s.blocks[1], runs.map(vectorOf));
    results.forEach((r, i) => (r.logit_effects = effects[i]!));
    await finishRuns(results, runs, s, lay, req.reference);
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
  private async runBatch(problems: Problem[], B: number, s: VisualizeSettings, lay: Layout, F: number, req: VisualizeRequest): Promise<RunResult[]> {
    const { T } = lay;
    const runs = problems.map((p) => p.run);
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
    problems.forEach((p, b) => feeds.x.set(this.initial(p, s, lay, req), b * T * D));

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
    // The identity path's part of the same activation, at the same optimised embeddings (skipShare). An SAE latent is
    // a nonlinear read of the hook, so it has no such part.
    const skip = s.hook === 'resid' && !s.sae ? await skipPathStep(this.runner, { x: feeds.x, report: feeds.report }, shape) : null;
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
        cosine_random: this.cosineRandom(s.decode),
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
        skip: s.sae ? { share: null, not_applicable: 'an SAE latent reads the hook through its encoder and nonlinearity: it has no identity path of its own' } : skipShare(s.hook, ok, skip?.[b], final.act[b]),
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
  private initial(p: Problem, s: VisualizeSettings, lay: Layout, req: VisualizeRequest): Float32Array {
    const D = this.runner.config.dim;
    const { run, index } = p;
    const given = p.start === 0 ? req.initialEmbeddings?.(index) : undefined;
    if (given) {
      if (given.length !== lay.T * D) throw new Error(`initial embeddings for run ${index} have ${given.length} values, expected ${lay.T * D}`);
      return given.slice();
    }
    const x = new Float32Array(lay.T * D);
    for (const [t, id] of lay.fixed) x.set(this.decoder.embedding(id), t * D);
    const seed = startSeed(s.seed, run.label, p.start);
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
    // An SAE latent is not a unit vector of the residual stream: no model-free decode for it yet.
    if (s.sae) return runs.map(() => null);
    const D = this.runner.config.dim;
    if (s.hook !== 'resid' || F !== D) return runs.map(() => null);
    const out: (Baseline | null)[] = runs.map((r, b) => {
      // The decode of the selection's residual direction is the same for every start; only the agreement differs.
      const tokens = topIndices(this.decoder.scores(selectionVector(r, D, s.objective.direction), 'pinv'), s.topk);
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
