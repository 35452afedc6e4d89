// attribute's gradient against the PyTorch float64 references (stories260K and Hugging Face layouts), through the CLI.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';

const cache = mkdtempSync(path.join(os.tmpdir(), 'llmf-attr-'));

function check(model: string, ids: number[], blocks: number[], hook: string, select: string, value: number, grad: number[][]) {
  const r = cli(['attribute', '--model', model, '--ids', ids.join(','), '--blocks', blocks.join('-'), '--hook', hook, '--select', select, '--json'], { LLMF_CACHE: cache });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.ok(Math.abs(out.activation - value) <= 1e-4 * Math.max(1, Math.abs(value)), `${out.activation} vs ${value}`);
  assert.ok(maxRelError(out.grad.flat(), grad.flat()) <= 1e-4);
  assert.equal(out.saliency.length, ids.length);
}

test('attribute --json: stories260K gradients for every hook, blocks from 1 and from > 1', () => {
  const fx = JSON.parse(readFileSync(fixturePath('stories260K-grad.json'), 'utf8'));
  for (const c of fx.cases.filter((k: { objective: string }) => k.objective === 'sum')) {
    const sel = `[:, ${c.select.position ?? ':'}, ${c.select.feature ?? ':'}]`;
    check(modelPath('stories260K.gguf'), fx.ids, c.blocks, c.hook, sel, c.value, c.grad);
  }
});

test('attribute --json: Qwen2 (biases) and GPT-2 gradients', () => {
  for (const name of ['qwen2-tied', 'gpt2-f16']) {
    const dir = fixturePath(`hf/${name}`);
    const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8'));
    for (const g of ref.grads) check(dir, ref.ids, g.blocks, g.hook, `[:, :, ${g.feature}]`, g.value, g.grad);
  }
});

test('attribute text mode shows tokens with saliency; a separate-runs selection is refused', () => {
  const r = cli(['attribute', '--model', modelPath('stories260K.bin'), '--text', 'Once upon a time', '--blocks', '1-2', '--select', '[:, :, 3]']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /activation -?[\d.]+\n.*" Once".*\n/);
  const bad = cli(['attribute', '--model', modelPath('stories260K.bin'), '--text', 'Once', '--blocks', '1', '--select', '[:, :, 3-4]']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /attribute takes one combined selection/);
});
