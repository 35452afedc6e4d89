/** Scorers: what a search maximises, for whole token sequences (batched), with its gradient w.r.t. the embeddings. */
import type { ModelRunner } from '../../engine/runner.js';
import type { Hook } from '../../models/config.js';
import { hookWidth } from '../../models/config.js';
import type { FeatureMap } from '../../engine/runner.js';
import type { BlockRange } from '../../models/transformer.js';
import type { Decoder } from '../decode.js';
import { fluencyStep, objectiveStep } from '../objective.js';

/** Something to maximise over token sequences of one length, and its gradient with respect to their embeddings. */
export interface Scorer {
  /** One score per sequence, higher is better (any number of sequences: the scorer batches). */
  score(seqs: number[][]): Promise<Float64Array>;
  /** d score / d input embedding for each sequence, [T × D] each. */
  gradient(seqs: number[][]): Promise<Float32Array[]>;
}

/** Rows padded to a fixed batch so every call reuses one graph; padding rows copy the first sequence. */
function padded(seqs: number[][], B: number): number[][] {
  return Array.from({ length: B }, (_, b) => seqs[b] ?? seqs[0]!);
}

async function inChunks<T>(seqs: number[][], B: number, f: (chunk: number[][]) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < seqs.length; i += B) {
    const chunk = seqs.slice(i, i + B);
    out.push(...(await f(padded(chunk, B))).slice(0, chunk.length));
  }
  return out;
}

/**
 * The activation of a selection: Σ report ⊙ O over block B's hook output O for real tokens through blocks A..B (the
 * run's reported activation). Scores use the token-id graph in batches of `batch`; gradients use the objective graph
 * with the linear objective −activation, in batches of `gradBatch`.
 */
export function activationScorer(
  runner: ModelRunner,
  decoder: Decoder,
  opts: { blocks: BlockRange; hook: Hook; map?: FeatureMap; report: Float32Array; T: number; batch: number; gradBatch?: number },
): Scorer {
  const { T, report, blocks, hook, map } = opts;
  const D = runner.config.dim;
  const F = map ? map.width : hookWidth(runner.config, hook);
  if (report.length !== T * F) throw new Error(`activationScorer: report has ${report.length} weights, expected ${T * F}`);
  const gradBatch = opts.gradBatch ?? 1;
  return {
    async score(seqs) {
      const rows = await inChunks(seqs, opts.batch, async (chunk) => {
        const { data } = await runner.hidden(chunk, blocks, hook, map);
        return chunk.map((_, b) => dot(report, data, b * T * F));
      });
      return Float64Array.from(rows);
    },
    async gradient(seqs) {
      return inChunks(seqs, gradBatch, async (chunk) => {
        const B = chunk.length;
        const x = new Float32Array(B * T * D);
        chunk.forEach((ids, b) => ids.forEach((id, t) => x.set(decoder.embedding(id), (b * T + t) * D)));
        const lin = new Float32Array(B * T * F);
        for (let b = 0; b < B; b++) lin.set(report, b * T * F);
        const res = await objectiveStep(runner, blocks, hook, { x, l1: new Float32Array(B * T * F), lin, C: new Float32Array(B), report: lin }, { B, T }, map);
        // loss = −activation, so the activation's gradient is the negated loss gradient.
        return chunk.map((_, b) => Float32Array.from(res.grad.subarray(b * T * D, (b + 1) * T * D), (g) => -g));
      });
    },
  };
}

/**
 * The full model's mean next-token cross-entropy of a prompt (nats), with BOS prepended when the model has one and the
 * prompt does not start with it, so every prompt token is predicted. `score` returns the cross-entropy itself (lower is
 * more fluent); `gradient` its gradient with respect to the prompt's embeddings.
 */
export function fluencyModel(runner: ModelRunner, decoder: Decoder, opts: { bosId: number | null; T: number; batch: number; gradBatch: number }): Scorer {
  const { T } = opts;
  const D = runner.config.dim;
  const V = runner.config.vocabSize;
  const lead = (ids: number[]) => opts.bosId !== null && ids[0] !== opts.bosId;
  // Sequences of one shape per call: a prompt with a BOS of its own is scored as is (its first token is not predicted).
  const withBos = (ids: number[]) => (lead(ids) ? [opts.bosId!, ...ids] : ids);
  return {
    async score(seqs) {
      const out = new Float64Array(seqs.length);
      for (const has of [true, false]) {
        const idx = seqs.map((s, i) => (lead(s) === has ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0) continue;
        const ce = await inChunks(idx.map((i) => withBos(seqs[i]!)), opts.batch, async (chunk) => Array.from(await runner.crossEntropy(chunk)));
        idx.forEach((i, k) => (out[i] = ce[k]!));
      }
      return out;
    },
    async gradient(seqs) {
      const out: Float32Array[] = new Array(seqs.length);
      for (const has of [true, false]) {
        const idx = seqs.map((s, i) => (lead(s) === has ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0) continue;
        const L = has ? T + 1 : T;
        const grads = await inChunks(idx.map((i) => withBos(seqs[i]!)), opts.gradBatch, async (chunk) => {
          const B = chunk.length;
          const x = new Float32Array(B * L * D);
          const targets = new Float32Array(B * L * V);
          const rows = new Float32Array(B * L);
          const w = L > 1 ? 1 / (L - 1) : 0;
          chunk.forEach((ids, b) => {
            ids.forEach((id, t) => x.set(decoder.embedding(id), (b * L + t) * D));
            for (let t = 0; t + 1 < L; t++) {
              rows[b * L + t] = w;
              targets[(b * L + t) * V + ids[t + 1]!] = w;
            }
          });
          const res = await fluencyStep(runner, { x, targets, rows }, { B, T: L });
          // Drop the prepended BOS row: its embedding is not ours to change.
          const skip = L - T;
          return chunk.map((_, b) => res.grad.slice((b * L + skip) * D, (b + 1) * L * D));
        });
        idx.forEach((i, k) => (out[i] = grads[k]!));
      }
      return out;
    },
  };
}

function dot(w: Float32Array, data: Float32Array, offset: number): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) s += w[i]! * data[offset + i]!;
  return s;
}

