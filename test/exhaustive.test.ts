import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { contextFor, exhaustiveScores, rankOf, summarizeExhaustive } from '../src/features/exhaustive.js';
import { objectiveStep, objectiveWeights } from '../src/features/objective.js';
import { expandSelection } from '../src/features/selection.js';
import { normalTokenIds } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { normalStream } from '../src/util/random.js';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

/** A llama2.c v0 checkpoint with random weights (tied classifier, no tokenizer beside it). */
function writeTinyLlama(file: string, s: { dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number; seqLen: number }, seed: number): void {
  const fd = openSync(file, 'w');
  const normal = normalStream(seed);
  writeSync(fd, new Uint8Array(Int32Array.of(s.dim, s.hidden, s.layers, s.heads, s.kvHeads, s.vocab, s.seqLen).buffer));
  const write = (n: number, fill: () => number) => writeSync(fd, new Uint8Array(Float32Array.from({ length: n }, fill).buffer));
  const kv = (s.dim * s.kvHeads) / s.heads;
  const L = s.layers;
  const w = () => 0.3 * normal();
  write(s.vocab * s.dim, normal);
  write(L * s.dim, () => 1);
  write(L * s.dim * s.dim, w);
  write(L * kv * s.dim, w);
  write(L * kv * s.dim, w);
  write(L * s.dim * s.dim, w);
  write(L * s.dim, () => 1);
  write(L * s.hidden * s.dim, w);
  write(L * s.dim * s.hidden, w);
  write(L * s.hidden * s.dim, w);
  write(s.dim, () => 1);
  write((s.seqLen * s.dim) / s.heads / 2, () => 0);
  write((s.seqLen * s.dim) / s.heads / 2, () => 0);
  closeSync(fd);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-exh-'));
const tinyPath = path.join(tmp, 'tiny.bin');
writeTinyLlama(tinyPath, { dim: 16, hidden: 24, layers: 2, heads: 2, kvHeads: 1, vocab: 40, seqLen: 16 }, 7);
const tiny = loadModel(tinyPath);
const runner = new ModelRunner(tiny);
after(() => runner.close());

test('the exhaustive baseline equals brute force, token by token, on a tiny model', async () => {
  const V = 40;
  const T = 4;
  const layout = { T, free: [1, 2, 3], fixed: new Map([[0, 5]]) };
  const runs = [...expandSelection('[:, 2, 0-2]', T, 16), ...expandSelection('[:, :, 7]', T, 16), ...expandSelection('[:, 1:3, 4:6]', T, 16)];
  const decoder = decoderFor(tiny);
  const contextIds = normalTokenIds(null, V);
  assert.equal(contextIds.length, V);
  const objective = { kind: 'l1' as const, C: 100 };
  // Batch 16 does not divide 40: the last pass is padded.
  const scores = await exhaustiveScores(runner, runs, { blocks: [1, 2], hook: 'resid', layout, objective, seed: 3, batch: 16, contextIds });
  assert.equal(scores.length, runs.length);

  /** One forward pass per token through the objective graph, batch 1. */
  const bruteForce = async (run: (typeof runs)[number], seq: (v: number) => number[]) => {
    const w = objectiveWeights(objective, run, T, 16);
    const out: number[] = [];
    for (let v = 0; v < V; v++) {
      const x = new Float32Array(T * 16);
      seq(v).forEach((id, t) => x.set(decoder.embedding(id), t * 16));
      const res = await objectiveStep(runner, [1, 2], 'resid', { x, l1: w.l1, lin: w.lin, C: Float32Array.of(w.C), report: w.report }, { B: 1, T });
      out.push(res.act[0]!);
    }
    return out;
  };
  const close = (got: ArrayLike<number>, want: number[], what: string) => {
    const scale = Math.max(...want.map(Math.abs));
    for (let v = 0; v < V; v++) assert.ok(Math.abs(got[v]! - want[v]!) <= 1e-5 * scale + 1e-6, `${what}, token ${v}: ${got[v]} vs ${want[v]}`);
  };
  for (const [i, run] of runs.entries()) {
    const s = scores[i]!;
    assert.ok(Math.max(...s.repeated) - Math.min(...s.repeated) > 1e-3, `${run.label}: tokens differ`);
    close(s.repeated, await bruteForce(run, (v) => [5, v, v, v]), `${run.label} repeated`);
    if (run.label.startsWith('[:, 2,')) {
      assert.ok(s.context);
      assert.equal(s.context.position, 2);
      assert.deepEqual(s.context.ids, contextFor(layout, 2, 3, contextIds));
      assert.equal(s.context.ids[0], 5, 'fixed positions keep their token');
      close(s.context.scores, await bruteForce(run, (v) => s.context!.ids.map((id, t) => (t === 2 ? v : id))), `${run.label} in context`);
    } else assert.equal(s.context, null, `${run.label} has no single position`);
  }
  // The summary: best tokens in order, and ranks that agree with the scores.
  const sum = summarizeExhaustive(scores[0]!, 5, null, [scores[0]!.repeated.indexOf(Math.max(...scores[0]!.repeated)), 0], [1, 2]);
  assert.equal(sum.repeated.best.length, 5);
  for (let k = 1; k < 5; k++) assert.ok(sum.repeated.best[k - 1]!.activation >= sum.repeated.best[k]!.activation);
  assert.equal(sum.ranked[0]!.repeated_rank, 1);
  assert.equal(sum.ranked[1]!.repeated_rank, rankOf(scores[0]!.repeated, 0));
  assert.equal(sum.ranked[1]!.position, 2);
  assert.equal(sum.context!.best[0]!.activation, Math.max(...scores[0]!.context!.scores));
});

test('rankOf: 1 + the number of strictly higher scores', () => {
  assert.equal(rankOf([0.5, 2, 1, 2], 1), 1);
  assert.equal(rankOf([0.5, 2, 1, 2], 3), 1);
  assert.equal(rankOf([0.5, 2, 1, 2], 2), 3);
  assert.equal(rankOf([0.5, 2, 1, 2], 0), 4);
});

test('visualize --baseline exhaustive: every run ranks its decoded tokens among all tokens', () => {
  const r = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1-2', '--select', '[:, (1,:), 3]', '--steps', '30', '--random-draws', '1', '--baseline', 'exhaustive', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const runs = JSON.parse(r.stdout).runs;
  assert.equal(runs.length, 2);
  for (const run of runs) {
    const e = run.exhaustive;
    assert.equal(e.kind, 'exhaustive');
    assert.equal(e.vocab, 512);
    assert.equal(e.select, run.select);
    assert.equal(run.settings.baseline, 'exhaustive');
    // Only optimised positions are ranked ([:, 1, 3]: positions 0 and 1; the rest get no gradient).
    assert.deepEqual(e.ranked.map((x: { id: number }) => x.id), run.optimized.map((t: number) => run.ids[t]));
    assert.deepEqual(run.optimized, run.select === '[:, 1, 3]' ? [0, 1] : run.free);
    for (const x of e.ranked) {
      assert.ok(x.repeated_rank >= 1 && x.repeated_rank <= 512);
      assert.ok(x.repeated_activation <= e.repeated.best[0].activation);
    }
  }
  assert.equal(runs[0].exhaustive.context.position, 1);
  assert.equal(runs[0].exhaustive.context.context_ids.length, 5);
  assert.equal(runs[1].exhaustive.context, null);
  const text = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, 0, 3]', '--steps', '10', '--baseline', 'exhaustive']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /exhaustive, token repeated: .*; decoded tokens rank [\d ]+ of 512\n  exhaustive, token at 0 in context: /);
  const bad = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, 0, 3]', '--baseline', 'brute']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--baseline: "brute" is not one of skip-connection, exhaustive/);
});

/** `baseline` and `invert` are registered in main.ts by the lead; until then their CLI tests skip. */
function registered(command: string): boolean {
  return !/unknown command/.test(cli([command, '--help']).stderr);
}

test('llm-features baseline --json: best tokens and ranks of given tokens', (t) => {
  if (!registered('baseline')) return t.skip('baseline is not registered in src/cli/main.ts yet');
  const args = ['baseline', '--model', modelPath('stories260K.bin'), '--blocks', '1-2', '--select', '[:, 2, 3-4]', '--topk', '4', '--rank-text', 'Once upon', '--json'];
  const r = cli(args);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.runs.length, 2);
  for (const run of doc.runs) {
    assert.equal(run.repeated.best.length, 4);
    assert.equal(run.context.position, 2);
    assert.deepEqual(run.ranked.map((x: { id: number }) => x.id), [403, 407]);
  }
  assert.deepEqual(JSON.parse(cli(args).stdout), doc, 'same output for the same seed');
  const text = cli(args.slice(0, -1));
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^\[:, 2, 3\]  blocks 1-2  hook resid  \(512 tokens\)\n  token repeated at every position:\n +1\. /);
  assert.match(text.stdout, /" Once" \(id 403\): repeated rank \d+ \(-?[\d.]+\), in context rank \d+/);
  const bad = cli(['baseline', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, :, 3]', '--rank-ids', '9999']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--rank-ids: token id 9999 is outside the vocabulary 0-511/);
});
