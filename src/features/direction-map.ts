/**
 * A linear map between two models' embedding spaces through their shared vocabulary: the basis of `--pair vocab`
 * (atlas build --map-from, atlas compare). Features of different models cannot be paired by index — two models of
 * different widths, or the same width trained apart, have unrelated coordinates — but two models with one tokenizer
 * embed the same tokens, so the map that best carries A's embedding of each token to B's says where A's coordinate f
 * lands in B's residual space.
 *
 *   W = argmin_W ‖E_A W − E_B‖²_F + λ‖W‖²_F = (E_Aᵀ E_A + λ I)⁻¹ E_Aᵀ E_B        (E_A: V × D_A, E_B: V × D_B)
 *
 * fitted on every token of the shared vocabulary, in float64. λ = RIDGE_LAMBDA_REL · tr(E_Aᵀ E_A) / D_A, i.e. 1e-8
 * of the mean eigenvalue of the Gram matrix: a numerical guard against a rank-deficient table, not a prior — with the
 * vocabulary far larger than the width (512 vs 64-128 here, 32k vs 4k for Llama) plain least squares is well posed,
 * and a larger λ would shrink W and bias the mapped direction towards E_A's large-variance axes. The mapped
 * direction of A's feature f is row f of W (e_f W), normalised to unit length.
 */
import { paramError } from '../errors.js';
import type { EmbeddingTable } from './decode.js';

/** λ relative to the mean eigenvalue of E_Aᵀ E_A (see the module comment). */
export const RIDGE_LAMBDA_REL = 1e-8;

export interface DirectionMap {
  /** D_A × D_B, row-major: row f is where A's coordinate f maps to. */
  W: Float64Array;
  dimA: number;
  dimB: number;
  /** The ridge penalty used (absolute). */
  lambda: number;
  /** 1 − ‖E_A W − E_B‖² / ‖E_B − mean(E_B)‖² over the shared tokens (column means removed): how much of B's table A's explains. */
  r2: number;
  /** Tokens fitted on. */
  tokens: number;
}

/** Cholesky factor L (lower, row-major) of a symmetric positive definite n × n matrix; null when it is not. */
function cholesky(a: Float64Array, n: number): Float64Array | null {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= L[i * n + k]! * L[j * n + k]!;
      if (i === j) {
        if (!(s > 0)) return null;
        L[i * n + i] = Math.sqrt(s);
      } else L[i * n + j] = s / L[j * n + j]!;
    }
  }
  return L;
}

/** Fit the ridge map from A's embedding table to B's (same vocabulary, token by token). */
export function fitDirectionMap(A: EmbeddingTable, B: EmbeddingTable, lambdaRel = RIDGE_LAMBDA_REL): DirectionMap {
  if (A.vocab !== B.vocab) throw paramError('mapFrom', `the two models' vocabularies differ in size (${A.vocab} vs ${B.vocab}); a vocabulary map needs one tokenizer`);
  const V = A.vocab;
  const dA = A.dim;
  const dB = B.dim;
  if (V < 2) throw paramError('mapFrom', `a vocabulary of ${V} token${V === 1 ? '' : 's'} cannot fit a map`);
  const G = new Float64Array(dA * dA);
  const H = new Float64Array(dA * dB);
  for (let v = 0; v < V; v++) {
    const a = A.data.subarray(v * dA, (v + 1) * dA);
    const b = B.data.subarray(v * dB, (v + 1) * dB);
    for (let i = 0; i < dA; i++) {
      const ai = a[i]!;
      if (ai === 0) continue;
      for (let j = 0; j <= i; j++) G[i * dA + j]! += ai * a[j]!;
      for (let j = 0; j < dB; j++) H[i * dB + j]! += ai * b[j]!;
    }
  }
  let trace = 0;
  for (let i = 0; i < dA; i++) {
    trace += G[i * dA + i]!;
    for (let j = 0; j < i; j++) G[j * dA + i] = G[i * dA + j]!;
  }
  const lambda = (lambdaRel * trace) / dA;
  for (let i = 0; i < dA; i++) G[i * dA + i]! += lambda;
  const L = cholesky(G, dA);
  if (!L) throw paramError('mapFrom', "the source model's embedding table is all zeros; no map can be fitted");
  // Solve L Lᵀ W = H column by column of H (forward, then back substitution).
  const W = new Float64Array(dA * dB);
  const y = new Float64Array(dA);
  for (let c = 0; c < dB; c++) {
    for (let i = 0; i < dA; i++) {
      let s = H[i * dB + c]!;
      for (let k = 0; k < i; k++) s -= L[i * dA + k]! * y[k]!;
      y[i] = s / L[i * dA + i]!;
    }
    for (let i = dA - 1; i >= 0; i--) {
      let s = y[i]!;
      for (let k = i + 1; k < dA; k++) s -= L[k * dA + i]! * W[k * dB + c]!;
      W[i * dB + c] = s / L[i * dA + i]!;
    }
  }
  // R² from the residuals themselves (not the normal-equation shortcut, which cancels badly near R² = 1).
  const mean = new Float64Array(dB);
  for (let v = 0; v < V; v++) for (let j = 0; j < dB; j++) mean[j]! += B.data[v * dB + j]!;
  for (let j = 0; j < dB; j++) mean[j]! /= V;
  let sse = 0;
  let sst = 0;
  const pred = new Float64Array(dB);
  for (let v = 0; v < V; v++) {
    pred.fill(0);
    for (let i = 0; i < dA; i++) {
      const ai = A.data[v * dA + i]!;
      if (ai === 0) continue;
      for (let j = 0; j < dB; j++) pred[j]! += ai * W[i * dB + j]!;
    }
    for (let j = 0; j < dB; j++) {
      const b = B.data[v * dB + j]!;
      sse += (pred[j]! - b) ** 2;
      sst += (b - mean[j]!) ** 2;
    }
  }
  return { W, dimA: dA, dimB: dB, lambda, r2: sst === 0 ? (sse === 0 ? 1 : 0) : 1 - sse / sst, tokens: V };
}

/** A's feature f as a unit direction in B's space: row f of W, normalised. */
export function mappedDirection(map: DirectionMap, f: number): Float32Array {
  if (!Number.isInteger(f) || f < 0 || f >= map.dimA) throw paramError('features', `feature ${f} is outside the source model's features 0-${map.dimA - 1}`);
  const row = map.W.subarray(f * map.dimB, (f + 1) * map.dimB);
  let norm = 0;
  for (const x of row) norm += x * x;
  norm = Math.sqrt(norm);
  if (!(norm > 0)) throw paramError('features', `feature ${f} maps to the zero vector (the source table never uses coordinate ${f})`);
  return Float32Array.from(row, (x) => x / norm);
}
