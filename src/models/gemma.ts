/**
 * The Gemma family (Gemma 1, GemmaForCausalLM): a Llama-shaped decoder with four differences, each read from the
 * published definition (transformers' modeling_gemma.py):
 * - RMSNorm multiplies by (1 + w), not w: the stored weight is an offset from 1 (random-model writes it as zeros);
 * - the token embeddings are multiplied by √d_model before the first block;
 * - the MLP is GeGLU with the tanh approximation of GELU (`gelu_pytorch_tanh`);
 * - head_dim is its own setting (heads × head_dim need not equal d_model), and the head is tied to the embeddings.
 *
 * Where the √d scale lives: the embedding table stays the model's own table (the decoder's pseudoinverse and the
 * optimised variable of `visualize` are rows of that table, in table units), and the scale is part of
 * `inputFromEmbeddings`, i.e. of the graph. So gradients are taken with respect to the table-space variable x and
 * carry the √d factor (∂f/∂x = √d · ∂f/∂(√d·x)); test/gemma-families.test.ts checks this against the float64
 * reference. Transformers rounds √d to the activation dtype (in bf16 √3072 = 55.4256 becomes 55.5); we compute in
 * float32, as transformers does for a model loaded in float32, so the scale is √d itself.
 */
import type { Graph } from '../graph/graph.js';
import { add, gather, geluTanh, linear, mul } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, type AttendOptions } from './attention.js';
import { HOOKS, type Family, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { gateUp, llamaContext, llamaLikeTensors, llamaQkv, normInto, rmsnorm, rope, type LlamaContext } from './llama.js';
import { layerCount, type ArchitectureSpec, type HfConfigInput, type HfReading, type TensorSpec, type WeightFn } from './spec.js';

/** Gemma's RMSNorm: x / rms(x) · (1 + w). */
export function gemmaNorm(x: Value, weight: Value, eps: number): Value {
  return rmsnorm(x, add(weight, 1), eps);
}

/** The factor the token embeddings are multiplied by before the first block. */
export function embeddingScale(cfg: ModelConfig): number {
  return Math.sqrt(cfg.dim);
}

/** Gemma's attention: rotate-half RoPE on q and k, grouped-query heads, then o_proj; `opts` carries Gemma-2's scoring. */
export function gemmaAttention(xn: Value, layer: number, w: WeightFn, ctx: LlamaContext, mask: Value, opts: AttendOptions = {}): Value {
  const { cfg } = ctx;
  const p = `blk.${layer}.`;
  const [q, k, v] = llamaQkv(xn, layer, w, () => null, cfg);
  return linear(attend(rope(q, ctx), rope(k, ctx), v, mask, opts), w(p + 'attn_output.weight'));
}

/** GeGLU: gelu_tanh(gate(x)) · up(x), the input of the down projection (the `mlp` hook). */
export function geglu(xn: Value, layer: number, w: WeightFn): Value {
  const p = `blk.${layer}.`;
  const [gate, up] = gateUp(xn, w(p + 'ffn_gate.weight'), w(p + 'ffn_up.weight'));
  return mul(geluTanh(gate), up);
}

function gemmaBlock(x: Value, layer: number, w: WeightFn, ctx: LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const p = `blk.${layer}.`;
  const eps = ctx.cfg.normEps;
  const [xn, wa] = normInto(x, add(w(p + 'attn_norm.weight'), 1), eps, w, ['attn_q', 'attn_k', 'attn_v'].map((n) => `${p}${n}.weight`));
  const attn = gemmaAttention(xn, layer, wa, ctx, ctx.mask);
  // Gemma 1 has no norm on the branch outputs (Gemma-2 adds them): what is added is the projection itself.
  const attn_out = attn;
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const [hn, wm] = normInto(h, add(w(p + 'ffn_norm.weight'), 1), eps, w, [`${p}ffn_gate.weight`, `${p}ffn_up.weight`]);
  const mlp = geglu(hn, layer, wm);
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = linear(mlp, w(p + 'ffn_down.weight'));
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

/** Final (1 + w) norm and the head tied to the embedding table (no √d here: the scale is on the input side only). */
export function gemmaLogits(x: Value, w: WeightFn, cfg: ModelConfig): Value {
  return linear(gemmaNorm(x, w('output_norm.weight'), cfg.normEps), w('token_embd.weight'));
}

// ---------------------------------------------------------------------------------------------------------------
// config.json → ModelConfig (shared with Gemma-2, whose config has the same fields plus its own)

/**
 * The fields Gemma and Gemma-2 share, with transformers' defaults (GemmaConfig: head_dim 256, rms_norm_eps 1e-6,
 * rope_theta 10000, tied embeddings) and refusals for variants this code would compute wrongly.
 */
export function readGemmaConfig(input: HfConfigInput, arch: Family): ModelConfig {
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  // transformers reads `hidden_activation` (the original Gemma configs say hidden_act "gelu" and were still run with
  // the tanh approximation, the one the model was trained with); exact-erf GELU is not what any Gemma uses.
  const act = json.hidden_activation != null ? c.string('hidden_activation', '') : c.string('hidden_act', 'gelu_pytorch_tanh');
  const actKey = json.hidden_activation != null ? 'hidden_activation' : 'hidden_act';
  const accepted = actKey === 'hidden_act' && arch === 'gemma' ? ['gelu_pytorch_tanh', 'gelu'] : ['gelu_pytorch_tanh'];
  if (!accepted.includes(act)) throw new UserError(`${configPath}: ${actKey} ${act} is not supported for ${arch} (only gelu_pytorch_tanh)`);
  const nHeads = c.int('num_attention_heads');
  const nKvHeads = c.int('num_key_value_heads', nHeads);
  const headDim = c.int('head_dim', 256);
  if (nHeads % nKvHeads !== 0) throw new UserError(`${configPath}: ${nHeads} attention heads are not divisible by ${nKvHeads} KV heads`);
  if (headDim % 2 !== 0) throw new UserError(`${configPath}: head_dim ${headDim} is odd; RoPE needs pairs`);
  if (c.bool('attention_bias', false)) throw new UserError(`${configPath}: attention_bias true is not supported for ${arch} (the published models have none)`);
  if (!c.bool('tie_word_embeddings', true)) {
    throw new UserError(`${configPath}: tie_word_embeddings is false, but ${arch}'s head is the embedding table (tied)`);
  }
  if (json.rope_scaling != null) throw new UserError(`${configPath}: rope_scaling is not supported for ${arch} (the published models have none)`);
  return {
    arch,
    dim: c.int('hidden_size'),
    nLayers: layerCount(input, 'num_hidden_layers', c.int('num_hidden_layers')),
    nHeads,
    nKvHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('rms_norm_eps', 1e-6),
    maxSeqLen: c.int('max_position_embeddings', 8192),
    tiedHead: true,
    ropeTheta: c.positive('rope_theta', 10000),
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: false,
  };
}

/** Stored tensors transformers ignores too: RoPE's inv_freq buffer, a copy of the tied head. */
export function gemmaIgnore(n: string): boolean {
  return n.endsWith('.rotary_emb.inv_freq') || n === 'lm_head.weight';
}

/** config.json fields Gemma and Gemma-2 share, as transformers writes them. */
export function gemmaConfigJson(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    hidden_size: c.dim,
    intermediate_size: c.ffnDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    hidden_act: 'gelu_pytorch_tanh',
    hidden_activation: 'gelu_pytorch_tanh',
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    attention_bias: false,
    tie_word_embeddings: true,
    vocab_size: c.vocabSize,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/**
 * The Gemma tensor list (Llama's names; no head tensor, it is tied). Norm weights are offsets from 1, so
 * random-model initialises them to zeros (transformers' GemmaRMSNorm starts at zeros too). `extraNorms` are Gemma-2's
 * branch-output norms: [block-code name, HF name] per layer, inserted after the attention and the MLP norms.
 */
export function gemmaTensors(c: ModelConfig, extraNorms: { afterAttn: [string, string][]; afterMlp: [string, string][] } = { afterAttn: [], afterMlp: [] }): TensorSpec[] {
  // Gemma's norms scale by (1 + w), so an untrained norm is zeros; the head is always tied.
  return llamaLikeTensors(
    c,
    (layer, q, kv) => {
      layer('attn_norm.weight', 'input_layernorm.weight', [c.dim], 'zeros');
      layer('attn_q.weight', 'self_attn.q_proj.weight', [q, c.dim], 'normal');
      layer('attn_k.weight', 'self_attn.k_proj.weight', [kv, c.dim], 'normal');
      layer('attn_v.weight', 'self_attn.v_proj.weight', [kv, c.dim], 'normal');
      layer('attn_output.weight', 'self_attn.o_proj.weight', [c.dim, q], 'normal');
      for (const [name, hf] of extraNorms.afterAttn) layer(name, hf, [c.dim], 'zeros');
      for (const [name, hf] of extraNorms.afterMlp) layer(name, hf, [c.dim], 'zeros');
      layer('ffn_gate.weight', 'mlp.gate_proj.weight', [c.ffnDim, c.dim], 'normal');
      layer('ffn_up.weight', 'mlp.up_proj.weight', [c.ffnDim, c.dim], 'normal');
      layer('ffn_down.weight', 'mlp.down_proj.weight', [c.dim, c.ffnDim], 'normal');
    },
    { outputNormInit: 'zeros' },
  );
}

export const gemmaSpec: ArchitectureSpec = {
  family: 'gemma',
  // Gemma was trained with <bos> at the start of every sequence; its outputs without it are off-distribution.
  expectsBos: true,
  hfClasses: ['GemmaForCausalLM'],
  modelTypes: ['gemma'],
  fromHfConfig: (input): HfReading => ({ config: readGemmaConfig(input, 'gemma'), prefix: '', ignore: gemmaIgnore }),
  toHfConfig: (c, special, std) => ({ architectures: ['GemmaForCausalLM'], model_type: 'gemma', ...gemmaConfigJson(c, special, std) }),
  // Gemma 1's post_attention_layernorm is the pre-MLP norm (as in Llama), unlike Gemma-2's.
  tensors: (c) => gemmaTensors(c, { afterAttn: [['ffn_norm.weight', 'post_attention_layernorm.weight']], afterMlp: [] }),
  hooks: HOOKS,
  embeddingTable: 'token_embd.weight',
  blocks(g: Graph, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => gemmaBlock(x, layer, w.get, ctx, upTo);
  },
  embed: (ids, cfg, w) => mul(gather(w.get('token_embd.weight'), ids, 0), embeddingScale(cfg)),
  inputFromEmbeddings: (e, cfg) => mul(e, embeddingScale(cfg)),
  head: (x, cfg, w) => gemmaLogits(x, w.get, cfg),
  mlpDown: (a, layer, _cfg, w) => linear(a, w.get(`blk.${layer}.ffn_down.weight`)),
  // Gemma's RMSNorm gain is (1 + w); the head is tied.
  directionLogits: (v, _cfg, w) => linear(mul(v, add(w.get('output_norm.weight'), 1)), w.get('token_embd.weight')),
};
