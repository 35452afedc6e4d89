// The finite-difference check of VJP rules shared by the ops-table tests (graph-vjp, graph-fused).
import assert from 'node:assert/strict';
import { Graph, grad } from '../src/graph/index.js';
import type { Target } from '../src/graph/graph.js';
import * as G from '../src/graph/ops.js';
import type { Value } from '../src/graph/value.js';
import { GraphSession } from '../src/engine/session.js';
import { uniformStream as rng } from '../src/util/random.js';

export type Init = (r: () => number) => number;
export const normalish: Init = (r) => 2 * r() - 1;
export const positive: Init = (r) => 0.5 + r();
export const awayFromZero: Init = (r) => (r() < 0.5 ? -1 : 1) * (0.3 + r());

/**
 * Builds loss = Σ op(xs) ⊙ R for a fixed random R, differentiates it with `grad`, and compares every gradient element
 * with a central difference of the same float64 graph.
 */
export async function checkVjp(shapes: number[][], build: (...xs: Value[]) => Value, init: Init | Init[] = normalish, seed = 1, target: Target = 'cpu') {
  const r = rng(seed);
  const g = new Graph({ float: 'float64', target });
  const xs = shapes.map((s, i) => g.input(`x${i}`, s, { grad: true }));
  const y = build(...xs);
  const weights = Array.from({ length: y.size }, () => normalish(r));
  const loss = G.reduceSum(G.mul(y, g.constant(weights, y.shape)), y.shape.map((_, i) => i));
  const grads = grad(loss, xs);
  g.output(loss, 'loss');
  grads.forEach((d, i) => g.output(d, `d${i}`));
  const session = await GraphSession.create(g);
  const feeds: Record<string, Float64Array> = {};
  shapes.forEach((s, i) => {
    const f = Array.isArray(init) ? init[i]! : init;
    feeds[`x${i}`] = Float64Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => f(r));
  });
  const out = await session.run(feeds);
  const h = 1e-6;
  for (let i = 0; i < shapes.length; i++) {
    const analytic = out[`d${i}`] as Float64Array;
    const x = feeds[`x${i}`]!;
    let maxErr = 0;
    let maxRef = 0;
    for (let k = 0; k < x.length; k++) {
      const keep = x[k]!;
      x[k] = keep + h;
      const lp = (await session.run(feeds)).loss![0] as number;
      x[k] = keep - h;
      const lm = (await session.run(feeds)).loss![0] as number;
      x[k] = keep;
      const fd = (lp - lm) / (2 * h);
      maxErr = Math.max(maxErr, Math.abs(fd - analytic[k]!));
      maxRef = Math.max(maxRef, Math.abs(fd));
    }
    const rel = maxErr / Math.max(maxRef, 1e-12);
    assert.ok(rel <= 1e-6, `operand ${i}: relative error ${rel.toExponential(2)} (max abs ${maxErr.toExponential(2)})`);
  }
  await session.release();
}

