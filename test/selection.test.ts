import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors.js';
import { expandSelection, selectionMask } from '../src/features/selection.js';

const labels = (sel: string, T = 8, F = 4096) => expandSelection(sel, T, F).map((r) => r.label);

test('[:, :, 2000-2004] is five runs, one feature each at all positions', () => {
  const runs = expandSelection('[:, :, 2000-2004]', 5, 4096);
  assert.deepEqual(runs.map((r) => r.label), ['[:, :, 2000]', '[:, :, 2001]', '[:, :, 2002]', '[:, :, 2003]', '[:, :, 2004]']);
  assert.ok(runs.every((r) => r.positions.all));
});

test('[:, 0-4, 2000] is five runs, feature 2000 at one position each', () => {
  assert.deepEqual(labels('[:, 0-4, 2000]'), ['[:, 0, 2000]', '[:, 1, 2000]', '[:, 2, 2000]', '[:, 3, 2000]', '[:, 4, 2000]']);
});

test('[:, :, 0:4] is one run over features 0..3 combined', () => {
  const runs = expandSelection('[:, :, 0:4]', 5, 64);
  assert.equal(runs.length, 1);
  assert.deepEqual(runs[0]!.features, { all: false, indices: [0, 1, 2, 3], text: '0:4' });
  const mask = selectionMask(runs[0]!, 5, 64);
  assert.equal(mask.reduce((a, b) => a + b, 0), 20);
});

test('[:, 0, :] is one run over all features at position 0', () => {
  const runs = expandSelection('[0, 0, :]', 5, 64);
  assert.equal(runs.length, 1);
  assert.equal(runs[0]!.label, '[:, 0, :]');
  const mask = selectionMask(runs[0]!, 5, 64);
  assert.equal(mask.slice(0, 64).reduce((a, b) => a + b, 0), 64);
  assert.equal(mask.slice(64).reduce((a, b) => a + b, 0), 0);
});

test('lists are separate runs; runs are the Cartesian product', () => {
  assert.deepEqual(labels('[:, (0,2), 5,7:9]'), ['[:, 0, 5]', '[:, 0, 7:9]', '[:, 2, 5]', '[:, 2, 7:9]']);
  assert.deepEqual(labels('[:,1-2,3-4]'), ['[:, 1, 3]', '[:, 1, 4]', '[:, 2, 3]', '[:, 2, 4]']);
});

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    return e;
  }
  assert.fail('expected an error');
}

test('syntax errors show the text with a caret under the offending character', () => {
  const e = errorOf(() => expandSelection('[:, :, 20x0]', 5, 64));
  assert.match(e.message, /^select: expected "\]" at character 10/);
  assert.equal(e.detail, '  [:, :, 20x0]\n           ^');
  assert.match(errorOf(() => expandSelection('[1, :, 3]', 5, 64)).message, /batch index must be ":" or "0"/);
  assert.match(errorOf(() => expandSelection('[:, 4-2, 3]', 5, 64)).message, /ends before it starts/);
  assert.match(errorOf(() => expandSelection('[:, :, 3:3]', 5, 64)).message, /is empty/);
  assert.match(errorOf(() => expandSelection(':, :, 3', 5, 64)).message, /expected "\["/);
  assert.match(errorOf(() => expandSelection('[:, :, 3] x', 5, 64)).message, /unexpected text/);
});

test('out-of-range indices name the valid range', () => {
  assert.match(errorOf(() => expandSelection('[:, :, 64]', 5, 64)).message, /feature 64 is outside the valid range 0-63/);
  assert.match(errorOf(() => expandSelection('[:, 0-5, 1]', 5, 64)).message, /position 5 is outside the valid range 0-4/);
  assert.match(errorOf(() => expandSelection('[:, :, 60:70]', 5, 64)).message, /feature 69 is outside the valid range 0-63/);
});
