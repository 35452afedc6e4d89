/**
 * The Llama block, top-down: pre-norm attention with rotary positions and grouped-query heads, then a pre-norm
 * SwiGLU MLP, each added to the residual stream. Everything is written with the graph builder's ops, so the same code
 * serves the forward pass, its gradient and every batch size.
 */
import type { Graph } from '../graph/graph.js';
import { add, div, linear, matmul, mul, reduceMean, silu, sqrt } from '../graph/ops.js';
import { attend, causalMask, splitHeads } from './attention.js';
import type { Value } from '../graph/value.js';
import { ropeFrequencies, type Hook, type ModelConfig } from './config.js';

/**
 * The values a block exposes as hooks (see config.ts HOOKS). A block asked to stop at an earlier hook (the last block
 * of a request for `attn` or `mlp`) leaves the later ones out, so the graph holds no work and binds no weights that
 * the request cannot see.
 */
export interface BlockOutputs {
  /** Residual stream after the block. */
  resid: Value;
  /** MLP neuron activations: the input of the down projection. */
  mlp: Value;
  /** Attention output after the output projection, before the residual add. */
  attn: Value;
}

/** Looks up a weight by its GGUF-style name (e.g. `blk.0.attn_q.weight`); `null` when the model has none (biases). */
export type WeightFn = (name: string) => Value;
export type OptionalWeightFn = (name: string) => Value | null;

/** Per-graph constants shared by every block: rotary tables and the causal mask, for one sequence length. */
export interface LlamaContext {
  cfg: ModelConfig;
  cos: Value;
  sin: Value;
  /** x @ rotation swaps each rotary pair with a sign: (a, b) → (−b, a). */
  rotation: Value;
  mask: Value;
}

export function llamaContext(g: Graph, cfg: ModelConfig, length: number): LlamaContext {
  const hd = cfg.headDim;
  const half = hd / 2;
  const freqs = ropeFrequencies(cfg);
  // Which pair each dimension belongs to, and the two members of pair i, for the two pairing conventions.
  const pairOf = (j: number) => (cfg.ropePairing === 'interleaved' ? j >> 1 : j % half);
  const members = (i: number) => (cfg.ropePairing === 'interleaved' ? [2 * i, 2 * i + 1] : [i, i + half]) as [number, number];

  const cos = new Float64Array(length * hd);
  const sin = new Float64Array(length * hd);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < hd; j++) {
      const angle = t * freqs[pairOf(j)]!;
      cos[t * hd + j] = Math.cos(angle);
      sin[t * hd + j] = Math.sin(angle);
    }
  }
  const rot = new Float64Array(hd * hd);
  for (let i = 0; i < half; i++) {
    const [a, b] = members(i);
    rot[b * hd + a] = -1; // out[a] = −x[b]
    rot[a * hd + b] = 1; //  out[b] = x[a]
  }
  return {
    cfg,
    cos: g.constant(cos, [length, hd]),
    sin: g.constant(sin, [length, hd]),
    rotation: g.constant(rot, [hd, hd]),
    mask: causalMask(g, length, cfg.nHeads / cfg.nKvHeads),
  };
}

export function rmsnorm(x: Value, weight: Value, eps: number): Value {
  const ms = reduceMean(mul(x, x), [-1], true);
  return mul(div(x, sqrt(add(ms, eps))), weight);
}

/** Rotary position embedding on [..., T, headDim]. */
function rope(x: Value, ctx: LlamaContext): Value {
  return add(mul(x, ctx.cos), mul(matmul(x, ctx.rotation), ctx.sin));
}

function project(x: Value, w: Value, bias: Value | null): Value {
  return bias ? add(linear(x, w), bias) : linear(x, w);
}

function attention(xn: Value, layer: number, w: WeightFn, bias: OptionalWeightFn, ctx: LlamaContext): Value {
  const { cfg } = ctx;
  const p = `blk.${layer}.`;
  const q = rope(splitHeads(project(xn, w(p + 'attn_q.weight'), bias(p + 'attn_q.bias')), cfg.nHeads), ctx);
  const k = rope(splitHeads(project(xn, w(p + 'attn_k.weight'), bias(p + 'attn_k.bias')), cfg.nKvHeads), ctx);
  const v = splitHeads(project(xn, w(p + 'attn_v.weight'), bias(p + 'attn_v.bias')), cfg.nKvHeads);
  return linear(attend(q, k, v, ctx.mask), w(p + 'attn_output.weight'));
}
export function llamaBlock(
  x: Value,
  layer: number,
  w: WeightFn,
  bias: OptionalWeightFn,
  ctx: LlamaContext,
  upTo: Hook = 'resid',
): Partial<BlockOutputs> {
  const p = `blk.${layer}.`;
  const eps = ctx.cfg.normEps;
  const attn = attention(rmsnorm(x, w(p + 'attn_norm.weight'), eps), layer, w, bias, ctx);
  if (upTo === 'attn') return { attn };
  const h = add(x, attn);
  const hn = rmsnorm(h, w(p + 'ffn_norm.weight'), eps);
  const mlp = mul(silu(linear(hn, w(p + 'ffn_gate.weight'))), linear(hn, w(p + 'ffn_up.weight')));
  if (upTo === 'mlp') return { attn, mlp };
  const resid = add(h, linear(mlp, w(p + 'ffn_down.weight')));
  return { resid, mlp, attn };
}

/** Final norm and output head (tied to the embedding table when the model has no separate head). */
export function llamaHead(x: Value, w: WeightFn, cfg: ModelConfig): Value {
  const xn = rmsnorm(x, w('output_norm.weight'), cfg.normEps);
  return linear(xn, w(cfg.tiedHead ? 'token_embd.weight' : 'output.weight'));
}
