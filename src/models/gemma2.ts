/**
 * The Gemma-2 family (Gemma2ForCausalLM): Gemma (gemma.ts: (1 + w) RMSNorm, √d-scaled embeddings, GeGLU, tied head)
 * plus, from transformers' modeling_gemma2.py:
 * - four norms per block: the attention and MLP outputs are normed (post_attention_layernorm,
 *   post_feedforward_layernorm) before they are added to the residual stream; pre_feedforward_layernorm is the MLP's
 *   input norm (in Gemma 1 that role has the name post_attention_layernorm);
 * - scores scaled by query_pre_attn_scalar^-1/2 and soft-capped, c·tanh(s/c) with c = attn_logit_softcapping,
 *   before the causal mask is added;
 * - the final logits soft-capped with c = final_logit_softcapping;
 * - sliding-window attention (each query sees the last `sliding_window` positions) on the even layers 0, 2, 4, …
 *   (`is_sliding = not bool(layer_idx % 2)` in the published code), or on the layers `layer_types` names.
 * Hooks: `attn` is o_proj's output, `attn_out` the same after post_attention_layernorm (what the residual receives);
 * `mlp` is the down projection's input, `mlp_out` the down projection after post_feedforward_layernorm.
 */
import type { Graph } from '../graph/graph.js';
import { add, gather, linear, mul, tanh } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { slidingWindowBand } from './attention.js';
import { HOOKS, type Gemma2Options, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { embeddingScale, gemmaAttention, gemmaConfigJson, gemmaIgnore, gemmaLogits, gemmaNorm, gemmaTensors, geglu, readGemmaConfig } from './gemma.js';
import { llamaContext, normInto, type LlamaContext } from './llama.js';
import type { ArchitectureSpec, HfConfigInput, HfReading, WeightFn } from './spec.js';

/** c·tanh(x/c): Gemma-2's soft cap, smooth and bounded by ±c. */
export function softcap(x: Value, c: number): Value {
  return mul(tanh(mul(x, 1 / c)), c);
}

function options(cfg: ModelConfig): Gemma2Options {
  if (!cfg.gemma2) throw new Error('gemma2 config without its options');
  return cfg.gemma2;
}

function gemma2Block(x: Value, layer: number, w: WeightFn, ctx: LlamaContext, local: Value, upTo: Hook): Partial<Record<Hook, Value>> {
  const o = options(ctx.cfg);
  const p = `blk.${layer}.`;
  const eps = ctx.cfg.normEps;
  const mask = o.slidingLayers[layer] ? local : ctx.mask;
  const [xn, wa] = normInto(x, add(w(p + 'attn_norm.weight'), 1), eps, w, ['attn_q', 'attn_k', 'attn_v'].map((n) => `${p}${n}.weight`));
  const attn = gemmaAttention(xn, layer, wa, ctx, mask, {
    scale: 1 / Math.sqrt(o.queryPreAttnScalar),
    softcap: o.attnSoftcap,
  });
  const attn_out = gemmaNorm(attn, w(p + 'post_attention_norm.weight'), eps);
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const [hn, wm] = normInto(h, add(w(p + 'ffn_norm.weight'), 1), eps, w, [`${p}ffn_gate.weight`, `${p}ffn_up.weight`]);
  const mlp = geglu(hn, layer, wm);
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = gemmaNorm(linear(mlp, w(p + 'ffn_down.weight')), w(p + 'post_ffw_norm.weight'), eps);
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

/** A soft cap: absent means transformers' default, null means none, otherwise a positive number. */
function cap(c: ConfigReader, json: Record<string, unknown>, key: string, fallback: number): number | null {
  if (Object.hasOwn(json, key) && json[key] === null) return null;
  return c.positive(key, fallback);
}

function fromHfConfig(input: HfConfigInput): HfReading {
  const config = readGemmaConfig(input, 'gemma2');
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  const n = config.nLayers;
  let slidingLayers = Array.from({ length: n }, (_, i) => i % 2 === 0);
  if (json.layer_types != null) {
    const types = json.layer_types;
    if (!Array.isArray(types) || types.length !== n || types.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) {
      throw new UserError(`${configPath}: layer_types must list "sliding_attention" or "full_attention" for each of the ${n} layers`);
    }
    slidingLayers = types.map((t) => t === 'sliding_attention');
  }
  config.gemma2 = {
    queryPreAttnScalar: c.positive('query_pre_attn_scalar', 256),
    attnSoftcap: cap(c, json, 'attn_logit_softcapping', 50),
    finalSoftcap: cap(c, json, 'final_logit_softcapping', 30),
    slidingWindow: c.int('sliding_window', 4096),
    slidingLayers,
  };
  return { config, prefix: '', ignore: gemmaIgnore };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  const o = options(c);
  return {
    architectures: ['Gemma2ForCausalLM'],
    model_type: 'gemma2',
    ...gemmaConfigJson(c, special, std),
    query_pre_attn_scalar: o.queryPreAttnScalar,
    attn_logit_softcapping: o.attnSoftcap,
    final_logit_softcapping: o.finalSoftcap,
    sliding_window: o.slidingWindow,
    layer_types: o.slidingLayers.map((s) => (s ? 'sliding_attention' : 'full_attention')),
    cache_implementation: 'hybrid',
  };
}

export const gemma2Spec: ArchitectureSpec = {
  family: 'gemma2',
  expectsBos: true,
  hfClasses: ['Gemma2ForCausalLM'],
  modelTypes: ['gemma2'],
  fromHfConfig,
  toHfConfig,
  tensors: (c) =>
    gemmaTensors(c, {
      afterAttn: [['post_attention_norm.weight', 'post_attention_layernorm.weight'], ['ffn_norm.weight', 'pre_feedforward_layernorm.weight']],
      afterMlp: [['post_ffw_norm.weight', 'post_feedforward_layernorm.weight']],
    }),
  hooks: HOOKS,
  embeddingTable: 'token_embd.weight',
  blocks(g: Graph, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    const o = options(cfg);
    // Up to the window's length the local mask is the causal one.
    const local = length > o.slidingWindow ? add(ctx.mask, slidingWindowBand(g, length, cfg.nHeads / cfg.nKvHeads, o.slidingWindow)) : ctx.mask;
    return (x, layer, w, upTo) => gemma2Block(x, layer, w.get, ctx, local, upTo);
  },
  embed: (ids, cfg, w) => mul(gather(w.get('token_embd.weight'), ids, 0), embeddingScale(cfg)),
  inputFromEmbeddings: (e, cfg) => mul(e, embeddingScale(cfg)),
  head: (x, cfg, w) => {
    const logits = gemmaLogits(x, w.get, cfg);
    const c = options(cfg).finalSoftcap;
    return c === null ? logits : softcap(logits, c);
  },
  // Gemma norms scale by (1 + w); both branches are normed before the residual add; the final soft cap is monotonic
  // and left out (logit-effects.ts).
  mlpDown: (a, layer, _cfg, w) => mul(linear(a, w.get(`blk.${layer}.ffn_down.weight`)), add(w.get(`blk.${layer}.post_ffw_norm.weight`), 1)),
  attnDirection: (v, layer, _cfg, w) => mul(v, add(w.get(`blk.${layer}.post_attention_norm.weight`), 1)),
  directionLogits: (v, _cfg, w) => linear(mul(v, add(w.get('output_norm.weight'), 1)), w.get('token_embd.weight')),
};
