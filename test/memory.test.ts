import assert from 'node:assert/strict';
import { test } from 'node:test';
import { activationBytes, estimate, human } from '../src/engine/memory.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

test('an oversized request is refused with the need, the availability and a block range that fits', () => {
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,2', '--blocks', '1-5'], { LLMF_MEMORY_LIMIT: '1000000' });
  assert.equal(r.code, 2);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /--blocks 1-5: needs about [\d.]+ [KM]iB of memory \(weights .* prepacked \(--low-memory drops it\) .*\), 976\.6 KiB available; blocks 1-\d would fit/);
  assert.equal(r.stdout, '');
});

test('--low-memory drops the prepacking share of the estimate', () => {
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,2', '--blocks', '1-5', '--low-memory'], { LLMF_MEMORY_LIMIT: '600000' });
  assert.equal(r.code, 2);
  assert.doesNotMatch(r.stderr, /prepacked/);
  assert.match(r.stderr, /blocks 1-2 would fit/);
});

test('the same request runs when memory suffices', () => {
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,2', '--blocks', '1-5', '--json'], { LLMF_MEMORY_LIMIT: String(2 ** 30) });
  assert.equal(r.code, 0, r.stderr);
});

test('the estimate scales with the blocks used, not the model', () => {
  const cfg = loadModel(modelPath('stories260K.bin')).config;
  assert.equal(activationBytes(cfg, 4, 1, 8), 4 * activationBytes(cfg, 1, 1, 8));
  const e = estimate(1000, 800, 10, true);
  assert.equal(e.total, 1000 + 1600 + 10);
  assert.equal(estimate(1000, 800, 10, false).total, 1010);
  assert.equal(human(1536), '1.5 KiB');
  assert.equal(human(3 * 2 ** 30), '3.00 GiB');
});

test('a bad LLMF_MEMORY_LIMIT is a one-line error', () => {
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1', '--blocks', '1'], { LLMF_MEMORY_LIMIT: 'lots' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^llm-features: LLMF_MEMORY_LIMIT: expected a positive number of bytes, got "lots"\n$/);
});

test('on --device webgpu the estimate has no prepacked copies and is checked against the device memory', () => {
  // Refused before any session is created, so no GPU (or software driver) is needed here.
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,2', '--blocks', '1-5', '--device', 'webgpu'], { LLMF_DEVICE_MEMORY: '400000' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^llm-features: --blocks 1-5 on webgpu: needs about [\d.]+ [KM]iB of memory \(weights [^+]+ \+ activations [^)]+\), 390\.6 KiB available on the device \(LLMF_DEVICE_MEMORY\); blocks 1-1 would fit\n$/);
  const bad = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1', '--blocks', '1', '--device', 'webgpu'], { LLMF_DEVICE_MEMORY: '-1' });
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'llm-features: LLMF_DEVICE_MEMORY: expected a positive number of bytes, got "-1"\n');
});
