/**
 * One normalised description of a model, whatever file it came from. Readers in src/formats produce raw metadata;
 * the loaders in load.ts map it onto this, and the block code in llama.ts / gpt2.ts reads only this.
 */
export type Family = 'llama' | 'gpt2' | 'gemma' | 'gemma2' | 'qwen3' | 'olmo2' | 'gpt_neox' | 'phi' | 'phi3';

/** Which dimensions RoPE rotates together: llama2.c and GGUF use (2i, 2i+1); Hugging Face Llama uses (i, i + d/2). */
export type RopePairing = 'interleaved' | 'half';

/** Llama 3.1-style frequency scaling (`rope_scaling.rope_type == "llama3"`). */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  /** The architecture spec that owns this model (registry.ts). */
  arch: Family;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffnDim: number;
  vocabSize: number;
  normEps: number;
  maxSeqLen: number;
  tiedHead: boolean;
  /** Llama family only. */
  ropeTheta: number;
  ropePairing: RopePairing;
  ropeScaling: Llama3RopeScaling | null;
  /** Qwen2 adds biases to the q/k/v projections. */
  qkvBias: boolean;
  /** Gemma-2 only (gemma2.ts): its attention and head quirks; absent for every other family. */
  gemma2?: Gemma2Options;
  /**
   * Partial rotary (GPT-NeoX `rotary_pct`, Phi/Phi-3 `partial_rotary_factor`): only the first `rotaryDim` dimensions
   * of each head are rotated (rotate-half within them, frequencies from rotaryDim), the rest pass through. Absent:
   * headDim (every dimension rotated).
   */
  rotaryDim?: number;
  /**
   * Attention and MLP both read the block input, x + attn(ln1 x) + mlp(ln2 x): GPT-NeoX `use_parallel_residual`, and
   * always for Phi. Absent: the sequential form.
   */
  parallelResidual?: boolean;
}

/** What Gemma-2 adds to Gemma's attention and head (config.json names in brackets). */
export interface Gemma2Options {
  /** Scores are scaled by queryPreAttnScalar^-1/2, not headDim^-1/2 [query_pre_attn_scalar]. */
  queryPreAttnScalar: number;
  /** c in c·tanh(s/c) on the attention scores, before the mask [attn_logit_softcapping]; null for none. */
  attnSoftcap: number | null;
  /** c in c·tanh(z/c) on the final logits [final_logit_softcapping]; null for none. */
  finalSoftcap: number | null;
  /** Keys a sliding-window layer sees: the last `slidingWindow` positions, itself included [sliding_window]. */
  slidingWindow: number;
  /** Per layer, whether it uses the sliding window (even layers in the published model) [layer_types]. */
  slidingLayers: boolean[];
}

/**
 * The hooks every architecture exposes, with the same meaning (see README), in the order a block computes them: a
 * block asked to stop at one leaves every later one out. `attn_out` / `mlp_out` are the branch outputs as they are
 * added to the residual stream (after a branch-output norm where a family has one; `attn` is before it).
 */
export const HOOKS = ['attn', 'attn_out', 'mlp', 'mlp_out', 'resid'] as const;
export type Hook = (typeof HOOKS)[number];

/** Width of a hook's output. */
export function hookWidth(cfg: ModelConfig, hook: Hook): number {
  return hook === 'mlp' ? cfg.ffnDim : cfg.dim;
}

/** Angular frequency of each rotated pair (rotaryDim / 2 of them), with Llama 3 scaling when configured. */
export function ropeFrequencies(cfg: ModelConfig): Float64Array {
  // Partial rotary: the exponent's denominator is the rotated width, not the head (as transformers computes inv_freq).
  const rd = cfg.rotaryDim ?? cfg.headDim;
  const half = rd / 2;
  const freqs = Float64Array.from({ length: half }, (_, i) => Math.pow(cfg.ropeTheta, (-2 * i) / rd));
  const s = cfg.ropeScaling;
  if (!s) return freqs;
  // Llama 3.1: keep high frequencies, divide low ones by `factor`, interpolate smoothly in between.
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return freqs.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
