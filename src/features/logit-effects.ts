/**
 * Logit effects: which tokens a feature's direction promotes and suppresses at the output, the way Neuronpedia's
 * feature pages show them — the direction written into the residual stream, read out by the final norm and the head,
 * with no forward pass.
 *
 * The direction r ∈ R^D of a run's selection:
 *   resid, attn_out, mlp_out   the sum of the selected features' unit vectors (one feature: its unit vector), since
 *                              these hooks are residual-space vectors (what the stream holds or a branch adds to it)
 *   attn                       the attention branch's output after its output projection: the same as attn_out where
 *                              the branch has no output norm (Llama, GPT-2, Gemma, Qwen3); Gemma-2 and OLMo-2 norm it
 *                              before the residual add, so their direction goes through that norm's gain
 *                              (spec.attnDirection)
 *   mlp                        the selected neurons' down-projection columns, summed: neuron j's output direction into
 *                              the residual stream (without the down-projection's bias, which no neuron owns; through
 *                              the post-MLP norm's gain in Gemma-2 and OLMo-2)
 *   --direction v              v in the hook's space (for mlp, its down-projection W_down·v)
 *
 * The final norm applied to a bare direction: a norm is not linear, so there is no exact "logits of a direction". We
 * use the norm's direction-dependent linear part: RMSNorm g ⊙ x / rms(x) → g ⊙ r; LayerNorm g ⊙ (x − mean x) / σ(x)
 * + b → g ⊙ (r − mean r). The dropped 1/rms(x) or 1/σ(x) is one positive number for a given stream state, so it
 * scales every logit alike and cannot change which tokens rank first; the LayerNorm bias adds the same logits whatever
 * the direction. This is SAEDashboard's "W_U applied to the decoder direction, through the norm's weight", plus
 * LayerNorm's centring (which removes the direction's mean component exactly as the norm does).
 *   value[v] = (W_U (g ⊙ r'))[v]     r' = r (RMSNorm) or r − mean(r) (LayerNorm)
 * Gemma's norms scale by (1 + g), so that is the gain there; Gemma-2's final soft cap c·tanh(s/c) is left out: it is
 * monotonic, so it changes values but not the ranking, and the values stay linear in the direction.
 * The values are logits per unit of the direction before the norm's 1/σ: comparable between tokens of one feature,
 * not an absolute logit change.
 */
import type { ModelRunner } from '../engine/runner.js';
import type { Hook } from '../models/config.js';
import { hookWidth } from '../models/config.js';
import { architectureOf } from '../models/transformer.js';
import { tensorsByName } from '../models/registry.js';
import { displayText } from '../tokenizers/display.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { topIndices } from './decode.js';
import type { SelectionRun } from './selection.js';

/** Tokens listed on each side (promoted, suppressed). */
export const LOGIT_K = 10;

export interface LogitToken {
  id: number;
  text: string;
  value: number;
}

export interface LogitEffects {
  /** The top-k tokens by value, descending. */
  promoted: LogitToken[];
  /** The bottom-k tokens by value, ascending (most suppressed first). */
  suppressed: LogitToken[];
}

/** Directions computed per graph call (a fixed shape, so one session serves any number of runs). */
const ROWS = 16;

/** The run's vector in the hook's space: the direction, or the selected features' summed unit vectors. */
export function selectionVector(run: SelectionRun, F: number, direction?: Float32Array): Float32Array {
  if (direction) return Float32Array.from(direction);
  const v = new Float32Array(F);
  if (run.features.all) v.fill(1);
  else for (const f of run.features.indices) v[f] = 1;
  return v;
}

/**
 * Logit effects of each vector (in `hook`'s space, block `block` 1-based). Null for every vector when the model's
 * final norm or head is not on disk (a partial hub download of only some blocks).
 */
export async function logitEffects(
  runner: ModelRunner,
  tokenizer: Tokenizer | null,
  hook: Hook,
  block: number,
  vectors: Float32Array[],
  k = LOGIT_K,
): Promise<(LogitEffects | null)[]> {
  const cfg = runner.config;
  const F = hookWidth(cfg, hook);
  const V = cfg.vocabSize;
  const layers = tensorsByName(cfg);
  const missing = [...(runner.model.notDownloaded?.keys() ?? [])].some((n) => {
    const layer = layers.get(n)?.layer;
    return layer === cfg.nLayers || (hook === 'mlp' && layer === block - 1);
  });
  if (missing) return vectors.map(() => null);
  const spec = architectureOf(cfg);
  const out: (LogitEffects | null)[] = [];
  for (let start = 0; start < vectors.length; start += ROWS) {
    const chunk = vectors.slice(start, start + ROWS);
    const v = new Float32Array(ROWS * F);
    chunk.forEach((x, i) => v.set(x, i * F));
    const res = await runner.runGraph(`logit-effects|${ROWS}|${hook}|${hook === 'mlp' || hook === 'attn' ? block : ''}`, (g, w) => {
      const input = g.input('v', [1, ROWS, F]);
      const r = hook === 'mlp' ? spec.mlpDown(input, block - 1, cfg, w) : hook === 'attn' && spec.attnDirection ? spec.attnDirection(input, block - 1, cfg, w) : input;
      g.output(spec.directionLogits(r, cfg, w), 'logits');
    // The request sizes the memory check: this graph binds the head (V × D) and, for mlp, one block's down-projection.
    }, { v }, { range: [cfg.nLayers, cfg.nLayers], B: 1, T: ROWS });
    chunk.forEach((_, i) => {
      const row = res.logits!.subarray(i * V, (i + 1) * V);
      const token = (id: number): LogitToken => ({ id, text: displayText(tokenizer, [id]), value: row[id]! });
      out.push({
        promoted: topIndices(row, k).map(token),
        suppressed: topIndices(row.map((x) => -x), k).map(token),
      });
    });
  }
  return out;
}
