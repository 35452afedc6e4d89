// Hugging Face-layout checkpoints (scripts/make_hf_fixtures.py) against their PyTorch float64 references:
// every hook, blocks from 1 and from > 1, logits, and gradients with respect to the input embeddings.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { embeddingTable } from '../src/features/embeddings.js';
import { hookWidth, type Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { fixturePath } from './helpers.js';
import { maxRelError } from './numeric.js';
import { objectiveStep } from '../src/features/objective.js';

interface Reference {
  ids: number[];
  cases: { blocks: [number, number] | null; hook: Hook | 'logits'; shape: [number, number]; values: number[][] }[];
  grads: { blocks: [number, number]; hook: Hook; feature: number; value: number; grad: number[][] }[];
}

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'llmf-cache-'));
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

// Every fixture folder with a reference.json (each family's generator script writes them), so a new family's
// fixtures are checked without listing them here.
const NAMES = readdirSync(fixturePath('hf')).filter((n) => existsSync(path.join(fixturePath('hf'), n, 'reference.json'))).sort();

test('the reference fixtures of the original families are all found', () => {
  for (const n of ['llama-gqa-bf16', 'qwen2-tied', 'llama3-rope-scaling', 'gpt2-f16', 'gpt2-prefixed-f32', 'pythia-parallel-f16', 'neox-sequential-f16', 'phi-f16', 'phi3-gqa-bf16', 'phi3-partial-tied-bf16']) assert.ok(NAMES.includes(n), n);
});

for (const name of NAMES) {
  const dir = fixturePath(`hf/${name}`);
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
  const model = loadModel(dir);
  const runner = new ModelRunner(model, { cacheDir });
  runners.push(runner);

  for (const c of ref.cases) {
    test(`${name}: ${c.blocks ? `blocks ${c.blocks.join('-')} ${c.hook}` : 'logits'} matches the reference`, async () => {
      const out = c.blocks ? await runner.hidden([ref.ids], c.blocks, c.hook as Hook) : await runner.logits([ref.ids]);
      assert.deepEqual(out.shape.slice(1), c.shape);
      const err = maxRelError(out.data, c.values.flat());
      assert.ok(err <= 1e-4, `relative error ${err.toExponential(2)}`);
    });
  }

  for (const c of ref.grads) {
    test(`${name}: gradient of blocks ${c.blocks.join('-')} ${c.hook} feature ${c.feature} matches the reference`, async () => {
      const T = ref.ids.length;
      const E = embeddingTable(model);
      const D = E.dim;
      const x = new Float32Array(T * D);
      ref.ids.forEach((id, t) => x.set(E.data.subarray(id * D, (id + 1) * D), t * D));
      const F = hookWidth(model.config, c.hook);
      const mask = new Float32Array(T * F);
      for (let t = 0; t < T; t++) mask[t * F + c.feature] = 1;
      const res = await objectiveStep(runner, c.blocks, c.hook, { x, l1: new Float32Array(T * F), lin: mask, C: Float32Array.of(0), report: mask }, { B: 1, T });
      assert.ok(Math.abs(res.act[0]! - c.value) <= 1e-4 * Math.max(1, Math.abs(c.value)), `value ${res.act[0]} vs ${c.value}`);
      const err = maxRelError(res.grad, c.grad.flat().map((g) => -g));
      assert.ok(err <= 1e-4, `gradient relative error ${err.toExponential(2)}`);
    });
  }
}

test('forward through the CLI on a Hugging Face folder (bf16 shards)', () => {
  const dir = fixturePath('hf/llama-gqa-bf16');
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
  const c = ref.cases.find((k) => k.blocks?.join('-') === '2-2' && k.hook === 'attn')!;
  const r = cli(['forward', '--model', dir, '--ids', ref.ids.join(','), '--blocks', '2', '--hook', 'attn', '--json'], { LLMF_CACHE: cacheDir });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(maxRelError(JSON.parse(r.stdout).values.flat(), c.values.flat()) <= 1e-4);
  const info = JSON.parse(cli(['inspect', '--model', dir]).stdout);
  assert.equal(info.format, 'hf');
  assert.equal(info.stored_dtype, 'BF16');
  assert.equal(info.kv_heads, 2);
  assert.equal(info.tied_head, false);
});
