// Issue 13's controls: skip share, the model-free decode of any resid selection, --seeds stability, logit effects.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { decoderFor, embeddingTable } from '../src/features/embeddings.js';
import { logitEffects, LOGIT_K } from '../src/features/logit-effects.js';
import { skipPathStep } from '../src/features/objective.js';
import { pairwiseAgreement, stabilityOf, startSeed } from '../src/features/stability.js';
import { VERDICT_THRESHOLDS, verdictOf } from '../src/features/verdict.js';
import { DEFAULT_SETTINGS, Visualizer, type RunResult, type VisualizeSettings } from '../src/features/visualize.js';
import { loadModel, type LoadedModel } from '../src/models/load.js';
import { writeRandomModel } from '../src/models/random-model.js';
import { deriveSeed } from '../src/util/random.js';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'llmf-controls-'));
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
  rmSync(root, { recursive: true, force: true });
});

const stories = loadModel(modelPath('stories260K.bin'));

function open(model: LoadedModel): Visualizer {
  const runner = new ModelRunner(model);
  runners.push(runner);
  return new Visualizer(runner, model.tokenizer, decoderFor(model));
}

const settings = (over: Partial<VisualizeSettings> = {}): VisualizeSettings => ({
  ...DEFAULT_SETTINGS,
  blocks: [1, 1],
  hook: 'resid',
  steps: 100,
  batch: 8,
  randomDraws: 1,
  ...over,
});

/** Rewrites tensors of a safetensors file in place (F32 only): `edit` gets each matching tensor's values. */
function patchSafetensors(file: string, match: RegExp, edit: (values: Float32Array, name: string) => void): string[] {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const done: string[] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || !match.test(name)) continue;
    assert.equal(t.dtype, 'F32');
    const [a, b] = t.data_offsets;
    const values = new Float32Array(buf.buffer.slice(buf.byteOffset + 8 + n + a, buf.byteOffset + 8 + n + b));
    edit(values, name);
    Buffer.from(values.buffer).copy(buf, 8 + n + a);
    done.push(name);
  }
  writeFileSync(file, buf);
  return done;
}

/** A control with the source's embeddings, norms and head, whose blocks write nothing into the residual stream. */
function zeroBlocks(like: LoadedModel, name: string, outputs: RegExp): string {
  const out = path.join(root, name);
  writeRandomModel(like, out, { keepEmbeddings: true, seed: 1 });
  const zeroed = patchSafetensors(path.join(out, 'model.safetensors'), outputs, (v) => v.fill(0));
  assert.ok(zeroed.length >= 2 * like.config.nLayers, `zeroed ${zeroed.join(', ')}`);
  return out;
}

const LLAMA_OUTPUTS = /\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/;
const GPT2_OUTPUTS = /\.(attn\.c_proj|mlp\.c_proj)\.(weight|bias)$/;

// ---- skip share -------------------------------------------------------------------------------------------------

test('skip share is 1 for a model whose blocks are zeroed (Llama), for one feature, a combined selection and a later block range', async () => {
  const vis = open(loadModel(zeroBlocks(stories, 'llama-zero', LLAMA_OUTPUTS)));
  const runs = await vis.visualize({ select: '[:, :, 3]', settings: settings({ blocks: [1, 3] }) });
  const combined = await vis.visualize({ select: '[:, 1:3, 0:4]', settings: settings({ blocks: [2, 4] }) });
  for (const r of [...runs, ...combined]) {
    assert.equal(r.status, 'ok');
    assert.ok(Math.abs(r.skip!.share! - 1) < 1e-5, `${r.select}: share ${r.skip!.share}`);
    assert.ok(r.verdict!.some((f) => f.code === 'skip-path'), JSON.stringify(r.verdict));
  }
});

test('skip share is 1 for a zeroed GPT-2 only because the identity path includes the position table', async () => {
  const like = loadModel(fixturePath('hf/gpt2-f16'));
  const model = loadModel(zeroBlocks(like, 'gpt2-zero', GPT2_OUTPUTS));
  const vis = open(model);
  const [r] = await vis.visualize({ select: '[:, :, 2]', settings: settings({ blocks: [1, 2], steps: 50 }) });
  assert.equal(r!.status, 'ok');
  assert.ok(Math.abs(r!.skip!.share! - 1) < 1e-5, `share ${r!.skip!.share}`);
  // The position table's part is not negligible here, so leaving it out of X would give a share away from 1.
  const wpe = toFloat32(model.tensors.get('wpe.weight')!);
  const D = model.config.dim;
  const T = r!.ids.length;
  let pos = 0;
  for (let t = 0; t < T; t++) pos += wpe[t * D + 2]! / T;
  assert.ok(Math.abs(pos / r!.activation.continuous!) > 1e-3, `position part ${pos} of ${r!.activation.continuous}`);
});

test('skip share is small when the MLP carries the activation (a constructed counter-example)', async () => {
  const out = path.join(root, 'llama-mlp-heavy');
  writeRandomModel(stories, out, { keepEmbeddings: true, seed: 2 });
  const file = path.join(out, 'model.safetensors');
  patchSafetensors(file, /\.self_attn\.o_proj\.weight$/, (v) => v.fill(0));
  // Block 1's MLP output is scaled so that it reaches C = 100 long before the input coordinate itself moves far.
  patchSafetensors(file, /layers\.0\.mlp\.down_proj\.weight$/, (v) => v.forEach((x, i) => (v[i] = x * 2000)));
  const vis = open(loadModel(out));
  const [r] = await vis.visualize({ select: '[:, :, 3]', settings: settings({ steps: 60 }) });
  assert.equal(r!.status, 'ok');
  assert.ok(r!.activation.continuous! > 50, `continuous ${r!.activation.continuous}`);
  assert.ok(Math.abs(r!.skip!.share!) < 0.2, `share ${r!.skip!.share}`);
  assert.ok(!r!.verdict!.some((f) => f.code === 'skip-path'));
});

test('the identity path reduction equals Σ report ⊙ (x + positions) computed directly (GPT-2)', async () => {
  const model = loadModel(fixturePath('hf/gpt2-f16'));
  const runner = new ModelRunner(model);
  runners.push(runner);
  const [B, T, D] = [2, 3, model.config.dim];
  const x = Float32Array.from({ length: B * T * D }, (_, i) => Math.sin(i * 0.7));
  const report = Float32Array.from({ length: B * T * D }, (_, i) => Math.cos(i * 0.3));
  const got = await skipPathStep(runner, { x, report }, { B, T });
  const wpe = toFloat32(model.tensors.get('wpe.weight')!);
  for (let b = 0; b < B; b++) {
    let want = 0;
    for (let t = 0; t < T; t++) for (let i = 0; i < D; i++) want += report[(b * T + t) * D + i]! * (x[(b * T + t) * D + i]! + wpe[t * D + i]!);
    assert.ok(Math.abs(got[b]! - want) < 1e-4 * (1 + Math.abs(want)), `${got[b]} vs ${want}`);
  }
});

test('hooks without an identity path report skip share as not applicable, with the reason', async () => {
  const vis = open(stories);
  for (const hook of ['mlp', 'attn', 'attn_out', 'mlp_out'] as const) {
    const [r] = await vis.visualize({ select: '[:, :, 1]', settings: settings({ hook, steps: 5 }) });
    assert.equal(r!.skip!.share, null);
    assert.match(r!.skip!.not_applicable!, /no identity path/);
    assert.equal(r!.baseline, null);
  }
});

// ---- model-free decode --------------------------------------------------------------------------------------------

/** Pseudoinverse scores E (EᵀE)⁻¹ v by Gaussian elimination in float64 (independent of decode.ts's Cholesky). */
function pinvScores(model: LoadedModel, v: ArrayLike<number>): Float64Array {
  const { data, vocab: V, dim: D } = embeddingTable(model);
  const A = Array.from({ length: D }, () => new Float64Array(D + 1));
  for (let r = 0; r < V; r++) for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) A[i]![j]! += data[r * D + i]! * data[r * D + j]!;
  for (let i = 0; i < D; i++) A[i]![D] = v[i]!;
  for (let c = 0; c < D; c++) {
    let p = c;
    for (let r = c + 1; r < D; r++) if (Math.abs(A[r]![c]!) > Math.abs(A[p]![c]!)) p = r;
    [A[c], A[p]] = [A[p]!, A[c]!];
    for (let r = 0; r < D; r++) {
      if (r === c) continue;
      const f = A[r]![c]! / A[c]![c]!;
      for (let k = c; k <= D; k++) A[r]![k]! -= f * A[c]![k]!;
    }
  }
  const q = Float64Array.from({ length: D }, (_, i) => A[i]![D]! / A[i]![i]!);
  return Float64Array.from({ length: V }, (_, r) => {
    let s = 0;
    for (let i = 0; i < D; i++) s += data[r * D + i]! * q[i]!;
    return s;
  });
}

const argmax = (xs: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
};

function checkBaseline(r: RunResult, expectedTop: number): void {
  assert.equal(r.baseline!.kind, 'skip-connection');
  assert.equal(r.baseline!.tokens[0], expectedTop);
  const counted = r.optimized!;
  const same = counted.filter((t) => r.ids[t] === expectedTop).length;
  assert.equal(r.baseline!.agreement, same / counted.length);
  assert.equal(typeof r.baseline!.activation, 'number');
}

test('the model-free decode of a combined selection is the pseudoinverse decode of the summed unit vectors', async () => {
  const vis = open(stories);
  const [r] = await vis.visualize({ select: '[:, :, 0:4]', settings: settings() });
  const D = stories.config.dim;
  const v = Float64Array.from({ length: D }, (_, i) => (i < 4 ? 1 : 0));
  checkBaseline(r!, argmax(pinvScores(stories, v)));
  // A feature list is separate runs, each with its own unit vector.
  const list = await vis.visualize({ select: '[:, 2, 7,9]', settings: settings() });
  list.forEach((x, k) => checkBaseline(x, argmax(pinvScores(stories, Float64Array.from({ length: D }, (_, i) => (i === [7, 9][k] ? 1 : 0))))));
  assert.deepEqual(list[0]!.optimized, [0, 1, 2]);
});

test('the model-free decode of a --direction is the pseudoinverse decode of the vector', async () => {
  const vis = open(stories);
  const D = stories.config.dim;
  const direction = Float32Array.from({ length: D }, (_, i) => Math.sin(i + 1));
  const [r] = await vis.visualize({ select: '[:, :, :]', settings: settings({ objective: { ...DEFAULT_SETTINGS.objective, direction } }) });
  checkBaseline(r!, argmax(pinvScores(stories, direction)));
  assert.equal(typeof r!.skip!.share, 'number');
});

// ---- seeds --------------------------------------------------------------------------------------------------------

test('pairwise agreement and the stability summary on hand-made decodes', () => {
  const a = [9, 1, 2, 3];
  const b = [9, 1, 2, 4];
  const c = [9, 1, 5, 4];
  // Position 0 is fixed context: only 1..3 count. Pairs: (a,b) 2/3, (a,c) 1/3, (b,c) 2/3.
  assert.ok(Math.abs(pairwiseAgreement([a, b, c], [1, 2, 3]) - 5 / 9) < 1e-12);
  assert.equal(pairwiseAgreement([a, a], [1, 2, 3]), 1);
  assert.equal(pairwiseAgreement([a, b], [3]), 0);
  const st = stabilityOf(
    [
      { ok: true, ids: a, decoded: 1 },
      { ok: false, ids: [], decoded: null },
      { ok: true, ids: b, decoded: 3 },
      { ok: true, ids: c, decoded: 2 },
    ],
    [1, 2, 3],
    (x) => x * 10,
  )!;
  assert.equal(st.seeds, 4);
  assert.ok(Math.abs(st.agreement - 5 / 9) < 1e-12);
  assert.deepEqual(st.decoded, { min: 1, max: 3, mean: 2, std: Math.sqrt(2 / 3) });
  assert.deepEqual(st.percentile, { min: 10, max: 30 });
  assert.equal(st.best, 2);
  assert.equal(stabilityOf([{ ok: true, ids: a, decoded: 1 }, { ok: false, ids: [], decoded: null }], [1]), null);
  assert.equal(startSeed(7, '[:, :, 3]', 0), deriveSeed(7, '[:, :, 3]'));
  assert.notEqual(startSeed(7, '[:, :, 3]', 1), startSeed(7, '[:, :, 3]', 2));
});

test('--seeds on a case with a known answer: zeroed blocks, every feature driven to C, every start decodes the same', async () => {
  const vis = open(loadModel(zeroBlocks(stories, 'llama-zero-seeds', LLAMA_OUTPUTS)));
  // O = the embeddings: the L1 objective on all features pulls every start to 100·(1,…,1), whose decode is the
  // model-free decode of the all-ones direction.
  const [r] = await vis.visualize({ select: '[:, :, :]', settings: settings({ steps: 300, lrEnd: 0.05, seeds: 4 }) });
  assert.equal(r!.status, 'ok');
  assert.equal(r!.stability!.seeds, 4);
  assert.equal(r!.stability!.agreement, 1);
  assert.equal(r!.baseline!.agreement, 1);
  assert.ok(r!.stability!.decoded.std < 1e-3 * Math.abs(r!.stability!.decoded.mean), JSON.stringify(r!.stability));
  assert.ok(!r!.verdict!.some((f) => f.code === 'unstable'));
});

test('--seeds K: start 0 is the single run bit for bit; one result per selection; unstable below the threshold', async () => {
  const vis = open(stories);
  const s = settings({ blocks: [1, 2], steps: 80 });
  const single = await vis.visualize({ select: '[:, :, 10-17]', settings: s });
  const multi = await vis.visualize({ select: '[:, :, 10-17]', settings: { ...s, seeds: 2 } });
  assert.equal(multi.length, 8);
  multi.forEach((m, i) => {
    const one = single[i]!;
    assert.equal(m.select, one.select);
    const st = m.stability!;
    // With two starts, start 0's decoded activation is the spread's min or max exactly (bit for bit); when start 0 is
    // the best, the whole decode is the single run's.
    assert.ok(one.activation.decoded === st.decoded.min || one.activation.decoded === st.decoded.max, `${one.activation.decoded} vs ${JSON.stringify(st.decoded)}`);
    if (st.best === 0) {
      assert.deepEqual(m.topk, one.topk);
      assert.equal(m.activation.continuous, one.activation.continuous);
    } else assert.ok(m.activation.decoded! >= one.activation.decoded!);
    assert.equal(m.activation.decoded, st.decoded.max);
    assert.equal(m.settings.seeds, 2);
    assert.equal(one.settings.seeds, undefined, 'the default is not recorded (settings hashes unchanged)');
    assert.equal(m.verdict!.some((f) => f.code === 'unstable'), st.agreement < VERDICT_THRESHOLDS.agreement);
  });
  assert.equal(single[0]!.stability, undefined);
  assert.ok(multi.some((m) => m.stability!.best === 0) && multi.some((m) => m.stability!.best === 1), `both branches exercised: ${multi.map((m) => m.stability!.best)}`);
});

test('skip-path and unstable verdicts at their documented thresholds, on hand-made results', () => {
  const base = { status: 'ok' as const, settings: { objective: 'l1' }, objective: { initial: 500, final: 10 }, activation: { continuous: 99, decoded: 1, random: 0 } };
  const codes = (r: Parameters<typeof verdictOf>[0]) => verdictOf(r).map((f) => f.code).filter((c) => c !== 'uncalibrated');
  const stab = (agreement: number) => ({ seeds: 4, agreement, decoded: { min: 0, max: 1, mean: 0.5, std: 0.5 }, percentile: null, best: 0 });
  assert.deepEqual(codes({ ...base, skip: { share: 0.9 } }), ['skip-path']);
  assert.deepEqual(codes({ ...base, skip: { share: 0.8999 } }), []);
  assert.deepEqual(codes({ ...base, skip: { share: null, not_applicable: 'x' } }), []);
  assert.deepEqual(codes({ ...base, stability: stab(0.79) }), ['unstable']);
  // 0.8 as a mean of pair fractions may be 0.7999999999999999: still "agrees on 4 of 5", not unstable.
  assert.deepEqual(codes({ ...base, stability: stab((0 + 0.8 + 1 + 1 + 1 + 1) / 6) }), []);
  assert.deepEqual(codes({ ...base, stability: stab(0.8) }), []);
  assert.deepEqual(codes({ ...base, stability: null }), []);
  const [skip] = verdictOf({ ...base, skip: { share: 0.97 } });
  assert.match(skip!.message, /^explained by the skip path \(97 %/);
  const [unstable] = verdictOf({ ...base, stability: stab(0.5) });
  assert.match(unstable!.message, /^unstable across seeds \(4 starts agree on 50 %/);
});

// ---- logit effects ------------------------------------------------------------------------------------------------

/** Logits of a residual direction r through the final norm's linear part and the head, in float64, from raw weights. */
function directLogits(model: LoadedModel, r: Float64Array): Float64Array {
  const cfg = model.config;
  const D = cfg.dim;
  const get = (n: string) => toFloat32(model.tensors.get(n)!);
  let v = r;
  let g: Float32Array;
  let head: Float32Array;
  if (cfg.arch === 'gpt2') {
    const mean = r.reduce((a, b) => a + b, 0) / D;
    v = r.map((x) => x - mean);
    g = get('ln_f.weight');
    head = get('wte.weight');
  } else {
    g = get('output_norm.weight');
    head = get(cfg.tiedHead ? 'token_embd.weight' : 'output.weight');
  }
  return Float64Array.from({ length: cfg.vocabSize }, (_, t) => {
    let s = 0;
    for (let i = 0; i < D; i++) s += head[t * D + i]! * g[i]! * v[i]!;
    return s;
  });
}

function checkEffects(got: { promoted: { id: number; value: number }[]; suppressed: { id: number; value: number }[] }, expected: Float64Array): void {
  const order = Array.from(expected.keys()).sort((a, b) => expected[b]! - expected[a]!);
  const scale = Math.max(...expected.map(Math.abs));
  const tol = 1e-5 * scale;
  assert.equal(got.promoted.length, LOGIT_K);
  assert.equal(got.suppressed.length, LOGIT_K);
  got.promoted.forEach((x, i) => {
    assert.ok(Math.abs(x.value - expected[x.id]!) < tol, `promoted ${x.id}: ${x.value} vs ${expected[x.id]}`);
    assert.ok(Math.abs(x.value - expected[order[i]!]!) < tol, `promoted rank ${i}`);
  });
  const low = order.slice().reverse();
  got.suppressed.forEach((x, i) => {
    assert.ok(Math.abs(x.value - expected[x.id]!) < tol, `suppressed ${x.id}`);
    assert.ok(Math.abs(x.value - expected[low[i]!]!) < tol, `suppressed rank ${i}`);
  });
}

const unitSum = (D: number, fs: number[]) => Float64Array.from({ length: D }, (_, i) => (fs.includes(i) ? 1 : 0));

test('logit effects equal a direct float64 computation: resid feature, combined selection, mlp neuron (Llama, RMSNorm)', async () => {
  const vis = open(stories);
  const D = stories.config.dim;
  const F = stories.config.ffnDim;
  const [one] = await vis.visualize({ select: '[:, :, 3]', settings: settings({ steps: 2 }) });
  checkEffects(one!.logit_effects!, directLogits(stories, unitSum(D, [3])));
  const [comb] = await vis.visualize({ select: '[:, :, 4:7]', settings: settings({ steps: 2, hook: 'attn_out' }) });
  checkEffects(comb!.logit_effects!, directLogits(stories, unitSum(D, [4, 5, 6])));
  // mlp neuron 11 of block 2: its down-projection column (ffn_down is [D, F]).
  const [neuron] = await vis.visualize({ select: '[:, :, 11]', settings: settings({ steps: 2, hook: 'mlp', blocks: [1, 2] }) });
  const down = toFloat32(stories.tensors.get('blk.1.ffn_down.weight')!);
  checkEffects(neuron!.logit_effects!, directLogits(stories, Float64Array.from({ length: D }, (_, i) => down[i * F + 11]!)));
});

test('logit effects equal a direct float64 computation for GPT-2 (LayerNorm: centring and gain), a direction and an mlp neuron', async () => {
  const model = loadModel(fixturePath('hf/gpt2-f16'));
  const runner = new ModelRunner(model);
  runners.push(runner);
  const D = model.config.dim;
  const F = model.config.ffnDim;
  const direction = Float32Array.from({ length: D }, (_, i) => Math.cos(3 * i));
  const [res, dir] = await logitEffects(runner, model.tokenizer, 'resid', 1, [unitSumF32(D, [2]), direction]);
  checkEffects(res!, directLogits(model, unitSum(D, [2])));
  checkEffects(dir!, directLogits(model, Float64Array.from(direction)));
  const [neuron] = await logitEffects(runner, model.tokenizer, 'mlp', 2, [unitSumF32(F, [5])]);
  const cproj = toFloat32(model.tensors.get('h.1.mlp.c_proj.weight')!);
  checkEffects(neuron!, directLogits(model, Float64Array.from({ length: D }, (_, i) => cproj[5 * D + i]!)));
});

function unitSumF32(n: number, fs: number[]): Float32Array {
  return Float32Array.from(unitSum(n, fs));
}

test('atlas build --seeds K stores one record per selection, each with its stability', () => {
  const db = path.join(root, 'seeds.sqlite');
  const r = cli(['atlas', 'build', '--db', db, '--model', modelPath('stories260K.bin'), '--blocks', '1', '--features', '0-2', '--steps', '20', '--random-draws', '1', '--seeds', '2']);
  assert.equal(r.code, 0, r.stderr);
  const out = cli(['atlas', 'export', '--db', db]);
  assert.equal(out.code, 0, out.stderr);
  const records = (JSON.parse(out.stdout) as { records: RunResult[] }).records;
  assert.equal(records.length, 3);
  for (const rec of records) {
    assert.equal(rec.stability!.seeds, 2);
    assert.equal(typeof rec.skip!.share, 'number');
    assert.equal(rec.logit_effects!.promoted.length, LOGIT_K);
  }
});

// ---- CLI --------------------------------------------------------------------------------------------------------

test('visualize --seeds prints the stability, skip share and logit effects; --json carries them; bad --seeds is one line, exit 2', () => {
  const base = ['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, :, 3]', '--steps', '30', '--random-draws', '1'];
  const text = cli([...base, '--seeds', '2']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /skip path: \d+% of the optimum's activation/);
  assert.match(text.stdout, /seeds: 2 starts agree on \d+% of top-1 tokens/);
  assert.match(text.stdout, /logit effects, promoted .*: ".*" [+-]\d/);
  assert.match(text.stdout, /logit effects, suppressed: /);
  const json = cli([...base, '--seeds', '2', '--json']);
  const doc = JSON.parse(json.stdout) as { runs: RunResult[] };
  assert.equal(doc.runs.length, 1);
  assert.equal(doc.runs[0]!.stability!.seeds, 2);
  assert.equal(doc.runs[0]!.logit_effects!.promoted.length, LOGIT_K);
  for (const bad of ['0', '1.5', '65']) {
    const r = cli([...base, '--seeds', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^[^\n]*--seeds[^\n]*\n?$/);
  }
});
