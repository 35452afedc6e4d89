// Finite-difference checks of every VJP rule in the ops table, on float64 graphs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Graph, grad } from '../src/graph/index.js';
import * as G from '../src/graph/ops.js';
import { GraphSession } from '../src/engine/session.js';

import { awayFromZero, checkVjp, normalish, positive } from './vjp-check.js';

test('add (broadcast)', () => checkVjp([[2, 3, 4], [3, 1]], (a, b) => G.add(a, b)));
test('sub (broadcast)', () => checkVjp([[2, 3], [2, 1]], (a, b) => G.sub(a, b)));
test('mul (broadcast)', () => checkVjp([[2, 3, 4], [4]], (a, b) => G.mul(a, b)));
test('div (broadcast)', () => checkVjp([[3, 4], [1, 4]], (a, b) => G.div(a, b), [normalish, awayFromZero]));
test('neg', () => checkVjp([[5]], (a) => G.neg(a)));
test('exp', () => checkVjp([[2, 3]], (a) => G.exp(a)));
test('sqrt', () => checkVjp([[2, 3]], (a) => G.sqrt(a), positive));
test('tanh', () => checkVjp([[2, 3]], (a) => G.tanh(a)));
test('sigmoid', () => checkVjp([[2, 3]], (a) => G.sigmoid(a)));
test('abs', () => checkVjp([[2, 3]], (a) => G.abs(a), awayFromZero));
test('sign (zero derivative, gradient flows through the other factor)', () =>
  checkVjp([[2, 3]], (a) => G.mul(G.sign(a), a), awayFromZero));
test('matmul', () => checkVjp([[2, 3, 4], [4, 5]], (a, b) => G.matmul(a, b)));
test('matmul (broadcast batch)', () => checkVjp([[2, 1, 3, 4], [3, 4, 2]], (a, b) => G.matmul(a, b)));
test('linear, transB ([out, in] weight)', () => checkVjp([[2, 3, 4], [5, 4]], (x, w) => G.linear(x, w, true)));
// The forms emitted for the WebGPU provider (Gemm for transB, comparisons for sign), run here on the CPU in float64.
test('linear, transB, WebGPU form (Gemm)', () => checkVjp([[2, 3, 4], [5, 4]], (x, w) => G.linear(x, w, true), normalish, 1, 'webgpu'));
test('abs and sign, WebGPU form (comparisons)', () =>
  checkVjp([[2, 3]], (a) => G.add(G.abs(a), G.mul(G.sign(a), G.mul(a, a))), awayFromZero, 1, 'webgpu'));
test('sign, WebGPU form, is exactly -1, 0, 1', async () => {
  const g = new Graph({ float: 'float64', target: 'webgpu' });
  g.output(G.sign(g.input('x', [5])), 'y');
  const s = await GraphSession.create(g);
  const out = await s.run({ x: Float64Array.of(-2.5, -1e-300, 0, 1e-300, 7) });
  assert.deepEqual([...(out.y as Float64Array)], [-1, -1, 0, 1, 1]);
  await s.release();
});
test('linear, [in, out] weight', () => checkVjp([[2, 3, 4], [4, 5]], (x, w) => G.linear(x, w, false)));
test('reduceSum', () => checkVjp([[2, 3, 4]], (a) => G.reduceSum(a, [1])));
test('reduceSum keepdims, several axes', () => checkVjp([[2, 3, 4]], (a) => G.reduceSum(a, [0, -1], true)));
test('reduceMean keepdims', () => checkVjp([[2, 3, 4]], (a) => G.reduceMean(a, [-1], true)));
test('reshape', () => checkVjp([[2, 3, 4]], (a) => G.mul(G.reshape(a, [6, -1]), G.reshape(a, [6, 4]))));
test('transpose', () => checkVjp([[2, 3, 4]], (a) => G.transpose(a, [2, 0, 1])));
test('expand', () => checkVjp([[3, 1]], (a) => G.expand(a, [2, 3, 4])));
test('softmax (last axis)', () => checkVjp([[2, 3, 4]], (a) => G.softmax(a, -1)));
test('softmax (middle axis)', () => checkVjp([[2, 3, 4]], (a) => G.softmax(a, 1)));
test('concat', () => checkVjp([[2, 3], [2, 2]], (a, b) => G.concat([a, b], 1)));
test('slice', () => checkVjp([[4, 5]], (a) => G.slice(a, 1, 1, 4)));
test('pad', () => checkVjp([[2, 3]], (a) => G.pad(a, [1, 0], [0, 2])));
test('silu and gelu (composites)', () => checkVjp([[2, 3], [2, 3]], (a, b) => G.add(G.silu(a), G.geluTanh(b))));

/** erf by its Maclaurin series, in double (|x| ≤ 4: the largest term is ~1e5, so ~1e-11 absolute is left). */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 120; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

// onnxruntime has Erf for float32 only, so erf and exact GELU are checked in float32 against direct formulas: the
// value against the series, the gradient against d erf/dx = 2/√π·exp(−x²) and dGELU/dx = Φ(x) + x·φ(x).
test('erf and exact gelu (float32): values and gradients equal the direct formulas', async () => {
  const g = new Graph({ float: 'float32' });
  const n = 41;
  const xs = Array.from({ length: n }, (_, i) => -4 + (8 * i) / (n - 1));
  const x = g.input('x', [n], { grad: true });
  const e = G.erf(x);
  const ge = G.gelu(x);
  const [de] = grad(G.reduceSum(e, [0]), [x]);
  const [dg] = grad(G.reduceSum(ge, [0]), [x]);
  g.output(e, 'e');
  g.output(ge, 'g');
  g.output(de!, 'de');
  g.output(dg!, 'dg');
  const session = await GraphSession.create(g);
  const out = await session.run({ x: Float32Array.from(xs) });
  xs.forEach((v, i) => {
    const xv = Math.fround(v);
    const phi = Math.exp((-xv * xv) / 2) / Math.sqrt(2 * Math.PI);
    const want = { e: erfSeries(xv), g: 0.5 * xv * (1 + erfSeries(xv / Math.SQRT2)), de: (2 / Math.sqrt(Math.PI)) * Math.exp(-xv * xv), dg: 0.5 * (1 + erfSeries(xv / Math.SQRT2)) + xv * phi };
    for (const k of ['e', 'g', 'de', 'dg'] as const) {
      const got = (out[k] as Float32Array)[i]!;
      assert.ok(Math.abs(got - want[k]) <= 2e-6 * Math.max(1, Math.abs(want[k])), `${k}(${xv}) = ${got}, want ${want[k]}`);
    }
  });
  await session.release();
  assert.throws(() => G.erf(new Graph({ float: 'float64' }).input('x', [2])), /no float64 Erf/);
});
test('a value used twice accumulates both gradients', () => checkVjp([[3, 3]], (a) => G.matmul(a, G.tanh(a))));

test('gather is forward-only and refuses an operand that needs a gradient', () => {
  const g = new Graph({ float: 'float64' });
  const x = g.input('x', [4, 2], { grad: true });
  const idx = g.constant([1], [1], 'int64');
  assert.throws(() => G.gather(x, idx), /gather has no gradient rule/);
});

test('shape rules reject mismatched operands while building', () => {
  const g = new Graph();
  const a = g.input('a', [2, 3]);
  const b = g.input('b', [4, 5]);
  assert.throws(() => G.matmul(a, b), /inner dimensions differ/);
  assert.throws(() => G.add(a, b), /do not broadcast/);
  assert.throws(() => G.reshape(a, [5]), /cannot reshape/);
});

// The SAE gates (greaterMask, topkMask) are step functions with no VJP of their own: gradients flow through what they
// multiply, so relu(x)·gate checks that the gated product differentiates like the product with a constant mask.
test('relu via greaterMask: x · [x > 0]', () => checkVjp([[3, 5]], (x) => G.mul(x, G.greaterMask(x, 0)), awayFromZero));
test('JumpReLU gate: x · [x > θ] with θ an input', () => checkVjp([[2, 4], [4]], (x, th) => G.mul(x, G.greaterMask(x, G.mul(th, 0))), awayFromZero));
test('TopK gate: x · topkMask(x, 2) along the last axis', () => checkVjp([[3, 6]], (x) => G.mul(x, G.topkMask(x, 2))));

test('topkMask and greaterMask forward values', async () => {
  const g = new Graph({ float: 'float64' });
  const x = g.input('x', [2, 4]);
  g.output(G.topkMask(x, 2), 'top');
  g.output(G.greaterMask(x, 0.5), 'gt');
  const s = await GraphSession.create(g);
  const out = await s.run({ x: Float64Array.from([3, -1, 2, 0.5, 0, 9, 8, 7]) });
  assert.deepEqual(Array.from(out.top as Float64Array), [1, 0, 1, 0, 0, 1, 1, 0]);
  assert.deepEqual(Array.from(out.gt as Float64Array), [1, 0, 1, 0, 0, 1, 1, 1]);
  await s.release();
});
