/** Causal softmax attention shared by every architecture, with grouped-query heads. */
import type { Graph } from '../graph/graph.js';
import { add, matmul, mul, reshape, softmax, swapLast, tanh, transpose } from '../graph/ops.js';
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

/**
 * q [B, H, T, hd], k and v [B, KV, T, hd] → [B, T, H·hd]. Query heads h = kv·rep + r share KV head kv; instead of
 * repeating K and V, the queries of one group are stacked along time ([B, KV, rep·T, hd]) so one matmul serves it.
 */
export function attend(q: Value, k: Value, v: Value, mask: Value, opts: AttendOptions = {}): Value {
  const [B, H, T, hd] = q.shape as [number, number, number, number];
  const KV = k.shape[1]!;
  const grouped = reshape(q, [B, KV, (H / KV) * T, hd]);
  let scaled = mul(matmul(grouped, swapLast(k)), opts.scale ?? 1 / Math.sqrt(hd));
  const cap = opts.softcap;
  if (cap != null) scaled = mul(tanh(mul(scaled, 1 / cap)), cap);
  const scores = add(scaled, mask);
  const mixed = matmul(softmax(scores, -1), v);
  return reshape(transpose(reshape(mixed, [B, H, T, hd]), [0, 2, 1, 3]), [B, T, H * hd]);
}
