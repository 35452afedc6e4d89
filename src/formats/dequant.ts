/**
 * Exact conversion of stored tensors to float32. onnxruntime has no f16/bf16/Q8_0 compute on x86 CPUs, so every
 * non-F32 weight is turned into f32 once (see engine/weight-cache.ts). Conversions are bit-exact: every F16, BF16
 * and Q8_0 value is representable in f32, including subnormals, infinities and NaN.
 *
 * Assumes a little-endian host (as onnxruntime's memory-mapped external data does): F32 bytes are copied as is.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { UserError } from '../errors.js';
import type { StoredDType, StoredTensor } from './types.js';

/** GGUF Q8_0: blocks of 32 values, each block an f16 scale d followed by 32 int8 q; value = d * q. */
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** Elements decoded per read when converting piecewise (4 MiB of f32): bounds memory for multi-GB tensors. */
const DEFAULT_CHUNK = 1 << 20;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes `count` values of `dtype` occupy on disk; throws a UserError (naming `where`) for dtypes we cannot convert. */
export function storedBytes(dtype: StoredDType, count: number, where: string): number {
  switch (dtype) {
    case 'F32':
      return count * 4;
    case 'F16':
    case 'BF16':
      return count * 2;
    case 'Q8_0':
      if (count % Q8_0_BLOCK !== 0) throw new UserError(`${where}: Q8_0 tensor has ${count} values, not a multiple of ${Q8_0_BLOCK}`);
      return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
    default:
      throw new UserError(`${where}: dtype ${dtype} cannot be converted to float32 (supported: F32, F16, BF16, Q8_0)`);
  }
}

/** The whole tensor as float32. Large tensors are still read piecewise so the raw bytes are never held twice. */
export function toFloat32(t: StoredTensor): Float32Array {
  const out = new Float32Array(checkedCount(t));
  forEachFloat32Chunk(t, (chunk, start) => out.set(chunk, start));
  return out;
}

/**
 * Calls `fn` with consecutive pieces of the tensor as float32 (`start` = index of the piece's first value), at most
 * `chunk` values each (rounded up to whole Q8_0 blocks). The array passed to `fn` is reused: copy it before returning.
 */
export function forEachFloat32Chunk(t: StoredTensor, fn: (values: Float32Array, start: number) => void, chunk = DEFAULT_CHUNK): void {
  const count = checkedCount(t);
  const step = t.dtype === 'Q8_0' ? Math.ceil(chunk / Q8_0_BLOCK) * Q8_0_BLOCK : Math.max(1, chunk);
  const out = new Float32Array(Math.min(step, count));
  const raw = new Uint8Array(storedBytes(t.dtype, out.length, t.file));
  const fd = openSource(t);
  try {
    for (let start = 0; start < count; start += step) {
      const n = Math.min(step, count - start);
      const bytes = raw.subarray(0, storedBytes(t.dtype, n, t.file));
      readInto(fd, t, bytes, t.offset + storedBytes(t.dtype, start, t.file));
      const values = out.subarray(0, n);
      decodeInto(t.dtype, bytes, values);
      fn(values, start);
    }
  } finally {
    closeSync(fd);
  }
}

/** Decodes `src` (exactly out.length values of `dtype`) into `out`. */
export function decodeInto(dtype: StoredDType, src: Uint8Array, out: Float32Array): void {
  switch (dtype) {
    case 'F32':
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(src);
      return;
    case 'F16':
      return decodeF16(src, out);
    case 'BF16':
      return decodeBf16(src, out);
    case 'Q8_0':
      return decodeQ8_0(src, out);
    default:
      throw new Error(`decodeInto: unsupported dtype ${dtype}`); // storedBytes already refused it with a UserError
  }
}

function decodeF16(src: Uint8Array, out: Float32Array): void {
  const table = f16Table();
  for (let i = 0; i < out.length; i++) out[i] = table[src[2 * i]! | (src[2 * i + 1]! << 8)]!;
}

/** BF16 is the top half of an f32, so shifting the bits into place is exact for every value, NaN payloads included. */
function decodeBf16(src: Uint8Array, out: Float32Array): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < out.length; i++) bits[i] = ((src[2 * i]! | (src[2 * i + 1]! << 8)) << 16) >>> 0;
}

function decodeQ8_0(src: Uint8Array, out: Float32Array): void {
  const table = f16Table();
  for (let b = 0; b * Q8_0_BLOCK < out.length; b++) {
    const o = b * Q8_0_BLOCK_BYTES;
    const d = table[src[o]! | (src[o + 1]! << 8)]!;
    // d has 11 significant bits and q 8, so the product is exact in f32 — the same value ggml computes.
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * ((src[o + 2 + j]! << 24) >> 24);
  }
}

let F16_TABLE: Float32Array | null = null;

/** All 65536 half-precision values as f32 (256 KiB), built once: a lookup beats per-value bit fiddling. */
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  return (F16_TABLE = table);
}

/** IEEE 754 binary16 → number, exactly: zero and subnormals are mant·2^-24, exponent 31 is ±inf or NaN. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function checkedCount(t: StoredTensor): number {
  const count = elementCount(t.shape);
  const need = storedBytes(t.dtype, count, `${t.file}: tensor ${t.name}`);
  if (need !== t.nbytes) {
    throw new UserError(`${t.file}: tensor ${t.name} holds ${t.nbytes} bytes, but ${count} values of ${t.dtype} need ${need}`);
  }
  return count;
}

function openSource(t: StoredTensor): number {
  try {
    return openSync(t.file, 'r');
  } catch (e) {
    throw new UserError(`${t.file}: cannot open to read tensor ${t.name} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

function readInto(fd: number, t: StoredTensor, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    // The reader checked offsets against the file size, so a short read means the file shrank since.
    if (n === 0) throw new UserError(`${t.file}: file ended while reading tensor ${t.name} (was it changed after it was opened?)`);
    done += n;
  }
}
