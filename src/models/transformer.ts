/**
 * Assembles a request's graph from an architecture's spec: the input (token ids, or embeddings we differentiate
 * with respect to) → blocks A..B applied straight to the embeddings → the chosen hook of block B, or the full model's
 * logits. Architecture-specific math lives in each family's file (llama.ts, gpt2.ts); this file only wires it.
 */
import type { Graph } from '../graph/graph.js';
import { gather } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import type { Hook, ModelConfig } from './config.js';
import { paramError, UserError } from '../errors.js';
import { specOf } from './registry.js';
import type { ArchitectureSpec, Weights } from './spec.js';

export type { Weights } from './spec.js';

export type { BlockRange } from './block-range.js';
import type { BlockRange } from './block-range.js';

export function architectureOf(cfg: ModelConfig): ArchitectureSpec {
  return specOf(cfg);
}

/** Run blocks a..b (1-based, inclusive) on x and return block b's `hook`. */
export function runBlocks(g: Graph, cfg: ModelConfig, w: Weights, x: Value, range: BlockRange, hook: Hook): Value {
  const spec = specOf(cfg);
  // A family exposes the hooks its spec lists; a later family may lack one (e.g. no separate MLP activation).
  if (!spec.hooks.includes(hook)) throw paramError('hook', `the ${cfg.arch} architecture has no hook ${hook} (it has ${spec.hooks.join(', ')})`);
  const block = spec.blocks(g, cfg, x.shape[1]!);
  let h = x;
  for (let layer = range[0] - 1; layer < range[1] - 1; layer++) h = block(h, layer, w, 'resid').resid!;
  const out = block(h, range[1] - 1, w, hook)[hook];
  if (!out) throw new Error(`${cfg.arch} block does not expose hook ${hook}`);
  return out;
}

/** Full model: all blocks from the token embeddings, then the head. `positions` picks rows before the head. */
export function fullLogits(g: Graph, cfg: ModelConfig, w: Weights, x: Value, positions?: Value): Value {
  const h = runBlocks(g, cfg, w, x, [1, cfg.nLayers], 'resid');
  const rows = positions ? gather(h, positions, 1) : h;
  return specOf(cfg).head(rows, cfg, w);
}
