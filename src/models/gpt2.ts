/**
 * The GPT-2 block: pre-norm LayerNorm attention with a fused q/k/v projection and learned positions, then a GELU
 * (tanh approximation, `gelu_new`) MLP. Weights keep GPT-2's Conv1D [in, out] layout, so every projection is
 * x @ W + b (linear with transB = false) — no transposed copies.
 */
import type { Graph } from '../graph/graph.js';
import { add, div, gather, geluTanh, linear, mul, reduceMean, slice, sqrt, sub } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { attend, causalMask, splitHeads } from './attention.js';
import type { Hook, ModelConfig } from './config.js';
import type { BlockOutputs } from './llama.js';
import type { Architecture, Weights } from './transformer.js';

export function layernorm(x: Value, weight: Value, bias: Value, eps: number): Value {
  const centered = sub(x, reduceMean(x, [-1], true));
  const variance = reduceMean(mul(centered, centered), [-1], true);
  return add(mul(div(centered, sqrt(add(variance, eps))), weight), bias);
}

function affine(x: Value, w: Weights, name: string): Value {
  return add(linear(x, w.get(`${name}.weight`), false), w.get(`${name}.bias`));
}

function gpt2Block(x: Value, layer: number, w: Weights, cfg: ModelConfig, mask: Value, upTo: Hook): Partial<BlockOutputs> {
  const p = `h.${layer}.`;
  const norm = (v: Value, name: string) => layernorm(v, w.get(p + name + '.weight'), w.get(p + name + '.bias'), cfg.normEps);
  const qkv = affine(norm(x, 'ln_1'), w, p + 'attn.c_attn');
  const D = cfg.dim;
  const [q, k, v] = [0, 1, 2].map((i) => splitHeads(slice(qkv, -1, i * D, (i + 1) * D), cfg.nHeads)) as [Value, Value, Value];
  const attn = affine(attend(q, k, v, mask), w, p + 'attn.c_proj');
  if (upTo === 'attn') return { attn };
  const h = add(x, attn);
  const mlp = geluTanh(affine(norm(h, 'ln_2'), w, p + 'mlp.c_fc'));
  if (upTo === 'mlp') return { attn, mlp };
  const resid = add(h, affine(mlp, w, p + 'mlp.c_proj'));
  return { resid, mlp, attn };
}

/** Learned positions 0..T-1 added to token embeddings [B, T, D]. */
function addPositions(e: Value, w: Weights): Value {
  const T = e.shape[1]!;
  const positions = e.graph.constant(Array.from({ length: T }, (_, t) => t), [T], 'int64');
  return add(e, gather(w.get('wpe.weight'), positions, 0));
}

export const gpt2Architecture: Architecture = {
  blocks(g: Graph, cfg, length) {
    const mask = causalMask(g, length, 1);
    return (x, layer, w, upTo) => gpt2Block(x, layer, w, cfg, mask, upTo);
  },
  embed: (ids, _cfg, w) => addPositions(gather(w.get('wte.weight'), ids, 0), w),
  inputFromEmbeddings: (e, _cfg, w) => addPositions(e, w),
  head: (x, cfg, w) => linear(layernorm(x, w.get('ln_f.weight'), w.get('ln_f.bias'), cfg.normEps), w.get('wte.weight'), true),
  embeddingTable: 'wte.weight',
};
