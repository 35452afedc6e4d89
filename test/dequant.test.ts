// toFloat32 / forEachFloat32Chunk: exact F16 decoding, Q8_0 blocks against a hand computation, chunking, bad input.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { forEachFloat32Chunk, halfToFloat, toFloat32 } from '../src/formats/dequant.js';
import type { StoredTensor } from '../src/formats/types.js';
import { u16Bytes } from './st-writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-dq-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `junk` filler bytes then `data`, and describes the tensor as a reader would. */
function storedAt(name: string, dtype: StoredTensor['dtype'], shape: number[], data: Uint8Array, junk = 5): StoredTensor {
  const file = path.join(dir, `${name}.bin`);
  writeFileSync(file, Buffer.concat([Buffer.alloc(junk, 0xee), data]));
  return { name, dtype, shape, file, offset: junk, nbytes: data.length };
}

/** One Q8_0 block: f16 scale bits, then 32 int8 values. */
function q8Block(scaleBits: number, q: number[]): Uint8Array {
  assert.equal(q.length, 32);
  return Uint8Array.from([scaleBits & 0xff, scaleBits >> 8, ...q.map((v) => v & 0xff)]);
}

test('halfToFloat: every positive finite binary16 value is exactly one ulp above the previous one', () => {
  assert.ok(Object.is(halfToFloat(0), 0) && Object.is(halfToFloat(0x8000), -0));
  for (let h = 1; h <= 0x7bff; h++) {
    const exp = (h - 1) >> 10; // the step up from h-1 is the ulp of h-1's binade
    const ulp = 2 ** (Math.max(exp, 1) - 25); // subnormals and the first binade share 2^-24
    assert.equal(halfToFloat(h) - halfToFloat(h - 1), ulp, `h=0x${h.toString(16)}`);
    assert.equal(halfToFloat(h | 0x8000), -halfToFloat(h));
  }
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7c01)) && Number.isNaN(halfToFloat(0xfe00)));
});

// Three blocks: scale 0.5 with q = -128, -120, …, 120; scale -0.25 with q = 127 … 96; a subnormal scale 2^-24.
const qA = Array.from({ length: 32 }, (_, j) => j * 8 - 128);
const qB = Array.from({ length: 32 }, (_, j) => 127 - j);
const qC = Array.from({ length: 32 }, (_, j) => (j % 2 ? -j : j));
const q8 = () => storedAt('q8', 'Q8_0', [3, 32], Buffer.concat([q8Block(0x3800, qA), q8Block(0xb400, qB), q8Block(0x0001, qC)]));

test('Q8_0 decodes to d·q per 32-value block', () => {
  const t = q8();
  assert.equal(t.nbytes, 3 * 34);
  const v = toFloat32(t);
  assert.equal(v.length, 96);
  // By hand: block 0 starts at 0.5·(-128) = -64 and steps by 0.5·8 = 4; block 1 is -0.25·(127 - j).
  assert.deepEqual([v[0], v[1], v[16], v[31]], [-64, -60, 0, 60]);
  assert.deepEqual([v[32], v[33], v[63]], [-31.75, -31.5, -24]);
  assert.deepEqual([v[64], v[65], v[66], v[95]], [0, -(2 ** -24), 2 * 2 ** -24, -31 * 2 ** -24]);
  const expected = [...qA.map((q) => 0.5 * q), ...qB.map((q) => -0.25 * q), ...qC.map((q) => q * 2 ** -24)];
  assert.deepEqual(v, Float32Array.from(expected));
});

test('piecewise conversion matches the whole-tensor one (Q8_0 chunks round up to whole blocks)', () => {
  const t = q8();
  const starts: number[] = [];
  const parts: number[] = [];
  forEachFloat32Chunk(t, (values, start) => {
    starts.push(start);
    parts.push(...values);
  }, 40);
  assert.deepEqual(starts, [0, 64]);
  assert.deepEqual(Float32Array.from(parts), toFloat32(t));

  const bits = Array.from({ length: 7 }, (_, i) => 0x3c00 + i * 0x123);
  const f16 = storedAt('f16', 'F16', [7], u16Bytes(bits), 3);
  const got: number[] = [];
  forEachFloat32Chunk(f16, (values) => got.push(...values), 3);
  assert.deepEqual(got, bits.map(halfToFloat));
});

function throwsUser(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof UserError && !e.message.includes('\n') && re.test(e.message));
}

test('a byte count that does not match shape and dtype is refused', () => {
  const t = { ...q8(), nbytes: 100 };
  throwsUser(() => toFloat32(t), /q8\.bin: tensor q8 holds 100 bytes, but 96 values of Q8_0 need 102$/);
  throwsUser(() => toFloat32({ ...q8(), shape: [31] }), /Q8_0 tensor has 31 values, not a multiple of 32/);
});

test('dtypes without a conversion are named', () => {
  const t = storedAt('ids', 'I32', [2], new Uint8Array(8));
  throwsUser(() => toFloat32(t), /tensor ids: dtype I32 cannot be converted to float32/);
});

test('a file that shrank after it was read is reported, not read as zeros', () => {
  const t = { ...storedAt('short', 'F16', [2], u16Bytes([1, 2])), shape: [4], nbytes: 8 };
  throwsUser(() => toFloat32(t), /short\.bin: file ended while reading tensor short/);
});
