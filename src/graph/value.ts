import type { Graph } from './graph.js';

/** Element types the builder emits. Models compute in the graph's float type; indices are int64. */
export type ElemType = 'float32' | 'float64' | 'int64';

/**
 * A symbolic tensor: one named ONNX value with a static shape. Shapes are static everywhere (a new batch or length
 * means a new graph), which lets every op check its operands while the graph is built instead of inside onnxruntime.
 */
export class Value {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: ElemType,
    /** True when the value depends on an input we differentiate with respect to; only these are taped. */
    readonly requiresGrad: boolean,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  toString(): string {
    return `${this.name}[${this.shape.join('×')}:${this.dtype}]`;
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** NumPy broadcasting of two static shapes; throws on incompatible dimensions. */
export function broadcastShapes(a: readonly number[], b: readonly number[], what: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${what}: shapes [${a.join(',')}] and [${b.join(',')}] do not broadcast`);
    }
    out.push(Math.max(da, db));
  }
  return out;
}

/** Normalise a possibly negative axis against a rank. */
export function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${what}: axis ${axis} out of range for rank ${rank}`);
  return a;
}
