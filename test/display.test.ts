import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { displayText } from '../src/tokenizers/display.js';
import { modelPath } from './helpers.js';

const tok = loadModel(modelPath('stories260K.bin')).tokenizer!;

test('display text is the decoding when nothing would be hidden', () => {
  const ids = tok.encode('Lily was happy');
  assert.equal(displayText(tok, ids), 'Lily was happy');
  assert.equal(displayText(null, [4, 5]), '4 5');
});

test('control and lone byte tokens are shown as pieces instead of vanishing', () => {
  assert.equal(displayText(tok, [1, 1, 1]), '<s><s><s>');
  // 0xE2 alone is not UTF-8; decoding would print U+FFFD.
  const e2 = 0xe2 + 3;
  assert.equal(displayText(tok, [e2, ...tok.encode('cat')]), '<0xE2> cat');
});
