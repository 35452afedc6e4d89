/**
 * Corpus scans: the per-token distribution of features on real text. The same block-range function visualize
 * optimises (blocks A..B applied to the token embeddings, hook of block B) runs over windows of a corpus
 * (corpus.ts); every real position of every window gives one value per feature.
 *
 * Position 0 of a window is kept apart: it is the attention sink of a window the blocks see alone (and the BOS
 * position when stories start with BOS), and its outliers would otherwise fill the top examples.
 *
 * Windows are padded at the end to one length, so one graph serves the whole corpus; attention is causal, so the
 * padding cannot change the real positions before it, and padded positions are never read.
 */
import { UserError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { Hook } from '../models/config.js';
import { featureWidth, saeFeatureMap, type SaeFile } from './sae.js';
import type { BlockRange } from '../models/transformer.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { Window } from './corpus.js';
import { EXACT_LIMIT, Moments, quantileSorted, sortedCopy, summarize, type DistributionSummary } from './quantiles.js';

export interface ScanSettings {
  blocks: BlockRange;
  hook: Hook;
  /** Feature indices of the hook; with a direction, [0] (the direction's dot product is the one feature). */
  features: number[];
  direction?: Float32Array | null;
  /** An SAE on the hook (sae.ts): features are its latents' post-activations. */
  sae?: SaeFile | null;
  /** Windows per forward pass. */
  batch: number;
  /** Top examples kept per feature (and for position 0). */
  topk: number;
  /** Examples kept per quantile bin. */
  binExamples: number;
  /** Values kept per feature before switching to a systematic sample (quantiles.ts). */
  exactLimit?: number;
  /** Memory for kept values per corpus pass; features are scanned in chunks that fit. */
  memoryBytes?: number;
}

export const DEFAULT_SCAN = { batch: 64, topk: 10, binExamples: 3 };

export interface ScanExample {
  feature: number;
  /** Index of the window in the scan's window list; story and start locate it in the corpus. */
  window: number;
  story: number;
  start: number;
  ids: number[];
  text: string;
  position: number;
  activation: number;
  /** The feature at every position of the window. */
  token_activations: number[];
}

export interface QuantileBin {
  label: string;
  /** Lower and upper activation bounds (the quantiles that delimit the bin). */
  lo: number;
  hi: number;
  examples: ScanExample[];
}

export interface FeatureScan {
  feature: number;
  /** Positions ≥ 1 of every window. */
  tokens: DistributionSummary;
  /** Position 0 of every window (BOS when stories start with it). */
  position0: DistributionSummary;
  top: ScanExample[];
  top_position0: ScanExample[];
  bins: QuantileBin[];
}

/** Quantile bins examples are drawn from: [lower quantile, upper quantile) of the positions-≥1 distribution. */
export const BINS: readonly [string, number, number][] = [
  ['p0-p50', 0, 0.5],
  ['p50-p90', 0.5, 0.9],
  ['p90-p99', 0.9, 0.99],
  ['p99-p99.9', 0.99, 0.999],
  ['p99.9-max', 0.999, 1],
];

export interface ScanProgress {
  windows: number;
  totalWindows: number;
  chunk: number;
  chunks: number;
}

/** Streaming top-k of (value, window, position); ties keep the earlier position in corpus order. */
class TopK {
  readonly items: { value: number; window: number; position: number }[] = [];
  constructor(private readonly k: number) {}
  add(value: number, window: number, position: number): void {
    if (this.k === 0) return;
    if (this.items.length === this.k && !(value > this.items[this.k - 1]!.value)) return;
    let i = this.items.length;
    while (i > 0 && value > this.items[i - 1]!.value) i--;
    this.items.splice(i, 0, { value, window, position });
    if (this.items.length > this.k) this.items.pop();
  }
}

interface Stream {
  moments: Moments;
  kept: Float32Array;
  keptCount: number;
  top: TopK;
}

function stream(capacity: number, k: number): Stream {
  return { moments: new Moments(), kept: new Float32Array(capacity), keptCount: 0, top: new TopK(k) };
}

/**
 * Scan `windows` for `settings.features`; `onChunk` receives each chunk of finished features (so a caller can
 * commit them: a scan is resumable per chunk).
 */
export async function scanCorpus(
  runner: ModelRunner,
  tokenizer: Tokenizer | null,
  windows: Window[],
  settings: ScanSettings,
  onChunk: (features: FeatureScan[]) => void,
  onProgress?: (p: ScanProgress) => void,
): Promise<void> {
  const cfg = runner.config;
  runner.checkRange(settings.blocks);
  const map = settings.sae ? saeFeatureMap(settings.sae) : undefined;
  const F = featureWidth(cfg, settings.hook, map);
  const dir = settings.direction ?? null;
  if (dir && dir.length !== F) throw new UserError(`--direction: vector has length ${dir.length}, the ${settings.hook} hook has ${F} features`);
  for (const f of settings.features) {
    const width = dir ? 1 : F;
    if (!Number.isInteger(f) || f < 0 || f >= width) throw new UserError(`--features: feature ${f} is outside ${dir ? 'the direction (feature 0)' : map ? `the SAE's latents 0-${F - 1}` : `the ${settings.hook} hook's features 0-${F - 1}`}`);
  }
  if (windows.length === 0) throw new UserError('--corpus: no windows to scan');
  const T = Math.max(...windows.map((w) => w.ids.length));
  if (T > cfg.maxSeqLen) throw new UserError(`--window: ${T} tokens exceed the model's context of ${cfg.maxSeqLen}`);
  if (T < 2) throw new UserError('--window: windows of one token have no positions after position 0 to scan');
  // Positions ≥ 1, in corpus order: window w's positions 1.. start at offsets[w] of the stream.
  const offsets = new Int32Array(windows.length + 1);
  windows.forEach((w, i) => (offsets[i + 1] = offsets[i]! + Math.max(0, w.ids.length - 1)));
  const nTokens = offsets[windows.length]!;
  const limit = settings.exactLimit ?? EXACT_LIMIT;
  const every = Math.max(1, Math.ceil(nTokens / limit));
  const keptPerFeature = Math.ceil(nTokens / every) + windows.length;
  const perChunk = Math.max(1, Math.floor((settings.memoryBytes ?? 512 * 2 ** 20) / (4 * keptPerFeature)));
  const chunks: number[][] = [];
  for (let i = 0; i < settings.features.length; i += perChunk) chunks.push(settings.features.slice(i, i + perChunk));

  const B = Math.min(settings.batch, windows.length);
  /** The features of a batch of windows: values[f][b * T + t]. */
  const run = async (ws: number[], feats: number[]): Promise<Float32Array[]> => {
    const ids = Array.from({ length: B }, (_, b) => {
      const w = ws[b] === undefined ? [] : windows[ws[b]!]!.ids;
      return Array.from({ length: T }, (_, t) => w[t] ?? 0);
    });
    const h = await runner.hidden(ids, settings.blocks, settings.hook, map);
    return feats.map((f) => {
      const out = new Float32Array(B * T);
      for (let i = 0; i < B * T; i++) {
        if (dir) {
          let s = 0;
          for (let j = 0; j < F; j++) s += h.data[i * F + j]! * dir[j]!;
          out[i] = s;
        } else out[i] = h.data[i * F + f]!;
      }
      return out;
    });
  };

  for (const [ci, feats] of chunks.entries()) {
    const main = feats.map(() => stream(Math.ceil(nTokens / every), settings.topk));
    const first = feats.map(() => stream(windows.length, settings.topk));
    for (let start = 0; start < windows.length; start += B) {
      const ws = Array.from({ length: Math.min(B, windows.length - start) }, (_, b) => start + b);
      const values = await run(ws, feats);
      feats.forEach((_, k) => {
        const v = values[k]!;
        const m = main[k]!;
        const p = first[k]!;
        ws.forEach((w, b) => {
          const x0 = v[b * T]!;
          p.moments.add(x0);
          p.kept[p.keptCount++] = x0;
          p.top.add(x0, w, 0);
          const len = windows[w]!.ids.length;
          for (let t = 1; t < len; t++) {
            const x = v[b * T + t]!;
            m.moments.add(x);
            if ((offsets[w]! + t - 1) % every === 0) m.kept[m.keptCount++] = x;
            m.top.add(x, w, t);
          }
        });
      });
      onProgress?.({ windows: Math.min(start + B, windows.length), totalWindows: windows.length, chunk: ci + 1, chunks: chunks.length });
    }

    // Summaries, bins, and the examples' windows (run again below for their per-token activations).
    const partial = feats.map((feature, k) => {
      const m = main[k]!;
      const keptMain = m.kept.subarray(0, m.keptCount);
      const sorted = sortedCopy(keptMain);
      const tokens = summarize(m.moments, sorted, every);
      const position0 = summarize(first[k]!.moments, sortedCopy(first[k]!.kept.subarray(0, first[k]!.keptCount)), 1);
      const q = (x: number) => (x >= 1 ? Infinity : quantileSorted(sorted, x));
      const bins = BINS.map(([label, a, b]) => {
        const lo = a === 0 ? -Infinity : q(a);
        const hi = q(b);
        const inBin: number[] = [];
        for (let i = 0; i < keptMain.length; i++) {
          const x = keptMain[i]!;
          if (x >= lo && (x < hi || (b === 1 && x <= hi))) inBin.push(i);
        }
        // Evenly spread over the bin in corpus order: deterministic and not clustered in one story.
        const n = Math.min(settings.binExamples, inBin.length);
        const picks = Array.from({ length: n }, (_, j) => inBin[Math.floor(((j + 0.5) * inBin.length) / n)]!);
        return {
          label,
          lo: a === 0 ? tokens.min : quantileSorted(sorted, a),
          hi: b === 1 ? tokens.max : quantileSorted(sorted, b),
          at: picks.map((i) => locate(offsets, i * every)),
        };
      });
      return { feature, tokens, position0, top: m.top.items, top0: first[k]!.top.items, bins };
    });

    const needed = new Set<number>();
    for (const p of partial) {
      for (const e of [...p.top, ...p.top0]) needed.add(e.window);
      for (const b of p.bins) for (const a of b.at) needed.add(a.window);
    }
    const list = [...needed].sort((a, b) => a - b);
    const acts = new Map<number, Float32Array[]>();
    for (let i = 0; i < list.length; i += B) {
      const ws = list.slice(i, i + B);
      const values = await run(ws, feats);
      ws.forEach((w, b) => acts.set(w, values.map((v) => v.slice(b * T, b * T + windows[w]!.ids.length))));
    }
    const example = (k: number, feature: number, w: number, position: number): ScanExample => {
      const win = windows[w]!;
      const ta = Array.from(acts.get(w)![k]!);
      return {
        feature,
        window: w,
        story: win.story,
        start: win.start,
        ids: win.ids,
        text: tokenizer ? tokenizer.decode(win.ids) : win.ids.join(' '),
        position,
        activation: ta[position]!,
        token_activations: ta,
      };
    };
    onChunk(
      partial.map((p, k) => ({
        feature: p.feature,
        tokens: p.tokens,
        position0: p.position0,
        top: p.top.map((e) => example(k, p.feature, e.window, e.position)),
        top_position0: p.top0.map((e) => example(k, p.feature, e.window, 0)),
        bins: p.bins.map((b) => ({ label: b.label, lo: b.lo, hi: b.hi, examples: b.at.map((a) => example(k, p.feature, a.window, a.position)) })),
      })),
    );
  }
}

/** Stream index g (positions ≥ 1 in corpus order) → window and position. */
function locate(offsets: Int32Array, g: number): { window: number; position: number } {
  let lo = 0;
  let hi = offsets.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (offsets[mid]! <= g) lo = mid;
    else hi = mid - 1;
  }
  // Skip windows of one token (they contribute no positions ≥ 1 and share their offset with the next).
  while (offsets[lo + 1]! <= g) lo++;
  return { window: lo, position: g - offsets[lo]! + 1 };
}
