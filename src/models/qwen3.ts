/**
 * The Qwen3 family (Qwen3ForCausalLM, dense): Llama's block (llama.ts: pre-norm RMSNorm, rotate-half RoPE, GQA,
 * SwiGLU) plus, from transformers' modeling_qwen3.py, an RMSNorm on every query and key head: q_norm / k_norm have
 * a weight of size head_dim, shared by all heads, applied to each head's q and k after the split into heads and before
 * RoPE. head_dim is its own setting (Qwen3 models have heads × head_dim ≠ d_model), no q/k/v biases (unlike Qwen2).
 * Hooks as in Llama: no branch-output norms, so `attn` = `attn_out` and `mlp_out` is the down projection.
 */
import type { Graph } from '../graph/graph.js';
import { add, linear, mul, silu } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, splitHeads } from './attention.js';
import type { Hook, ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { llamaContext, llamaLikeConfig, llamaLikeIgnore, llamaLikeIo, llamaLikeTensors, rmsnorm, rope, type LlamaContext } from './llama.js';
import type { ArchitectureSpec, HfConfigInput, HfReading, TensorSpec, WeightFn } from './spec.js';

function qwen3Block(x: Value, layer: number, w: WeightFn, ctx: LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const { cfg } = ctx;
  const p = `blk.${layer}.`;
  const eps = cfg.normEps;
  const xn = rmsnorm(x, w(p + 'attn_norm.weight'), eps);
  // [B, heads, T, head_dim]: the norm's last axis is one head's dimensions, so its weight [head_dim] serves every head.
  const q = rope(rmsnorm(splitHeads(linear(xn, w(p + 'attn_q.weight')), cfg.nHeads), w(p + 'attn_q_norm.weight'), eps), ctx);
  const k = rope(rmsnorm(splitHeads(linear(xn, w(p + 'attn_k.weight')), cfg.nKvHeads), w(p + 'attn_k_norm.weight'), eps), ctx);
  const v = splitHeads(linear(xn, w(p + 'attn_v.weight')), cfg.nKvHeads);
  const attn = linear(attend(q, k, v, ctx.mask), w(p + 'attn_output.weight'));
  const attn_out = attn;
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const hn = rmsnorm(h, w(p + 'ffn_norm.weight'), eps);
  const mlp = mul(silu(linear(hn, w(p + 'ffn_gate.weight'))), linear(hn, w(p + 'ffn_up.weight')));
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = linear(mlp, w(p + 'ffn_down.weight'));
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  // Qwen3Config's head_dim defaults to 128 (not d_model / heads); read it first so the shared reader sees it.
  const withHeadDim = { ...input, json: { ...json, head_dim: c.int('head_dim', 128) } };
  const config = llamaLikeConfig(withHeadDim, 'qwen3', 'qwen3', { normEps: 1e-6, ropeTheta: 10000, tied: false });
  if (c.bool('attention_bias', false)) throw new UserError(`${configPath}: attention_bias true is not supported for qwen3 (the published models have none)`);
  if (c.bool('use_sliding_window', false)) throw new UserError(`${configPath}: use_sliding_window true is not supported for qwen3 (every published model has it false)`);
  return { config, prefix: '', ignore: llamaLikeIgnore(config) };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    hidden_size: c.dim,
    intermediate_size: c.ffnDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    use_sliding_window: false,
    tie_word_embeddings: c.tiedHead,
    vocab_size: c.vocabSize,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/** Llama's tensor list (names, shapes) plus the two per-head norms of each layer. */
function tensors(c: ModelConfig): TensorSpec[] {
  return llamaLikeTensors(c, (layer, q, kv) => {
    layer('attn_norm.weight', 'input_layernorm.weight', [c.dim], 'ones');
    layer('attn_q.weight', 'self_attn.q_proj.weight', [q, c.dim], 'normal');
    layer('attn_k.weight', 'self_attn.k_proj.weight', [kv, c.dim], 'normal');
    layer('attn_v.weight', 'self_attn.v_proj.weight', [kv, c.dim], 'normal');
    layer('attn_q_norm.weight', 'self_attn.q_norm.weight', [c.headDim], 'ones');
    layer('attn_k_norm.weight', 'self_attn.k_norm.weight', [c.headDim], 'ones');
    layer('attn_output.weight', 'self_attn.o_proj.weight', [c.dim, q], 'normal');
    layer('ffn_norm.weight', 'post_attention_layernorm.weight', [c.dim], 'ones');
    layer('ffn_gate.weight', 'mlp.gate_proj.weight', [c.ffnDim, c.dim], 'normal');
    layer('ffn_up.weight', 'mlp.up_proj.weight', [c.ffnDim, c.dim], 'normal');
    layer('ffn_down.weight', 'mlp.down_proj.weight', [c.dim, c.ffnDim], 'normal');
  });
}

export const qwen3Spec: ArchitectureSpec = {
  family: 'qwen3',
  // Qwen's tokenizers define no BOS token and its pretraining texts start without one.
  expectsBos: false,
  hfClasses: ['Qwen3ForCausalLM'],
  modelTypes: ['qwen3'],
  fromHfConfig,
  toHfConfig,
  tensors,
  ...llamaLikeIo,
  blocks(g: Graph, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => qwen3Block(x, layer, w.get, ctx, upTo);
  },
};
