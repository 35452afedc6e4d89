/**
 * The GPT-2 family: its spec (config.json mapping, tensor list) and the block: pre-norm LayerNorm attention with a fused q/k/v projection and learned positions, then a GELU
 * (tanh approximation, `gelu_new`) MLP. Weights keep GPT-2's Conv1D [in, out] layout, so every projection is
 * x @ W + b (linear with transB = false) — no transposed copies.
 */
import type { Graph } from '../graph/graph.js';
import { add, gather, geluTanh, layernorm as layernormOp, layernormUnit, linear, matmul, mul, reduceMean, reshape, sub } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { UserError } from '../errors.js';
import { attend, causalMask, splitFusedHeads } from './attention.js';
import { HOOKS, type Hook, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { hfNamedTensors, layerCount, type ArchitectureSpec, type HfConfigInput, type HfReading, type TensorSpec, type Weights } from './spec.js';

/**
 * LayerNorm's direction-dependent linear part, for a bare direction (logit-effects.ts): g ⊙ (v − mean v). σ scales
 * every logit alike and the bias adds the same logits whatever the direction.
 */
export function layerNormDirection(v: Value, weight: Value): Value {
  return mul(sub(v, reduceMean(v, [-1], true)), weight);
}

export function layernorm(x: Value, weight: Value, bias: Value, eps: number): Value {
  // One fused op (ops.ts), with its backward written out.
  return layernormOp(x, weight, bias, eps);
}

/** A matrix that reads a LayerNorm's output, with its bias: `inOut` for GPT-2's Conv1D [in, out], else [out, in]. */
export interface NormReader {
  weight: string;
  bias: string;
  inOut: boolean;
}

/**
 * A LayerNorm feeding only the biased matrices `readers`: where the graph folds weights,
 * (x̂ ⊙ g + b)·W + c = x̂·(g ⊙ W) + (b·W + c), so the gain and bias move into each matrix and bias (folded once by
 * onnxruntime) and the norm runs without them — its backward then needs neither gy ⊙ g nor x̂ recomputed. Returns
 * the normed input and the weights the readers must be read through.
 */
export function layerNormInto(x: Value, gain: string, bias: string, eps: number, w: Weights, readers: NormReader[]): [Value, Weights] {
  // Not on WebGPU: there onnxruntime fuses the residual add into a unit-gain LayerNormalization and the fused kernel
  // drops the 1/σ output the backward reads (a missing-input error at run time on SwiftShader).
  if (!x.graph.foldWeights || x.graph.target === 'webgpu') return [layernorm(x, w.get(gain), w.get(bias), eps), w];
  const g = w.get(gain);
  const b = w.get(bias);
  const D = g.shape[0]!;
  const folded = new Map<string, () => Value>();
  for (const r of readers) {
    const W = () => w.get(r.weight);
    folded.set(r.weight, () => (r.inOut ? mul(W(), reshape(g, [D, 1])) : mul(W(), g)));
    // b·W as a plain MatMul of initializers, which onnxruntime's constant folding evaluates (it leaves the
    // com.microsoft FusedMatMul that `linear` emits for [out, in] weights to run every step).
    const bW = () => (r.inOut ? matmul(reshape(b, [1, D]), W()) : matmul(W(), reshape(b, [D, 1])));
    folded.set(r.bias, () => add(reshape(bW(), [W().shape[r.inOut ? 1 : 0]!]), w.get(r.bias)));
  }
  const get = (name: string) => folded.get(name)?.() ?? w.get(name);
  return [layernormUnit(x, eps), { get, optional: (name) => (folded.has(name) ? get(name) : w.optional(name)) }];
}

function affine(x: Value, w: Weights, name: string): Value {
  return add(linear(x, w.get(`${name}.weight`), false), w.get(`${name}.bias`));
}

function gpt2Block(x: Value, layer: number, w: Weights, cfg: ModelConfig, mask: Value, upTo: Hook): Partial<Record<Hook, Value>> {
  const p = `h.${layer}.`;
  const conv = (name: string): NormReader => ({ weight: `${p}${name}.weight`, bias: `${p}${name}.bias`, inOut: true });
  const [xn, wa] = layerNormInto(x, p + 'ln_1.weight', p + 'ln_1.bias', cfg.normEps, w, [conv('attn.c_attn')]);
  const qkv = affine(xn, wa, p + 'attn.c_attn');
  const D = cfg.dim;
  const [q, k, v] = splitFusedHeads(qkv, [cfg.nHeads, cfg.nHeads, cfg.nHeads], D / cfg.nHeads) as [Value, Value, Value];
  const attn = affine(attend(q, k, v, mask), w, p + 'attn.c_proj');
  // No norm on the branch outputs: what is added to the residual stream is the projection itself.
  const attn_out = attn;
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const [hn, wm] = layerNormInto(h, p + 'ln_2.weight', p + 'ln_2.bias', cfg.normEps, w, [conv('mlp.c_fc')]);
  const mlp = geluTanh(affine(hn, wm, p + 'mlp.c_fc'));
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = affine(mlp, w, p + 'mlp.c_proj');
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

/** Learned positions 0..T-1 added to token embeddings [B, T, D]. */
function addPositions(e: Value, w: Weights): Value {
  const T = e.shape[1]!;
  const positions = e.graph.constant(Array.from({ length: T }, (_, t) => t), [T], 'int64');
  return add(e, gather(w.get('wpe.weight'), positions, 0));
}

// ---------------------------------------------------------------------------------------------------------------
// The spec

function fromHfConfig(input: HfConfigInput): HfReading {
  const { path: configPath, json, has } = input;
  const c = new ConfigReader(configPath, json);
  const act = c.string('activation_function', 'gelu_new');
  if (act !== 'gelu_new') throw new UserError(`${configPath}: activation_function ${act} is not supported for gpt2 (only gelu_new)`);
  const dim = c.int('n_embd');
  const nHeads = c.int('n_head');
  const config: ModelConfig = {
    arch: 'gpt2',
    dim,
    nLayers: layerCount(input, 'n_layer', c.int('n_layer')),
    nHeads,
    nKvHeads: nHeads,
    headDim: c.divide('n_embd', dim, 'n_head', nHeads),
    ffnDim: c.int('n_inner', 4 * dim),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('layer_norm_epsilon', 1e-5),
    maxSeqLen: c.int('n_positions'),
    tiedHead: true,
    ropeTheta: 0,
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: true,
  };
  return {
    config,
    // Fine-tuned checkpoints prefix every name with "transformer."; the official ones do not. Accept both.
    prefix: has('transformer.wte.weight') ? 'transformer.' : '',
    // attn.bias / attn.masked_bias are the causal-mask buffers; lm_head is tied to wte.
    ignore: (n) => /(^|\.)h\.\d+\.attn\.(masked_)?bias$/.test(n) || n === 'lm_head.weight',
  };
}

function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_embd: c.dim,
    n_head: c.nHeads,
    n_layer: c.nLayers,
    n_inner: c.ffnDim,
    n_positions: c.maxSeqLen,
    n_ctx: c.maxSeqLen,
    vocab_size: c.vocabSize,
    layer_norm_epsilon: c.normEps,
    activation_function: 'gelu_new',
    scale_attn_weights: true,
    tie_word_embeddings: true,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/** The GPT-2 tensor list — the only spelling of it. GPT-2 keeps its own names; Conv1D weights are stored [in, out]. */
function tensors(c: ModelConfig): TensorSpec[] {
  const d = c.dim;
  const f = c.ffnDim;
  const { out, add } = hfNamedTensors();
  add('wte.weight', [c.vocabSize, d], 'normal');
  add('wpe.weight', [c.maxSeqLen, d], 'normal');
  for (let i = 0; i < c.nLayers; i++) {
    const h = `h.${i}.`;
    add(h + 'ln_1.weight', [d], 'ones', i);
    add(h + 'ln_1.bias', [d], 'zeros', i);
    add(h + 'attn.c_attn.weight', [d, 3 * d], 'normal', i);
    add(h + 'attn.c_attn.bias', [3 * d], 'zeros', i);
    add(h + 'attn.c_proj.weight', [d, d], 'normal', i);
    add(h + 'attn.c_proj.bias', [d], 'zeros', i);
    add(h + 'ln_2.weight', [d], 'ones', i);
    add(h + 'ln_2.bias', [d], 'zeros', i);
    add(h + 'mlp.c_fc.weight', [d, f], 'normal', i);
    add(h + 'mlp.c_fc.bias', [f], 'zeros', i);
    add(h + 'mlp.c_proj.weight', [f, d], 'normal', i);
    add(h + 'mlp.c_proj.bias', [d], 'zeros', i);
  }
  add('ln_f.weight', [d], 'ones', c.nLayers);
  add('ln_f.bias', [d], 'zeros', c.nLayers);
  return out;
}

export const gpt2Spec: ArchitectureSpec = {
  family: 'gpt2',
  expectsBos: false,
  hfClasses: ['GPT2LMHeadModel'],
  modelTypes: ['gpt2'],
  fromHfConfig,
  toHfConfig,
  tensors,
  hooks: HOOKS,
  embeddingTable: 'wte.weight',
  blocks(g: Graph, cfg, length) {
    const mask = causalMask(g, length, 1);
    return (x, layer, w, upTo) => gpt2Block(x, layer, w, cfg, mask, upTo);
  },
  embed: (ids, _cfg, w) => addPositions(gather(w.get('wte.weight'), ids, 0), w),
  inputFromEmbeddings: (e, _cfg, w) => addPositions(e, w),
  head: (x, cfg, w) => linear(layernorm(x, w.get('ln_f.weight'), w.get('ln_f.bias'), cfg.normEps), w.get('wte.weight'), true),
  // Conv1D layout [ffn, D]: row j is neuron j's output direction.
  mlpDown: (a, layer, _cfg, w) => linear(a, w.get(`h.${layer}.mlp.c_proj.weight`), false),
  directionLogits: (v, _cfg, w) => linear(layerNormDirection(v, w.get('ln_f.weight')), w.get('wte.weight'), true),
};
