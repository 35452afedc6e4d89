/**
 * Attribution for a real input: the selected outputs' sum, its gradient with respect to the input token embeddings,
 * and per-token gradient × input saliency.
 */
import type { FeatureMap, ModelRunner } from '../engine/runner.js';
import { featureWidth } from './sae.js';
import type { Hook } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import type { BlockRange } from '../models/block-range.js';
import type { Decoder } from './decode.js';
import { selectionMask, expandSelection } from './selection.js';
import { UserError } from '../errors.js';
import { objectiveStep } from './objective.js';

export interface Attribution {
  ids: number[];
  select: string;
  blocks: [number, number];
  hook: Hook;
  activation: number;
  /** d activation / d embedding, T rows of D. */
  grad: number[][];
  /** Per token: Σ_i grad[t][i] · embedding[t][i]. */
  saliency: number[];
}

/**
 * With `map` (an SAE's latents, features/sae.ts) the selection indexes latents; `activation` is their post-activation
 * and the gradient is that of the map's objective side (the pre-activation unless --sae-objective post).
 */
export async function attribute(runner: ModelRunner, decoder: Decoder, ids: number[], blocks: BlockRange, hook: Hook, select: string, map?: FeatureMap): Promise<Attribution> {
  runner.checkRange(blocks);
  runner.checkIds([ids]);
  const T = ids.length;
  const D = runner.config.dim;
  const F = map ? featureWidth(runner.config, hook, map) : hookWidth(runner.config, hook);
  const runs = expandSelection(select, T, F);
  if (runs.length !== 1) throw new UserError(`select: attribute takes one combined selection, "${select}" means ${runs.length} runs (use a:b or : instead of a-b)`, undefined, 'select');
  const mask = selectionMask(runs[0]!, T, F);
  const x = new Float32Array(T * D);
  ids.forEach((id, t) => x.set(decoder.embedding(id), t * D));
  // loss = −Σ mask ⊙ O, so the activation's gradient is the negated loss gradient.
  const res = await objectiveStep(runner, blocks, hook, { x, l1: new Float32Array(T * F), lin: mask, C: Float32Array.of(0), report: mask }, { B: 1, T }, map);
  const grad = Array.from({ length: T }, (_, t) => Array.from(res.grad.subarray(t * D, (t + 1) * D), (g) => -g));
  const saliency = grad.map((row, t) => row.reduce((s, g, i) => s + g * x[t * D + i]!, 0));
  return { ids, select: runs[0]!.label, blocks: [blocks[0], blocks[1]], hook, activation: res.act[0]!, grad, saliency };
}
