/**
 * Test helper: a small GGUF v3 writer, and a converter that re-encodes a real GGUF (stories260K.gguf) with its 2-D
 * weight matrices stored as F16, BF16 or Q8_0.
 *
 * Values are encoded the way ggml encodes them, so files written here hold the same bytes llama.cpp would write:
 * - F16: IEEE binary16, round to nearest, ties to even (what F16C `_cvtss_sh` and ggml's software fallback do);
 *   subnormals kept, overflow (|x| ≥ 65520) → ±inf.
 * - BF16: the top 16 bits of the f32, rounded to nearest even (ggml_compute_fp32_to_bf16); NaN is kept quiet.
 * - Q8_0: blocks of 32 along each row; d = max|x| / 127, q = roundf(x · (1/d)) (half away from zero) as in
 *   ggml's quantize_row_q8_0_ref, all in f32; the block stores d as f16 followed by the 32 int8 q. Decoding is f16(d)·q.
 */
import { writeFileSync } from 'node:fs';
import { toFloat32 } from '../src/formats/dequant.js';
import { readGguf } from '../src/formats/gguf.js';

export type GgufDType = 'F32' | 'F16' | 'BF16' | 'Q8_0';

/** GGUF metadata value types; `T[]` is an array of T. */
export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
export type GgufValueType = GgufScalarType | `${GgufScalarType}[]`;

export type GgufMetadata = [key: string, type: GgufValueType, value: unknown][];

export interface GgufTensorSpec {
  name: string;
  /** Row-major, outermost dimension first (written to the file reversed, as GGUF's innermost-first `ne`). */
  shape: number[];
  dtype: GgufDType;
  values: Float32Array;
}

export interface GgufSpec {
  metadata: GgufMetadata;
  tensors: GgufTensorSpec[];
}

const GGML_TYPE_ID: Record<GgufDType, number> = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 };
const VALUE_TYPE_ID: Record<GgufScalarType, number> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, u64: 10, i64: 11, f64: 12,
};
const ARRAY_TYPE_ID = 9;
const DEFAULT_ALIGNMENT = 32;
export const Q8_0_BLOCK = 32;

// ---------------------------------------------------------------------------------------------------------------
// Encoders

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

/** Rounds to the nearest integer, ties to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** f32 → IEEE binary16 bits, round to nearest even (x is first rounded to f32, as ggml's input is f32). */
export function floatToHalf(x: number): number {
  const bits = f32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const abs = Math.abs(Math.fround(x));
  if (Number.isNaN(abs)) return sign | 0x7e00 | ((bits >>> 13) & 0x3ff);
  if (abs >= 65520) return sign | 0x7c00; // 65520 lies exactly between 65504 and 2^16: the tie goes to inf (even)
  if (abs < 2 ** -14) return sign | roundHalfEven(abs * 2 ** 24); // subnormal (1024 becomes the smallest normal)
  let e = Math.floor(Math.log2(abs));
  if (2 ** e > abs) e--;
  if (2 ** (e + 1) <= abs) e++;
  let mant = roundHalfEven((abs / 2 ** e - 1) * 1024); // exact: abs has 24 significant bits
  if (mant === 1024) {
    mant = 0;
    e++;
  }
  return sign | ((e + 15) << 10) | mant;
}

/** f32 → bf16 bits exactly as ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet. */
export function floatToBf16(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

/** roundf: half away from zero. */
function roundAway(v: number): number {
  return Math.sign(v) * Math.round(Math.abs(v));
}

/** Encodes `values` (whole rows) as `dtype` bytes. */
export function encodeTensor(dtype: GgufDType, values: Float32Array): Uint8Array {
  switch (dtype) {
    case 'F32':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F16':
    case 'BF16': {
      const enc = dtype === 'F16' ? floatToHalf : floatToBf16;
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = enc(values[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'Q8_0':
      return encodeQ8_0(values);
  }
}

/** ggml's quantize_row_q8_0_ref, block by block. */
function encodeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK !== 0) throw new Error(`Q8_0: ${values.length} values is not a whole number of blocks`);
  const nb = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * (2 + Q8_0_BLOCK));
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = values.subarray(b * Q8_0_BLOCK, (b + 1) * Q8_0_BLOCK);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * (2 + Q8_0_BLOCK);
    view.setUint16(o, floatToHalf(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(o + 2 + j, roundAway(Math.fround(x[j]! * id)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// File writer

class ByteSink {
  private readonly parts: Uint8Array[] = [];
  length = 0;

  bytes(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  private fixed(n: number, set: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    this.bytes(b);
  }
  u8(v: number): void { this.fixed(1, (d) => d.setUint8(0, v)); }
  i8(v: number): void { this.fixed(1, (d) => d.setInt8(0, v)); }
  u16(v: number): void { this.fixed(2, (d) => d.setUint16(0, v, true)); }
  i16(v: number): void { this.fixed(2, (d) => d.setInt16(0, v, true)); }
  u32(v: number): void { this.fixed(4, (d) => d.setUint32(0, v, true)); }
  i32(v: number): void { this.fixed(4, (d) => d.setInt32(0, v, true)); }
  f32(v: number): void { this.fixed(4, (d) => d.setFloat32(0, v, true)); }
  f64(v: number): void { this.fixed(8, (d) => d.setFloat64(0, v, true)); }
  u64(v: number | bigint): void { this.fixed(8, (d) => d.setBigUint64(0, BigInt(v), true)); }
  i64(v: number | bigint): void { this.fixed(8, (d) => d.setBigInt64(0, BigInt(v), true)); }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(new Uint8Array(b.buffer, b.byteOffset, b.length));
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    if (n) this.bytes(new Uint8Array(n));
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function writeScalar(s: ByteSink, type: GgufScalarType, v: unknown, key: string): void {
  const num = (): number => {
    if (typeof v !== 'number') throw new Error(`metadata ${key}: expected a number for ${type}, got ${typeof v}`);
    return v;
  };
  switch (type) {
    case 'u8': return s.u8(num());
    case 'i8': return s.i8(num());
    case 'u16': return s.u16(num());
    case 'i16': return s.i16(num());
    case 'u32': return s.u32(num());
    case 'i32': return s.i32(num());
    case 'f32': return s.f32(num());
    case 'f64': return s.f64(num());
    case 'u64': return s.u64(v as number | bigint);
    case 'i64': return s.i64(v as number | bigint);
    case 'bool': return s.u8(v ? 1 : 0);
    case 'string':
      if (typeof v !== 'string') throw new Error(`metadata ${key}: expected a string`);
      return s.string(v);
  }
}

function writeValue(s: ByteSink, type: GgufValueType, v: unknown, key: string): void {
  if (type.endsWith('[]')) {
    const elem = type.slice(0, -2) as GgufScalarType;
    const items = Array.from(v as ArrayLike<unknown>);
    s.u32(ARRAY_TYPE_ID);
    s.u32(VALUE_TYPE_ID[elem]);
    s.u64(items.length);
    for (const item of items) writeScalar(s, elem, item, key);
    return;
  }
  s.u32(VALUE_TYPE_ID[type as GgufScalarType]);
  writeScalar(s, type as GgufScalarType, v, key);
}

/** Writes a GGUF v3 file. Tensor data is laid out in order, each tensor aligned to `general.alignment` (default 32). */
export function writeGguf(path: string, spec: GgufSpec): void {
  const alignEntry = spec.metadata.find(([k]) => k === 'general.alignment');
  const alignment = alignEntry ? Number(alignEntry[2]) : DEFAULT_ALIGNMENT;

  const encoded = spec.tensors.map((t) => {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.values.length) throw new Error(`tensor ${t.name}: shape [${t.shape}] needs ${count} values, got ${t.values.length}`);
    const rowLength = t.shape[t.shape.length - 1]!;
    if (t.dtype === 'Q8_0' && rowLength % Q8_0_BLOCK !== 0) {
      throw new Error(`tensor ${t.name}: Q8_0 needs a row length that is a multiple of ${Q8_0_BLOCK}, got ${rowLength}`);
    }
    return encodeTensor(t.dtype, t.values);
  });

  const s = new ByteSink();
  s.u32(0x46554747); // "GGUF"
  s.u32(3);
  s.u64(spec.tensors.length);
  s.u64(spec.metadata.length);
  for (const [key, type, value] of spec.metadata) {
    s.string(key);
    writeValue(s, type, value, key);
  }
  let offset = 0;
  spec.tensors.forEach((t, i) => {
    s.string(t.name);
    s.u32(t.shape.length);
    for (const n of [...t.shape].reverse()) s.u64(n);
    s.u32(GGML_TYPE_ID[t.dtype]);
    s.u64(offset);
    offset += Math.ceil(encoded[i]!.length / alignment) * alignment;
  });
  s.pad(alignment);
  for (const bytes of encoded) {
    s.bytes(bytes);
    s.pad(alignment);
  }
  writeFileSync(path, s.concat());
}

// ---------------------------------------------------------------------------------------------------------------
// Converting an existing GGUF

/**
 * The GGUF value type to re-emit a metadata value read by readGguf with (which keeps numbers, not their types):
 * integers as u32 (i32 when negative), other numbers as f32, Float32Array (e.g. tokenizer scores) as f32[],
 * Int32Array (e.g. token_type) as i32[], string lists as string[].
 */
export function inferValueType(key: string, v: unknown): GgufValueType {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'bigint') return v < 0n ? 'i64' : 'u64';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return v < 0 ? 'i32' : v < 2 ** 32 ? 'u32' : 'u64';
    return 'f32';
  }
  if (v instanceof Float32Array) return 'f32[]';
  if (v instanceof Float64Array) return 'f64[]';
  if (v instanceof Int32Array) return 'i32[]';
  if (v instanceof Uint32Array) return 'u32[]';
  if (v instanceof Int16Array) return 'i16[]';
  if (v instanceof Uint16Array) return 'u16[]';
  if (v instanceof Int8Array) return 'i8[]';
  if (v instanceof Uint8Array) return 'u8[]';
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return 'string[]';
  if (Array.isArray(v) && v.every((x) => typeof x === 'boolean')) return 'bool[]';
  throw new Error(`metadata ${key}: no GGUF type for this value`);
}

export interface ConvertResult {
  /** The dtype each tensor was written with. */
  dtypes: Map<string, GgufDType>;
}

/**
 * Copies a GGUF (metadata, tokenizer included, and tensors) to `dest`, storing every 2-D weight matrix as `dtype` and
 * keeping 1-D tensors (the RMS norms) in F32, as llama.cpp's quantised files do.
 *
 * Q8_0 needs whole 32-value blocks along each row (ne[0]). stories260K's ffn_down is [64, 172] (rows of 172), so in a
 * Q8_0 file it falls back to F16 — what llama.cpp does too (convert_hf_to_gguf.py's "falling back to F16" and
 * llama-quantize's fallback for tensors whose row length is not a multiple of the block size).
 */
export function convertGguf(src: string, dest: string, dtype: GgufDType): ConvertResult {
  const file = readGguf(src);
  const metadata: GgufMetadata = [...file.metadata].map(([k, v]) => [k, inferValueType(k, v), v]);
  const dtypes = new Map<string, GgufDType>();
  const tensors = file.tensors.map((t): GgufTensorSpec => {
    let d: GgufDType = t.shape.length >= 2 ? dtype : 'F32';
    if (d === 'Q8_0' && t.shape[t.shape.length - 1]! % Q8_0_BLOCK !== 0) d = 'F16';
    dtypes.set(t.name, d);
    return { name: t.name, shape: t.shape, dtype: d, values: toFloat32(t) };
  });
  writeGguf(dest, { metadata, tensors });
  return { dtypes };
}
