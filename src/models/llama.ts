/**
 * The Llama family (Llama 1–3, Mistral, Qwen2): its spec — config.json and GGUF mapping, tensor list — and the block,
 * top-down: pre-norm attention with rotary positions and grouped-query heads, then a pre-norm SwiGLU MLP, each added
 * to the residual stream. Everything is written with the graph builder's ops, so the same code serves the forward
 * pass, its gradient and every batch size.
 */
import type { Graph } from '../graph/graph.js';
import { add, concat, linear, matmul, mul, rmsnorm as rmsnormOp, rmsnormUnit, ropeFused, split, swiglu } from '../graph/ops.js';
import { UserError } from '../errors.js';
import { attend, causalMask, projectHeads } from './attention.js';
import type { Value } from '../graph/value.js';
import { HOOKS, ropeFrequencies, type Family, type Hook, type Llama3RopeScaling, type ModelConfig } from './config.js';
import { ConfigReader } from './config-reader.js';
import { layerCount, plainEmbedding, type ArchitectureSpec, type GgufMeta, type HfConfigInput, type HfReading, type OptionalWeightFn, type TensorSpec, type WeightFn } from './spec.js';

/** Per-graph constants shared by every block: rotary tables and the causal mask, for one sequence length. */
export interface LlamaContext {
  cfg: ModelConfig;
  cos: Value;
  sin: Value;
  /** x @ rotation swaps each rotary pair with a sign: (a, b) → (−b, a). */
  rotation: Value;
  /** Half-width tables [T, rotaryDim/2] for the fused RoPE kernel (float32 graphs; null in float64 ones). */
  cosHalf: Value | null;
  sinHalf: Value | null;
  mask: Value;
}

/**
 * llamaContext built on first use: a graph that only reads MLP hooks of a parallel block (GPT-NeoX, Phi) has no
 * attention, and constants no node reads would make onnxruntime warn about unused initializers on stderr.
 */
export function lazyLlamaContext(g: Graph, cfg: ModelConfig, length: number): () => LlamaContext {
  let ctx: LlamaContext | null = null;
  return () => (ctx ??= llamaContext(g, cfg, length));
}

export function llamaContext(g: Graph, cfg: ModelConfig, length: number): LlamaContext {
  const hd = cfg.headDim;
  // Partial rotary (rotaryDim < headDim): the pairs live in the first rotaryDim dimensions; the others get cos 1,
  // sin 0 and no rotation entry, so x·cos + (x·R)·sin passes them through unchanged — no slicing or concatenation.
  const rd = cfg.rotaryDim ?? hd;
  const half = rd / 2;
  const freqs = ropeFrequencies(cfg);
  // Which pair each dimension belongs to, and the two members of pair i, for the two pairing conventions.
  const pairOf = (j: number) => (cfg.ropePairing === 'interleaved' ? j >> 1 : j % half);
  const members = (i: number) => (cfg.ropePairing === 'interleaved' ? [2 * i, 2 * i + 1] : [i, i + half]) as [number, number];

  const cos = new Float64Array(length * hd);
  const sin = new Float64Array(length * hd);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < hd; j++) {
      const angle = j < rd ? t * freqs[pairOf(j)]! : 0;
      cos[t * hd + j] = Math.cos(angle);
      sin[t * hd + j] = Math.sin(angle);
    }
  }
  const rot = new Float64Array(hd * hd);
  for (let i = 0; i < half; i++) {
    const [a, b] = members(i);
    rot[b * hd + a] = -1; // out[a] = −x[b]
    rot[a * hd + b] = 1; //  out[b] = x[a]
  }
  // The fused kernel reads angle t·freq_i once per pair; the dense tables above repeat it for both members.
  const fused = g.float === 'float32';
  const angles = (f: (a: number) => number) => Float64Array.from({ length: length * half }, (_, k) => f(Math.floor(k / half) * freqs[k % half]!));
  // Each constant is made on first use by whichever form reads it, so a graph holds no constant it never reads.
  const once = <T>(make: () => T): (() => T) => {
    let v: T | undefined;
    return () => (v ??= make());
  };
  const [cosC, sinC, rotC, maskC] = [
    once(() => g.constant(cos, [length, hd])),
    once(() => g.constant(sin, [length, hd])),
    once(() => g.constant(rot, [hd, hd])),
    once(() => causalMask(g, length, cfg.nHeads / cfg.nKvHeads)),
  ];
  const [cosH, sinH] = [once(() => g.constant(angles(Math.cos), [length, half])), once(() => g.constant(angles(Math.sin), [length, half]))];
  return {
    cfg,
    get cos() { return cosC(); },
    get sin() { return sinC(); },
    get rotation() { return rotC(); },
    get cosHalf() { return fused ? cosH() : null; },
    get sinHalf() { return fused ? sinH() : null; },
    get mask() { return maskC(); },
  };
}

/** RMSNorm over the last axis: one fused op (ops.ts), whose backward is written out rather than derived. */
export function rmsnorm(x: Value, weight: Value, eps: number): Value {
  return rmsnormOp(x, weight, eps);
}

/**
 * Rotary position embedding on [B, heads, T, headDim]: one fused kernel in float32 graphs; float64 graphs (the
 * gradient tests) keep the dense form x·cos + (x·R)·sin, which the fused form is tested against.
 */
export function rope(x: Value, ctx: LlamaContext): Value {
  if (ctx.cosHalf && ctx.sinHalf) return ropeFused(x, ctx.cosHalf, ctx.sinHalf, ctx.cfg.ropePairing === 'interleaved');
  return add(mul(x, ctx.cos), mul(matmul(x, ctx.rotation), ctx.sin));
}

/** The attention branch of block `layer` on its normed input (Llama's; Qwen3 passes its own to llamaBlock). */
export type AttentionFn = (xn: Value, layer: number, w: WeightFn, bias: OptionalWeightFn, ctx: LlamaContext) => Value;

/** q, k, v of block `layer` as heads [B, heads, T, hd] (one fused product where the graph folds weights). */
export function llamaQkv(xn: Value, layer: number, w: WeightFn, bias: OptionalWeightFn, cfg: ModelConfig): [Value, Value, Value] {
  const p = `blk.${layer}.`;
  const part = (name: string, heads: number) => ({ weight: w(`${p}${name}.weight`), bias: bias(`${p}${name}.bias`), heads });
  return projectHeads(xn, [part('attn_q', cfg.nHeads), part('attn_k', cfg.nKvHeads), part('attn_v', cfg.nKvHeads)], cfg.headDim) as [Value, Value, Value];
}

function attention(xn: Value, layer: number, w: WeightFn, bias: OptionalWeightFn, ctx: LlamaContext): Value {
  const [q, k, v] = llamaQkv(xn, layer, w, bias, ctx.cfg);
  return linear(attend(rope(q, ctx), rope(k, ctx), v, ctx.mask), w(`blk.${layer}.attn_output.weight`));
}

/**
 * The norm that feeds only the matrices `names` (attn_norm → q, k, v; ffn_norm → gate, up): where the graph folds
 * weights, linear(x̂ ⊙ g, W) = linear(x̂, W ⊙ g), so the gain moves into those matrices (folded once by onnxruntime)
 * and the norm runs without one — its backward then needs neither gy ⊙ g nor x̂ recomputed. Returns the normed input
 * and the weight lookup the matrices must be read through.
 */
export function normInto(x: Value, gain: Value, eps: number, w: WeightFn, names: string[]): [Value, WeightFn] {
  if (!x.graph.foldWeights) return [rmsnorm(x, gain, eps), w];
  const scaled = new Set(names);
  return [rmsnormUnit(x, eps), (name) => (scaled.has(name) ? mul(w(name), gain) : w(name))];
}

/** One block; stops after `upTo` (see HOOKS), so a request binds no weights it cannot see. */
export function llamaBlock(
  x: Value,
  layer: number,
  w: WeightFn,
  bias: OptionalWeightFn,
  ctx: LlamaContext,
  upTo: Hook = 'resid',
  attentionOf: AttentionFn = attention,
): Partial<Record<Hook, Value>> {
  const p = `blk.${layer}.`;
  const eps = ctx.cfg.normEps;
  const [xn, wa] = normInto(x, w(p + 'attn_norm.weight'), eps, w, ['attn_q', 'attn_k', 'attn_v'].map((n) => `${p}${n}.weight`));
  const attn = attentionOf(xn, layer, wa, bias, ctx);
  // No norm on the branch outputs: what is added to the residual stream is the projection itself.
  const attn_out = attn;
  if (upTo === 'attn' || upTo === 'attn_out') return { attn, attn_out };
  const h = add(x, attn_out);
  const [hn, wm] = normInto(h, w(p + 'ffn_norm.weight'), eps, w, [`${p}ffn_gate.weight`, `${p}ffn_up.weight`]);
  const mlp = swiglu(...gateUp(hn, wm(p + 'ffn_gate.weight'), wm(p + 'ffn_up.weight')));
  if (upTo === 'mlp') return { attn, attn_out, mlp };
  const mlp_out = linear(mlp, w(p + 'ffn_down.weight'));
  if (upTo === 'mlp_out') return { attn, attn_out, mlp, mlp_out };
  return { attn, attn_out, mlp, mlp_out, resid: add(h, mlp_out) };
}

/** The gate and up projections: one product of the concatenated matrices, then a Split, where the graph folds weights. */
export function gateUp(x: Value, gate: Value, up: Value): [Value, Value] {
  if (!x.graph.foldWeights) return [linear(x, gate), linear(x, up)];
  return split(linear(x, concat([gate, up], 0)), -1, [gate.shape[0]!, up.shape[0]!]) as [Value, Value];
}

/** Final norm and output head (tied to the embedding table when the model has no separate head). */
export function llamaHead(x: Value, w: WeightFn, cfg: ModelConfig): Value {
  const xn = rmsnorm(x, w('output_norm.weight'), cfg.normEps);
  return linear(xn, w(cfg.tiedHead ? 'token_embd.weight' : 'output.weight'));
}

/** A neuron direction [..., ffn] → the residual stream: the down-projection's columns (logit-effects.ts). */
export function llamaMlpDown(a: Value, layer: number, w: WeightFn): Value {
  return linear(a, w(`blk.${layer}.ffn_down.weight`));
}

/** A bare direction → logits through the final RMSNorm's gain and the head (logit-effects.ts says why no 1/rms). */
export function llamaDirectionLogits(v: Value, w: WeightFn, cfg: ModelConfig): Value {
  return linear(mul(v, w('output_norm.weight')), w(cfg.tiedHead ? 'token_embd.weight' : 'output.weight'));
}

// ---------------------------------------------------------------------------------------------------------------
// The spec: config.json / GGUF → ModelConfig, and the tensor list

const HF_CLASSES: Record<string, string> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2' };

/** The variant a config.json names (llama, mistral, qwen2); only Qwen2's q/k/v biases change the math. */
function variantOf(json: Record<string, unknown>): string {
  const arch = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
  if (typeof arch === 'string' && Object.hasOwn(HF_CLASSES, arch)) return HF_CLASSES[arch]!;
  return String(json.model_type);
}

/**
 * The config.json fields every Llama-shaped family shares (Llama, Mistral, Qwen2, and Qwen3 / OLMo-2 which add norms),
 * with their checks: SiLU, head counts, head_dim (given, or d_model / heads), rope_theta and rope_scaling, tied head.
 * `variant` names the model in messages; `defaults` are the family's transformers defaults where they differ.
 */
export function llamaLikeConfig(
  input: HfConfigInput,
  arch: Family,
  variant: string,
  defaults: { normEps?: number; ropeTheta?: number; tied?: boolean } = {},
): ModelConfig {
  const { path: configPath, json, has } = input;
  const c = new ConfigReader(configPath, json);
  const act = c.string('hidden_act', 'silu');
  if (act !== 'silu') throw new UserError(`${configPath}: hidden_act ${act} is not supported for ${variant} (only silu)`);
  const dim = c.int('hidden_size');
  const nHeads = c.int('num_attention_heads');
  const nKvHeads = c.int('num_key_value_heads', nHeads);
  const headDim = json.head_dim == null ? c.divide('hidden_size', dim, 'num_attention_heads', nHeads) : c.int('head_dim');
  if (nHeads % nKvHeads !== 0) throw new UserError(`${configPath}: ${nHeads} attention heads are not divisible by ${nKvHeads} KV heads`);
  if (headDim % 2 !== 0) throw new UserError(`${configPath}: head size ${headDim} is odd; RoPE needs pairs`);
  const tied = c.bool('tie_word_embeddings', defaults.tied ?? false);
  if (!tied && !has('lm_head.weight')) {
    throw new UserError(`${configPath}: tie_word_embeddings is false but the checkpoint has no lm_head.weight`);
  }
  return {
    arch,
    dim,
    nLayers: layerCount(input, 'num_hidden_layers', c.int('num_hidden_layers')),
    nHeads,
    nKvHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('rms_norm_eps', defaults.normEps ?? 1e-6),
    maxSeqLen: c.int('max_position_embeddings', 2048),
    tiedHead: tied,
    ropeTheta: c.positive('rope_theta', defaults.ropeTheta ?? 10000),
    // Hugging Face keeps q/k in rotate-half order (pairs i and i + d/2); GGUF converters permute them, we do not.
    ropePairing: 'half',
    ropeScaling: ropeScaling(configPath, json.rope_scaling),
    qkvBias: false,
  };
}

/** Stored tensors transformers ignores: old checkpoints' RoPE inv_freq buffer; a tied model's copy of the head. */
export function llamaLikeIgnore(config: ModelConfig): (n: string) => boolean {
  return (n) => n.endsWith('.rotary_emb.inv_freq') || (config.tiedHead && n === 'lm_head.weight');
}

function fromHfConfig(input: HfConfigInput): HfReading {
  const variant = variantOf(input.json);
  const config = llamaLikeConfig(input, 'llama', variant);
  config.qkvBias = variant === 'qwen2' || input.has('model.layers.0.self_attn.q_proj.bias');
  return { config, prefix: '', ignore: llamaLikeIgnore(config) };
}

/** `rope_scaling`: absent/null/"default" means none; Llama 3.1's "llama3" is supported; anything else would be wrong. */
function ropeScaling(configPath: string, v: unknown): Llama3RopeScaling | null {
  if (v == null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${configPath}: rope_scaling is not an object`);
  const json = v as Record<string, unknown>;
  const type = json.rope_type ?? json.type;
  if (type === 'default') return null;
  if (type !== 'llama3') throw new UserError(`${configPath}: rope_scaling type ${JSON.stringify(type)} is not supported (only llama3 is)`);
  const c = new ConfigReader(configPath, json, 'rope_scaling.');
  const s: Llama3RopeScaling = {
    factor: c.positive('factor'),
    lowFreqFactor: c.positive('low_freq_factor'),
    highFreqFactor: c.positive('high_freq_factor'),
    originalMaxPositionEmbeddings: c.int('original_max_position_embeddings'),
  };
  // ropeFrequencies interpolates between the two; equal factors would divide by zero.
  if (s.highFreqFactor <= s.lowFreqFactor) {
    throw new UserError(`${configPath}: rope_scaling.high_freq_factor (${s.highFreqFactor}) must exceed low_freq_factor (${s.lowFreqFactor})`);
  }
  return s;
}

function fromGguf(m: GgufMeta): ModelConfig {
  const embd = m.tensorShape('token_embd.weight');
  if (!embd || embd.length !== 2) throw new UserError(`${m.path}: missing or malformed tensor token_embd.weight`);
  const dim = m.int('llama.embedding_length');
  const nHeads = m.int('llama.attention.head_count');
  return {
    arch: 'llama',
    dim,
    nLayers: ggufBlockCount(m),
    nHeads,
    nKvHeads: m.int('llama.attention.head_count_kv', nHeads),
    headDim: dim / nHeads,
    ffnDim: m.int('llama.feed_forward_length'),
    vocabSize: embd[0]!,
    normEps: m.positive('llama.attention.layer_norm_rms_epsilon', 1e-5),
    maxSeqLen: m.int('llama.context_length', 2048),
    tiedHead: m.tensorShape('output.weight') === null,
    ropeTheta: m.positive('llama.rope.freq_base', 10000),
    // llama.cpp's converters permute Hugging Face q/k weights so that GGUF llama always pairs (2i, 2i+1).
    ropePairing: 'interleaved',
    ropeScaling: null,
    qkvBias: m.tensorShape('blk.0.attn_q.bias') !== null,
  };
}

/**
 * The config.json fields llamaLikeConfig reads, written from a config (Llama, Qwen2, Qwen3, OLMo-2, and Phi-3, whose
 * reader takes the same ones): the family spreads it after its class names and adds what is its own. No head_dim
 * here: a family whose reader takes it (all but OLMo-2) writes it.
 */
export function llamaLikeConfigJson(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  const s = c.ropeScaling;
  return {
    hidden_size: c.dim,
    intermediate_size: c.ffnDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    hidden_act: 'silu',
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: s
      ? {
          rope_type: 'llama3',
          factor: s.factor,
          low_freq_factor: s.lowFreqFactor,
          high_freq_factor: s.highFreqFactor,
          original_max_position_embeddings: s.originalMaxPositionEmbeddings,
        }
      : null,
    tie_word_embeddings: c.tiedHead,
    vocab_size: c.vocabSize,
    initializer_range: std,
    ...special,
    torch_dtype: 'float32',
  };
}

/**
 * config.json for a config: exactly the fields fromHfConfig reads back (plus the ones transformers needs to open the
 * same folder). Written as LlamaForCausalLM (Mistral too: the engine ignores sliding windows), or as Qwen2ForCausalLM
 * when q/k/v have biases.
 */
function toHfConfig(c: ModelConfig, special: Record<string, number | null>, std: number): Record<string, unknown> {
  const qwen = c.qkvBias;
  return {
    architectures: [qwen ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: qwen ? 'qwen2' : 'llama',
    head_dim: c.headDim,
    ...llamaLikeConfigJson(c, special, std),
    ...(qwen ? { use_sliding_window: false } : { attention_bias: false, mlp_bias: false }),
  };
}

/** Adds one tensor of the layer being listed: block-code name, Hugging Face name (both without the layer prefix). */
export type LayerTensor = (name: string, hf: string, shape: number[], init: TensorSpec['init']) => void;

/**
 * The frame every Llama-like family's tensor list shares: the embedding first, block-code names `blk.{i}.…` beside
 * Hugging Face `model.layers.{i}.…` for each layer (the family's `perLayer` lists that layer's tensors in its order),
 * then the final norm and, untied, the head. `gguf`: the block-code names are also the GGUF names (Llama only).
 */
export function llamaLikeTensors(
  c: ModelConfig,
  perLayer: (layer: LayerTensor, q: number, kv: number) => void,
  opts: { gguf?: boolean; outputNormInit?: TensorSpec['init'] } = {},
): TensorSpec[] {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const out: TensorSpec[] = [];
  const add = (name: string, hf: string, shape: number[], init: TensorSpec['init'], layer = -1) =>
    out.push({ name, hf, ...(opts.gguf ? { gguf: name } : {}), shape, init, layer });
  add('token_embd.weight', 'model.embed_tokens.weight', [c.vocabSize, c.dim], 'normal');
  for (let i = 0; i < c.nLayers; i++) perLayer((name, hf, shape, init) => add(`blk.${i}.${name}`, `model.layers.${i}.${hf}`, shape, init, i), q, kv);
  add('output_norm.weight', 'model.norm.weight', [c.dim], opts.outputNormInit ?? 'ones', c.nLayers);
  if (!c.tiedHead) add('output.weight', 'lm_head.weight', [c.vocabSize, c.dim], 'normal', c.nLayers);
  return out;
}

/** The Llama tensor list — the only spelling of it: block-code (= GGUF) names, HF names, shapes, init. */
function tensors(c: ModelConfig): TensorSpec[] {
  return llamaLikeTensors(
    c,
    (layer, q, kv) => {
      layer('attn_norm.weight', 'input_layernorm.weight', [c.dim], 'ones');
      layer('attn_q.weight', 'self_attn.q_proj.weight', [q, c.dim], 'normal');
      layer('attn_k.weight', 'self_attn.k_proj.weight', [kv, c.dim], 'normal');
      layer('attn_v.weight', 'self_attn.v_proj.weight', [kv, c.dim], 'normal');
      if (c.qkvBias) {
        layer('attn_q.bias', 'self_attn.q_proj.bias', [q], 'zeros');
        layer('attn_k.bias', 'self_attn.k_proj.bias', [kv], 'zeros');
        layer('attn_v.bias', 'self_attn.v_proj.bias', [kv], 'zeros');
      }
      layer('attn_output.weight', 'self_attn.o_proj.weight', [c.dim, q], 'normal');
      layer('ffn_norm.weight', 'post_attention_layernorm.weight', [c.dim], 'ones');
      layer('ffn_gate.weight', 'mlp.gate_proj.weight', [c.ffnDim, c.dim], 'normal');
      layer('ffn_up.weight', 'mlp.up_proj.weight', [c.ffnDim, c.dim], 'normal');
      layer('ffn_down.weight', 'mlp.down_proj.weight', [c.dim, c.ffnDim], 'normal');
    },
    { gguf: true },
  );
}

/**
 * What every family stored under llama's GGUF-style names with a tied-or-`output.weight` RMSNorm head shares (Llama,
 * Qwen3, OLMo-2): the embedding, the head and the directions logit effects read. A family spreads it and overrides
 * what differs.
 */
export const llamaLikeIo = {
  hooks: HOOKS,
  ...plainEmbedding('token_embd.weight'),
  head: (x, cfg, w) => llamaHead(x, w.get, cfg),
  mlpDown: (a, layer, _cfg, w) => llamaMlpDown(a, layer, w.get),
  // RMSNorm(x) = g ⊙ x / rms(x): for a direction, the gain g; the positive 1/rms(x) scales every logit alike.
  directionLogits: (v, cfg, w) => llamaDirectionLogits(v, w.get, cfg),
} satisfies Partial<ArchitectureSpec>;

export const llamaSpec: ArchitectureSpec = {
  family: 'llama',
  expectsBos: true,
  hfClasses: Object.keys(HF_CLASSES),
  modelTypes: ['llama', 'mistral', 'qwen2'],
  ggufArch: 'llama',
  fromHfConfig,
  fromGguf,
  toHfConfig,
  tensors,
  ...llamaLikeIo,
  blocks(g, cfg, length) {
    const ctx = llamaContext(g, cfg, length);
    return (x, layer, w, upTo) => llamaBlock(x, layer, w.get, w.optional, ctx, upTo);
  },
};

/** `llama.block_count`, bounded by the tensors stored: a bogus 2^32 must not drive per-layer loops. */
function ggufBlockCount(m: GgufMeta): number {
  const n = m.int('llama.block_count');
  if (n > m.tensorCount) throw new UserError(`${m.path}: metadata llama.block_count is ${n}, but the file holds only ${m.tensorCount} tensors`);
  return n;
}
