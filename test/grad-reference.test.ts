// Gradients of selected hook outputs with respect to the input embeddings, against PyTorch float64.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { readTensorF32 } from '../src/formats/binary.js';
import { hookWidth, type Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { fixturePath, modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';
import { objectiveStep } from '../src/features/objective.js';

interface GradCase {
  blocks: [number, number];
  hook: Hook;
  select: { position: number | null; feature: number | null };
  objective: 'sum' | 'l1';
  C?: number;
  value: number;
  grad: number[][];
}

const fixture = JSON.parse(readFileSync(fixturePath('stories260K-grad.json'), 'utf8')) as { ids: number[]; cases: GradCase[] };
const model = loadModel(modelPath('stories260K.bin'));
const runner = new ModelRunner(model);
after(() => runner.close());

const D = model.config.dim;
const table = readTensorF32(model.tensors.get('token_embd.weight')!);
const T = fixture.ids.length;
const x = new Float32Array(T * D);
fixture.ids.forEach((id, t) => x.set(table.subarray(id * D, (id + 1) * D), t * D));

for (const c of fixture.cases) {
  const where = `${c.select.position ?? ':'}, ${c.select.feature ?? ':'}`;
  test(`blocks ${c.blocks.join('-')} ${c.hook} [:, ${where}] ${c.objective}: value and gradient match`, async () => {
    const F = hookWidth(model.config, c.hook);
    const mask = new Float32Array(T * F);
    for (let t = 0; t < T; t++) {
      for (let f = 0; f < F; f++) {
        if ((c.select.position === null || c.select.position === t) && (c.select.feature === null || c.select.feature === f)) mask[t * F + f] = 1;
      }
    }
    const zero = new Float32Array(T * F);
    const l1 = c.objective === 'l1';
    // sum: loss = −Σ mask⊙O, so its gradient is the negated reference; l1: loss = Σ mask⊙|C − O| directly.
    const res = await objectiveStep(runner, c.blocks, c.hook, { x, l1: l1 ? mask : zero, lin: l1 ? zero : mask, C: Float32Array.of(c.C ?? 0), report: mask }, { B: 1, T });
    const value = l1 ? res.loss[0]! : res.act[0]!;
    assert.ok(Math.abs(value - c.value) <= 1e-4 * Math.max(1, Math.abs(c.value)), `value ${value} vs ${c.value}`);
    const expected = c.grad.flat().map((g) => (l1 ? g : -g));
    const err = maxRelError(res.grad, expected);
    assert.ok(err <= 1e-4, `gradient relative error ${err.toExponential(2)}`);
  });
}
