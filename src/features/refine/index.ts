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
import { displayText } from '../../tokenizers/display.js';
import { paramError } from '../../errors.js';
import type { ModelRunner } from '../../engine/runner.js';
import type { Hook } from '../../models/config.js';
import type { BlockRange } from '../../models/transformer.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import type { Decoder } from '../decode.js';
import { epo, type ParetoPoint } from './epo.js';
import { allowedTokens, roundTrips } from './filters.js';
import { gcg } from './gcg.js';
import { activationScorer, fluencyModel } from './scorers.js';
import type { FeatureMap } from '../../engine/runner.js';
import { key, type SearchOptions } from './search.js';
import { checkRefineSettings, refineRecord, type RefineMethod, type RefineSettings } from './settings.js';

export * from './settings.js';
export { allowedTokens, roundTrips } from './filters.js';
export { activationScorer, fluencyModel, type Scorer } from './scorers.js';
export type { SearchOptions, SearchStats } from './search.js';
export { gcg, type GcgResult } from './gcg.js';
export { epo, paretoFrontier, type EpoResult, type ParetoPoint } from './epo.js';
export { fluencyWeights } from './epo.js';

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
  /** An SAE's latents as the feature axis (features/sae.ts): scores report its post-activation, gradients drive its objective side. */
  map?: FeatureMap;
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
  if (s.retokenize && !tokenizer) throw paramError('refine.retokenize', 'needs a tokenizer');
  const allowed = allowedTokens(tokenizer, runner.config.vocabSize, s.filter);
  const text = (ids: number[]) => displayText(tokenizer, ids);
  const accept = s.retokenize ? (ids: number[]) => roundTrips(tokenizer!, ids) : undefined;
  const search: SearchOptions = { free: req.free, steps: s.steps, candidates: s.candidates, swapTopk: s.swapTopk, seed: s.seed, allowed, accept };
  const act = activationScorer(runner, decoder, { blocks: req.blocks, hook: req.hook, map: req.map, report: req.report, T, batch: s.candidates, gradBatch: s.method === 'epo' ? s.population : 1 });
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

