/**
 * bench/nodes.ts (issue 18's node counts): the forward/backward split must be a real split of the step's graph, and
 * the baseline comparison must divide the right counts.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { keptActivationBytes, nodeRatios, type NodesBaseline, type NodesOut } from '../bench/common.js';
import { modelPath, projectRoot } from './helpers.js';

test('nodes per step: forward + backward = step, and the forward-only graph has none of the gradient ops', () => {
  const out = execFileSync(process.execPath, [path.join(projectRoot, 'dist', 'bench', 'nodes.js'), '--model', modelPath('stories260K.bin'), '--T', '3'], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!) as NodesOut;
  assert.equal(r.layers, 5);
  for (const c of [r.emitted, r.kernels]) {
    assert.equal(c.forward + c.backward, c.full);
    assert.ok(c.forward > 0 && c.backward > 0, 'both halves are non-empty');
  }
  const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
  assert.equal(sum(r.kernels.byOp.full), r.kernels.full);
  assert.equal(sum(r.kernels.byOp.forward), r.kernels.forward);
  assert.equal(sum(r.kernels.byOp.backward), r.kernels.backward);
  // The L1 objective's VJP (|C − O|′ = −sign) is where Sign comes from: in the step, gone once the gradient output is
  // pruned away — the forward count is of a graph without the backward. (Not pinned to more ops: issue 18 rewrites them.)
  assert.ok((r.kernels.byOp.full.Sign ?? 0) > 0);
  assert.equal(r.kernels.byOp.forward.Sign, undefined);
  assert.ok((r.kernels.byOp.forward.Abs ?? 0) > 0, 'the loss itself stays in the forward');
});

test('nodes: an unknown --device is one line on stderr and exit code 2, before any model is read', () => {
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'bench', 'nodes.js'), '--model', modelPath('stories260K.bin'), '--device', 'cuda'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'nodes: --device must be cpu or webgpu, got "cuda"\n');
});

test('node ratios divide today by the baseline of the same key, null where the baseline lacks it', () => {
  const base = { architectures: [{ key: 'A', kernels: { full: 1000, forward: 400, backward: 600 }, emitted: { full: 1200, forward: 500, backward: 700 } }] } as unknown as NodesBaseline;
  const r = nodeRatios([{ key: 'A', kernels: { full: 450 }, emitted: { full: 600 } }, { key: 'new', kernels: { full: 10 }, emitted: { full: 10 } }], base);
  assert.deepEqual(r[0], { key: 'A', kernels: 0.45, emitted: 0.5, baseKernels: 1000, baseEmitted: 1200 });
  assert.deepEqual(r[1], { key: 'new', kernels: null, emitted: null, baseKernels: null, baseEmitted: null });
});

test('kept-activation estimate: linear in B, and its T² term is the attention scores and probabilities', () => {
  const s = { dim: 8, ffn: 16, nLayers: 2, nHeads: 2, nKvHeads: 1 };
  // Per token: 8·8 + 3·4 + 4·16 = 140 floats; attention 2·H·T = 4T per token.
  assert.equal(keptActivationBytes(s, 1, 1), 4 * 2 * (140 + 4));
  assert.equal(keptActivationBytes(s, 3, 5), 3 * keptActivationBytes(s, 1, 5));
  assert.equal(keptActivationBytes(s, 1, 5), 4 * 2 * 5 * (140 + 4 * 5));
});
