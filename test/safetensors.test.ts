// readSafetensors: round trips through toFloat32, and one test per header check (each asserts on its message).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { MAX_HEADER_BYTES, readSafetensors } from '../src/formats/safetensors.js';
import { bf16Bytes, f32Bytes, u16Bytes, writeRawSafetensors, writeSafetensors } from './st-writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-st-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(dir, `f${n++}.safetensors`);

/** The call fails with a one-line UserError that names the file and matches `re`. */
function throwsUser(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, re);
    return true;
  });
}

test('F32, F16 and BF16 round-trip exactly (negatives, subnormals, extremes, inf, nan, -0)', () => {
  const p = fresh();
  const f32 = [-1.5, 0, -0, 1e-40, -1e-45, 3.4e38, -3.4028234663852886e38, Infinity, NaN, 0.1];
  // binary16 bit patterns and their exact values, written out by hand.
  const f16: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x0400, 2 ** -14], // smallest normal
    [0x7bff, 65504], // largest finite
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x8000, -0],
  ];
  const bf16 = [1, -5, 2 ** -133 /* f32 subnormal */, -0.0078125, 3.3895313892515355e38, -Infinity, 65536 + 512];
  writeSafetensors(
    p,
    [
      { name: 'a.f32', dtype: 'F32', shape: [2, 5], data: f32Bytes(f32) },
      { name: 'b.f16', dtype: 'F16', shape: [f16.length + 1], data: u16Bytes([...f16.map(([b]) => b), 0x7e00]) },
      { name: 'c.bf16', dtype: 'BF16', shape: [1, bf16.length + 1], data: u16Bytes([...new Uint16Array(bf16Bytes(bf16).buffer), 0x7fc1]) },
    ],
    { format: 'pt' },
  );
  const tensors = readSafetensors(p);
  assert.deepEqual(
    tensors.map((t) => [t.name, t.dtype, t.shape, t.nbytes, t.file]),
    [
      ['a.f32', 'F32', [2, 5], 40, path.resolve(p)],
      ['b.f16', 'F16', [12], 24, path.resolve(p)],
      ['c.bf16', 'BF16', [1, 8], 16, path.resolve(p)],
    ],
  );
  assert.equal(tensors[1]!.offset, tensors[0]!.offset + 40);
  assert.equal(tensors[0]!.offset % 8, 0, 'data starts 8-byte aligned');

  assert.deepEqual(toFloat32(tensors[0]!), Float32Array.from(f32));
  const h = toFloat32(tensors[1]!);
  assert.deepEqual(h.subarray(0, f16.length), Float32Array.from(f16.map(([, v]) => v)));
  assert.ok(Number.isNaN(h[f16.length]));
  const b = toFloat32(tensors[2]!);
  assert.deepEqual(b.subarray(0, bf16.length), Float32Array.from(bf16));
  assert.ok(b[1] === -5 && b[2]! > 0 && b[2]! < 2 ** -126, 'bf16 subnormal survives');
  assert.equal(new Uint32Array(b.buffer, b.byteOffset)[bf16.length], 0x7fc10000, 'bf16 NaN payload kept');
});

test('empty and scalar tensors are fine', () => {
  const p = fresh();
  writeSafetensors(p, [
    { name: 'empty', dtype: 'F32', shape: [0, 3], data: new Uint8Array(0) },
    { name: 'scalar', dtype: 'F32', shape: [], data: f32Bytes([7]) },
  ]);
  const [e, s] = readSafetensors(p);
  assert.deepEqual(toFloat32(e!), new Float32Array(0));
  assert.deepEqual(toFloat32(s!), Float32Array.from([7]));
});

test('a file shorter than the 8-byte length is refused', () => {
  const p = fresh();
  writeFileSync(p, Buffer.from([1, 2, 3]));
  throwsUser(() => readSafetensors(p), p, /file is 3 bytes, too short/);
});

test('a header length past the end of the file is refused before allocating', () => {
  const p = fresh();
  writeRawSafetensors(p, { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32Bytes([1]), 1n << 62n);
  throwsUser(() => readSafetensors(p), p, /header length 4611686018427387904 runs past the end of the file/);
});

test('a header length over 100 MB is refused even when the file is that large', () => {
  const p = fresh();
  writeRawSafetensors(p, {}, new Uint8Array(0), BigInt(MAX_HEADER_BYTES + 1));
  truncateSync(p, MAX_HEADER_BYTES + 64); // sparse: costs no disk
  throwsUser(() => readSafetensors(p), p, /header length 100000001 exceeds the 100000000-byte limit/);
});

test('a header that is not JSON, or not an object, is refused', () => {
  const p = fresh();
  const head = Buffer.from('{"a": {"dtype"\n', 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  writeFileSync(p, Buffer.concat([len, head]));
  throwsUser(() => readSafetensors(p), p, /header is not valid JSON/);
  const q = fresh();
  writeRawSafetensors(q, [1, 2], new Uint8Array(0));
  throwsUser(() => readSafetensors(q), q, /header is not a JSON object/);
});

test('data offsets past the end of the file are refused', () => {
  const p = fresh();
  writeRawSafetensors(p, { w: { dtype: 'F32', shape: [100], data_offsets: [0, 400] } }, f32Bytes([1, 2, 3, 4]));
  throwsUser(() => readSafetensors(p), p, /tensor w data ends at byte \d+, past the end of the file \(\d+ bytes\)/);
});

test('a truncated file is refused', () => {
  const p = fresh();
  writeSafetensors(p, [{ name: 'w', dtype: 'F16', shape: [4], data: u16Bytes([1, 2, 3, 4]) }]);
  truncateSync(p, readSafetensors(p)[0]!.offset + 6);
  throwsUser(() => readSafetensors(p), p, /tensor w data ends at .* past the end of the file.*truncated/);
});

test('byte ranges that do not match shape × dtype size are refused', () => {
  const p = fresh();
  writeRawSafetensors(p, { w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, f32Bytes([1, 2, 3, 4]));
  throwsUser(() => readSafetensors(p), p, /tensor w has 16 bytes of data, but shape \[3\] of F32 needs 12/);
  const q = fresh();
  writeRawSafetensors(q, { w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 16] } }, f32Bytes([1, 2, 3, 4]));
  throwsUser(() => readSafetensors(q), q, /shape \[2,2\] of BF16 needs 8/);
});

test('unsupported dtypes are named', () => {
  const p = fresh();
  writeRawSafetensors(p, { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(16));
  throwsUser(() => readSafetensors(p), p, /tensor ids has dtype I64, which is not supported \(supported: F32, F16, BF16\)/);
});

test('negative or fractional shapes and reversed offsets are refused', () => {
  for (const shape of [[-1, 2], [1.5], 'x']) {
    const p = fresh();
    writeRawSafetensors(p, { w: { dtype: 'F32', shape, data_offsets: [0, 8] } }, new Uint8Array(8));
    throwsUser(() => readSafetensors(p), p, /tensor w has invalid shape/);
  }
  const p = fresh();
  writeRawSafetensors(p, { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, new Uint8Array(8));
  throwsUser(() => readSafetensors(p), p, /tensor w has invalid data_offsets \[8,4\]/);
});

test('a missing file is a UserError', () => {
  const p = path.join(dir, 'nope.safetensors');
  throwsUser(() => readSafetensors(p), p, /no such file/);
  throwsUser(() => readSafetensors(dir), dir, /is a directory, expected a safetensors file/);
});
