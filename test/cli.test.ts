import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';

/** The documented greedy sample of stories260K (../shared/models/README.md). */
function documentedSample(): string {
  const readme = readFileSync(modelPath('README.md'), 'utf8');
  const start = readme.indexOf('```', readme.indexOf('stories260K, greedy'));
  const body = readme.slice(readme.indexOf('\n', start) + 1, readme.indexOf('```', start + 3));
  // The block is indented by two spaces in the README list.
  return body
    .split('\n')
    .map((l) => l.replace(/^ {2}/, ''))
    .join('\n')
    .replace(/\n$/, '');
}

for (const file of ['stories260K.gguf', 'stories260K.bin']) {
  test(`generate: greedy 80 tokens from BOS reproduce the documented sample (${file})`, () => {
    const r = cli(['generate', '--model', modelPath(file), '--max-tokens', '80']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, documentedSample() + '\n');
  });
}

test('generate: sampling is reproducible for a seed and differs from greedy', () => {
  const args = ['generate', '--model', modelPath('stories260K.bin'), '--max-tokens', '30', '--temperature', '1', '--seed', '7'];
  const a = cli(args);
  const b = cli(args);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.notEqual(a.stdout, cli(['generate', '--model', modelPath('stories260K.bin'), '--max-tokens', '30']).stdout);
});

test('generate: a prompt is continued', () => {
  const r = cli(['generate', '--model', modelPath('stories260K.gguf'), '--prompt', 'Once upon a time, there was a little dog', '--max-tokens', '10']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith('Once upon a time, there was a little dog'), r.stdout);
  assert.ok(r.stdout.length > 'Once upon a time, there was a little dog'.length + 5);
});

test('inspect: describes stories260K in both formats the same way', () => {
  const a = JSON.parse(cli(['inspect', '--model', modelPath('stories260K.gguf')]).stdout);
  const b = JSON.parse(cli(['inspect', '--model', modelPath('stories260K.bin')]).stdout);
  for (const m of [a, b]) {
    assert.equal(m.architecture, 'llama');
    assert.equal(m.hidden_size, 64);
    assert.equal(m.layers, 5);
    assert.equal(m.heads, 8);
    assert.equal(m.kv_heads, 4);
    assert.equal(m.ffn_size, 172);
    assert.equal(m.vocab_size, 512);
    assert.equal(m.stored_dtype, 'F32');
    assert.equal(m.tied_head, true);
  }
  assert.equal(a.format, 'gguf');
  assert.equal(b.format, 'llama2c');
  assert.match(a.tokenizer, /gguf/);
  assert.match(b.tokenizer, /tokenizer\.bin|llama2c/);
});

test('tokenize: ids and tokens, identical for both formats', () => {
  const a = JSON.parse(cli(['tokenize', '--model', modelPath('stories260K.gguf'), '--text', 'Once upon a time, Lily']).stdout);
  const b = JSON.parse(cli(['tokenize', '--model', modelPath('stories260K.bin'), '--text', 'Once upon a time, Lily']).stdout);
  assert.deepEqual(a.ids, [403, 407, 261, 378, 432, 317]);
  assert.deepEqual(a, b);
  assert.equal(a.tokens.join(''), ' Once upon a time, Lily');
});

test('forward --json: blocks, hook and values match the float64 reference', () => {
  const fx = JSON.parse(readFileSync(fixturePath('stories260K-forward.json'), 'utf8'));
  const c = fx.cases.find((k: { blocks: number[] | null; hook: string }) => k.blocks?.join('-') === '2-4' && k.hook === 'mlp');
  const r = cli(['forward', '--model', modelPath('stories260K.gguf'), '--ids', fx.ids.join(','), '--blocks', '2-4', '--hook', 'mlp', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.ids, fx.ids);
  assert.deepEqual(out.blocks, [2, 4]);
  assert.equal(out.hook, 'mlp');
  assert.deepEqual(out.shape, [7, 172]);
  assert.ok(maxRelError(out.values.flat(), c.values.flat()) <= 1e-4);
});

test('forward: without --blocks prints logits; "K" alone means K-K; --text with --bos', () => {
  const logits = JSON.parse(cli(['forward', '--model', modelPath('stories260K.bin'), '--text', 'Lily', '--bos', '--json']).stdout);
  assert.equal(logits.hook, 'logits');
  assert.deepEqual(logits.shape, [2, 512]);
  assert.equal(logits.ids[0], 1);
  const one = JSON.parse(cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,403', '--blocks', '3', '--json']).stdout);
  const range = JSON.parse(cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,403', '--blocks', '3-3', '--json']).stdout);
  assert.deepEqual(one.blocks, [3, 3]);
  assert.deepEqual(one.values, range.values);
  const text = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,403', '--blocks', '1-2']);
  assert.match(text.stdout, /resid of blocks 1-2: shape \[2, 64\]/);
});
