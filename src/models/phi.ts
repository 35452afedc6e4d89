/**
 * The Phi family (phi-1, phi-1.5, phi-2; transformers' PhiForCausalLM): one LayerNorm (with bias) per block whose
 * output feeds attention and MLP in parallel, x + attn(ln x) + mlp(ln x); q/k/v/dense projections with biases; rotary
 * positions on the first `partial_rotary_factor` of each head (rotate-half within it); a gelu_new (tanh) MLP; an
 * untied lm_head with a bias.
 *
 * Hooks: `attn` = `attn_out` = the `self_attn.dense` output (bias included) as added to the residual stream; `mlp` =
 * the gelu_new output (input of `fc2`); `mlp_out` = the `fc2` output; `resid` = the block output. Both branches read
 * the same normed input, so `mlp`/`mlp_out` do not depend on attention.
 */
import type { Graph } from '../graph/graph.js';
import { add, geluTanh, linear } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, projectHeads } from './attention.js';
import { HOOKS, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { dense, refuseRopeScaling, rotaryFraction, rotaryWidth } from './gpt-neox.js';
import { layernorm, layerNormDirection, layerNormInto, type NormReader } from './gpt2.js';
import { lazyLlamaContext, rope, type LlamaContext } from './llama.js';
import { hfNamedTensors, layerCount, plainEmbedding, type ArchitectureSpec, type HfConfigInput, type HfReading, type TensorSpec, type Weights } from './spec.js';

function phiBlock(x: Value, layer: number, w: Weights, cfg: ModelConfig, rotary: () => LlamaContext, upTo: Hook): Partial<Record<Hook, Value>> {
  const p = `model.layers.${layer}.`;
  const reader = (name: string): NormReader => ({ weight: `${p}${name}.weight`, bias: `${p}${name}.bias`, inOut: false });
  // Every matrix reading the shared norm is folded (only those a request binds are ever read).
  const readers = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'mlp.fc1'].map(reader);
  const [xn, wn] = layerNormInto(x, p + 'input_layernorm.weight', p + 'input_layernorm.bias', cfg.normEps, w, readers);
  const mlpBranch = () => geluTanh(dense(xn, wn, p + 'mlp.fc1', true));
  // Parallel branches: a request for mlp/mlp_out binds no attention weights.
  if (upTo === 'mlp' || upTo === 'mlp_out') {
    const mlp = mlpBranch();
    return upTo === 'mlp' ? { mlp } : { mlp, mlp_out: dense(mlp, w, p + 'mlp.fc2', true) };
  }
  const ctx = rotary();
  const part = (name: string, heads: number) => ({ weight: wn.get(`${p}self_attn.${name}.weight`), bias: wn.get(`${p}self_attn.${name}.bias`), heads });
  const [q, k, v] = projectHeads(xn, [part('q_proj', cfg.nHeads), part('k_proj', cfg.nKvHeads), part('v_proj', cfg.nKvHeads)], cfg.headDim) as [Value, Value, Value];
  const attn = dense(attend(rope(q, ctx), rope(k, ctx), v, ctx.mask), w, p + 'self_attn.dense', true);
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out: attn };
  const mlp = mlpBranch();
  const mlp_out = dense(mlp, w, p + 'mlp.fc2', true);
  return { attn, attn_out: attn, mlp, mlp_out, resid: add(add(attn, mlp_out), x) };
}

// ---------------------------------------------------------------------------------------------------------------
// The spec

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json } = input;
  const c = new ConfigReader(configPath, json);
  const act = c.string('hidden_act', 'gelu_new');
  if (act !== 'gelu_new') throw new UserError(`${configPath}: hidden_act ${act} is not supported for phi (only gelu_new)`);
  // qk_layernorm adds per-head LayerNorms on q and k (no released Phi checkpoint uses it); not implemented.
  if (c.bool('qk_layernorm', false)) throw new UserError(`${configPath}: qk_layernorm true is not supported for phi`);
  refuseRopeScaling(configPath, json, 'phi');
  const dim = c.int('hidden_size');
  const nHeads = c.int('num_attention_heads');
  const nKvHeads = c.int('num_key_value_heads', nHeads);
  if (nHeads % nKvHeads !== 0) throw new UserError(`${configPath}: ${nHeads} attention heads are not divisible by ${nKvHeads} KV heads`);
  const headDim = c.divide('hidden_size', dim, 'num_attention_heads', nHeads);
  const config: ModelConfig = {
    arch: 'phi',
    dim,
    nLayers: layerCount(input, 'num_hidden_layers', c.int('num_hidden_layers')),
    nHeads,
    nKvHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('layer_norm_eps', 1e-5),
    maxSeqLen: c.int('max_position_embeddings', 2048),
    tiedHead: c.bool('tie_word_embeddings', false),
    ropeTheta: c.positive('rope_theta', 10000),
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: true,
    rotaryDim: rotaryWidth(configPath, 'partial_rotary_factor', c.positive('partial_rotary_factor', 0.5), headDim),
    // Always: Phi has no sequential form (the block does not read this; it describes the model, e.g. to inspect).
    parallelResidual: true,
  };
  return {
    config,
    prefix: '',
    // A tied head shares the embedding's weight (its bias stays lm_head.bias); a stored copy is ignored as transformers does.
    ignore: (n) => config.tiedHead && n === 'lm_head.weight',
  };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    architectures: ['PhiForCausalLM'],
    model_type: 'phi',
    hidden_size: c.dim,
    intermediate_size: c.ffnDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    hidden_act: 'gelu_new',
    max_position_embeddings: c.maxSeqLen,
    layer_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    partial_rotary_factor: rotaryFraction(c.rotaryDim ?? c.headDim, c.headDim),
    qk_layernorm: false,
    tie_word_embeddings: c.tiedHead,
    vocab_size: c.vocabSize,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/** The Phi tensor list — the only spelling of it; block code reads the Hugging Face names. */
function tensors(c: ModelConfig): TensorSpec[] {
  const d = c.dim;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const f = c.ffnDim;
  const { out, add } = hfNamedTensors();
  add('model.embed_tokens.weight', [c.vocabSize, d], 'normal');
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}.`;
    add(p + 'input_layernorm.weight', [d], 'ones', i);
    add(p + 'input_layernorm.bias', [d], 'zeros', i);
    for (const [name, rows] of [['q_proj', q], ['k_proj', kv], ['v_proj', kv]] as const) {
      add(p + `self_attn.${name}.weight`, [rows, d], 'normal', i);
      add(p + `self_attn.${name}.bias`, [rows], 'zeros', i);
    }
    add(p + 'self_attn.dense.weight', [d, q], 'normal', i);
    add(p + 'self_attn.dense.bias', [d], 'zeros', i);
    add(p + 'mlp.fc1.weight', [f, d], 'normal', i);
    add(p + 'mlp.fc1.bias', [f], 'zeros', i);
    add(p + 'mlp.fc2.weight', [d, f], 'normal', i);
    add(p + 'mlp.fc2.bias', [d], 'zeros', i);
  }
  add('model.final_layernorm.weight', [d], 'ones', c.nLayers);
  add('model.final_layernorm.bias', [d], 'zeros', c.nLayers);
  if (!c.tiedHead) add('lm_head.weight', [c.vocabSize, d], 'normal', c.nLayers);
  add('lm_head.bias', [c.vocabSize], 'zeros', c.nLayers);
  return out;
}

export const phiSpec: ArchitectureSpec = {
  family: 'phi',
  // The CodeGen/GPT-2 tokenizer Phi uses has no BOS; training texts were not started with one.
  expectsBos: false,
  hfClasses: ['PhiForCausalLM'],
  modelTypes: ['phi'],
  fromHfConfig,
  toHfConfig,
  tensors,
  hooks: HOOKS,
  ...plainEmbedding('model.embed_tokens.weight'),
  blocks(g: Graph, cfg, length) {
    const rotary = lazyLlamaContext(g, cfg, length);
    return (x, layer, w, upTo) => phiBlock(x, layer, w, cfg, rotary, upTo);
  },
  head: (x, cfg, w) => {
    const xn = layernorm(x, w.get('model.final_layernorm.weight'), w.get('model.final_layernorm.bias'), cfg.normEps);
    return add(linear(xn, w.get(cfg.tiedHead ? 'model.embed_tokens.weight' : 'lm_head.weight')), w.get('lm_head.bias'));
  },
  mlpDown: (a, layer, _cfg, w) => linear(a, w.get(`model.layers.${layer}.mlp.fc2.weight`)),
  // The lm_head bias is left out: it is the same whatever the direction, so it is no effect of the feature.
  directionLogits: (v, cfg, w) => linear(layerNormDirection(v, w.get('model.final_layernorm.weight')), w.get(cfg.tiedHead ? 'model.embed_tokens.weight' : 'lm_head.weight')),
};
