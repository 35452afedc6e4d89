// The fused ops of issue 18 (ops.ts): their VJP rules by finite differences in float64 where the op has a float64
// form, and every float32 kernel form (SimplifiedLayerNormalization and its residual-add fusion, LayerNormalization,
// RotaryEmbedding, FusedMatMul, weight folding in whole blocks) against the unfused composite it replaces.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Graph, grad } from '../src/graph/index.js';
import * as G from '../src/graph/ops.js';
import type { Value } from '../src/graph/value.js';
import { GraphSession } from '../src/engine/session.js';
import { uniformStream as rng } from '../src/util/random.js';
import { llamaContext, rope } from '../src/models/llama.js';
import type { ModelConfig } from '../src/models/config.js';
import { buildObjective } from '../src/features/objective.js';
import { WeightCache } from '../src/engine/weight-cache.js';
import { WeightBinder } from '../src/engine/weights.js';
import { loadModel } from '../src/models/load.js';
import { modelPath } from './helpers.js';
import path from 'node:path';

import { checkVjp, normalish } from './vjp-check.js';
import { maxRelError } from './numeric.js';

for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
  test(`matmul transA=${transA} transB=${transB} alpha 0.7 (FusedMatMul), broadcast batch`, () =>
    checkVjp([[2, 1, transA ? 4 : 3, transA ? 3 : 4], [3, transB ? 5 : 4, transB ? 4 : 5]], (a, b) => G.matmul(a, b, { transA, transB, alpha: 0.7 })));
  test(`matmul transA=${transA} transB=${transB} alpha 0.7, WebGPU form (Transpose + MatMul + Mul)`, () =>
    checkVjp([[2, transA ? 4 : 3, transA ? 3 : 4], [2, transB ? 5 : 4, transB ? 4 : 5]], (a, b) => G.matmul(a, b, { transA, transB, alpha: 0.7 }), normalish, 2, 'webgpu'));
}
test('rmsnorm (float64 form), gain differentiated too', () => checkVjp([[2, 3, 6], [6]], (x, w) => G.rmsnorm(x, w, 1e-5)));
test('rmsnorm without gain (unit: the output is x̂)', () => checkVjp([[2, 3, 6]], (x) => G.rmsnormUnit(x, 1e-5)));
test('layernorm (float64 form), gain and bias differentiated too', () => checkVjp([[2, 3, 5], [5], [5]], (x, w, b) => G.layernorm(x, w, b, 1e-5)));
test('swiglu', () => checkVjp([[2, 7], [2, 7]], (a, b) => G.swiglu(a, b)));
test('split: all parts used, and one part unused (its gradient is zero)', async () => {
  await checkVjp([[2, 7, 3]], (x) => {
    const [a, b, c] = G.split(x, 1, [2, 4, 1]);
    return G.concat([G.mul(a!, a!), G.tanh(b!), c!], 1);
  });
  await checkVjp([[2, 7]], (x) => G.tanh(G.split(x, -1, [3, 4])[1]!));
});

// ---------------------------------------------------------------------------------------------------------------
// float32 kernels against the composites they replace

/** Runs two float32 graphs built by `build(g, fused)` on the same random inputs; every output must agree. */
async function fusedMatchesUnfused(
  shapes: number[][],
  build: (g: Graph, xs: Value[], fused: boolean) => Value,
  tol = 1e-5,
): Promise<{ ops: string[][] }> {
  const r = rng(7);
  const feeds: Record<string, Float32Array> = {};
  shapes.forEach((s, i) => (feeds[`x${i}`] = Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => normalish(r))));
  const results: Record<string, Float32Array>[] = [];
  const ops: string[][] = [];
  for (const fused of [true, false]) {
    const g = new Graph({ float: 'float32', foldWeights: fused });
    const xs = shapes.map((s, i) => g.input(`x${i}`, s, { grad: true }));
    const y = build(g, xs, fused);
    const R = g.constant(Array.from({ length: y.size }, (_, k) => Math.sin(k + 1)), y.shape);
    const loss = G.reduceSum(G.mul(y, R), y.shape.map((_, i) => i));
    g.output(y, 'y');
    grad(loss, xs).forEach((d, i) => g.output(d, `d${i}`));
    ops.push(g.nodes.map((n) => n.opType!));
    const s = await GraphSession.create(g);
    results.push((await s.run(feeds)) as Record<string, Float32Array>);
    await s.release();
  }
  for (const name of Object.keys(results[1]!)) {
    const rel = maxRelError(results[0]![name]!, results[1]![name]!);
    assert.ok(rel <= tol, `${name}: fused vs unfused relative difference ${rel.toExponential(2)}`);
  }
  return { ops };
}

/** RMSNorm from primitives, as llama.ts wrote it before the fused op. */
const rmsnormUnfused = (x: Value, w: Value, eps: number) => G.mul(G.div(x, G.sqrt(G.add(G.reduceMean(G.mul(x, x), [-1], true), eps))), w);

test('float32 rmsnorm: SimplifiedLayerNormalization equals the primitive composite (values and gradients)', async () => {
  const { ops } = await fusedMatchesUnfused([[2, 3, 16], [16]], (_g, [x, w], fused) => (fused ? G.rmsnorm(x!, w!, 1e-5) : rmsnormUnfused(x!, w!, 1e-5)));
  assert.ok(ops[0]!.includes('SimplifiedLayerNormalization'));
});

test('float32 rmsnorm after a residual add: one SkipSimplifiedLayerNormalization kernel, the sum still readable', async () => {
  const { ops } = await fusedMatchesUnfused([[2, 3, 16], [2, 3, 16], [16]], (_g, [a, b, w], fused) => {
    const h = G.add(a!, b!);
    const n = fused ? G.rmsnorm(h, w!, 1e-5) : rmsnormUnfused(h, w!, 1e-5);
    return G.add(G.mul(n, 2), G.tanh(h)); // h read again after the norm, as a residual stream is
  });
  // The residual add's node became the fused kernel (first node); the unfused graph starts with that Add.
  assert.equal(ops[0]![0], 'SkipSimplifiedLayerNormalization');
  assert.equal(ops[1]![0], 'Add');
});

test('float32 layernorm: LayerNormalization equals the primitive composite', async () => {
  await fusedMatchesUnfused([[2, 3, 16], [16], [16]], (_g, [x, w, b], fused) => {
    if (fused) return G.layernorm(x!, w!, b!, 1e-5);
    const c = G.sub(x!, G.reduceMean(x!, [-1], true));
    return G.add(G.mul(G.div(c, G.sqrt(G.add(G.reduceMean(G.mul(c, c), [-1], true), 1e-5))), w!), b!);
  });
});

const ropeCfg = (pairing: 'interleaved' | 'half', rotaryDim?: number): ModelConfig =>
  ({ arch: 'llama', dim: 16, nLayers: 1, nHeads: 2, nKvHeads: 2, headDim: 8, ffnDim: 8, vocabSize: 4, normEps: 1e-5, maxSeqLen: 16, tiedHead: true, ropeTheta: 10000, ropePairing: pairing, ropeScaling: null, qkvBias: false, ...(rotaryDim ? { rotaryDim } : {}) }) as ModelConfig;

for (const [pairing, rd] of [['interleaved', undefined], ['half', undefined], ['half', 4], ['interleaved', 6]] as const) {
  test(`float32 rope (${pairing}${rd ? `, rotary dim ${rd} of 8` : ''}): RotaryEmbedding equals the dense rotation, its VJP too`, async () => {
    const { ops } = await fusedMatchesUnfused([[2, 2, 5, 8]], (g, [x], fused) => {
      const ctx = llamaContext(g, ropeCfg(pairing, rd), 5);
      // The dense form is what a float64 graph (or ctx without half tables) runs.
      return fused ? rope(x!, ctx) : G.add(G.mul(x!, ctx.cos), G.mul(G.matmul(x!, ctx.rotation), ctx.sin));
    });
    assert.ok(ops[0]!.includes('RotaryEmbedding'));
  });
}

test('a whole model step with weights folded (q/k/v and gate/up concatenated, norm gains moved) equals the unfolded one', async () => {
  const model = loadModel(modelPath('stories260K.bin'));
  const cache = new WeightCache(undefined);
  const B = 2;
  const T = 4;
  const D = model.config.dim;
  const r = rng(3);
  const feeds = {
    x: Float32Array.from({ length: B * T * D }, () => normalish(r)),
    l1: Float32Array.from({ length: B * T * D }, () => (r() < 0.05 ? 1 : 0)),
    lin: new Float32Array(B * T * D),
    C: new Float32Array(B).fill(100),
    report: Float32Array.from({ length: B * T * D }, () => r()),
  };
  const outs: Record<string, Float32Array>[] = [];
  const kernels: number[] = [];
  for (const foldWeights of [true, false]) {
    const g = new Graph({ float: 'float32', foldWeights });
    const w = new WeightBinder(g, model.tensors, (t) => cache.locate(t), path.dirname(model.path));
    buildObjective(g, model.config, w, [1, model.config.nLayers], 'resid', { B, T });
    w.materialize();
    kernels.push(g.nodes.filter((n) => n.opType === 'Concat').length);
    const s = await GraphSession.create(g, { externalFolder: path.dirname(model.path) });
    outs.push((await s.run(feeds)) as Record<string, Float32Array>);
    await s.release();
  }
  assert.ok(kernels[0]! > 0 && kernels[1] === 0, 'the folded graph concatenates weights, the other does not');
  for (const name of ['loss', 'act', 'grad']) {
    const rel = maxRelError(outs[0]![name]!, outs[1]![name]!);
    assert.ok(rel <= 1e-5, `${name}: folded vs unfolded relative difference ${rel.toExponential(2)}`);
  }
});

test('a reshape to the same shape and an identity transpose add no node', () => {
  const g = new Graph();
  const x = g.input('x', [2, 3]);
  assert.equal(G.reshape(x, [2, 3]), x);
  assert.equal(G.reshape(x, [-1, 3]), x);
  assert.equal(G.transpose(x, [0, 1]), x);
  assert.equal(g.nodes.length, 0);
  assert.throws(() => G.split(x, 1, [1, 1]), /do not partition/);
});
