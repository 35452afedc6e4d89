/**
 * The GPT-NeoX family (Pythia, GPT-NeoX-20B): its spec and the block. LayerNorm with bias before attention and MLP;
 * one fused `query_key_value` projection whose output is laid out per head as [q_h, k_h, v_h] (not all q, then all k,
 * then all v as in GPT-2); rotary positions on the first `rotary_pct` of each head only (rotate-half within that part,
 * frequencies from the rotated width); exact (erf) GELU; and, when `use_parallel_residual` (Pythia), attention and MLP
 * both read the block input: x + attn(ln1 x) + mlp(ln2 x). The head `embed_out` is separate from `embed_in`.
 *
 * Hooks: `attn` = `attn_out` = the `attention.dense` output (bias included) as added to the residual stream; `mlp` =
 * the GELU output (input of `dense_4h_to_h`); `mlp_out` = the `dense_4h_to_h` output; `resid` = the block output.
 * In a parallel block the MLP reads the block input, not x + attn, so `mlp`/`mlp_out` do not depend on attention.
 */
import type { Graph } from '../graph/graph.js';
import { add, gelu, linear, reshape, split, transpose } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend } from './attention.js';
import { HOOKS, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { layernorm, layerNormDirection, layerNormInto } from './gpt2.js';
import { lazyLlamaContext, rope, type LlamaContext } from './llama.js';
import { hfNamedTensors, layerCount, plainEmbedding, type ArchitectureSpec, type HfConfigInput, type HfReading, type TensorSpec, type Weights } from './spec.js';

/** x @ Wᵀ (+ b): a torch nn.Linear with its [out, in] weight, the bias bound only when the tensor list has it. */
export function dense(x: Value, w: Weights, name: string, bias: boolean): Value {
  const y = linear(x, w.get(`${name}.weight`));
  return bias ? add(y, w.get(`${name}.bias`)) : y;
}

/**
 * The fused projection [B, T, 3·D] → q, k, v as [B, heads, T, hd]. transformers views it as [B, T, heads, 3·hd] and
 * takes q, k, v from each head's consecutive thirds.
 */
function splitFusedPerHead(qkv: Value, nHeads: number, hd: number): [Value, Value, Value] {
  const [B, T] = qkv.shape as [number, number, number];
  // One Transpose to [B, heads, T, 3·hd] and one Split of each head's thirds (three Slices and Transposes before).
  return split(transpose(reshape(qkv, [B, T, nHeads, 3 * hd]), [0, 2, 1, 3]), -1, [hd, hd, hd]) as [Value, Value, Value];
}

function neoxBlock(x: Value, layer: number, w: Weights, cfg: ModelConfig, rotary: () => LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const p = `gpt_neox.layers.${layer}.`;
  const norm = (v: Value, name: string) => layernorm(v, w.get(p + name + '.weight'), w.get(p + name + '.bias'), cfg.normEps);
  // A norm folds into the matrix after it only when that matrix has a bias to take the norm's bias (Pythia: yes).
  const normInto = (v: Value, name: string, matrix: string, biased: boolean): [Value, Weights] =>
    biased ? layerNormInto(v, `${p}${name}.weight`, `${p}${name}.bias`, cfg.normEps, w, [{ weight: `${p}${matrix}.weight`, bias: `${p}${matrix}.bias`, inOut: false }]) : [norm(v, name), w];
  const attention = (): Value => {
    const [xn, wa] = normInto(x, 'input_layernorm', 'attention.query_key_value', cfg.qkvBias);
    const qkv = dense(xn, wa, p + 'attention.query_key_value', cfg.qkvBias);
    const [q, k, v] = splitFusedPerHead(qkv, cfg.nHeads, cfg.headDim);
    const ctx = rotary();
    return dense(attend(rope(q, ctx), rope(k, ctx), v, ctx.mask), w, p + 'attention.dense', cfg.qkvBias);
  };
  const mlpOf = (h: Value) => {
    const [hn, wm] = normInto(h, 'post_attention_layernorm', 'mlp.dense_h_to_4h', true);
    return gelu(dense(hn, wm, p + 'mlp.dense_h_to_4h', true));
  };

  if (cfg.parallelResidual) {
    // The MLP branch reads x itself: a request for mlp/mlp_out needs (and binds) no attention weights.
    if (upTo === 'mlp' || upTo === 'mlp_out') {
      const mlp = mlpOf(x);
      return upTo === 'mlp' ? { mlp } : { mlp, mlp_out: dense(mlp, w, p + 'mlp.dense_4h_to_h', true) };
    }
    const attn = attention();
    if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out: attn };
    const mlp = mlpOf(x);
    const mlp_out = dense(mlp, w, p + 'mlp.dense_4h_to_h', true);
    return { attn, attn_out: attn, mlp, mlp_out, resid: add(add(mlp_out, attn), x) };
  }
  const attn = attention();
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out: attn };
  const h = add(attn, x);
  const mlp = mlpOf(h);
  if (upTo === 'mlp') return { attn, attn_out: attn, mlp };
  const mlp_out = dense(mlp, w, p + 'mlp.dense_4h_to_h', true);
  if (upTo === 'mlp_out') return { attn, attn_out: attn, mlp, mlp_out };
  return { attn, attn_out: attn, mlp, mlp_out, resid: add(mlp_out, h) };
}

// ---------------------------------------------------------------------------------------------------------------
// The spec

/**
 * The rotated width of a head from a fraction, as transformers computes it (Python's int(): truncation), refused when it
 * leaves nothing to rotate or an odd count (rotate-half needs pairs). Shared with Phi / Phi-3's partial_rotary_factor.
 */
export function rotaryWidth(configPath: string, key: string, fraction: number, headDim: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new UserError(`${configPath}: ${key} must be in (0, 1], got ${fraction}`);
  const rd = Math.trunc(headDim * fraction);
  if (rd < 2 || rd % 2 !== 0) {
    throw new UserError(`${configPath}: ${key} ${fraction} of head size ${headDim} rotates ${rd} dimensions; rotary embedding needs a positive even count`);
  }
  return rd;
}

/** The fraction written back for a rotated width: the one that reads back (by truncation) to exactly that width. */
export function rotaryFraction(rd: number, headDim: number): number {
  const f = rd / headDim;
  if (Math.trunc(headDim * f) !== rd) throw new Error(`rotary fraction ${f} of ${headDim} does not read back to ${rd}`);
  return f;
}

/** `rope_scaling` must be absent: the scaled variants of these families are not implemented, and ignoring one would be wrong. */
export function refuseRopeScaling(configPath: string, json: Record<string, unknown>, family: string): void {
  const v = json.rope_scaling;
  if (v == null) return;
  const type = typeof v === 'object' && !Array.isArray(v) ? ((v as Record<string, unknown>).rope_type ?? (v as Record<string, unknown>).type) : v;
  if (type === 'default') return;
  throw new UserError(`${configPath}: rope_scaling ${JSON.stringify(type)} is not supported for ${family} (only none)`);
}

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  const act = c.string('hidden_act', 'gelu');
  if (act !== 'gelu') throw new UserError(`${configPath}: hidden_act ${act} is not supported for gpt_neox (only gelu)`);
  refuseRopeScaling(configPath, json, 'gpt_neox');
  const dim = c.int('hidden_size');
  const nHeads = c.int('num_attention_heads');
  const headDim = c.divide('hidden_size', dim, 'num_attention_heads', nHeads);
  // Older configs name the rotary base rotary_emb_base; transformers ≥ 4.45 writes rope_theta.
  const theta = json.rope_theta != null ? c.positive('rope_theta') : c.positive('rotary_emb_base', 10000);
  const config: ModelConfig = {
    arch: 'gpt_neox',
    dim,
    nLayers: layerCount(input, 'num_hidden_layers', c.int('num_hidden_layers')),
    nHeads,
    nKvHeads: nHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('layer_norm_eps', 1e-5),
    maxSeqLen: c.int('max_position_embeddings', 2048),
    tiedHead: c.bool('tie_word_embeddings', false),
    ropeTheta: theta,
    ropePairing: 'half',
    ropeScaling: null,
    // attention_bias covers both query_key_value and dense (transformers' GPTNeoXConfig, default true).
    qkvBias: c.bool('attention_bias', true),
    rotaryDim: rotaryWidth(configPath, 'rotary_pct', c.positive('rotary_pct', 0.25), headDim),
    parallelResidual: c.bool('use_parallel_residual', true),
  };
  if (!config.tiedHead && !input.has('embed_out.weight')) {
    throw new UserError(`${configPath}: tie_word_embeddings is false but the checkpoint has no embed_out.weight`);
  }
  return {
    config,
    prefix: '',
    // Checkpoints converted from older transformers carry the causal-mask buffers and the rotary inv_freq buffer.
    ignore: (n) => /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/.test(n) || (config.tiedHead && n === 'embed_out.weight'),
  };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    architectures: ['GPTNeoXForCausalLM'],
    model_type: 'gpt_neox',
    hidden_size: c.dim,
    num_attention_heads: c.nHeads,
    num_hidden_layers: c.nLayers,
    intermediate_size: c.ffnDim,
    vocab_size: c.vocabSize,
    hidden_act: 'gelu',
    layer_norm_eps: c.normEps,
    max_position_embeddings: c.maxSeqLen,
    rotary_pct: rotaryFraction(c.rotaryDim ?? c.headDim, c.headDim),
    rotary_emb_base: c.ropeTheta,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    use_parallel_residual: c.parallelResidual ?? true,
    attention_bias: c.qkvBias,
    tie_word_embeddings: c.tiedHead,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/** The GPT-NeoX tensor list — the only spelling of it. Block code reads the Hugging Face names themselves. */
function tensors(c: ModelConfig): TensorSpec[] {
  const d = c.dim;
  const f = c.ffnDim;
  const { out, add } = hfNamedTensors();
  add('gpt_neox.embed_in.weight', [c.vocabSize, d], 'normal');
  for (let i = 0; i < c.nLayers; i++) {
    const p = `gpt_neox.layers.${i}.`;
    add(p + 'input_layernorm.weight', [d], 'ones', i);
    add(p + 'input_layernorm.bias', [d], 'zeros', i);
    add(p + 'post_attention_layernorm.weight', [d], 'ones', i);
    add(p + 'post_attention_layernorm.bias', [d], 'zeros', i);
    add(p + 'attention.query_key_value.weight', [3 * d, d], 'normal', i);
    if (c.qkvBias) add(p + 'attention.query_key_value.bias', [3 * d], 'zeros', i);
    add(p + 'attention.dense.weight', [d, d], 'normal', i);
    if (c.qkvBias) add(p + 'attention.dense.bias', [d], 'zeros', i);
    add(p + 'mlp.dense_h_to_4h.weight', [f, d], 'normal', i);
    add(p + 'mlp.dense_h_to_4h.bias', [f], 'zeros', i);
    add(p + 'mlp.dense_4h_to_h.weight', [d, f], 'normal', i);
    add(p + 'mlp.dense_4h_to_h.bias', [d], 'zeros', i);
  }
  add('gpt_neox.final_layer_norm.weight', [d], 'ones', c.nLayers);
  add('gpt_neox.final_layer_norm.bias', [d], 'zeros', c.nLayers);
  if (!c.tiedHead) add('embed_out.weight', [c.vocabSize, d], 'normal', c.nLayers);
  return out;
}

export const gptNeoxSpec: ArchitectureSpec = {
  family: 'gpt_neox',
  // Pythia was trained on the Pile with <|endoftext|> between documents only, no BOS at the start of each.
  expectsBos: false,
  hfClasses: ['GPTNeoXForCausalLM'],
  modelTypes: ['gpt_neox'],
  fromHfConfig,
  toHfConfig,
  tensors,
  hooks: HOOKS,
  ...plainEmbedding('gpt_neox.embed_in.weight'),
  blocks(g: Graph, cfg, length) {
    const rotary = lazyLlamaContext(g, cfg, length);
    return (x, layer, w, upTo) => neoxBlock(x, layer, w, cfg, rotary, upTo);
  },
  head: (x, cfg, w) =>
    linear(
      layernorm(x, w.get('gpt_neox.final_layer_norm.weight'), w.get('gpt_neox.final_layer_norm.bias'), cfg.normEps),
      w.get(cfg.tiedHead ? 'gpt_neox.embed_in.weight' : 'embed_out.weight'),
    ),
  mlpDown: (a, layer, _cfg, w) => linear(a, w.get(`gpt_neox.layers.${layer}.mlp.dense_4h_to_h.weight`)),
  // Through the final LayerNorm's linear part and embed_out (logit-effects.ts); the head has no bias.
  directionLogits: (v, cfg, w) => linear(layerNormDirection(v, w.get('gpt_neox.final_layer_norm.weight')), w.get(cfg.tiedHead ? 'gpt_neox.embed_in.weight' : 'embed_out.weight')),
};
