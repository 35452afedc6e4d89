// Bad input to the engine-level commands: one line on stderr naming the file or flag and the problem, exit code 2.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-bad-'));
const gguf = modelPath('stories260K.gguf');
const bin = modelPath('stories260K.bin');

function truncated(src: string, bytes: number, name: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, readFileSync(src).subarray(0, bytes));
  return p;
}

/** Exit code 2, exactly one line on stderr matching `pattern`, no stack trace, nothing on stdout. */
function expectUserError(args: string[], pattern: RegExp): void {
  const r = cli(args);
  assert.equal(r.code, 2, `exit code ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.stdout, '');
}

test('missing model file', () => expectUserError(['inspect', '--model', path.join(tmp, 'nope.gguf')], /nope\.gguf: no such file/));
test('unknown checkpoint extension', () => {
  const p = path.join(tmp, 'model.xyz');
  writeFileSync(p, 'x');
  expectUserError(['inspect', '--model', p], /model\.xyz: unknown checkpoint format/);
});
test('GGUF cut inside its header/metadata', () => expectUserError(['inspect', '--model', truncated(gguf, 300, 'cut-meta.gguf')], /cut-meta\.gguf: .*truncated/i));
test('GGUF cut inside its tensor data', () => {
  const size = readFileSync(gguf).length;
  expectUserError(['generate', '--model', truncated(gguf, size - 1000, 'cut-data.gguf')], /cut-data\.gguf: .*(past the end|truncated|outside)/i);
});
test('llama2.c .bin cut short', () => expectUserError(['inspect', '--model', truncated(bin, 5000, 'cut.bin')], /cut\.bin: .*truncated/i));
test('corrupt tokenizer.bin', () => {
  const p = path.join(tmp, 'tok.bin');
  writeFileSync(p, Buffer.from([16, 0, 0, 0, 0, 0, 128, 63, 255, 255, 255, 127]));
  expectUserError(['tokenize', '--model', bin, '--tokenizer', p, '--text', 'hi'], /tok\.bin: /);
});
test('ids outside the vocabulary', () =>
  expectUserError(['forward', '--model', bin, '--ids', '1,600', '--blocks', '1'], /--ids: token id 600 is outside the vocabulary 0-511/));
test('malformed ids', () => expectUserError(['forward', '--model', bin, '--ids', '1,x'], /--ids: expected comma-separated token ids/));
test('block range past the last block', () =>
  expectUserError(['forward', '--model', bin, '--ids', '1', '--blocks', '4-6'], /--blocks: block range 4-6 is outside the model's blocks 1-5/));
test('block 0', () => expectUserError(['forward', '--model', bin, '--ids', '1', '--blocks', '0-2'], /--blocks: blocks are numbered from 1/));
test('reversed block range', () => expectUserError(['forward', '--model', bin, '--ids', '1', '--blocks', '3-2'], /--blocks: range "3-2" ends before it starts/));
test('unknown hook', () => expectUserError(['forward', '--model', bin, '--ids', '1', '--blocks', '1', '--hook', 'ffn'], /--hook: unknown hook "ffn" \(expected attn, attn_out, mlp, mlp_out, resid, or a TransformerLens name/));
test('unknown flag', () => expectUserError(['generate', '--model', bin, '--max-token', '3'], /--max-token: unknown flag for 'generate'/));
test('flag without its value', () => expectUserError(['generate', '--model'], /--model: missing value/));
test('non-numeric value', () => expectUserError(['generate', '--model', bin, '--temperature', 'hot'], /--temperature: expected a number/));
test('unknown command', () => expectUserError(['frobnicate'], /unknown command "frobnicate"/));
test('both --ids and --text', () => expectUserError(['forward', '--model', bin, '--ids', '1', '--text', 'a'], /give exactly one/));
