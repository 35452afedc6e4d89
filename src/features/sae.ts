/**
 * Sparse-autoencoder latents as features. An SAE is an affine encoder and a nonlinearity on one hook:
 *   pre  = (O − b_dec·[apply_b_dec_to_input]) @ W_enc + b_enc          (the hook output O [.., d_in] → [.., d_sae])
 *   post = relu(pre)                       standard
 *          relu(pre) · [pre > threshold]   JumpReLU
 *          relu(pre) · [pre among the k largest of its token]   TopK
 * as SAELens's `encode` computes it. Every search and statistic sees the latents where it would see the hook's
 * features: a FeatureMap applied in the same graph, after the hook (runner.hidden, the objective graph). The
 * *reported* activation is always `post` (what SAELens, Neuronpedia and a scan call the latent's activation); the
 * *optimised* quantity is `pre` by default — it has a gradient below the threshold and outside the top k, as EPO's
 * SAE variant uses — or `post` (`--sae-objective post`).
 *
 * Files are read by src/formats/sae.ts. Logit effects of a latent (its decoder row through the final norm and head)
 * are issue 13's logit-effects function applied to `decoderRow(sae, i)`: see that hook point below.
 */
import { paramError } from '../errors.js';
import type { FeatureMap, ModelRunner } from '../engine/runner.js';
import type { BlockRange } from '../models/block-range.js';
import { specOf } from '../models/registry.js';
import { cutWindows, readCorpus, tokenizeStories } from './corpus.js';
import type { Graph } from '../graph/graph.js';
import { add, greaterMask, linear, mul, sub, topkMask } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import { hookWidth, type Hook, type ModelConfig } from '../models/config.js';
import { readSae, type SaeFile } from '../formats/sae.js';
import { parseHookName } from '../models/hooks.js';

export type { SaeFile, SaeArchitecture } from '../formats/sae.js';
export const SAE_OBJECTIVES = ['pre', 'post'] as const;
export type SaeObjective = (typeof SAE_OBJECTIVES)[number];

const loaded = new Map<string, SaeFile>();

/** Read an SAE once per process (a settings object may be built more than once from the same flag). */
export function loadSae(path: string, param = 'sae'): SaeFile {
  let s = loaded.get(path);
  if (!s) {
    s = readSae(path, param);
    loaded.set(path, s);
  }
  return s;
}

/** An SAE's latents as the feature map after `hook`: reported `post`, optimised `objective`. */
export function saeFeatureMap(sae: SaeFile, objective: SaeObjective = 'pre'): FeatureMap {
  return {
    key: `sae:${sae.hash.slice(0, 16)}:${objective}`,
    inWidth: sae.dIn,
    width: sae.dSae,
    build(g: Graph, O: Value) {
      const { pre, post } = encodeGraph(g, sae, O);
      return { objective: objective === 'pre' ? pre : post, activation: post };
    },
  };
}

/** The encoder in a graph: pre- and post-activations [.., d_sae] of a hook output [.., d_in]. */
export function encodeGraph(g: Graph, sae: SaeFile, O: Value): { pre: Value; post: Value } {
  const x = sae.applyBDecToInput ? sub(O, g.weight('sae_b_dec', [sae.dIn], sae.b_dec)) : O;
  const pre = add(linear(x, g.weight('sae_W_enc', [sae.dIn, sae.dSae], sae.W_enc), false), g.weight('sae_b_enc', [sae.dSae], sae.b_enc));
  // The gates are step functions (zero derivative almost everywhere): the gradient of post is the gate times pre's.
  let post = mul(pre, greaterMask(pre, 0));
  if (sae.architecture === 'jumprelu') post = mul(post, greaterMask(pre, g.weight('sae_threshold', [sae.dSae], sae.threshold!)));
  if (sae.architecture === 'topk') post = mul(post, topkMask(pre, sae.k!));
  return { pre, post };
}

/** The feature map of a settings object that may carry an SAE (visualize, atlas build, attribute, baseline, scans). */
export function featureMapOf(s: { sae?: SaeFile | null; saeObjective?: SaeObjective }): FeatureMap | undefined {
  return s.sae ? saeFeatureMap(s.sae, s.saeObjective ?? 'pre') : undefined;
}

/** The width of the feature axis a selection indexes: the hook's, or the SAE's latents. */
export function featureWidth(cfg: ModelConfig, hook: Hook, map?: FeatureMap): number {
  if (!map) return hookWidth(cfg, hook);
  checkWidth(cfg, hook, map.inWidth);
  return map.width;
}

/** d_in must be the hook's width: a one-line error naming both. */
export function checkWidth(cfg: ModelConfig, hook: Hook, dIn: number, param = 'sae'): void {
  const w = hookWidth(cfg, hook);
  if (w !== dIn) throw paramError(param, `the SAE's d_in is ${dIn}, but the ${hook} hook of this ${cfg.arch} model has width ${w}`);
}

/**
 * The --hook an SAE implies: its cfg's hook_name (a TransformerLens name); with --hook given too they must agree.
 * Gemma Scope's params.npz has no cfg, so it needs --hook.
 */
export function saeHookFlag(sae: SaeFile, hookFlag: string | undefined): string {
  if (sae.hookName === null) {
    if (hookFlag === undefined) throw paramError('sae', `${sae.path} has no cfg.json naming its hook: give --hook (a TransformerLens name such as blocks.3.hook_resid_post)`);
    return hookFlag;
  }
  if (hookFlag !== undefined && hookFlag !== sae.hookName) {
    // The native spelling of the same hook (`--blocks 1-3 --hook resid`, as a reproduce command writes it) agrees.
    const mine = parseHookName(sae.hookName);
    const given = parseHookName(hookFlag);
    if (given.hook !== mine.hook || (given.block !== null && given.block !== mine.block)) {
      throw paramError('hook', `${hookFlag} contradicts the SAE's hook_name ${sae.hookName} (${sae.path}); leave --hook out`);
    }
  }
  return sae.hookName;
}

/**
 * Latent i's decoder direction (row i of W_dec), in the hook's space. HOOK POINT for issue 13's logit effects: a
 * latent's logit effects are that function applied to this vector (through the final norm and head), exactly as for
 * a `--direction`; this module deliberately does not compute them itself.
 */
export function decoderRow(sae: SaeFile, latent: number): Float32Array {
  if (!Number.isInteger(latent) || latent < 0 || latent >= sae.dSae) throw paramError('sae', `latent ${latent} is outside 0-${sae.dSae - 1}`);
  return sae.W_dec.slice(latent * sae.dIn, (latent + 1) * sae.dIn);
}

/** Latent i's encoder direction (column i of W_enc): what the pre-activation reads from the hook, up to b_enc. */
export function encoderColumn(sae: SaeFile, latent: number): Float32Array {
  const out = new Float32Array(sae.dIn);
  for (let j = 0; j < sae.dIn; j++) out[j] = sae.W_enc[j * sae.dSae + latent]!;
  return out;
}

export interface SaeStats {
  tokens: number;
  /** Mean number of active latents (post > 0) per token. */
  l0: number;
  /** Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − mean(x)‖², over all scanned tokens. */
  fvu: number;
  /** Latents never active (post > 0) on any scanned token. */
  dead: number;
  /** Mean squared reconstruction error per token (Σ over d_in). */
  mse: number;
}

/**
 * L0, FVU and dead latents from hook outputs X [n, d_in] and their latents (post) P [n, d_sae], both as the graph
 * computed them; the reconstruction post @ W_dec + b_dec is done here in float64 (post is sparse).
 */
export class SaeStatsAccumulator {
  private n = 0;
  private active = 0;
  private sse = 0;
  private readonly sum: Float64Array;
  private readonly sumSq: Float64Array;
  private readonly alive: Uint8Array;
  constructor(private readonly sae: SaeFile) {
    this.sum = new Float64Array(sae.dIn);
    this.sumSq = new Float64Array(sae.dIn);
    this.alive = new Uint8Array(sae.dSae);
  }

  add(x: Float32Array, xOff: number, p: Float32Array, pOff: number): void {
    const { dIn, dSae, W_dec, b_dec } = this.sae;
    const rec = Float64Array.from(b_dec);
    for (let i = 0; i < dSae; i++) {
      const a = p[pOff + i]!;
      if (a > 0) {
        this.active++;
        this.alive[i] = 1;
      }
      if (a !== 0) for (let j = 0; j < dIn; j++) rec[j]! += a * W_dec[i * dIn + j]!;
    }
    for (let j = 0; j < dIn; j++) {
      const v = x[xOff + j]!;
      this.sse += (v - rec[j]!) ** 2;
      this.sum[j]! += v;
      this.sumSq[j]! += v * v;
    }
    this.n++;
  }

  result(): SaeStats {
    let total = 0;
    for (let j = 0; j < this.sae.dIn; j++) total += this.sumSq[j]! - (this.sum[j]! * this.sum[j]!) / this.n;
    return {
      tokens: this.n,
      l0: this.active / this.n,
      fvu: this.sse / total,
      dead: this.alive.reduce((d, a) => d + (a ? 0 : 1), 0),
      mse: this.sse / this.n,
    };
  }
}

/**
 * L0, FVU and dead latents of an SAE over a corpus, on the hook it reads: each story (BOS in front where the model
 * expects it) cut into windows of `window` tokens, positions ≥ 1 only — position 0 is every window's attention sink
 * (BOS, with outsized norms), which SAE evaluations leave out and atlas scans report separately.
 */
export async function saeCorpusStats(
  runner: ModelRunner,
  sae: SaeFile,
  blocks: BlockRange,
  hook: Hook,
  corpusFile: string,
  opts: { window?: number; batch?: number; maxTokens?: number } = {},
): Promise<SaeStats & { corpus: string; corpus_hash: string; windows: number }> {
  const tokenizer = runner.model.tokenizer;
  if (!tokenizer) throw paramError('corpus', `${runner.model.path} has no tokenizer (give --tokenizer PATH)`);
  checkWidth(runner.config, hook, sae.dIn);
  const corpus = readCorpus(corpusFile);
  const bos = specOf(runner.config).expectsBos && tokenizer.bosId !== null;
  const windows = cutWindows(tokenizeStories(tokenizer, corpus.stories, { bos }), opts.window ?? 64, opts.maxTokens ?? Infinity).filter((w) => w.ids.length >= 2);
  if (windows.length === 0) throw paramError('corpus', `${corpus.file} has no window of 2 or more tokens`);
  const T = Math.max(...windows.map((w) => w.ids.length));
  const B = Math.min(opts.batch ?? 32, windows.length);
  const map = saeFeatureMap(sae);
  const acc = new SaeStatsAccumulator(sae);
  for (let i = 0; i < windows.length; i += B) {
    const chunk = windows.slice(i, i + B);
    const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => chunk[b]?.ids[t] ?? 0));
    const x = await runner.hidden(ids, blocks, hook);
    const p = await runner.hidden(ids, blocks, hook, map);
    chunk.forEach((w, b) => {
      for (let t = 1; t < w.ids.length; t++) acc.add(x.data, (b * T + t) * sae.dIn, p.data, (b * T + t) * sae.dSae);
    });
  }
  return { corpus: corpus.file, corpus_hash: corpus.hash, windows: windows.length, ...acc.result() };
}
