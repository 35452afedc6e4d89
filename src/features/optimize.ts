/**
 * The optimiser of every embedding search (visualize, invert, and anything later): plain gradient steps — the original
 * method's — or Adam, with a learning rate falling linearly from `lr` at the first step to `lrEnd` at the last.
 * Only the rows a caller names are updated, so fixed context and failed runs of a batch stay where they are.
 */
export type OptimizerKind = 'sgd' | 'adam';

export interface Schedule {
  steps: number;
  lr: number;
  lrEnd: number;
}

/** The learning rate at a 0-based step: linear from lr (step 0) to lrEnd (the last step). */
export function learningRate(s: Schedule, step: number): number {
  return s.steps > 1 ? s.lr + ((s.lrEnd - s.lr) * step) / (s.steps - 1) : s.lr;
}

// β1 = 0.9, β2 = 0.999, ε = 1e-8 (Adam's defaults). 1 − β is written as its own literal: 1 − 0.9 in floating point is
// not 0.1, and results are kept bit-identical to the runs recorded before this module existed.
const BETA1 = 0.9;
const BETA2 = 0.999;
const ONE_MINUS_BETA1 = 0.1;
const ONE_MINUS_BETA2 = 0.001;
const EPS = 1e-8;

export class Optimizer {
  private readonly m: Float32Array | null;
  private readonly v: Float32Array | null;

  /** `size`: the length of the parameter vector (its moments are kept per element for Adam). */
  constructor(
    readonly kind: OptimizerKind,
    size: number,
  ) {
    this.m = kind === 'adam' ? new Float32Array(size) : null;
    this.v = kind === 'adam' ? new Float32Array(size) : null;
  }

  /** One step on x[base, base + n) from grad at the same offsets; `step` is 0-based (Adam's bias correction). */
  update(x: Float32Array, grad: Float32Array, base: number, n: number, lr: number, step: number): void {
    const { m, v } = this;
    if (!m || !v) {
      for (let i = base; i < base + n; i++) x[i]! -= lr * grad[i]!;
      return;
    }
    const c1 = 1 - BETA1 ** (step + 1);
    const c2 = 1 - BETA2 ** (step + 1);
    for (let i = base; i < base + n; i++) {
      const g = grad[i]!;
      const mi = (m[i] = BETA1 * m[i]! + ONE_MINUS_BETA1 * g);
      const vi = (v[i] = BETA2 * v[i]! + ONE_MINUS_BETA2 * g * g);
      x[i]! -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + EPS);
    }
  }
}
