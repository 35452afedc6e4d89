// Corrupt and truncated checkpoint/tokenizer files: each must give a one-line UserError that names the file and the
// problem. Each case asserts on the message so that it fails if its check is removed.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { readTensorF32 } from '../src/formats/binary.js';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2c } from '../src/formats/llama2c.js';
import { readLlama2cTokenizer } from '../src/tokenizers/llama2c.js';
import { modelPath } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-bad-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** Runs `fn`, expecting a one-line UserError "<p>: …" whose message matches every pattern. */
function expectUserError(fn: () => unknown, p: string, ...patterns: RegExp[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UserError, `expected a UserError, got ${err instanceof Error ? err.stack : String(err)}`);
  assert.ok(err.message.startsWith(`${p}: `), `message does not start with the file path: ${err.message}`);
  assert.ok(!err.message.includes('\n'), `message is not one line: ${JSON.stringify(err.message)}`);
  for (const re of patterns) assert.match(err.message, re);
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal GGUF writer

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const str = (s: string): Buffer => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
const kvString = (key: string, value: string): Buffer => Buffer.concat([str(key), u32(8), str(value)]);
const kvU32 = (key: string, value: number): Buffer => Buffer.concat([str(key), u32(4), u32(value)]);

interface TensorSpec {
  name: string;
  /** ggml order, innermost first. */
  ne: number[];
  type?: number;
  /** Relative offset; defaults to packed at 32-byte alignment. */
  offset?: number;
}

/** Builds a GGUF v3 file; returns the bytes and where each section starts, so tests can cut inside one. */
function buildGguf(kvs: Buffer[], tensors: TensorSpec[]): { bytes: Buffer; metaStart: number; infoStart: number; dataStart: number } {
  const header = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(kvs.length)]);
  const meta = Buffer.concat(kvs);
  let rel = 0;
  const infos: Buffer[] = [];
  let dataBytes = 0;
  for (const t of tensors) {
    const type = t.type ?? 0;
    const nbytes = t.ne.reduce((a, b) => a * b, 1) * (type === 1 ? 2 : 4);
    const offset = t.offset ?? rel;
    infos.push(Buffer.concat([str(t.name), u32(t.ne.length), ...t.ne.map((n) => u64(n)), u32(type), u64(offset)]));
    rel = Math.ceil((offset + nbytes) / 32) * 32;
    dataBytes = Math.max(dataBytes, offset + nbytes);
  }
  const info = Buffer.concat(infos);
  const beforeData = header.length + meta.length + info.length;
  const dataStart = Math.ceil(beforeData / 32) * 32;
  const data = Buffer.alloc(dataStart - beforeData + Math.min(dataBytes, 1 << 16), 0x3f);
  return {
    bytes: Buffer.concat([header, meta, info, data]),
    metaStart: header.length,
    infoStart: header.length + meta.length,
    dataStart,
  };
}

const goodKvs = [
  kvString('general.architecture', 'llama'),
  kvString('general.name', 'a test model with a name long enough to cut in the middle of it'),
  kvU32('llama.block_count', 1),
];
const goodTensors: TensorSpec[] = [
  { name: 'a', ne: [8, 4] },
  { name: 'b', ne: [16] },
];
const good = buildGguf(goodKvs, goodTensors);

test('the hand-built GGUF is valid (so the corruptions below are what fails)', () => {
  const g = readGguf(file('good.gguf', good.bytes));
  assert.deepEqual(g.tensors.map((t) => [t.name, t.shape]), [['a', [4, 8]], ['b', [16]]]);
  assert.equal(g.metadata.get('llama.block_count'), 1);
  assert.equal(g.dataOffset, good.dataStart);
});

test('GGUF: missing file', () => {
  const p = path.join(dir, 'does-not-exist.gguf');
  expectUserError(() => readGguf(p), p, /no such file/);
});

test('GGUF: empty file', () => {
  const p = file('empty.gguf', new Uint8Array(0));
  expectUserError(() => readGguf(p), p, /empty/);
});

test('GGUF: bad magic', () => {
  const bytes = Buffer.from(good.bytes);
  bytes.write('GGML', 0);
  const p = file('magic.gguf', bytes);
  expectUserError(() => readGguf(p), p, /magic/i, /GGUF/);
});

test('GGUF: truncated in the header', () => {
  const p = file('header.gguf', good.bytes.subarray(0, 12));
  expectUserError(() => readGguf(p), p, /truncated/, /tensor count/);
});

test('GGUF: truncated in the metadata', () => {
  // Cut inside the value of general.name (the second key/value).
  const cut = good.metaStart + goodKvs[0]!.length + 40;
  const p = file('meta.gguf', good.bytes.subarray(0, cut));
  expectUserError(() => readGguf(p), p, /truncated/, /general\.name/);
});

test('GGUF: truncated in the tensor infos', () => {
  const p = file('infos.gguf', good.bytes.subarray(0, good.infoStart + 40));
  expectUserError(() => readGguf(p), p, /truncated/, /tensor/);
});

test('GGUF: truncated in the tensor data', () => {
  const p = file('data.gguf', good.bytes.subarray(0, good.bytes.length - 10));
  expectUserError(() => readGguf(p), p, /truncated/, /tensor b/);
});

test('GGUF: tensor offset past the end of the file', () => {
  const { bytes } = buildGguf(goodKvs, [goodTensors[0]!, { name: 'b', ne: [16], offset: 1 << 20 }]);
  const p = file('offset.gguf', bytes.subarray(0, bytes.length));
  expectUserError(() => readGguf(p), p, /tensor b/, /past the end/);
});

test('GGUF: absurd array length (2^40) errors quickly, without allocating', () => {
  const huge = Buffer.concat([str('tokenizer.ggml.tokens'), u32(9), u32(8), u64(2 ** 40)]);
  const { bytes } = buildGguf([...goodKvs, huge, Buffer.alloc(1 << 20)], goodTensors);
  const p = file('array.gguf', bytes);
  const t0 = performance.now();
  expectUserError(() => readGguf(p), p, /array length/, /1099511627776/);
  assert.ok(performance.now() - t0 < 1000, 'took too long');
});

test('GGUF: absurd tensor count errors before reading tensor infos', () => {
  const bytes = Buffer.from(good.bytes);
  bytes.writeBigUInt64LE(2n ** 40n, 8);
  const p = file('count.gguf', bytes);
  expectUserError(() => readGguf(p), p, /tensor count/, /1099511627776/);
});

test('GGUF: duplicate tensor names', () => {
  const { bytes } = buildGguf(goodKvs, [goodTensors[0]!, { name: 'a', ne: [16] }]);
  const p = file('dup.gguf', bytes);
  expectUserError(() => readGguf(p), p, /duplicate/, /\ba\b/);
});

test('readTensorF32 rejects other dtypes for now', () => {
  const { bytes } = buildGguf(goodKvs, [{ name: 'h', ne: [8], type: 1 }]);
  const p = file('f16.gguf', bytes);
  const t = readGguf(p).tensors[0]!;
  assert.equal(t.dtype, 'F16');
  expectUserError(() => readTensorF32(t), p, /unsupported dtype/, /F16/);
});

// ---------------------------------------------------------------------------------------------------------------
// llama2.c .bin

const stories = readFileSync(modelPath('stories260K.bin'));

/** stories260K.bin with some header fields replaced. */
function withHeader(name: string, fields: Partial<Record<number, number>>): string {
  const bytes = Buffer.from(stories);
  for (const [i, v] of Object.entries(fields)) bytes.writeInt32LE(v!, Number(i) * 4);
  return file(name, bytes);
}

test('llama2.c: missing and empty files', () => {
  const missing = path.join(dir, 'nope.bin');
  expectUserError(() => readLlama2c(missing), missing, /no such file/);
  const empty = file('empty.bin', new Uint8Array(0));
  expectUserError(() => readLlama2c(empty), empty, /empty/);
});

test('llama2.c: truncated header', () => {
  const p = file('short.bin', stories.subarray(0, 10));
  expectUserError(() => readLlama2c(p), p, /truncated/, /header/);
});

test('llama2.c: truncated weights', () => {
  const p = file('trunc.bin', stories.subarray(0, 30000));
  expectUserError(() => readLlama2c(p), p, /truncated/, /1056540/, /30000/);
});

test('llama2.c: trailing bytes mean the header was misread', () => {
  const p = file('long.bin', Buffer.concat([stories, Buffer.alloc(4)]));
  expectUserError(() => readLlama2c(p), p, /implies 1056540 bytes/, /1056544/);
});

test('llama2.c: n_heads not dividing dim', () => {
  const p = withHeader('heads.bin', { 3: 7 });
  expectUserError(() => readLlama2c(p), p, /dim 64 is not divisible by n_heads 7/);
});

test('llama2.c: n_kv_heads not dividing n_heads', () => {
  const p = withHeader('kvheads.bin', { 4: 3 });
  expectUserError(() => readLlama2c(p), p, /n_heads 8 is not divisible by n_kv_heads 3/);
});

test('llama2.c: odd head size', () => {
  const p = withHeader('odd.bin', { 0: 24 });
  expectUserError(() => readLlama2c(p), p, /head size 3/, /odd/);
});

test('llama2.c: zero and negative sizes', () => {
  const zero = withHeader('zero.bin', { 0: 0 });
  expectUserError(() => readLlama2c(zero), zero, /dim is 0, must be positive/);
  const neg = withHeader('neg.bin', { 2: -1 });
  expectUserError(() => readLlama2c(neg), neg, /n_layers is -1, must be positive/);
  const vocab = withHeader('vocab.bin', { 5: 0 });
  expectUserError(() => readLlama2c(vocab), vocab, /vocab_size is 0/);
});

test('llama2.c: absurd sizes are rejected, not multiplied out', () => {
  const p = withHeader('huge.bin', { 1: 2 ** 30 });
  expectUserError(() => readLlama2c(p), p, /hidden_dim is 1073741824, above the sane limit/);
});

test('llama2.c: newer export format ("ak42" magic)', () => {
  const p = withHeader('v1.bin', { 0: 0x616b3432 });
  expectUserError(() => readLlama2c(p), p, /ak42/);
});

// ---------------------------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

const tok512 = readFileSync(modelPath('tok512.bin'));

test('tokenizer.bin: missing and empty files', () => {
  const missing = path.join(dir, 'nope-tok.bin');
  expectUserError(() => readLlama2cTokenizer(missing), missing, /no such file/);
  const empty = file('empty-tok.bin', new Uint8Array(0));
  expectUserError(() => readLlama2cTokenizer(empty), empty, /empty/);
});

test('tokenizer.bin: truncated, with the vocabulary size given', () => {
  const p = file('tok-trunc.bin', tok512.subarray(0, tok512.length - 3));
  expectUserError(() => readLlama2cTokenizer(p, 512), p, /truncated/, /token 511/);
});

test('tokenizer.bin: truncated inside a token, read until end of file', () => {
  const p = file('tok-trunc2.bin', tok512.subarray(0, 3001));
  expectUserError(() => readLlama2cTokenizer(p), p, /truncated/, /token \d+/);
});

test('tokenizer.bin: absurd vocabulary size for the file', () => {
  const p = file('tok-small.bin', tok512.subarray(0, 100));
  expectUserError(() => readLlama2cTokenizer(p, 512), p, /truncated/, /vocabulary size 512/);
});

test('tokenizer.bin: more tokens than the model vocabulary (wrong tokenizer)', () => {
  const p = modelPath('llama2-tokenizer/tokenizer.bin');
  expectUserError(() => readLlama2cTokenizer(p, 512), p, /more tokens than the model's vocabulary of 512/);
});

test('tokenizer.bin: negative token length', () => {
  const bytes = Buffer.from(tok512);
  bytes.writeInt32LE(-5, 8); // length of token 0
  const p = file('tok-neg.bin', bytes);
  expectUserError(() => readLlama2cTokenizer(p), p, /token 0 has negative length -5/);
});

test('tokenizer.bin: bad max_token_length (not a tokenizer.bin)', () => {
  const p = file('tok-max.bin', Buffer.concat([u32(0), tok512.subarray(4)]));
  expectUserError(() => readLlama2cTokenizer(p), p, /max_token_length is 0/);
});
