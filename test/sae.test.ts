// SAE latents as features: hand-made SAEs of each architecture against a direct float64 computation from the hook
// output, bad SAE files, and (below) the trained fixture against scripts/train_sae.py's float64 PyTorch reference.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { objectiveStep } from '../src/features/objective.js';
import { loadSae, saeFeatureMap, SaeStatsAccumulator } from '../src/features/sae.js';
import { readSae, type SaeFile } from '../src/formats/sae.js';
import { loadModel } from '../src/models/load.js';
import { readCorpus, tokenizeStories } from '../src/features/corpus.js';
import { uniformStream } from '../src/util/random.js';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath } from './helpers.js';
import { f32Bytes, writeSafetensors } from './st-writer.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-sae-'));
const model = loadModel(modelPath('stories260K.bin'));
const runner = new ModelRunner(model);
after(() => runner.close());
const D = model.config.dim; // 64: the resid width
const IDS = [[1, 403, 407, 261, 378, 432, 317]];
const T = IDS[0]!.length;

interface Hand {
  W_enc: number[];
  b_enc: number[];
  W_dec: number[];
  b_dec: number[];
  threshold?: number[];
}

/** A random SAE with d_sae latents on a d_in hook, scaled so that some pre-activations are positive, some not. */
function handMade(dIn: number, dSae: number, seed: number): Hand {
  const r = uniformStream(seed);
  const u = () => 2 * r() - 1;
  return {
    W_enc: Array.from({ length: dIn * dSae }, () => 0.3 * u()),
    b_enc: Array.from({ length: dSae }, () => 0.5 * u()),
    W_dec: Array.from({ length: dSae * dIn }, () => u()),
    b_dec: Array.from({ length: dIn }, () => 0.2 * u()),
    threshold: Array.from({ length: dSae }, () => 0.3 * r()),
  };
}

function writeSaeLens(name: string, cfg: Record<string, unknown>, h: Hand, dIn: number, dSae: number, opts: { omit?: string; shapes?: Record<string, number[]> } = {}): string {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'cfg.json'), JSON.stringify(cfg));
  const specs = [
    { name: 'W_enc', shape: [dIn, dSae], data: h.W_enc },
    { name: 'b_enc', shape: [dSae], data: h.b_enc },
    { name: 'W_dec', shape: [dSae, dIn], data: h.W_dec },
    { name: 'b_dec', shape: [dIn], data: h.b_dec },
    ...(h.threshold ? [{ name: 'threshold', shape: [dSae], data: h.threshold }] : []),
  ].filter((t) => t.name !== opts.omit);
  writeSafetensors(path.join(d, 'sae_weights.safetensors'), specs.map((t) => ({ name: t.name, dtype: 'F32', shape: opts.shapes?.[t.name] ?? t.shape, data: f32Bytes(t.data) })));
  return d;
}

const baseCfg = (extra: Record<string, unknown>, dSae = 6) => ({ d_in: D, d_sae: dSae, hook_name: 'blocks.1.hook_resid_post', apply_b_dec_to_input: true, normalize_activations: 'none', ...extra });

/** SAELens's encode, written out in float64 from the definition (torch.topk keeps the k largest; ties do not occur here). */
function directEncode(h: Hand, arch: string, k: number | null, apply: boolean, x: ArrayLike<number>, dIn: number, dSae: number): { pre: number[]; post: number[] } {
  const pre: number[] = [];
  for (let i = 0; i < dSae; i++) {
    let s = h.b_enc[i]!;
    for (let j = 0; j < dIn; j++) s += (x[j]! - (apply ? h.b_dec[j]! : 0)) * h.W_enc[j * dSae + i]!;
    pre.push(s);
  }
  const relu = pre.map((v) => Math.max(0, v));
  if (arch === 'standard') return { pre, post: relu };
  if (arch === 'jumprelu') return { pre, post: relu.map((v, i) => (pre[i]! > h.threshold![i]! ? v : 0)) };
  const order = pre.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, k!).map((p) => p[1]);
  return { pre, post: relu.map((v, i) => (order.includes(i) ? v : 0)) };
}

const ARCHS: { arch: string; cfg: Record<string, unknown>; k: number | null; apply: boolean }[] = [
  { arch: 'standard', cfg: { architecture: 'standard' }, k: null, apply: true },
  { arch: 'jumprelu', cfg: { architecture: 'jumprelu', apply_b_dec_to_input: false }, k: null, apply: false },
  { arch: 'topk', cfg: { architecture: 'topk', k: 2 }, k: 2, apply: true },
  // SAELens 4.x-5.x spelled TopK as a standard SAE with a topk activation function
  { arch: 'topk', cfg: { architecture: 'standard', activation_fn_str: 'topk', activation_fn_kwargs: { k: 3 } }, k: 3, apply: true },
];

for (const [n, a] of ARCHS.entries()) {
  test(`hand-made ${a.arch} SAE (${JSON.stringify(a.cfg)}): graph latents equal SAELens's encode computed directly from the hook output`, async () => {
    const dSae = 6;
    const h = handMade(D, dSae, 10 + n);
    const sae = readSae(writeSaeLens(`arch${n}`, baseCfg(a.cfg, dSae), h, D, dSae));
    assert.equal(sae.architecture, a.arch);
    assert.equal(sae.k, a.k);
    const hook = await runner.hidden(IDS, [1, 2], 'resid');
    const post = await runner.hidden(IDS, [1, 2], 'resid', saeFeatureMap(sae));
    assert.deepEqual(post.shape, [1, T, dSae]);
    let active = 0;
    let inactive = 0;
    for (let t = 0; t < T; t++) {
      const want = directEncode(h, a.arch, a.k, a.apply, hook.data.subarray(t * D, (t + 1) * D), D, dSae);
      for (let i = 0; i < dSae; i++) {
        const got = post.data[t * dSae + i]!;
        assert.ok(Math.abs(got - want.post[i]!) <= 1e-5 * Math.max(1, Math.abs(want.post[i]!)), `t ${t} latent ${i}: ${got} vs ${want.post[i]}`);
        if (want.post[i]! > 0) active++;
        else inactive++;
      }
      if (a.k !== null) assert.ok(want.post.filter((v) => v > 0).length <= a.k);
    }
    // The check is not vacuous: both gated-on and gated-off latents occur.
    assert.ok(active > 0 && inactive > 0, `${active} active, ${inactive} inactive`);

    // The objective's pre side: d Σ_t pre[t, i] / dx, compared with a central finite difference of the direct pre.
    const map = saeFeatureMap(sae, 'pre');
    const F = dSae;
    const lin = new Float32Array(T * F);
    for (let t = 0; t < T; t++) lin[t * F + 1] = 1;
    const x = new Float32Array(T * D);
    const table = model.tensors.get('token_embd.weight')!;
    const { readTensorF32 } = await import('../src/formats/binary.js');
    const emb = readTensorF32(table);
    IDS[0]!.forEach((id, t) => x.set(emb.subarray(id * D, (id + 1) * D), t * D));
    const res = await objectiveStep(runner, [1, 2], 'resid', { x, l1: new Float32Array(T * F), lin, C: new Float32Array(1), report: lin }, { B: 1, T }, map);
    const preSum = async (xx: Float32Array) => {
      const o = await runner.hiddenFromEmbeddings(xx, [1, 2], 'resid', { B: 1, T });
      let s = 0;
      for (let t = 0; t < T; t++) s += directEncode(h, a.arch, a.k, a.apply, o.data.subarray(t * D, (t + 1) * D), D, dSae).pre[1]!;
      return s;
    };
    assert.ok(Math.abs(-res.loss[0]! - (await preSum(x))) <= 1e-4 * Math.max(1, Math.abs(res.loss[0]!)), 'loss = −Σ pre');
    for (const [t, j] of [[0, 3], [2, 10], [T - 1, 63]] as const) {
      const e = 1e-2;
      const xp = x.slice();
      const xm = x.slice();
      xp[t * D + j]! += e;
      xm[t * D + j]! -= e;
      const fd = ((await preSum(xp)) - (await preSum(xm))) / (2 * e);
      const got = -res.grad[t * D + j]!;
      assert.ok(Math.abs(fd - got) <= 2e-3 * Math.max(1, Math.abs(fd)), `d pre / dx[${t},${j}]: graph ${got}, finite difference ${fd}`);
    }
  });
}

function npy(shape: number[], data: number[]): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(Float32Array.from(data).buffer)]);
}

/** A stored (uncompressed) ZIP, as numpy.savez writes it. */
function zip(members: [string, Buffer][]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of members) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const l = Buffer.alloc(30);
    l.writeUInt32LE(0x04034b50, 0);
    l.writeUInt16LE(20, 4);
    l.writeUInt32LE(crc, 14);
    l.writeUInt32LE(data.length, 18);
    l.writeUInt32LE(data.length, 22);
    l.writeUInt16LE(n.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(data.length, 20);
    c.writeUInt32LE(data.length, 24);
    c.writeUInt16LE(n.length, 28);
    c.writeUInt32LE(offset, 42);
    locals.push(l, n, data);
    central.push(c, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

test('Gemma Scope params.npz: JumpReLU without b_dec on the input, hook from --hook; equals the direct encode', async () => {
  const dSae = 5;
  const h = handMade(D, dSae, 42);
  const file = path.join(dir, 'gs', 'params.npz');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, zip([
    ['W_enc.npy', npy([D, dSae], h.W_enc)],
    ['W_dec.npy', npy([dSae, D], h.W_dec)],
    ['b_enc.npy', npy([dSae], h.b_enc)],
    ['b_dec.npy', npy([D], h.b_dec)],
    ['threshold.npy', npy([dSae], h.threshold!)],
  ]));
  for (const p of [file, path.dirname(file)]) {
    const sae = readSae(p);
    assert.equal(sae.format, 'gemma-scope-npz');
    assert.equal(sae.architecture, 'jumprelu');
    assert.equal(sae.hookName, null);
    assert.equal(sae.applyBDecToInput, false);
    const hook = await runner.hidden(IDS, [1, 2], 'resid');
    const post = await runner.hidden(IDS, [1, 2], 'resid', saeFeatureMap(sae));
    for (let t = 0; t < T; t++) {
      const want = directEncode(h, 'jumprelu', null, false, hook.data.subarray(t * D, (t + 1) * D), D, dSae).post;
      want.forEach((v, i) => assert.ok(Math.abs(post.data[t * dSae + i]! - v) <= 1e-5 * Math.max(1, v)));
    }
  }
  // No cfg: the CLI needs --hook; with it the SAE describes itself.
  const noHook = cli(['inspect', '--model', modelPath('stories260K.bin'), '--sae', file]);
  assert.equal(noHook.code, 2);
  assert.match(noHook.stderr, /^llm-features: --sae: .*params\.npz has no cfg\.json naming its hook: give --hook/);
  const ok = cli(['inspect', '--model', modelPath('stories260K.bin'), '--sae', file, '--hook', 'blocks.1.hook_resid_post']);
  assert.equal(ok.code, 0, ok.stderr);
  const j = JSON.parse(ok.stdout) as { sae: { architecture: string; d_sae: number; blocks: number[] } };
  assert.deepEqual([j.sae.architecture, j.sae.d_sae, j.sae.blocks], ['jumprelu', 5, [1, 2]]);
});

test('bad SAE files: one line naming --sae and the file, exit 2', () => {
  const dSae = 4;
  const h = handMade(D, dSae, 7);
  const cases: [string, string, RegExp][] = [
    ['missing key', writeSaeLens('bad-missing', baseCfg({}, dSae), h, D, dSae, { omit: 'b_enc' }), /has no tensor "b_enc"/],
    ['wrong shape', writeSaeLens('bad-shape', baseCfg({}, dSae), { ...h, b_enc: h.b_enc.slice(0, 3) }, D, dSae, { shapes: { b_enc: [3] } }), /b_enc has shape \[3\], expected \[4\]/],
    ['NaN', writeSaeLens('bad-nan', baseCfg({}, dSae), { ...h, W_enc: h.W_enc.map((v, i) => (i === 5 ? NaN : v)) }, D, dSae), /W_enc element 5 is NaN; SAE weights must be finite/],
    ['jumprelu without threshold', writeSaeLens('bad-thr', baseCfg({ architecture: 'jumprelu' }, dSae), { ...h, threshold: undefined }, D, dSae), /has no tensor "threshold"/],
    ['gated', writeSaeLens('bad-gated', baseCfg({ architecture: 'gated' }, dSae), h, D, dSae), /architecture "gated" is not supported \(supported: standard, jumprelu, topk\)/],
    ['normalize', writeSaeLens('bad-norm', baseCfg({ normalize_activations: 'expected_average_only_in' }, dSae), h, D, dSae), /normalize_activations "expected_average_only_in" is not supported \(only "none"/],
    ['topk without k', writeSaeLens('bad-k', baseCfg({ architecture: 'topk' }, dSae), h, D, dSae), /a topk SAE needs an integer "k" in 1-4/],
    ['SAELens 2.x', writeSaeLens('bad-v2', { d_in: D, d_sae: dSae, hook_point: 'blocks.1.hook_resid_post' }, h, D, dSae), /SAELens 2\.x config \("hook_point"\)/],
    ['no files', (() => { const d = path.join(dir, 'empty'); mkdirSync(d, { recursive: true }); return d; })(), /has neither cfg\.json \(SAELens\) nor params\.npz/],
  ];
  for (const [what, p, re] of cases) {
    const r = cli(['inspect', '--model', modelPath('stories260K.bin'), '--sae', p]);
    assert.equal(r.code, 2, `${what}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
    assert.match(lines[0]!, /^llm-features: --sae: /, what);
    assert.ok(lines[0]!.includes(p), `${what}: names the file`);
    assert.match(lines[0]!, re, what);
  }
  // d_in ≠ the hook's width: names both.
  const narrow = handMade(32, dSae, 8);
  const p = writeSaeLens('bad-width', { ...baseCfg({}, dSae), d_in: 32 }, narrow, 32, dSae);
  const r = cli(['visualize', '--model', modelPath('stories260K.bin'), '--sae', p, '--select', '[:, :, 0]', '--steps', '1']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^llm-features: --sae: the SAE's d_in is 32, but the resid hook of this llama model has width 64/);
  // A --hook that contradicts the cfg's hook_name.
  const c = cli(['visualize', '--model', modelPath('stories260K.bin'), '--sae', writeSaeLens('ok', baseCfg({}, dSae), h, D, dSae), '--hook', 'blocks.0.hook_resid_post', '--select', '[:, :, 0]']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /^llm-features: --hook: blocks\.0\.hook_resid_post contradicts the SAE's hook_name blocks\.1\.hook_resid_post/);
});

test('L0, FVU and dead latents: the accumulator against a direct computation', () => {
  const dIn = 3;
  const dSae = 4;
  const h = handMade(dIn, dSae, 3);
  const sae: SaeFile = { W_dec: Float32Array.from(h.W_dec), b_dec: Float32Array.from(h.b_dec), dIn, dSae } as SaeFile;
  const X = [[1, 2, 3], [0, -1, 2], [4, 0, 1]];
  const P = [[0, 1.5, 0, 0], [0.5, 0, 0, 0], [0, 2, 0, 0]];
  const acc = new SaeStatsAccumulator(sae);
  X.forEach((x, i) => acc.add(Float32Array.from(x), 0, Float32Array.from(P[i]!), 0));
  const r = acc.result();
  let sse = 0;
  let tot = 0;
  for (let j = 0; j < dIn; j++) {
    const mean = X.reduce((s, x) => s + x[j]!, 0) / 3;
    X.forEach((x, i) => {
      const rec = sae.b_dec[j]! + P[i]!.reduce((s, a, l) => s + a * sae.W_dec[l * dIn + j]!, 0);
      sse += (x[j]! - rec) ** 2;
      tot += (x[j]! - mean) ** 2;
    });
  }
  assert.equal(r.tokens, 3);
  assert.ok(Math.abs(r.l0 - 1) < 1e-12); // 3 active values over 3 tokens
  assert.equal(r.dead, 2);
  assert.ok(Math.abs(r.fvu - sse / tot) < 1e-9, `${r.fvu} vs ${sse / tot}`);
});

test('loadSae reads a folder once per process', () => {
  const h = handMade(D, 3, 9);
  const p = writeSaeLens('cached', baseCfg({}, 3), h, D, 3);
  assert.equal(loadSae(p), loadSae(p));
});

// ---- end to end over the trained fixture SAE (test/fixtures/sae-stories260K) ----------------------------------
const FIXTURE = fixturePath('sae-stories260K');
const MODEL = modelPath('stories260K.bin');

test('visualize --sae: a latent is optimised, and its decoded activation is the latent re-evaluated on the decoded tokens', async () => {
  const r = cli(['visualize', '--model', MODEL, '--sae', FIXTURE, '--select', '[:, :, 3:5]', '--steps', '40', '--optimizer', 'adam', '--lr', '0.1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const run = (JSON.parse(r.stdout) as { runs: RunResultLike[] }).runs[0]!;
  assert.equal(run.status, 'ok');
  assert.deepEqual(run.blocks, [1, 3]); // from the cfg's hook_name blocks.2.hook_resid_post
  assert.equal(run.hook, 'resid');
  const sae = loadSae(FIXTURE);
  assert.equal(run.settings.sae, sae.hash);
  assert.deepEqual(run.sae, { hash: sae.hash, path: FIXTURE, architecture: 'topk', d_sae: 512, hook_name: 'blocks.2.hook_resid_post', objective: 'pre' });
  // Independent re-evaluation: the mean of latents 3 and 4 over all positions of the decoded ids.
  const post = await runner.hidden([run.ids], [1, 3], 'resid', saeFeatureMap(sae));
  let s = 0;
  for (let t = 0; t < run.ids.length; t++) s += post.data[t * 512 + 3]! + post.data[t * 512 + 4]!;
  const want = s / (2 * run.ids.length);
  assert.ok(Math.abs(run.activation.decoded! - want) <= 1e-4 * Math.max(1, want), `decoded ${run.activation.decoded} vs ${want}`);
  // The objective drove the pre-activation up from its random start.
  assert.ok(run.objective.final! < run.objective.initial!, `${run.objective.initial} → ${run.objective.final}`);
  // --sae-objective post is recorded; without --sae it is refused.
  const p = cli(['visualize', '--model', MODEL, '--sae', FIXTURE, '--sae-objective', 'post', '--select', '[:, :, 3]', '--steps', '2', '--json']);
  assert.equal(p.code, 0, p.stderr);
  assert.equal((JSON.parse(p.stdout) as { runs: RunResultLike[] }).runs[0]!.settings.sae_objective, 'post');
  const n = cli(['visualize', '--model', MODEL, '--blocks', '1', '--sae-objective', 'post', '--select', '[:, :, 3]']);
  assert.equal(n.code, 2);
  assert.match(n.stderr, /--sae-objective: only with --sae/);
});

interface RunResultLike {
  status: string;
  blocks: number[];
  hook: string;
  ids: number[];
  settings: Record<string, unknown>;
  sae?: unknown;
  activation: { decoded: number | null; continuous: number | null };
  objective: { initial: number | null; final: number | null };
  refined?: { activation: number; start_activation: number; ids: number[] } | null;
}

test('--refine gcg on a latent: the refined activation is the latent on the refined ids, never below its start', async () => {
  const r = cli(['visualize', '--model', MODEL, '--sae', FIXTURE, '--select', '[:, :, 7]', '--steps', '20', '--optimizer', 'adam', '--lr', '0.1', '--tokens', '4',
    '--refine', 'gcg', '--refine-steps', '3', '--candidates', '16', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const run = (JSON.parse(r.stdout) as { runs: RunResultLike[] }).runs[0]!;
  const f = run.refined!;
  assert.ok(f, 'refined');
  assert.ok(f.activation >= f.start_activation - 1e-6);
  const post = await runner.hidden([f.ids], [1, 3], 'resid', saeFeatureMap(loadSae(FIXTURE)));
  let s = 0;
  for (let t = 0; t < f.ids.length; t++) s += post.data[t * 512 + 7]!;
  assert.ok(Math.abs(f.activation - s / f.ids.length) <= 1e-4 * Math.max(1, Math.abs(f.activation)), `${f.activation} vs ${s / f.ids.length}`);
});

test('atlas build and atlas scan over latents; inspect --sae --corpus', async () => {
  const db = path.join(dir, 'sae-atlas.db');
  const b = cli(['atlas', 'build', '--model', MODEL, '--db', db, '--sae', FIXTURE, '--features', '0-2', '--steps', '5', '--json']);
  assert.equal(b.code, 0, b.stderr);
  const corpus = path.join(dir, 'corpus.txt');
  writeFileSync(corpus, 'Once upon a time there was a little dog.\n<|endoftext|>\nTom had a red ball. He liked to play.\n');
  const s = cli(['atlas', 'scan', '--model', MODEL, '--db', db, '--sae', FIXTURE, '--features', '0-2', '--corpus', corpus, '--json']);
  assert.equal(s.code, 0, s.stderr);
  const out = cli(['atlas', 'export', '--db', db, '--format', 'json']);
  assert.equal(out.code, 0, out.stderr);
  const ex = JSON.parse(out.stdout) as { records: (RunResultLike & { feature: number; blocks: number[] })[]; scans: { settings: Record<string, unknown>; features: { feature: number; tokens: { max: number; count: number } }[] }[] };
  const sae = loadSae(FIXTURE);
  assert.deepEqual(ex.records.map((x) => x.feature).sort(), [0, 1, 2]);
  for (const rec of ex.records) assert.equal(rec.settings.sae, sae.hash);
  assert.equal(ex.scans.length, 1);
  assert.equal(ex.scans[0]!.settings.sae, sae.hash);
  // A scan's per-token maximum of a latent is the latent's maximum computed directly over the same windows.
  // The windows as a scan cuts them (BOS in front; one window per story here).
  const stories = tokenizeStories(model.tokenizer!, readCorpus(corpus).stories, { bos: true });
  for (const f of ex.scans[0]!.features) {
    let max = -Infinity;
    for (const ids of stories) {
      const post = await runner.hidden([ids], [1, 3], 'resid', saeFeatureMap(sae));
      for (let t = 1; t < ids.length; t++) max = Math.max(max, post.data[t * 512 + f.feature]!);
    }
    assert.ok(Math.abs(f.tokens.max - max) <= 1e-4 * Math.max(1, max), `latent ${f.feature}: scan max ${f.tokens.max} vs ${max}`);
  }
  const i = cli(['inspect', '--model', MODEL, '--sae', FIXTURE, '--corpus', corpus]);
  assert.equal(i.code, 0, i.stderr);
  const j = JSON.parse(i.stdout) as { sae: { k: number; hash: string }; corpus: { l0: number; fvu: number; fve: number; dead_latents: number; tokens: number } };
  assert.equal(j.sae.hash, sae.hash);
  assert.equal(j.corpus.tokens, stories.reduce((n, ids) => n + ids.length - 1, 0));
  assert.ok(j.corpus.l0 > 0 && j.corpus.l0 <= j.sae.k, `L0 ${j.corpus.l0}`);
  assert.ok(j.corpus.fvu > 0 && j.corpus.fvu < 1 && Math.abs(j.corpus.fve + j.corpus.fvu - 1) < 1e-12);
  assert.ok(j.corpus.dead_latents > 0 && j.corpus.dead_latents < 512);
});

test('--sae through --queue is refused in one line before anything is opened or written (atlas build and atlas scan)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmf-sae-queue-'));
  const db = path.join(dir, 'a.db');
  // Port 1: no Redis there — the refusal must come first, without trying to reach it.
  const queue = ['--queue', 'redis://127.0.0.1:1'];
  const build = cli(['atlas', 'build', '--model', MODEL, '--sae', FIXTURE, '--db', db, '--features', '0-1', ...queue]);
  const scan = cli(['atlas', 'scan', '--model', MODEL, '--sae', FIXTURE, '--db', db, '--features', '0-1', '--corpus', path.join(dir, 'none.txt'), ...queue]);
  for (const [r, what] of [[build, 'build'], [scan, 'scan']] as const) {
    assert.equal(r.code, 2, what);
    assert.match(r.stderr, /^llm-features: --sae: not through --queue yet \(.+\)\n$/, what);
    assert.equal(r.stdout, '');
  }
  assert.equal(existsSync(db), false);
});
