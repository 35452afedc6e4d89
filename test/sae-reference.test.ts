// The trained fixture SAE (test/fixtures/sae-stories260K) on stories260K against scripts/train_sae.py's float64
// PyTorch reference: pre- and post-activations of every latent, and the gradient of one latent w.r.t. the input
// embeddings, for the pre (default) and the post objective.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { readTensorF32 } from '../src/formats/binary.js';
import { objectiveStep } from '../src/features/objective.js';
import { encodeGraph, saeFeatureMap } from '../src/features/sae.js';
import { readSae } from '../src/formats/sae.js';
import { loadModel } from '../src/models/load.js';
import { architectureOf, runBlocks } from '../src/models/transformer.js';
import { fixturePath, modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';

interface Fixture {
  ids: number[];
  blocks: [number, number];
  pre: number[][];
  post: number[][];
  latent: number;
  pre_sum: number;
  post_sum: number;
  grad_pre_sum: number[][];
  grad_post_sum: number[][];
}

const fx = JSON.parse(readFileSync(fixturePath('sae-stories260K-reference.json'), 'utf8')) as Fixture;
const sae = readSae(fixturePath('sae-stories260K'));
const model = loadModel(modelPath('stories260K.bin'));
const runner = new ModelRunner(model);
after(() => runner.close());
const D = model.config.dim;
const T = fx.ids.length;
const table = readTensorF32(model.tensors.get('token_embd.weight')!);
const x = new Float32Array(T * D);
fx.ids.forEach((id, t) => x.set(table.subarray(id * D, (id + 1) * D), t * D));

test('the fixture is the SAE the reference describes: TopK, 512 latents on blocks.2.hook_resid_post', () => {
  assert.equal(sae.architecture, 'topk');
  assert.equal(sae.dSae, 512);
  assert.equal(sae.dIn, D);
  assert.equal(sae.hookName, 'blocks.2.hook_resid_post');
  assert.deepEqual(fx.blocks, [1, 3]);
});

test('pre- and post-activations of every latent equal the float64 reference', async () => {
  const out = await runner.runGraph('test|sae-pre', (g, w) => {
    const e = g.input('x', [1, T, D]);
    const O = runBlocks(g, model.config, w, architectureOf(model.config).inputFromEmbeddings(e, model.config, w), fx.blocks, 'resid');
    g.output(encodeGraph(g, sae, O).pre, 'pre');
  }, { x });
  const errPre = maxRelError(out.pre!, fx.pre.flat());
  assert.ok(errPre <= 1e-4, `pre relative error ${errPre.toExponential(2)}`);
  const post = await runner.hidden([fx.ids], fx.blocks, 'resid', saeFeatureMap(sae));
  const errPost = maxRelError(post.data, fx.post.flat());
  assert.ok(errPost <= 1e-4, `post relative error ${errPost.toExponential(2)}`);
  // TopK keeps at most k latents per token, and the reference has active ones.
  for (let t = 0; t < T; t++) assert.ok(fx.post[t]!.filter((v) => v > 0).length <= sae.k!);
  assert.ok(fx.post.flat().some((v) => v > 0));
});

for (const side of ['pre', 'post'] as const) {
  test(`d Σ_t ${side}[t, latent] / d E0 equals the float64 reference`, async () => {
    const F = sae.dSae;
    const lin = new Float32Array(T * F);
    for (let t = 0; t < T; t++) lin[t * F + fx.latent] = 1;
    const res = await objectiveStep(runner, fx.blocks, 'resid', { x, l1: new Float32Array(T * F), lin, C: new Float32Array(1), report: lin }, { B: 1, T }, saeFeatureMap(sae, side));
    // loss = −Σ lin ⊙ (objective side); act = Σ lin ⊙ post whatever the side.
    const value = -res.loss[0]!;
    const want = side === 'pre' ? fx.pre_sum : fx.post_sum;
    assert.ok(Math.abs(value - want) <= 1e-4 * Math.max(1, Math.abs(want)), `${side} sum ${value} vs ${want}`);
    assert.ok(Math.abs(res.act[0]! - fx.post_sum) <= 1e-4 * Math.max(1, Math.abs(fx.post_sum)), `act ${res.act[0]} vs post ${fx.post_sum}`);
    const expected = (side === 'pre' ? fx.grad_pre_sum : fx.grad_post_sum).flat().map((g) => -g);
    assert.ok(expected.some((g) => g !== 0));
    const err = maxRelError(res.grad, expected);
    assert.ok(err <= 1e-4, `gradient relative error ${err.toExponential(2)}`);
  });
}
