/**
 * Assembles a request's graph from an architecture's pieces: the input (token ids, or embeddings we differentiate
 * with respect to) → blocks A..B applied straight to the embeddings → the chosen hook of block B, or the full model's
 * logits. Architecture-specific math lives in llama.ts / gpt2.ts; this file only wires it.
 */
import type { Graph } from '../graph/graph.js';
import { gather } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import type { Hook, ModelConfig } from './config.js';
import { gpt2Architecture } from './gpt2.js';
import { llamaBlock, llamaContext, llamaHead, type BlockOutputs, type OptionalWeightFn, type WeightFn } from './llama.js';

export type { BlockRange } from './block-range.js';
import type { BlockRange } from './block-range.js';

export interface Weights {
  get: WeightFn;
  optional: OptionalWeightFn;
}

export interface Architecture {
  /** Per-graph constants (positions, masks) and a block function closed over them. */
  blocks(g: Graph, cfg: ModelConfig, length: number): (x: Value, layer: number, w: Weights, upTo: Hook) => Partial<BlockOutputs>;
  /** Token embeddings for int64 ids [B, T] → [B, T, D] (GPT-2 adds learned positions here). */
  embed(ids: Value, cfg: ModelConfig, w: Weights): Value;
  /** Embeddings given directly → what the blocks receive (identity for Llama; GPT-2 adds positions). */
  inputFromEmbeddings(e: Value, cfg: ModelConfig, w: Weights): Value;
  /** Final norm + head: [..., D] → [..., V]. */
  head(x: Value, cfg: ModelConfig, w: Weights): Value;
  /** Name of the token embedding table [V, D]. */
  embeddingTable: string;
}

export const llamaArchitecture: Architecture = {
  blocks(g, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => llamaBlock(x, layer, w.get, w.optional, ctx, upTo);
  },
  embed: (ids, _cfg, w) => gather(w.get('token_embd.weight'), ids, 0),
  inputFromEmbeddings: (e) => e,
  head: (x, cfg, w) => llamaHead(x, w.get, cfg),
  embeddingTable: 'token_embd.weight',
};

const ARCHITECTURES: Record<ModelConfig['arch'], Architecture> = {
  llama: llamaArchitecture,
  gpt2: gpt2Architecture,
};

export function architectureOf(cfg: ModelConfig): Architecture {
  return ARCHITECTURES[cfg.arch];
}

/** Run blocks a..b (1-based, inclusive) on x and return block b's `hook`. */
export function runBlocks(g: Graph, cfg: ModelConfig, w: Weights, x: Value, range: BlockRange, hook: Hook): Value {
  const block = architectureOf(cfg).blocks(g, cfg, x.shape[1]!);
  let h = x;
  for (let layer = range[0] - 1; layer < range[1] - 1; layer++) h = block(h, layer, w, 'resid').resid!;
  return block(h, range[1] - 1, w, hook)[hook]!;
}

/** Full model: all blocks from the token embeddings, then the head. `positions` picks rows before the head. */
export function fullLogits(g: Graph, cfg: ModelConfig, w: Weights, x: Value, positions?: Value): Value {
  const arch = architectureOf(cfg);
  const h = runBlocks(g, cfg, w, x, [1, cfg.nLayers], 'resid');
  const rows = positions ? gather(h, positions, 1) : h;
  return arch.head(rows, cfg, w);
}
