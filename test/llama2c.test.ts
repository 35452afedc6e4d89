// llama2.c .bin reader against the real checkpoints (and the GGUF of the same weights).
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { test } from 'node:test';
import { readTensorF32 } from '../src/formats/binary.js';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2c } from '../src/formats/llama2c.js';
import { modelPath } from './helpers.js';

test('stories260K.bin: header', () => {
  const f = readLlama2c(modelPath('stories260K.bin'));
  assert.deepEqual(f.header, { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512 });
  assert.equal(f.tied, true);
  // 5 × 9 per-layer tensors + token_embd + output_norm; no output.weight when tied.
  assert.equal(f.tensors.length, 47);
  assert.ok(!f.tensors.some((t) => t.name === 'output.weight'));
});

test('stories-d128-L4.bin: header and layout', () => {
  const p = modelPath('stories-d128-L4.bin');
  const f = readLlama2c(p);
  assert.deepEqual(f.header, { dim: 128, hiddenDim: 344, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 256 });
  assert.equal(f.tied, true);
  assert.equal(f.tensors.length, 4 * 9 + 2);
  const params = f.tensors.reduce((n, t) => n + t.nbytes / 4, 0);
  assert.equal(params, 791_680); // as documented in the models README
  const byName = new Map(f.tensors.map((t) => [t.name, t]));
  assert.deepEqual(byName.get('blk.3.attn_k.weight')?.shape, [64, 128]);
  assert.deepEqual(byName.get('blk.3.ffn_down.weight')?.shape, [128, 344]);
  // The RoPE tables (2 × seq_len × head_dim/2 floats) follow output_norm and end the file.
  const norm = byName.get('output_norm.weight')!;
  assert.equal(norm.offset + norm.nbytes + 2 * 256 * 8 * 4, statSync(p).size);
});

test('stories260K.bin: every tensor is byte-equal to the GGUF tensor of the same name', () => {
  const bin = readLlama2c(modelPath('stories260K.bin'));
  const gguf = new Map(readGguf(modelPath('stories260K.gguf')).tensors.map((t) => [t.name, t]));
  for (const t of bin.tensors) {
    const g = gguf.get(t.name);
    assert.ok(g, `GGUF has no ${t.name}`);
    assert.deepEqual(t.shape, g.shape, t.name);
    const a = readTensorF32(t);
    const b = readTensorF32(g);
    assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), `${t.name} differs`);
  }
});
