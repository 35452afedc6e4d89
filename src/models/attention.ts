/** Causal softmax attention shared by every architecture, with grouped-query heads. */
import type { Graph } from '../graph/graph.js';
import { add, concat, linear, matmul, mul, reshape, softmax, split, tanh, transpose } from '../graph/ops.js';
import type { Value } from '../graph/value.js';

/**
 * Additive causal mask for queries stacked as [rep·T, T] (row r is time r mod T). Masked scores get −1e30 rather than
 * −∞ so that no 0·∞ can turn into NaN anywhere in the backward pass; exp(−1e30) is exactly 0 in float32 and float64.
 */
export function causalMask(g: Graph, length: number, rep: number): Value {
  const mask = new Float64Array(rep * length * length);
  for (let r = 0; r < rep * length; r++) {
    for (let s = (r % length) + 1; s < length; s++) mask[r * length + s] = -1e30;
  }
  return g.constant(mask, [rep * length, length]);
}

/**
 * What a sliding window (Gemma-2's local layers) adds to the causal mask, same layout: query t also loses every key
 * s ≤ t − window, so it sees the last `window` positions, itself included. Added to the causal mask (the two mask
 * disjoint keys) rather than replacing it, so a graph of local layers only still uses the causal constant.
 */
export function slidingWindowBand(g: Graph, length: number, rep: number, window: number): Value {
  const band = new Float64Array(rep * length * length);
  for (let r = 0; r < rep * length; r++) {
    for (let s = 0; s <= (r % length) - window; s++) band[r * length + s] = -1e30;
  }
  return g.constant(band, [rep * length, length]);
}

/** How a family scores queries against keys, where it differs from the default (1/√headDim, no cap). */
export interface AttendOptions {
  /** Multiplies q·k; default 1/√headDim. */
  scale?: number;
  /** c in c·tanh(s/c), applied to the scaled scores before the mask (Gemma-2); null/absent for none. */
  softcap?: number | null;
}

/** [B, T, heads·hd] → [B, heads, T, hd] */
export function splitHeads(x: Value, nHeads: number): Value {
  const [B, T, W] = x.shape as [number, number, number];
  return transpose(reshape(x, [B, T, nHeads, W / nHeads]), [0, 2, 1, 3]);
}

/** One projection that becomes heads: its [out, in] weight, optional bias, and head count. */
export interface HeadProjection {
  weight: Value;
  bias: Value | null;
  heads: number;
}

/**
 * x [B, T, D] through several projections, each split into heads [B, heads, T, hd] (q, k, v). Where the graph may
 * fold weights, the matrices are concatenated into one (onnxruntime folds the Concat at session creation): one
 * product, one Reshape, one Transpose and one Split for all of them, forward and backward, instead of a product,
 * Reshape and Transpose each and the sums of their input gradients.
 */
export function projectHeads(x: Value, parts: HeadProjection[], hd: number): Value[] {
  const biased = parts.every((p) => p.bias);
  if (!x.graph.foldWeights || !(biased || parts.every((p) => !p.bias))) {
    return parts.map((p) => splitHeads(p.bias ? add(linear(x, p.weight), p.bias) : linear(x, p.weight), p.heads));
  }
  const w = concat(parts.map((p) => p.weight), 0);
  const y = linear(x, w);
  const yb = biased ? add(y, concat(parts.map((p) => p.bias!), 0)) : y;
  return splitFusedHeads(yb, parts.map((p) => p.heads), hd);
}

/**
 * x [B, T, D] through several [out, in] matrices: one product and a Split where the graph folds weights (OLMo-2's q/k
 * norms need each projection whole, before it becomes heads).
 */
export function projectMany(x: Value, weights: Value[]): Value[] {
  if (!x.graph.foldWeights) return weights.map((w) => linear(x, w));
  return split(linear(x, concat(weights, 0)), -1, weights.map((w) => w.shape[0]!));
}

/**
 * A fused projection [B, T, Σ heads·hd] whose parts (q, k, v) lie one after another on the last axis → each part as
 * heads [B, heads, T, hd]: one Reshape, one Transpose and one Split, instead of a Slice, Reshape and Transpose each.
 */
export function splitFusedHeads(y: Value, heads: number[], hd: number): Value[] {
  const [B, T] = y.shape as [number, number, number];
  const total = heads.reduce((n, h) => n + h, 0);
  return split(transpose(reshape(y, [B, T, total, hd]), [0, 2, 1, 3]), 1, heads);
}

/**
 * q [B, H, T, hd], k and v [B, KV, T, hd] → [B, T, H·hd]. Query heads h = kv·rep + r share KV head kv; instead of
 * repeating K and V, the queries of one group are stacked along time ([B, KV, rep·T, hd]) so one matmul serves it.
 */
export function attend(q: Value, k: Value, v: Value, mask: Value, opts: AttendOptions = {}): Value {
  const [B, H, T, hd] = q.shape as [number, number, number, number];
  const KV = k.shape[1]!;
  const grouped = reshape(q, [B, KV, (H / KV) * T, hd]);
  // q·kᵀ and its scale in one product (no Transpose of K, no Mul); the backward products take the same flags.
  const scale = opts.scale ?? 1 / Math.sqrt(hd);
  const cap = opts.softcap;
  const scaled = cap != null ? mul(tanh(matmul(grouped, k, { transB: true, alpha: scale / cap })), cap) : matmul(grouped, k, { transB: true, alpha: scale });
  const scores = add(scaled, mask);
  const mixed = matmul(softmax(scores, -1), v);
  return reshape(transpose(reshape(mixed, [B, H, T, hd]), [0, 2, 1, 3]), [B, T, H * hd]);
}
