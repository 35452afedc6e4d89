// Gemma, Gemma-2, Qwen3 and OLMo-2 beyond the float64 references of hf-reference.test.ts: where Gemma's √d scale
// lives (the optimised variable and the decode are in the embedding table's space), Gemma-2's sliding window as a
// dependency structure, a malformed config.json per family quirk (one line, exit 2), and visualize / atlas build on
// each family through the CLI.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { embeddingTable } from '../src/features/embeddings.js';
import { hookWidth } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { objectiveStep } from '../src/features/objective.js';
import { cli } from './cli-helpers.js';
import { fixturePath } from './helpers.js';
import { maxRelError } from './numeric.js';
import { startServer } from '../src/server/server.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-families-'));
const cacheDir = path.join(tmp, 'cache');
const env = { LLMF_CACHE: cacheDir };
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

const FIXTURES = { gemma: 'hf/gemma-bf16', gemma2: 'hf/gemma2-window-bf16', qwen3: 'hf/qwen3-bf16', olmo2: 'hf/olmo2-bf16-sharded' } as const;
const IDS = [1, 17, 42, 5, 88, 23, 64, 9];

function open(dir: string): ModelRunner {
  const r = new ModelRunner(loadModel(dir), { cacheDir });
  runners.push(r);
  return r;
}

test('Gemma: the input variable is in table space — table rows given as embeddings reproduce the ids\' hidden states', async () => {
  const dir = fixturePath(FIXTURES.gemma);
  const runner = open(dir);
  const E = embeddingTable(runner.model);
  const x = new Float32Array(IDS.length * E.dim);
  IDS.forEach((id, t) => x.set(E.data.subarray(id * E.dim, (id + 1) * E.dim), t * E.dim));
  const fromIds = await runner.hidden([IDS], [1, 2], 'resid');
  const fromRows = await runner.hiddenFromEmbeddings(x, [1, 2], 'resid', { B: 1, T: IDS.length });
  // The √d scale is applied once, inside the graph, on either path.
  assert.ok(maxRelError(fromRows.data, fromIds.data) <= 1e-6);
  // Scaled rows are a different input: the scale is not applied twice, nor left out.
  const scaled = x.map((v) => v * Math.sqrt(E.dim));
  const wrong = await runner.hiddenFromEmbeddings(scaled, [1, 2], 'resid', { B: 1, T: IDS.length });
  assert.ok(maxRelError(wrong.data, fromIds.data) > 1e-2);
});

test('Gemma: the gradient with respect to the table-space variable carries the √d factor (central differences)', async () => {
  const runner = open(fixturePath(FIXTURES.gemma));
  const E = embeddingTable(runner.model);
  const D = E.dim;
  const T = IDS.length;
  const F = hookWidth(runner.config, 'mlp');
  const x = new Float32Array(T * D);
  IDS.forEach((id, t) => x.set(E.data.subarray(id * D, (id + 1) * D), t * D));
  const lin = new Float32Array(T * F);
  for (let t = 0; t < T; t++) lin[t * F + 3] = 1;
  const feeds = (xs: Float32Array) => ({ x: xs, l1: new Float32Array(T * F), lin, C: Float32Array.of(0), report: lin });
  const base = await objectiveStep(runner, [1, 2], 'mlp', feeds(x), { B: 1, T });
  const h = 1e-2;
  for (const [t, d] of [[6, 5], [2, 11], [0, 30]] as const) {
    const xp = Float32Array.from(x);
    const xm = Float32Array.from(x);
    xp[t * D + d] += h;
    xm[t * D + d] -= h;
    const [p, m] = [await objectiveStep(runner, [1, 2], 'mlp', feeds(xp), { B: 1, T }), await objectiveStep(runner, [1, 2], 'mlp', feeds(xm), { B: 1, T })];
    const fd = (p.act[0]! - m.act[0]!) / (2 * h);
    // The loss is −activation for a linear objective, so its gradient is −∂act/∂x.
    const g = -base.grad[t * D + d]!;
    assert.ok(Math.abs(fd - g) <= 2e-2 * Math.max(1, Math.abs(fd)), `(${t}, ${d}): finite difference ${fd} vs gradient ${g}`);
  }
});

test('Gemma-2: on a sliding-window layer a position sees only the last sliding_window tokens; on a global layer it sees all', async () => {
  const dir = fixturePath(FIXTURES.gemma2);
  const runner = open(dir);
  const window = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')).sliding_window as number;
  assert.ok(IDS.length > window + 1);
  const changed = [IDS[0]! === 3 ? 4 : 3, ...IDS.slice(1)];
  const D = runner.config.dim;
  const row = (data: Float32Array, t: number) => data.subarray(t * D, (t + 1) * D);
  for (const [blocks, sliding] of [[[1, 1], true], [[2, 2], false], [[3, 3], true]] as const) {
    const a = (await runner.hidden([IDS], blocks, 'attn')).data;
    const b = (await runner.hidden([changed], blocks, 'attn')).data;
    // Token 0 is inside position (window − 1)'s window and outside position window's.
    assert.ok(maxRelError(row(a, window - 1), row(b, window - 1)) > 1e-3, `blocks ${blocks}: position ${window - 1}`);
    const later = maxRelError(row(a, window), row(b, window));
    if (sliding) assert.equal(later, 0, `blocks ${blocks} (sliding): position ${window} must not see token 0`);
    else assert.ok(later > 1e-3, `blocks ${blocks} (global): position ${window} must see token 0`);
  }
});

/** A copy of a fixture with config.json edited. */
function withConfig(fixture: string, edit: (json: Record<string, unknown>) => void): string {
  const dir = path.join(tmp, `${path.basename(fixture)}-${Math.random().toString(36).slice(2, 8)}`);
  cpSync(fixturePath(fixture), dir, { recursive: true });
  const file = path.join(dir, 'config.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(file, JSON.stringify(json));
  return dir;
}

const MALFORMED: [string, string, (j: Record<string, unknown>) => void, RegExp][] = [
  ['gemma', 'an untied head', (j) => (j.tie_word_embeddings = false), /tie_word_embeddings is false, but gemma's head is the embedding table \(tied\)/],
  ['gemma', 'exact GELU', (j) => (j.hidden_activation = 'gelu'), /hidden_activation gelu is not supported for gemma \(only gelu_pytorch_tanh\)/],
  ['gemma', 'an odd head_dim', (j) => (j.head_dim = 15), /head_dim 15 is odd; RoPE needs pairs/],
  ['gemma2', 'a negative soft cap', (j) => (j.attn_logit_softcapping = -50), /attn_logit_softcapping must be a positive number, got -50/],
  ['gemma2', 'a non-numeric final soft cap', (j) => (j.final_logit_softcapping = 'thirty'), /final_logit_softcapping must be a positive number, got "thirty"/],
  ['gemma2', 'query_pre_attn_scalar 0', (j) => (j.query_pre_attn_scalar = 0), /query_pre_attn_scalar must be a positive number, got 0/],
  ['gemma2', 'layer_types of the wrong length', (j) => (j.layer_types = ['sliding_attention']), /layer_types must list "sliding_attention" or "full_attention" for each of the 3 layers/],
  ['gemma2', 'a zero sliding window', (j) => (j.sliding_window = 0), /sliding_window must be a positive integer, got 0/],
  ['qwen3', 'sliding-window attention', (j) => (j.use_sliding_window = true), /use_sliding_window true is not supported for qwen3/],
  ['qwen3', 'a head_dim the q/k norms do not have', (j) => (j.head_dim = 8), /self_attn\.q_proj\.weight .* has shape \[64,32\], config\.json implies \[32,32\]/],
  ['qwen3', 'attention biases', (j) => (j.attention_bias = true), /attention_bias true is not supported for qwen3/],
  ['olmo2', 'heads that do not divide hidden_size', (j) => (j.num_attention_heads = 5), /hidden_size 32 is not divisible by num_attention_heads 5/],
  ['olmo2', 'KV heads its k projection and k_norm do not have', (j) => (j.num_key_value_heads = 4), /self_attn\.k_proj\.weight in model-00001-of-00002\.safetensors has shape \[16,32\], config\.json implies \[32,32\]/],
  ['olmo2', 'an unsupported rope_scaling', (j) => (j.rope_scaling = { rope_type: 'yarn', factor: 4 }), /rope_scaling type "yarn" is not supported/],
];

for (const [family, what, edit, pattern] of MALFORMED) {
  test(`${family}: a config.json with ${what} is a one-line error, exit 2`, () => {
    const dir = withConfig(FIXTURES[family as keyof typeof FIXTURES], edit);
    const r = cli(['forward', '--model', dir, '--ids', '1,2'], env);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^llm-features: /);
    assert.match(r.stderr, pattern);
  });
}

for (const [family, fixture] of Object.entries(FIXTURES)) {
  test(`${family}: visualize on a branch-output hook, atlas build through the CLI, and the viewer over that atlas`, async () => {
    const dir = fixturePath(fixture);
    const info = JSON.parse(cli(['inspect', '--model', dir], env).stdout);
    assert.equal(info.architecture, family);
    assert.equal(info.stored_dtype, 'BF16');
    const v = cli(['visualize', '--model', dir, '--blocks', '1-2', '--hook', 'attn_out', '--select', '[:, :, 0]', '--steps', '4', '--tokens', '4', '--random-draws', '1', '--json'], env);
    assert.equal(v.code, 0, v.stderr);
    const run = JSON.parse(v.stdout).runs[0];
    assert.equal(run.status, 'ok');
    assert.equal(run.ids.length, 4);
    assert.ok(run.objective.final < run.objective.initial, `objective ${run.objective.initial} → ${run.objective.final}`);
    const db = path.join(tmp, `${family}.db`);
    const b = cli(['atlas', 'build', '--model', dir, '--db', db, '--blocks', '1,2', '--hook', 'mlp_out', '--features', '0-1', '--steps', '3', '--tokens', '4', '--random-draws', '1', '--json'], env);
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /W:onnxruntime/);
    const e = cli(['atlas', 'export', '--db', db], env);
    assert.equal(e.code, 0, e.stderr);
    const records = JSON.parse(e.stdout).records as { hook: string; blocks?: unknown }[];
    assert.equal(records.length, 4);
    assert.ok(records.every((r) => r.hook === 'mlp_out'), JSON.stringify(records[0]).slice(0, 300));
    const server = await startServer({ db, port: 0 });
    try {
      const res = await fetch(`${server.url}/api/overview`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, new RegExp(path.basename(fixture)));
      assert.match(text, /mlp_out/);
    } finally {
      await server.close();
    }
  });
}

test('random-model --like for each family: fresh weights in the same layout (Gemma\'s (1 + w) norms stored as w = 0), every hook finite', async () => {
  for (const [family, fixture] of Object.entries(FIXTURES)) {
    const out = path.join(tmp, `random-${family}`);
    const r = cli(['random-model', '--like', fixturePath(fixture), '--out', out, '--seed', '5'], env);
    assert.equal(r.code, 0, r.stderr);
    const model = loadModel(out);
    assert.equal(model.config.arch, family);
    const like = loadModel(fixturePath(fixture));
    assert.deepEqual({ ...model.config, tiedHead: like.config.tiedHead }, like.config);
    const norm = toFloat32(model.tensors.get(family === 'olmo2' ? 'blk.0.post_attention_norm.weight' : 'blk.0.attn_norm.weight')!);
    assert.ok(norm.every((v) => v === (family.startsWith('gemma') ? 0 : 1)), `${family} norm init`);
    const runner = open(out);
    for (const hook of ['attn', 'attn_out', 'mlp', 'mlp_out', 'resid'] as const) {
      const h = await runner.hidden([IDS], [1, model.config.nLayers], hook);
      assert.ok(h.data.every(Number.isFinite) && h.data.some((v) => v !== 0), `${family} ${hook}`);
    }
  }
});
