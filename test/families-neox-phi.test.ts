// GPT-NeoX (Pythia), Phi and Phi-3 end to end: every command a user runs on a checkpoint of each family (visualize,
// atlas build, the viewer, random-model --like, inspect), and each family's config.json quirks, when malformed, as a
// one-line error (exit 2 through the CLI). The numerics against the float64 references are in hf-reference.test.ts.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { loadModel } from '../src/models/load.js';
import { startServer } from '../src/server/server.js';
import { cli } from './cli-helpers.js';
import { fixturePath } from './helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-neox-phi-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const env = { LLMF_CACHE: path.join(tmp, 'cache') };

const FAMILIES = [
  { family: 'gpt_neox', fixture: 'pythia-parallel-f16', dtype: 'F16', hook: 'mlp_out' },
  { family: 'phi', fixture: 'phi-f16', dtype: 'F16', hook: 'attn_out' },
  { family: 'phi3', fixture: 'phi3-gqa-bf16', dtype: 'BF16', hook: 'mlp' },
] as const;

for (const { family, fixture, dtype, hook } of FAMILIES) {
  const dir = fixturePath(`hf/${fixture}`);

  test(`${family}: visualize, atlas build and the viewer run on ${fixture}`, async () => {
    const v = cli(['visualize', '--model', dir, '--blocks', '1-2', '--hook', hook, '--select', '[:, :, 3]', '--steps', '4', '--tokens', '4', '--random-draws', '2', '--json'], env);
    assert.equal(v.code, 0, v.stderr);
    const out = JSON.parse(v.stdout);
    assert.equal(out.model.architecture, family);
    const [run] = out.runs;
    assert.equal(run.status, 'ok');
    assert.equal(run.hook, hook);
    assert.equal(run.ids.length, 4);
    // Four optimiser steps ran to finite losses (the gradient itself is checked against the reference elsewhere).
    assert.equal(run.loss.length, 4);
    assert.ok(run.loss.every(([, l]: [number, number]) => Number.isFinite(l)));

    const db = path.join(tmp, `${fixture}.db`);
    const b = cli(['atlas', 'build', '--model', dir, '--db', db, '--blocks', '1,2', '--hook', hook, '--features', '0-1', '--steps', '2', '--tokens', '3', '--random-draws', '2', '--json'], env);
    assert.equal(b.code, 0, b.stderr);
    const built = JSON.parse(b.stdout.trim().split('\n').at(-1)!);
    assert.equal(built.inserted, 4);
    assert.equal(built.failed, 0);

    const server = await startServer({ db, port: 0 });
    try {
      const overview = (await (await fetch(`${server.url}/api/overview`)).json()) as Record<string, unknown>;
      assert.match(JSON.stringify(overview), new RegExp(fixture));
      const grid = await fetch(`${server.url}/api/grid?model=${fixture}&blocks=2&hook=${hook}`);
      assert.equal(grid.status, 200, await grid.clone().text());
      assert.match(await grid.text(), /"feature":1/);
    } finally {
      await server.close();
    }
  });

  test(`${family}: random-model --like writes a control that opens with the same config; inspect reports ${dtype}`, () => {
    const info = JSON.parse(cli(['inspect', '--model', dir], env).stdout);
    assert.equal(info.architecture, family);
    assert.equal(info.stored_dtype, dtype);
    // Pythia rotates 4 of 16 head dims (rotary_pct 0.25), Phi 4 of 8 (0.5), Phi-3 all 8; both Pythia and Phi are parallel.
    assert.deepEqual([info.rope.rotary_dim, info.parallel_residual], { gpt_neox: [4, true], phi: [4, true], phi3: [8, false] }[family]);
    const out = path.join(tmp, `random-${fixture}`);
    const r = cli(['random-model', '--like', dir, '--out', out, '--seed', '5', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const like = loadModel(dir);
    const back = loadModel(out);
    assert.deepEqual(back.config, like.config);
    const f = cli(['forward', '--model', out, '--ids', '1,2,3', '--blocks', '1-2', '--hook', hook, '--json'], env);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(JSON.parse(f.stdout).values.length, 3);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Malformed config.json, one quirk at a time

/** A copy of a fixture folder with config.json edited. */
let copies = 0;
function withConfig(fixture: string, edit: (c: Record<string, unknown>) => void): string {
  const dir = path.join(tmp, `bad-${copies++}-${fixture}`);
  cpSync(fixturePath(`hf/${fixture}`), dir, { recursive: true });
  const file = path.join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
  return dir;
}

function refused(dir: string, re: RegExp): void {
  assert.throws(
    () => loadModel(dir),
    (e: unknown) => e instanceof UserError && !e.message.includes('\n') && re.test(e.message),
  );
}

const BAD: [string, string, (c: Record<string, unknown>) => void, RegExp][] = [
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.hidden_act = 'gelu_new'), /config\.json: hidden_act gelu_new is not supported for gpt_neox \(only gelu\)/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.rotary_pct = 0.1), /rotary_pct 0\.1 of head size 16 rotates 1 dimensions; rotary embedding needs a positive even count/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.rotary_pct = 1.5), /rotary_pct must be in \(0, 1\], got 1\.5/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.use_parallel_residual = 'yes'), /use_parallel_residual must be true or false, got "yes"/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.rope_scaling = { type: 'linear', factor: 2 }), /rope_scaling "linear" is not supported for gpt_neox/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.rotary_emb_base = -1), /rotary_emb_base must be a positive number, got -1/],
  // attention_bias false while the checkpoint stores the biases: refused, not silently dropped.
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.attention_bias = false), /attention\.(query_key_value|dense)\.bias in model-0000\d-of-00002\.safetensors is not part of the architecture/],
  ['gpt_neox', 'neox-sequential-f16', (c) => (c.attention_bias = true), /tensor gpt_neox\.layers\.0\.attention\.query_key_value\.bias is missing/],
  ['gpt_neox', 'pythia-parallel-f16', (c) => (c.hidden_size = 31), /hidden_size 31 is not divisible by num_attention_heads 2/],
  ['phi', 'phi-f16', (c) => (c.hidden_act = 'gelu'), /hidden_act gelu is not supported for phi \(only gelu_new\)/],
  ['phi', 'phi-f16', (c) => (c.partial_rotary_factor = 0), /partial_rotary_factor must be a positive number, got 0/],
  ['phi', 'phi-f16', (c) => (c.partial_rotary_factor = 0.2), /partial_rotary_factor 0\.2 of head size 8 rotates 1 dimensions/],
  ['phi', 'phi-f16', (c) => (c.qk_layernorm = true), /qk_layernorm true is not supported for phi/],
  ['phi', 'phi-f16', (c) => (c.num_key_value_heads = 3), /4 attention heads are not divisible by 3 KV heads/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.rope_scaling = { type: 'longrope', short_factor: [1], long_factor: [1] }), /rope_scaling "longrope" is not supported for phi3 \(only none\)/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.hidden_act = 'gelu'), /hidden_act gelu is not supported for phi3 \(only silu\)/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.num_key_value_heads = 4), /tensor model\.layers\.0\.self_attn\.qkv_proj\.weight in .* has shape \[64,32\], config\.json implies \[96,32\]/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.intermediate_size = 64), /mlp\.gate_up_proj\.weight in .* has shape \[96,32\], config\.json implies \[128,32\]/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.partial_rotary_factor = 1.25), /partial_rotary_factor must be in \(0, 1\], got 1\.25/],
  ['phi3', 'phi3-gqa-bf16', (c) => (c.sliding_window = 0), /sliding_window must be a positive integer, got 0/],
  ['phi3', 'phi3-partial-tied-bf16', (c) => (c.tie_word_embeddings = false), /tie_word_embeddings is false but the checkpoint has no lm_head\.weight/],
];

test('malformed config.json quirks of gpt_neox, phi and phi3 are one-line errors naming the file and key', () => {
  for (const [, fixture, edit, re] of BAD) refused(withConfig(fixture, edit), re);
});

test('through the CLI a malformed config.json is one stderr line, exit 2, nothing on stdout', () => {
  for (const family of ['gpt_neox', 'phi', 'phi3']) {
    const [, fixture, edit, re] = BAD.find((b) => b[0] === family)!;
    const r = cli(['inspect', '--model', withConfig(fixture, edit)], env);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('phi3: the context is capped at sliding_window (longer inputs are refused, not attended without the window)', async () => {
  const dir = withConfig('phi3-gqa-bf16', (c) => (c.sliding_window = 4));
  assert.equal(loadModel(dir).config.maxSeqLen, 4);
  const r = cli(['forward', '--model', dir, '--ids', '1,2,3,4,5', '--blocks', '1'], env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /5 tokens exceed the model's context of 4/);
  assert.equal(loadModel(fixturePath('hf/phi3-gqa-bf16')).config.maxSeqLen, 64);
});

test('parallel blocks: an mlp request builds no attention (no unused rotary constants, so onnxruntime prints nothing)', () => {
  for (const fixture of ['pythia-parallel-f16', 'phi-f16']) {
    const r = cli(['forward', '--model', fixturePath(`hf/${fixture}`), '--ids', '1,2,3', '--blocks', '1-2', '--hook', 'mlp', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  }
});
