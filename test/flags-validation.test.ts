// Flag validation holes from the fuzz campaign (issue 15, items 9 and 10), closed by the settings table's bounds and
// the table-driven parser (issue 11).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

const bin = modelPath('stories260K.bin');
/** A visualize that finishes in a moment when a bad flag is (wrongly) accepted. */
const visualize = (...extra: string[]) => cli(['visualize', '--model', bin, '--blocks', '1', '--select', '[:, :, 0]', '--steps', '1', ...extra]);

function expectFlagError(args: string[] | ReturnType<typeof cli>, flag: string): void {
  const r = Array.isArray(args) ? visualize(...args) : args;
  assert.equal(r.code, 2, `exit ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line:\n${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`^llm-features: ${flag}: `));
}

test('9: --lr must be positive', () => {
  expectFlagError(['--lr', '0'], '--lr');
  expectFlagError(['--lr', '-1'], '--lr');
});

test('9: --lr-end must not be negative', () => expectFlagError(['--lr-end', '-0.1'], '--lr-end'));

test('9: --C must be positive', () => {
  expectFlagError(['--C', '0'], '--C');
  expectFlagError(['--C', '-5'], '--C');
});

test('9: --seed outside 0..2^32-1 is refused (it was taken mod 2^32 while the settings hash differed)', () => {
  expectFlagError(['--seed', String(2 ** 32)], '--seed');
  expectFlagError(['--seed', '1e300'], '--seed');
  expectFlagError(['--seed', '-1'], '--seed');
});

test('9: integer flags accept only plain decimal integers (not 0x10, " 3" or 1e3)', () => {
  for (const v of ['0x10', ' 3', '1e3', '3.0', '']) expectFlagError(['--tokens', v], '--tokens');
});

test('9: --fluency "" is refused (it became [0])', () => {
  expectFlagError(['--refine', 'epo', '--fluency', ''], '--fluency');
});

test('10: a --select syntax error is one message line, then the selection with a caret (as the README documents)', () => {
  const r = cli(['visualize', '--model', bin, '--blocks', '1', '--select', '[:, :, 0-']);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.match(lines[0]!, /^llm-features: --select: .* at character \d+$/);
  assert.deepEqual(lines.slice(1).map((l) => l.trim()), ['[:, :, 0-', '^']);
});

test('10: bare llm-features prints its usage on stderr with exit 2, nothing on stdout', () => {
  const r = cli([]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /usage: llm-features <command>/);
});
