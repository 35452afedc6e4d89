/**
 * The OLMo-2 family (Olmo2ForCausalLM), from transformers' modeling_olmo2.py: no norms before the attention or the
 * MLP; instead each branch output is normed before it is added to the residual stream (post_attention_layernorm,
 * post_feedforward_layernorm), and the queries and keys are RMS-normed over the whole projection — q_norm has a weight
 * of size heads × head_dim, k_norm of kv_heads × head_dim — before the split into heads and before RoPE (unlike
 * Qwen3's per-head norm). SwiGLU MLP, rotate-half RoPE, untied head.
 * Hooks: `attn` is o_proj's output, `attn_out` the same after post_attention_layernorm (what the residual receives);
 * `mlp` is the down projection's input, `mlp_out` the down projection after post_feedforward_layernorm.
 */
import type { Graph } from '../graph/graph.js';
import { add, linear, mul, swiglu } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, projectMany, splitHeads } from './attention.js';
import type { Hook, ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { gateUp, llamaContext, llamaLikeConfig, llamaLikeConfigJson, llamaLikeIgnore, llamaLikeIo, llamaLikeTensors, llamaMlpDown, rmsnorm, rope, type LlamaContext } from './llama.js';
import type { ArchitectureSpec, HfConfigInput, HfReading, TensorSpec, WeightFn } from './spec.js';

function olmo2Block(x: Value, layer: number, w: WeightFn, ctx: LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const { cfg } = ctx;
  const p = `blk.${layer}.`;
  const eps = cfg.normEps;
  // The norm sees the full [B, T, heads·head_dim] projection: one RMS over all heads together.
  const [qx, kx, vx] = projectMany(x, [w(p + 'attn_q.weight'), w(p + 'attn_k.weight'), w(p + 'attn_v.weight')]) as [Value, Value, Value];
  const q = rope(splitHeads(rmsnorm(qx, w(p + 'attn_q_norm.weight'), eps), cfg.nHeads), ctx);
  const k = rope(splitHeads(rmsnorm(kx, w(p + 'attn_k_norm.weight'), eps), cfg.nKvHeads), ctx);
  const v = splitHeads(vx, cfg.nKvHeads);
  const attn = linear(attend(q, k, v, ctx.mask), w(p + 'attn_output.weight'));
  const attn_out = rmsnorm(attn, w(p + 'post_attention_norm.weight'), eps);
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const mlp = swiglu(...gateUp(h, w(p + 'ffn_gate.weight'), w(p + 'ffn_up.weight')));
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = rmsnorm(linear(mlp, w(p + 'ffn_down.weight')), w(p + 'post_ffw_norm.weight'), eps);
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json } = input;
  // Olmo2Config has no head_dim: it is always d_model / heads (a head_dim in the file would be ignored by transformers).
  const { head_dim: _ignored, ...rest } = json;
  const config = llamaLikeConfig({ ...input, json: rest }, 'olmo2', 'olmo2', { normEps: 1e-5, ropeTheta: 10000, tied: false });
  const c = new ConfigReader(configPath, json);
  if (c.bool('attention_bias', false)) throw new UserError(`${configPath}: attention_bias true is not supported for olmo2 (the published models have none)`);
  return { config, prefix: '', ignore: llamaLikeIgnore(config) };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return { architectures: ['Olmo2ForCausalLM'], model_type: 'olmo2', ...llamaLikeConfigJson(c, special, std), attention_bias: false };
}

function tensors(c: ModelConfig): TensorSpec[] {
  return llamaLikeTensors(c, (layer, q, kv) => {
    layer('attn_q.weight', 'self_attn.q_proj.weight', [q, c.dim], 'normal');
    layer('attn_k.weight', 'self_attn.k_proj.weight', [kv, c.dim], 'normal');
    layer('attn_v.weight', 'self_attn.v_proj.weight', [kv, c.dim], 'normal');
    layer('attn_q_norm.weight', 'self_attn.q_norm.weight', [q], 'ones');
    layer('attn_k_norm.weight', 'self_attn.k_norm.weight', [kv], 'ones');
    layer('attn_output.weight', 'self_attn.o_proj.weight', [c.dim, q], 'normal');
    layer('post_attention_norm.weight', 'post_attention_layernorm.weight', [c.dim], 'ones');
    layer('ffn_gate.weight', 'mlp.gate_proj.weight', [c.ffnDim, c.dim], 'normal');
    layer('ffn_up.weight', 'mlp.up_proj.weight', [c.ffnDim, c.dim], 'normal');
    layer('ffn_down.weight', 'mlp.down_proj.weight', [c.dim, c.ffnDim], 'normal');
    layer('post_ffw_norm.weight', 'post_feedforward_layernorm.weight', [c.dim], 'ones');
  });
}

export const olmo2Spec: ArchitectureSpec = {
  family: 'olmo2',
  // OLMo-2's tokenizer (dolma2, cl100k-based) has no BOS; documents are separated by EOS.
  expectsBos: false,
  hfClasses: ['Olmo2ForCausalLM'],
  modelTypes: ['olmo2'],
  fromHfConfig,
  toHfConfig,
  tensors,
  ...llamaLikeIo,
  blocks(g: Graph, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => olmo2Block(x, layer, w.get, ctx, upTo);
  },
  // Both branches are normed before the residual add: their directions go through those norms' gains.
  mlpDown: (a, layer, _cfg, w) => mul(llamaMlpDown(a, layer, w.get), w.get(`blk.${layer}.post_ffw_norm.weight`)),
  attnDirection: (v, layer, _cfg, w) => mul(v, w.get(`blk.${layer}.post_attention_norm.weight`)),
};
