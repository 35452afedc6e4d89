/**
 * The Qwen3 family (Qwen3ForCausalLM, dense): Llama's block (llama.ts: pre-norm RMSNorm, rotate-half RoPE, GQA,
 * SwiGLU) plus, from transformers' modeling_qwen3.py, an RMSNorm on every query and key head: q_norm / k_norm have
 * a weight of size head_dim, shared by all heads, applied to each head's q and k after the split into heads and before
 * RoPE. head_dim is its own setting (Qwen3 models have heads × head_dim ≠ d_model), no q/k/v biases (unlike Qwen2).
 * Hooks as in Llama: no branch-output norms, so `attn` = `attn_out` and `mlp_out` is the down projection.
 */
import type { Graph } from '../graph/graph.js';
import { linear } from '../graph/ops.js';
import { UserError } from '../errors.js';
import { attend } from './attention.js';
import type { ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { llamaBlock, llamaQkv, llamaContext, llamaLikeConfig, llamaLikeConfigJson, llamaLikeIgnore, llamaLikeIo, llamaLikeTensors, rmsnorm, rope, type AttentionFn } from './llama.js';
import type { ArchitectureSpec, HfConfigInput, HfReading, TensorSpec } from './spec.js';

/**
 * Llama's attention with an RMSNorm on every query and key head, before RoPE; the rest of the block is llamaBlock's.
 * Qwen3 has no q/k/v biases (attention_bias is refused), so the optional-weight lookup goes unused.
 */
const qwen3Attention: AttentionFn = (xn, layer, w, _bias, ctx) => {
  const { cfg } = ctx;
  const p = `blk.${layer}.`;
  const eps = cfg.normEps;
  // [B, heads, T, head_dim]: the norm's last axis is one head's dimensions, so its weight [head_dim] serves every head.
  const [qh, kh, v] = llamaQkv(xn, layer, w, _bias, cfg);
  const q = rope(rmsnorm(qh, w(p + 'attn_q_norm.weight'), eps), ctx);
  const k = rope(rmsnorm(kh, w(p + 'attn_k_norm.weight'), eps), ctx);
  return linear(attend(q, k, v, ctx.mask), w(p + 'attn_output.weight'));
};

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
    head_dim: c.headDim,
    ...llamaLikeConfigJson(c, special, std),
    attention_bias: false,
    use_sliding_window: false,
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
    return (x, layer, w, upTo) => llamaBlock(x, layer, w.get, w.optional, ctx, upTo, qwen3Attention);
  },
};
