import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { logSumExp, ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { fluencyStep, objectiveStep, objectiveWeights } from '../src/features/objective.js';
import {
  allowedTokens,
  DEFAULT_REFINE,
  fluencyModel,
  fluencyWeights,
  gcg,
  paretoFrontier,
  refineActivation,
  roundTrips,
  type RefineSettings,
  type Scorer,
} from '../src/features/refine/index.js';
import { expandSelection } from '../src/features/selection.js';
import { loadModel } from '../src/models/load.js';
import { deriveSeed, normalStream, uniformStream } from '../src/util/random.js';
import { modelPath } from './helpers.js';

const model = loadModel(modelPath('stories260K.bin'));
const runner = new ModelRunner(model);
const decoder = decoderFor(model);
const tok = model.tokenizer!;
after(() => runner.close());
const D = 64;
const V = 512;

const settings = (over: Partial<RefineSettings> = {}): RefineSettings => ({ ...DEFAULT_REFINE, steps: 8, candidates: 32, swapTopk: 8, ...over });
const reportFor = (select: string, T: number) => objectiveWeights({ kind: 'l1', C: 100 }, expandSelection(select, T, D)[0]!, T, D).report;

/** Activation of one real token sequence through the objective graph (the path visualize's "decoded" uses). */
async function activation(ids: number[], report: Float32Array, blocks: [number, number] = [1, 2]): Promise<number> {
  const T = ids.length;
  const x = new Float32Array(T * D);
  ids.forEach((id, t) => x.set(decoder.embedding(id), t * D));
  const res = await objectiveStep(runner, blocks, 'resid', { x, l1: new Float32Array(T * D), lin: report, C: Float32Array.of(0), report }, { B: 1, T });
  return res.act[0]!;
}

const randomIds = (seed: number, T: number) => {
  const u = uniformStream(seed);
  return Array.from({ length: T }, () => 3 + Math.floor(u() * 250) * 2);
};

test('GCG never returns a prompt with lower activation than its start', async () => {
  const T = 5;
  let improved = 0;
  for (const [i, select] of ['[:, :, 0]', '[:, :, 9]', '[:, :, 33]', '[:, 2, 17]', '[:, 0:3, 50]', '[:, 4, 2:6]'].entries()) {
    const report = reportFor(select, T);
    const start = randomIds(i, T);
    const r = await refineActivation(runner, decoder, tok, { blocks: [1, 2], hook: 'resid', report, start, free: [0, 1, 2, 3, 4], settings: settings({ seed: i }) });
    assert.equal(r.method, 'gcg');
    assert.deepEqual(r.start_ids, start);
    assert.ok(r.activation >= r.start_activation, `${select}: ${r.start_activation} → ${r.activation}`);
    // Measured again on another graph, up to float noise.
    const [a0, a1] = [await activation(start, report), await activation(r.ids, report)];
    assert.ok(Math.abs(a0 - r.start_activation) < 1e-4 * Math.max(1, Math.abs(a0)), `${select}: start ${a0} vs ${r.start_activation}`);
    assert.ok(a1 >= a0 - 1e-4 * Math.max(1, Math.abs(a0)), `${select}: ${a0} → ${a1}`);
    if (r.improvements > 0) {
      improved++;
      assert.ok(r.activation > r.start_activation);
      assert.notDeepEqual(r.ids, start);
    }
    assert.ok(r.steps <= 8 && r.evaluations <= 1 + 8 * 32);
    assert.equal(r.text, tok.decode(r.ids));
    assert.ok(Number.isFinite(r.cross_entropy) && Number.isFinite(r.start_cross_entropy));
  }
  assert.ok(improved >= 4, `GCG improved only ${improved} of 6 random starts`);
});

test('GCG keeps the best prompt even when the gradient is useless', async () => {
  // A scorer whose gradient is noise: every move GCG makes must still be an improvement.
  const T = 4;
  const value = (ids: number[]) => ids.reduce((s, id, t) => s + Math.sin(deriveSeed(t, String(id)) % 1000), 0);
  const noise = normalStream(11);
  const scorer: Scorer = {
    score: async (seqs) => Float64Array.from(seqs, value),
    gradient: async (seqs) => seqs.map(() => Float32Array.from({ length: T * D }, noise)),
  };
  const start = [10, 20, 30, 40];
  const r = await gcg(scorer, decoder, start, { free: [0, 1, 2, 3], steps: 30, candidates: 16, swapTopk: 4, seed: 1, allowed: null });
  assert.equal(r.startScore, value(start));
  assert.equal(r.score, value(r.ids));
  assert.ok(r.score >= r.startScore);
  assert.ok(r.improvements > 0);
  // With every swap of the lists tried and nothing better, the lists widen rather than the search stopping early.
  const tiny = await gcg(scorer, decoder, start, { free: [0], steps: 40, candidates: 64, swapTopk: 2, seed: 1, allowed: null });
  assert.ok(tiny.swapTopk > 2, `swap lists stayed at ${tiny.swapTopk}`);
});

test('GCG at a single-swap local optimum tries pairs of swaps, and climbs on from there', async () => {
  // A landscape where every single swap away from the start loses and only one two-token prompt wins: the single-swap
  // search widens its lists to the whole vocabulary, finds nothing, and only a pair move can reach the optimum.
  const T = 2;
  let a = 0;
  let best = -1;
  for (let v = 0; v < V; v++) {
    const e = decoder.embedding(v);
    const n = e.reduce((s, x) => s + x * x, 0);
    if (n > best) [a, best] = [v, n];
  }
  const start = [a === 7 ? 8 : 7, a === 9 ? 10 : 9];
  const value = (ids: number[]) => (ids[0] === a && ids[1] === a ? 10 : ids[0] === start[0] && ids[1] === start[1] ? 0 : -1);
  // The gradient points at a's embedding, so a (the longest embedding) tops both positions' swap lists.
  const g = new Float32Array(T * D);
  g.set(decoder.embedding(a), 0);
  g.set(decoder.embedding(a), D);
  const scorer: Scorer = { score: async (seqs) => Float64Array.from(seqs, value), gradient: async (seqs) => seqs.map(() => g) };
  const r = await gcg(scorer, decoder, start, { free: [0, 1], steps: 400, candidates: 64, swapTopk: 4, seed: 3, allowed: null });
  assert.deepEqual(r.ids, [a, a]);
  assert.equal(r.score, 10);
  assert.equal(r.pairMoves, 1);
  assert.ok(r.converged, 'the search should end converged at the optimum, with steps to spare');
  // With one free position there are no pairs: it stops at the single-swap optimum.
  const one = await gcg(scorer, decoder, start, { free: [0], steps: 400, candidates: 64, swapTopk: 4, seed: 3, allowed: null });
  assert.deepEqual(one.ids, start);
  assert.equal(one.pairMoves, 0);
  assert.ok(one.converged);
});

test('GCG from several starts: the decode and its next rows, duplicates skipped, the best climb kept', async () => {
  const T = 5;
  const free = [0, 1, 2, 3, 4];
  const report = reportFor('[:, :, 21]', T);
  const starts = [randomIds(40, T), randomIds(41, T), randomIds(42, T)];
  const alternatives = [starts[1]!, starts[0]!, starts[1]!, starts[2]!];
  const s = settings({ seed: 5, starts: 3 });
  const r = await refineActivation(runner, decoder, tok, { blocks: [1, 2], hook: 'resid', report, start: starts[0]!, alternatives, free, settings: s });
  assert.equal(r.starts, 3);
  assert.deepEqual(r.start_ids, starts[0]);
  // Each start alone, with the seed the multi-start climb gives it (seed + its index).
  const single = [];
  for (const [i, st] of starts.entries()) {
    single.push(await refineActivation(runner, decoder, tok, { blocks: [1, 2], hook: 'resid', report, start: st, free, settings: settings({ seed: 5 + i, starts: 1 }) }));
  }
  const acts = single.map((x) => x.activation);
  const bestRow = acts.indexOf(Math.max(...acts));
  assert.equal(r.activation, acts[bestRow]);
  assert.equal(r.start_row, bestRow);
  assert.deepEqual(r.ids, single[bestRow]!.ids);
  assert.equal(r.start_activation, single[0]!.start_activation);
  assert.equal(r.steps, single.reduce((n, x) => n + x.steps, 0));
  assert.ok(r.activation >= r.start_activation);
  // starts = 1: the decode alone, whatever alternatives are offered.
  const alone = await refineActivation(runner, decoder, tok, { blocks: [1, 2], hook: 'resid', report, start: starts[0]!, alternatives, free, settings: settings({ seed: 5, starts: 1 }) });
  assert.equal(alone.starts, 1);
  assert.deepEqual(alone.ids, single[0]!.ids);
});

test('the retokenisation check rejects a known non-round-tripping candidate', async () => {
  // " the" is one token; " th" + "e" decodes to the same text, which encodes back to " the".
  const [the] = tok.encode('the');
  const pieces = new Map<string, number>();
  for (let id = 0; id < V; id++) if (!pieces.has(tok.piece(id))) pieces.set(tok.piece(id), id);
  const th = pieces.get(' th')!;
  const e = pieces.get('e')!;
  assert.ok(the !== undefined && th !== undefined && e !== undefined);
  assert.ok(roundTrips(tok, [the!]));
  assert.equal(roundTrips(tok, [th, e]), false);
  assert.ok(roundTrips(tok, [1, ...tok.encode('Once upon a time')]), 'a leading BOS round-trips');
  assert.equal(roundTrips(tok, [...tok.encode('Once'), 1]), false, 'a BOS inside the prompt does not');

  // A scorer that wants exactly [" th", "e"]: without the check GCG finds it; with the check it is refused.
  const target = [th, e];
  const scorer: Scorer = {
    score: async (seqs) => Float64Array.from(seqs, (s) => (s[0] === target[0] ? 1 : 0) + (s[1] === target[1] ? 2 : 0)),
    gradient: async (seqs) => seqs.map(() => new Float32Array(2 * D)),
  };
  const start = [th, tok.encode('cat')[0]!];
  const opts = { free: [1], steps: 4, candidates: V, swapTopk: V, seed: 0, allowed: null };
  const free = await gcg(scorer, decoder, start, opts);
  assert.deepEqual(free.ids, target);
  const checked = await gcg(scorer, decoder, start, { ...opts, accept: (ids) => roundTrips(tok, ids) });
  assert.notDeepEqual(checked.ids, target);
  assert.ok(checked.rejected > 0);
  assert.ok(roundTrips(tok, checked.ids));
});

test('token filters: bans, printable and ASCII pieces; GCG proposes only allowed tokens', async () => {
  assert.equal(allowedTokens(tok, V, { ban: [], printable: false, ascii: false }), null);
  const ban = allowedTokens(tok, V, { ban: [7, 9], printable: false, ascii: false })!;
  assert.equal(ban[7], 0);
  assert.equal(ban[8], 1);
  const printable = allowedTokens(tok, V, { ban: [], printable: true, ascii: false })!;
  const ascii = allowedTokens(tok, V, { ban: [], printable: false, ascii: true })!;
  for (let id = 0; id < V; id++) {
    const p = tok.piece(id);
    if (/^<0x/.test(p) || id === tok.bosId || id === tok.eosId) assert.equal(printable[id], 0, `${id} ${p}`);
    if (ascii[id]) assert.match(p, /^[\x20-\x7e]+$/);
    if (ascii[id]) assert.equal(printable[id], 1);
  }
  assert.throws(() => allowedTokens(null, V, { ban: [], printable: true, ascii: false }), /needs a tokenizer/);
  assert.throws(() => allowedTokens(tok, V, { ban: [600], printable: false, ascii: false }), /outside the vocabulary/);

  // A start full of byte tokens is first made allowed, then refined with ASCII tokens only.
  const T = 4;
  const report = reportFor('[:, :, 3]', T);
  const r = await refineActivation(runner, decoder, tok, {
    blocks: [1, 2],
    hook: 'resid',
    report,
    start: [114, 17, 247, 66],
    free: [0, 1, 2, 3],
    settings: settings({ filter: { ban: [426], printable: false, ascii: true } }),
  });
  for (const id of [...r.ids, ...r.start_ids]) {
    assert.equal(ascii[id], 1, `${id} ${JSON.stringify(tok.piece(id))}`);
    assert.notEqual(id, 426);
  }
  assert.ok(r.activation >= r.start_activation);
});

test('EPO: a population over log-spaced fluency weights and a Pareto frontier of activation vs cross-entropy', async () => {
  const T = 5;
  const report = reportFor('[:, :, 1]', T);
  const start = randomIds(5, T);
  const r = await refineActivation(runner, decoder, tok, {
    blocks: [1, 2],
    hook: 'resid',
    report,
    start,
    free: [0, 1, 2, 3, 4],
    settings: settings({ method: 'epo', steps: 4, candidates: 32, population: 4, fluency: [0.1, 10], restartEvery: 2 }),
  });
  assert.equal(r.method, 'epo');
  assert.deepEqual(r.members!.map((m) => m.lambda.toFixed(4)), ['0.1000', '0.4642', '2.1544', '10.0000']);
  const front = r.frontier!;
  assert.ok(front.length >= 1);
  for (let i = 1; i < front.length; i++) {
    assert.ok(front[i]!.activation <= front[i - 1]!.activation);
    assert.ok(front[i]!.cross_entropy! < front[i - 1]!.cross_entropy!, 'each frontier point trades activation for fluency');
  }
  assert.deepEqual(r.ids, front[0]!.ids);
  assert.ok(r.activation >= r.start_activation, 'the frontier includes everything evaluated, the start too');
  // Each member's best is not dominated by any frontier point for its own λ.
  for (const m of r.members!) {
    const fit = (p: { activation: number; cross_entropy: number | null }) => p.activation - m.lambda * p.cross_entropy!;
    for (const p of front) assert.ok(fit(m) >= fit(p) - 1e-9);
  }
  // The cross-entropies are the model's own: recompute one with BOS prepended.
  const [ce] = await runner.crossEntropy([[1, ...front[0]!.ids]]);
  assert.ok(Math.abs(ce! - front[0]!.cross_entropy!) < 1e-9);
  assert.ok(r.improvements > 0);
});

test('the fluency graph: cross-entropy from its logits matches crossEntropy(ids); its gradient matches finite differences', async () => {
  const ids = [1, ...tok.encode('Once upon a time')];
  const T = ids.length;
  const [ce] = await runner.crossEntropy([ids]);
  assert.ok(ce! > 0 && ce! < 10, String(ce));
  const x = new Float32Array(T * D);
  ids.forEach((id, t) => x.set(decoder.embedding(id), t * D));
  const targets = new Float32Array(T * V);
  const rows = new Float32Array(T);
  for (let t = 0; t + 1 < T; t++) {
    rows[t] = 1 / (T - 1);
    targets[t * V + ids[t + 1]!] = 1 / (T - 1);
  }
  const ceOf = (logits: Float32Array) => {
    let s = 0;
    for (let t = 0; t + 1 < T; t++) s += logSumExp(logits, t * V, V) - logits[t * V + ids[t + 1]!]!;
    return s / (T - 1);
  };
  const base = await fluencyStep(runner, { x, targets, rows }, { B: 1, T });
  assert.ok(Math.abs(ceOf(base.logits) - ce!) < 1e-5);
  const normal = normalStream(3);
  for (let k = 0; k < 3; k++) {
    const u = Float32Array.from({ length: T * D }, normal);
    const h = 1e-2;
    const at = async (sign: number) => ceOf((await fluencyStep(runner, { x: x.map((v, i) => v + sign * h * u[i]!), targets, rows }, { B: 1, T })).logits);
    const numeric = ((await at(1)) - (await at(-1))) / (2 * h);
    const analytic = base.grad.reduce((s, g, i) => s + g * u[i]!, 0);
    assert.ok(Math.abs(numeric - analytic) < 0.02 * Math.abs(analytic) + 1e-3, `direction ${k}: ${numeric} vs ${analytic}`);
  }
  // fluencyModel drops the prepended BOS row of the gradient and scores with BOS prepended.
  const flu = fluencyModel(runner, decoder, { bosId: 1, T: T - 1, batch: 4, gradBatch: 2 });
  const [score] = await flu.score([ids.slice(1)]);
  assert.ok(Math.abs(score! - ce!) < 1e-9);
  const [g] = await flu.gradient([ids.slice(1)]);
  assert.equal(g!.length, (T - 1) * D);
  for (let i = 0; i < g!.length; i++) assert.ok(Math.abs(g![i]! - base.grad[D + i]!) < 1e-6);
});

test('fluency weights and the Pareto frontier', () => {
  assert.deepEqual(fluencyWeights([0.5], 3), [0.5, 0.5, 0.5]);
  assert.deepEqual(fluencyWeights([1, 2, 3], 3), [1, 2, 3]);
  const w = fluencyWeights([0.01, 100], 5);
  [0.01, 0.1, 1, 10, 100].forEach((x, i) => assert.ok(Math.abs(w[i]! - x) < 1e-9 * x));
  assert.deepEqual(fluencyWeights([0, 1], 3), [0, 0.5, 1]);
  assert.throws(() => fluencyWeights([1, 2, 3], 4), /one value, a range/);
  const p = (a: number, c: number) => ({ ids: [a, c], activation: a, crossEntropy: c });
  const front = paretoFrontier([p(1, 5), p(3, 9), p(2, 6), p(2, 7), p(0, 8), p(3, 8), p(NaN, 1)]);
  assert.deepEqual(front.map((x) => [x.activation, x.crossEntropy]), [[3, 8], [2, 6], [1, 5]]);
});
