/**
 * Turning continuous input embeddings back into tokens.
 *
 * With E the stored embedding table [V × d] (a token's embedding is e = Eᵀa for its one-hot a), the least-squares
 * token mixture for an embedding e is the pseudoinverse solution a = (Eᵀ)⁺e = E (EᵀE)⁻¹ e. Only the d × d matrix
 * (EᵀE)⁻¹ is cached, computed in float64; decoding a position then costs one d × d and one V × d product.
 */
import { UserError } from '../errors.js';
import { deriveSeed, normalStream, uniformStream } from '../util/random.js';

export type DecodeMode = 'pinv' | 'nearest-cosine' | 'nearest-l2';
export const DECODE_MODES: readonly DecodeMode[] = ['pinv', 'nearest-cosine', 'nearest-l2'];

export interface EmbeddingTable {
  data: Float32Array;
  vocab: number;
  dim: number;
}

/** Gram matrix EᵀE in float64. */
export function gram(E: EmbeddingTable): Float64Array {
  const { data, vocab: V, dim: d } = E;
  const G = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let v = 0; v < V; v++) {
    for (let i = 0; i < d; i++) row[i] = data[v * d + i]!;
    for (let i = 0; i < d; i++) {
      const ri = row[i]!;
      if (ri === 0) continue;
      const base = i * d;
      for (let j = i; j < d; j++) G[base + j]! += ri * row[j]!;
    }
  }
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) G[i * d + j] = G[j * d + i]!;
  return G;
}

/** Inverse of a symmetric positive-definite matrix through its Cholesky factor; fails clearly if E has rank < d. */
export function invertSpd(A: Float64Array, n: number, what = 'embedding table'): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = A[j * n + j]!;
    for (let k = 0; k < j; k++) s -= L[j * n + k]! ** 2;
    if (!(s > 1e-300)) throw new UserError(`${what}: EᵀE is singular (rank < ${n}); the pseudoinverse decode needs a full-rank table`);
    const ljj = Math.sqrt(s);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let t = A[i * n + j]!;
      for (let k = 0; k < j; k++) t -= L[i * n + k]! * L[j * n + k]!;
      L[i * n + j] = t / ljj;
    }
  }
  // Solve L Lᵀ X = I column by column.
  const X = new Float64Array(n * n);
  const y = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < n; i++) {
      let t = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) t -= L[i * n + k]! * y[k]!;
      y[i] = t / L[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let t = y[i]!;
      for (let k = i + 1; k < n; k++) t -= L[k * n + i]! * X[k * n + c]!;
      X[i * n + c] = t / L[i * n + i]!;
    }
  }
  return X;
}

/** Decodes embeddings to token scores under one of the modes. */
export class Decoder {
  private gramInverse: Float64Array | null = null;
  private norms: Float64Array | null = null;

  constructor(
    readonly table: EmbeddingTable,
    gramInverse?: Float64Array,
  ) {
    if (gramInverse) this.gramInverse = gramInverse;
  }

  /** (EᵀE)⁻¹, computed on first use. */
  inverseGram(): Float64Array {
    this.gramInverse ??= invertSpd(gram(this.table), this.table.dim);
    return this.gramInverse;
  }

  private rowNorms(): Float64Array {
    if (!this.norms) {
      const { data, vocab: V, dim: d } = this.table;
      this.norms = new Float64Array(V);
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += data[v * d + i]! ** 2;
        this.norms[v] = Math.sqrt(s);
      }
    }
    return this.norms;
  }

  /** Score of every token for one embedding (higher = better): pinv coefficients, cosine, or −distance². */
  scores(e: ArrayLike<number>, mode: DecodeMode): Float64Array {
    const { data, vocab: V, dim: d } = this.table;
    let q: Float64Array;
    if (mode === 'pinv') {
      const Gi = this.inverseGram();
      q = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += Gi[i * d + j]! * e[j]!;
        q[i] = s;
      }
    } else q = Float64Array.from({ length: d }, (_, i) => e[i]!);
    const out = new Float64Array(V);
    const norms = mode === 'pinv' ? null : this.rowNorms();
    let eNorm2 = 0;
    for (let i = 0; i < d; i++) eNorm2 += q[i]! ** 2;
    for (let v = 0; v < V; v++) {
      let dot = 0;
      const base = v * d;
      for (let i = 0; i < d; i++) dot += data[base + i]! * q[i]!;
      if (mode === 'pinv') out[v] = dot;
      else if (mode === 'nearest-cosine') out[v] = dot / (norms![v]! * Math.sqrt(eNorm2) || 1);
      else out[v] = -(norms![v]! ** 2 - 2 * dot + eNorm2);
    }
    return out;
  }

  /** Top-k token ids for each position of a [T × d] embedding block: result[t] = ids best first. */
  topk(embeddings: ArrayLike<number>, T: number, k: number, mode: DecodeMode): number[][] {
    const d = this.table.dim;
    const out: number[][] = [];
    for (let t = 0; t < T; t++) {
      const e = Array.from({ length: d }, (_, i) => embeddings[t * d + i]!);
      out.push(topIndices(this.scores(e, mode), k));
    }
    return out;
  }

  /** Cosine between an embedding and a token's stored embedding. */
  cosine(e: ArrayLike<number>, token: number): number {
    const { data, dim: d } = this.table;
    let dot = 0;
    let ee = 0;
    for (let i = 0; i < d; i++) {
      dot += e[i]! * data[token * d + i]!;
      ee += e[i]! ** 2;
    }
    return dot / (Math.sqrt(ee) * this.rowNorms()[token]! || 1);
  }

  /** The stored embedding of a token (a copy). */
  embedding(token: number): Float32Array {
    const d = this.table.dim;
    return this.table.data.slice(token * d, (token + 1) * d);
  }
}

export function topIndices(scores: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let v = 0; v < scores.length; v++) {
    const s = scores[v]!;
    if (Number.isNaN(s)) continue;
    if (best.length < k || s > scores[best[best.length - 1]!]!) {
      let pos = best.length < k ? best.length : best.length - 1;
      best[pos] = v;
      while (pos > 0 && scores[best[pos - 1]!]! < s) {
        best[pos] = best[pos - 1]!;
        best[pos - 1] = v;
        pos--;
      }
    }
  }
  return best;
}

/** Vocabularies (id lists) larger than this are checked on a seeded random sample instead of every id. */
export const FULL_CHECK_LIMIT = 4096;
/** Sample size for the checks below when the id list exceeds FULL_CHECK_LIMIT. */
export const CHECK_SAMPLE = 2048;

export interface CheckOptions {
  /** Seed of the sample drawn for large id lists (default 0). */
  seed?: number;
  /** How many ids to check when the list is large (default CHECK_SAMPLE). */
  sample?: number;
}

/** The ids to check: all of them, or a seeded sample of CHECK_SAMPLE (sorted) when there are more than FULL_CHECK_LIMIT. */
function checkedIds(ids: number[], seed: number, sample = CHECK_SAMPLE): { ids: number[]; sampled: boolean } {
  if (ids.length <= Math.max(FULL_CHECK_LIMIT, sample)) return { ids: ids.slice(), sampled: false };
  const u = uniformStream(seed);
  const pool = ids.slice();
  for (let i = 0; i < sample; i++) {
    const j = i + Math.floor(u() * (pool.length - i));
    const t = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = t;
  }
  return { ids: pool.slice(0, sample).sort((a, b) => a - b), sampled: true };
}

/**
 * The share of `ids` whose own stored embedding decodes back to themselves under the pinv decode (argmax over the whole
 * vocabulary, ties to the lower id as in `topk`). `failures` lists the ids that decode to another token.
 * For more than FULL_CHECK_LIMIT ids a seeded sample of CHECK_SAMPLE is checked (`sampled: true`, `total` = sample size).
 */
export function identityRate(
  decoder: Decoder,
  ids: number[],
  opts: CheckOptions = {},
): { rate: number; total: number; failures: number[]; sampled: boolean } {
  const { data, vocab: V, dim: d } = decoder.table;
  const { ids: check, sampled } = checkedIds(ids, opts.seed ?? 0, opts.sample);
  const Gi = decoder.inverseGram();
  const q = new Float64Array(d);
  const failures: number[] = [];
  for (const v of check) {
    // q = (EᵀE)⁻¹ E[v]; the pinv coefficient of token u is E[u]·q.
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += Gi[i * d + j]! * data[v * d + j]!;
      q[i] = s;
    }
    let best = -1;
    let bestScore = -Infinity;
    for (let u = 0; u < V; u++) {
      let dot = 0;
      const base = u * d;
      for (let i = 0; i < d; i++) dot += data[base + i]! * q[i]!;
      if (dot > bestScore) {
        bestScore = dot;
        best = u;
      }
    }
    if (best !== v) failures.push(v);
  }
  const total = check.length;
  return { rate: total === 0 ? NaN : (total - failures.length) / total, total, failures, sampled };
}

/**
 * For each token of `ids`, the largest cosine between its stored embedding and that of any other token of `ids`;
 * the median and mean of those maxima. For more than FULL_CHECK_LIMIT ids the maxima are taken for a seeded sample of
 * CHECK_SAMPLE tokens (each still compared against all of `ids`).
 */
export function typicalNeighbourCosine(
  decoder: Decoder,
  ids: number[],
  opts: CheckOptions = {},
): { median: number; mean: number; sampled: boolean } {
  const { data, dim: d } = decoder.table;
  const { ids: check, sampled } = checkedIds(ids, opts.seed ?? 0, opts.sample);
  const norm = (v: number): number => {
    let s = 0;
    for (let i = 0; i < d; i++) s += data[v * d + i]! ** 2;
    return Math.sqrt(s);
  };
  const norms = new Map<number, number>();
  for (const v of ids) norms.set(v, norm(v));
  const maxima: number[] = [];
  for (const v of check) {
    let best = -Infinity;
    const nv = norms.get(v)!;
    for (const u of ids) {
      if (u === v) continue;
      let dot = 0;
      for (let i = 0; i < d; i++) dot += data[v * d + i]! * data[u * d + i]!;
      const c = dot / (nv * norms.get(u)! || 1);
      if (c > best) best = c;
    }
    if (best > -Infinity) maxima.push(best);
  }
  if (maxima.length === 0) return { median: NaN, mean: NaN, sampled };
  maxima.sort((a, b) => a - b);
  const m = maxima.length;
  const median = m % 2 === 1 ? maxima[(m - 1) / 2]! : (maxima[m / 2 - 1]! + maxima[m / 2]!) / 2;
  return { median, mean: maxima.reduce((a, b) => a + b, 0) / m, sampled };
}

/**
 * The yardstick for "how close to a real token is an optimised embedding": the cosine between random N(0, I) vectors
 * and their own top-1 decode (`mode`), median over `draws` seeded draws. An optimum whose decode cosine is no higher
 * than this is no closer to a real token than a point chosen without looking at the model.
 */
export function randomDecodeCosine(decoder: Decoder, mode: DecodeMode, draws = 256, seed = 0): { median: number; draws: number } {
  const d = decoder.table.dim;
  const normal = normalStream(deriveSeed(seed, 'random-decode-cosine'));
  const cos: number[] = [];
  for (let n = 0; n < draws; n++) {
    const e = Float64Array.from({ length: d }, () => normal());
    const [top] = topIndices(decoder.scores(e, mode), 1);
    cos.push(decoder.cosine(e, top!));
  }
  cos.sort((a, b) => a - b);
  const m = cos.length;
  const median = m === 0 ? NaN : m % 2 === 1 ? cos[(m - 1) / 2]! : (cos[m / 2 - 1]! + cos[m / 2]!) / 2;
  return { median, draws: m };
}
