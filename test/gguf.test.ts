// GGUF reader against the real stories260K.gguf.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readTensorF32 } from '../src/formats/binary.js';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2c } from '../src/formats/llama2c.js';
import { modelPath } from './helpers.js';

const gguf = readGguf(modelPath('stories260K.gguf'));
const byName = new Map(gguf.tensors.map((t) => [t.name, t]));

test('stories260K.gguf: header, alignment and data section', () => {
  assert.equal(gguf.version, 3);
  assert.equal(gguf.alignment, 32);
  assert.equal(gguf.dataOffset % 32, 0);
  // 5 blocks × 9 tensors + token_embd + output_norm + output (stored even though it equals token_embd).
  assert.equal(gguf.tensors.length, 48);
  for (const t of gguf.tensors) {
    assert.equal(t.dtype, 'F32');
    assert.ok(t.offset >= gguf.dataOffset);
    assert.equal(t.nbytes, t.shape.reduce((a, b) => a * b, 1) * 4);
  }
});

test('stories260K.gguf: llama metadata', () => {
  const m = gguf.metadata;
  assert.equal(m.get('general.architecture'), 'llama');
  assert.equal(m.get('llama.embedding_length'), 64);
  assert.equal(m.get('llama.block_count'), 5);
  assert.equal(m.get('llama.attention.head_count'), 8);
  assert.equal(m.get('llama.attention.head_count_kv'), 4);
  assert.equal(m.get('llama.feed_forward_length'), 172);
  assert.equal(m.get('tokenizer.ggml.model'), 'llama');
  const tokens = m.get('tokenizer.ggml.tokens') as string[];
  assert.equal(tokens.length, 512);
  assert.deepEqual(tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  const scores = m.get('tokenizer.ggml.scores') as number[];
  assert.equal(scores.length, 512);
  assert.ok(scores.every((s) => typeof s === 'number'));
});

test('stories260K.gguf: shapes are outermost-first', () => {
  assert.deepEqual(byName.get('token_embd.weight')?.shape, [512, 64]);
  assert.deepEqual(byName.get('blk.0.attn_k.weight')?.shape, [32, 64]);
  assert.deepEqual(byName.get('blk.4.ffn_down.weight')?.shape, [64, 172]);
  assert.deepEqual(byName.get('blk.4.ffn_gate.weight')?.shape, [172, 64]);
  assert.deepEqual(byName.get('output_norm.weight')?.shape, [64]);
});

test('stories260K.gguf: token_embd equals the llama2.c token_embedding, output equals token_embd', () => {
  const embd = readTensorF32(byName.get('token_embd.weight')!);
  const bin = readLlama2c(modelPath('stories260K.bin'));
  const binEmbd = readTensorF32(bin.tensors.find((t) => t.name === 'token_embd.weight')!);
  assert.equal(embd.length, 512 * 64);
  assert.deepEqual(embd, binEmbd);
  assert.ok(embd.some((x) => x !== 0));
  assert.deepEqual(readTensorF32(byName.get('output.weight')!), embd);
});
