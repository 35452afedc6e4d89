/**
 * The Phi-3 family (Phi-3 / Phi-3.5 mini and medium, Phi-4-mini; transformers' Phi3ForCausalLM): a Llama block with
 * fused projections — `qkv_proj` holds q, k and v contiguously ([q; k; v] rows, grouped-query k/v in the larger
 * sizes) and `gate_up_proj` holds gate then up — RMSNorm, SwiGLU, no biases, rotate-half RoPE on the first
 * `partial_rotary_factor` of each head (1 for Phi-3, 0.75 for Phi-4-mini).
 *
 * The fused weights are bound whole and their outputs sliced in the graph (one matmul each, as transformers does).
 * Hooks mean what they mean for Llama: `attn` = `attn_out` = the o_proj output; `mlp` = silu(gate)·up (the input of
 * down_proj); `mlp_out` = the down_proj output; `resid` = the block output.
 *
 * Sliding window: Phi-3 configs set `sliding_window` (2047 for mini-4k); a query attends only the last
 * `sliding_window` positions. Up to that length the window is the plain causal mask, so the context (maxSeqLen) is
 * capped at `sliding_window` and longer inputs are refused rather than attended wrongly.
 */
import type { Graph } from '../graph/graph.js';
import { add, linear, mul, split, swiglu } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, splitFusedHeads } from './attention.js';
import { HOOKS, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { refuseRopeScaling, rotaryFraction, rotaryWidth } from './gpt-neox.js';
import { llamaContext, llamaLikeConfigJson, normInto, rmsnorm, rope, type LlamaContext } from './llama.js';
import { hfNamedTensors, layerCount, plainEmbedding, type ArchitectureSpec, type HfConfigInput, type HfReading, type TensorSpec, type Weights } from './spec.js';

function phi3Block(x: Value, layer: number, w: Weights, ctx: LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const cfg = ctx.cfg;
  const p = `model.layers.${layer}.`;
  const [xn, wa] = normInto(x, w.get(p + 'input_layernorm.weight'), cfg.normEps, w.get, [p + 'self_attn.qkv_proj.weight']);
  const qkv = linear(xn, wa(p + 'self_attn.qkv_proj.weight'));
  const [qh, kh, vh] = splitFusedHeads(qkv, [cfg.nHeads, cfg.nKvHeads, cfg.nKvHeads], cfg.headDim) as [Value, Value, Value];
  const attn = linear(attend(rope(qh, ctx), rope(kh, ctx), vh, ctx.mask), w.get(p + 'self_attn.o_proj.weight'));
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out: attn };
  const h = add(x, attn);
  const [hn, wm] = normInto(h, w.get(p + 'post_attention_layernorm.weight'), cfg.normEps, w.get, [p + 'mlp.gate_up_proj.weight']);
  const f = cfg.ffnDim;
  const [gate, up] = split(linear(hn, wm(p + 'mlp.gate_up_proj.weight')), -1, [f, f]) as [Value, Value];
  const mlp = swiglu(gate, up);
  if (upTo === 'mlp') return { attn, attn_out: attn, mlp };
  const mlp_out = linear(mlp, w.get(p + 'mlp.down_proj.weight'));
  if (upTo === 'mlp_out') return { attn, attn_out: attn, mlp, mlp_out };
  return { attn, attn_out: attn, mlp, mlp_out, resid: add(h, mlp_out) };
}

// ---------------------------------------------------------------------------------------------------------------
// The spec

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  const act = c.string('hidden_act', 'silu');
  if (act !== 'silu') throw new UserError(`${configPath}: hidden_act ${act} is not supported for phi3 (only silu)`);
  // Phi-3-*-128k's "longrope" (formerly "su") rescales frequencies by position range; not implemented.
  refuseRopeScaling(configPath, json, 'phi3');
  const dim = c.int('hidden_size');
  const nHeads = c.int('num_attention_heads');
  const nKvHeads = c.int('num_key_value_heads', nHeads);
  if (nHeads % nKvHeads !== 0) throw new UserError(`${configPath}: ${nHeads} attention heads are not divisible by ${nKvHeads} KV heads`);
  const headDim = json.head_dim == null ? c.divide('hidden_size', dim, 'num_attention_heads', nHeads) : c.int('head_dim');
  const maxPos = c.int('max_position_embeddings', 4096);
  const window = json.sliding_window == null ? null : c.int('sliding_window');
  const tied = c.bool('tie_word_embeddings', false);
  const config: ModelConfig = {
    arch: 'phi3',
    dim,
    nLayers: layerCount(input, 'num_hidden_layers', c.int('num_hidden_layers')),
    nHeads,
    nKvHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('rms_norm_eps', 1e-5),
    maxSeqLen: window === null ? maxPos : Math.min(maxPos, window),
    tiedHead: tied,
    ropeTheta: c.positive('rope_theta', 10000),
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: false,
    rotaryDim: rotaryWidth(configPath, 'partial_rotary_factor', c.positive('partial_rotary_factor', 1), headDim),
  };
  if (!tied && !input.has('lm_head.weight')) {
    throw new UserError(`${configPath}: tie_word_embeddings is false but the checkpoint has no lm_head.weight`);
  }
  return { config, prefix: '', ignore: (n) => tied && n === 'lm_head.weight' };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    head_dim: c.headDim,
    ...llamaLikeConfigJson(c, special, std),
    // The context read back is min(max_position_embeddings, sliding_window): writing both as it keeps it.
    sliding_window: c.maxSeqLen,
    partial_rotary_factor: rotaryFraction(c.rotaryDim ?? c.headDim, c.headDim),
  };
}

/** The Phi-3 tensor list — the only spelling of it; block code reads the Hugging Face names. */
function tensors(c: ModelConfig): TensorSpec[] {
  const d = c.dim;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const { out, add } = hfNamedTensors();
  add('model.embed_tokens.weight', [c.vocabSize, d], 'normal');
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}.`;
    add(p + 'input_layernorm.weight', [d], 'ones', i);
    add(p + 'self_attn.qkv_proj.weight', [q + 2 * kv, d], 'normal', i);
    add(p + 'self_attn.o_proj.weight', [d, q], 'normal', i);
    add(p + 'post_attention_layernorm.weight', [d], 'ones', i);
    add(p + 'mlp.gate_up_proj.weight', [2 * c.ffnDim, d], 'normal', i);
    add(p + 'mlp.down_proj.weight', [d, c.ffnDim], 'normal', i);
  }
  add('model.norm.weight', [d], 'ones', c.nLayers);
  if (!c.tiedHead) add('lm_head.weight', [c.vocabSize, d], 'normal', c.nLayers);
  return out;
}

export const phi3Spec: ArchitectureSpec = {
  family: 'phi3',
  // Phi-3 uses the Llama-2 SentencePiece vocabulary, whose texts start with <s>.
  expectsBos: true,
  hfClasses: ['Phi3ForCausalLM'],
  modelTypes: ['phi3'],
  fromHfConfig,
  toHfConfig,
  tensors,
  hooks: HOOKS,
  ...plainEmbedding('model.embed_tokens.weight'),
  blocks(g: Graph, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => phi3Block(x, layer, w, ctx, upTo);
  },
  head: (x, cfg, w) => linear(rmsnorm(x, w.get('model.norm.weight'), cfg.normEps), w.get(cfg.tiedHead ? 'model.embed_tokens.weight' : 'lm_head.weight')),
  mlpDown: (a, layer, _cfg, w) => linear(a, w.get(`model.layers.${layer}.mlp.down_proj.weight`)),
  directionLogits: (v, cfg, w) => linear(mul(v, w.get('model.norm.weight')), w.get(cfg.tiedHead ? 'model.embed_tokens.weight' : 'lm_head.weight')),
};
