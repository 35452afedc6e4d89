// Decoding embeddings back to tokens: the pinv / nearest-cosine / nearest-l2 decodes on a hand-made table, and the
// identity-rate and nearest-neighbour checks on stories260K (fixed weights, so the counts are exact).
import assert from 'node:assert/strict';
import test from 'node:test';
import { CHECK_SAMPLE, Decoder, identityRate, randomDecodeCosine, typicalNeighbourCosine, type EmbeddingTable } from '../src/features/decode.js';
import { decoderFor } from '../src/features/embeddings.js';
import { normalTokenIds } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

// E = [[1,0],[0,1],[1,1],[2,-1]]: EᵀE = [[6,-1],[-1,3]], (EᵀE)⁻¹ = [[3,1],[1,6]]/17.
const hand: EmbeddingTable = { data: Float32Array.from([1, 0, 0, 1, 1, 1, 2, -1]), vocab: 4, dim: 2 };
const close = (a: number, b: number, tol = 1e-9): void => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('pinv decode of a token embedding is the minimum-norm least-squares mixture', () => {
  const dec = new Decoder(hand);
  // e = E[2] = (1,1): q = (EᵀE)⁻¹e = (4,7)/17, a = Eq = (4,7,11,1)/17, and Eᵀa = e.
  const a = dec.scores([1, 1], 'pinv');
  [4, 7, 11, 1].forEach((x, i) => close(a[i]!, x / 17));
  close(a[0]! + a[2]! + 2 * a[3]!, 1);
  close(a[1]! + a[2]! - a[3]!, 1);
  assert.deepEqual(dec.topk([1, 1], 1, 1, 'pinv'), [[2]]);
  // e = (3,0): a = (9,3,12,15)/17.
  const b = dec.scores([3, 0], 'pinv');
  [9, 3, 12, 15].forEach((x, i) => close(b[i]!, x / 17));
});

test('nearest-cosine and nearest-l2 pick the expected tokens on the hand table', () => {
  const dec = new Decoder(hand);
  // (3,0) points along token 0 (cosines 1, 2/√5, 1/√2, 0) but lies closest to token 3 = (2,-1).
  assert.deepEqual(dec.topk([3, 0], 1, 4, 'nearest-cosine'), [[0, 3, 2, 1]]);
  assert.deepEqual(dec.topk([3, 0], 1, 2, 'nearest-l2'), [[3, 0]]);
  assert.deepEqual(dec.topk([1, 0.2], 1, 1, 'nearest-cosine'), [[0]]);
  assert.deepEqual(dec.topk([1.8, -0.6], 1, 1, 'nearest-l2'), [[3]]);
});

test('identityRate and typicalNeighbourCosine on the hand table', () => {
  const dec = new Decoder(hand);
  // E[0] pinv-decodes to (3,1,4,5)/17 → token 3; E[1] to (1,6,7,-4)/17 → token 2; tokens 2 and 3 decode to themselves.
  assert.deepEqual(identityRate(dec, [0, 1, 2, 3]), { rate: 0.5, total: 4, failures: [0, 1], sampled: false });
  // Largest cosine to another token: 2/√5, 1/√2, 1/√2, 2/√5.
  const nn = typicalNeighbourCosine(dec, [0, 1, 2, 3]);
  close(nn.median, (Math.SQRT1_2 + 2 / Math.sqrt(5)) / 2, 1e-6);
  close(nn.mean, (Math.SQRT1_2 + 2 / Math.sqrt(5)) / 2, 1e-6);
  assert.equal(nn.sampled, false);
  // Restricted to tokens 1 and 2 the neighbour is the other one of the pair.
  close(typicalNeighbourCosine(dec, [1, 2]).median, Math.SQRT1_2, 1e-6);
});

test('large id lists are checked on a seeded sample', () => {
  const V = 5000;
  const data = new Float32Array(V * 2);
  for (let v = 0; v < V; v++) {
    data[2 * v] = Math.cos(v);
    data[2 * v + 1] = Math.sin(v) * (1 + v / V);
  }
  const dec = new Decoder({ data, vocab: V, dim: 2 });
  const ids = Array.from({ length: V }, (_, i) => i);
  const a = identityRate(dec, ids);
  assert.equal(a.sampled, true);
  assert.equal(a.total, CHECK_SAMPLE);
  assert.deepEqual(identityRate(dec, ids), a);
  assert.equal(typicalNeighbourCosine(dec, ids).sampled, true);
});

test('stories260K: 15 of 253 normal tokens do not decode back to themselves; NN cosine median ≈ 0.55', () => {
  const m = loadModel(modelPath('stories260K.bin'));
  const dec = decoderFor(m);
  const ids = normalTokenIds(m.tokenizer, m.config.vocabSize);
  assert.equal(ids.length, 253);
  const r = identityRate(dec, ids);
  assert.equal(r.sampled, false);
  assert.equal(r.total, 253);
  assert.equal(r.failures.length, 15);
  assert.deepEqual(r.failures, [480, 486, 491, 497, 500, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511]);
  assert.ok(r.rate > 0.8 && r.rate < 1, String(r.rate));
  close(r.rate, 238 / 253);
  const nn = typicalNeighbourCosine(dec, ids);
  assert.ok(nn.median > 0.4 && nn.median < 0.7, String(nn.median));
  close(nn.median, 0.55297, 1e-4);
});

test('inspect reports the decoder checks', () => {
  const r = cli(['inspect', '--model', modelPath('stories260K.bin')]);
  assert.equal(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout).decoder;
  assert.equal(d.tokens_checked, 253);
  assert.equal(d.identity_failures, 15);
  assert.equal(d.sampled, false);
  close(d.identity_rate, 238 / 253);
  assert.ok(d.nearest_neighbour_cosine_median > 0.4 && d.nearest_neighbour_cosine_median < 0.7);
});

test('randomDecodeCosine: on the 2-token identity table its median is exactly 1/√2 (the argmax axis is ≥ 45° away half the time)', () => {
  // With E = I₂ the pinv decode of x is argmax(x₁, x₂) and the cosine is max(cos θ, sin θ) for a uniform angle θ:
  // ≥ 1/√2 exactly when θ ∈ [−π/4, 3π/4], half the circle.
  const d = new Decoder({ data: new Float32Array([1, 0, 0, 1]), vocab: 2, dim: 2 });
  const r = randomDecodeCosine(d, 'pinv', 4001);
  assert.equal(r.draws, 4001);
  assert.ok(Math.abs(r.median - Math.SQRT1_2) < 0.02, `median ${r.median}`);
  // An orthonormal table decodes the same way by pinv and by cosine, so the yardstick agrees.
  assert.equal(randomDecodeCosine(d, 'nearest-cosine', 4001).median, r.median);
  // Seeded: the same draws twice.
  assert.equal(randomDecodeCosine(d, 'pinv', 101, 7).median, randomDecodeCosine(d, 'pinv', 101, 7).median);
});
