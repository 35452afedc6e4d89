/**
 * GGUF (versions 2 and 3) header reader: metadata key/values and tensor locations. Tensor bytes are not read here;
 * each tensor comes back as a StoredTensor whose byte range has been checked against the file size.
 *
 * Layout (all little-endian): "GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv_count × (string key,
 * u32 value_type, value) | tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset) |
 * padding to `general.alignment` | tensor data. Strings are u64 length + UTF-8 bytes.
 *
 * Metadata values as JS values:
 * - integers and floats → number; u64/i64 → number when exactly representable, otherwise bigint;
 * - bool → boolean; string → string;
 * - arrays of numeric types → typed arrays (Uint8Array … Float64Array; u64/i64 arrays → (number | bigint)[]),
 *   arrays of bools/strings/arrays → plain JS arrays.
 */
import { UserError } from '../errors.js';
import { BinaryReader } from './binary.js';
import type { StoredDType, StoredTensor } from './types.js';

export interface GgufTensor extends StoredTensor {
  /** The ggml type as GGUF names it ("F32", "Q4_K", …). For types the engine can convert this equals `dtype`. */
  ggmlType: string;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensor[];
  alignment: number;
  /** Absolute byte offset where tensor data starts; every tensor offset is relative to this in the file. */
  dataOffset: number;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Arrays of arrays are legal, but a corrupt file must not recurse until the stack overflows. */
const MAX_ARRAY_NESTING = 8;

// ---------------------------------------------------------------------------------------------------------------
// ggml tensor types

interface GgmlType {
  name: string;
  /** Elements per block (1 for plain types) and bytes per block: nbytes = elements / blockSize × blockBytes. */
  blockSize: number;
  blockBytes: number;
  /** Set when StoredDType has this type, i.e. a later converter can turn it into F32. */
  dtype?: StoredDType;
}

/** From ggml.h / ggml.c type_traits. Ids 4, 5 and 31–33 were removed from ggml and never appear in valid files. */
const GGML_TYPES: Record<number, GgmlType> = {
  0: { name: 'F32', blockSize: 1, blockBytes: 4, dtype: 'F32' },
  1: { name: 'F16', blockSize: 1, blockBytes: 2, dtype: 'F16' },
  2: { name: 'Q4_0', blockSize: 32, blockBytes: 18 },
  3: { name: 'Q4_1', blockSize: 32, blockBytes: 20 },
  6: { name: 'Q5_0', blockSize: 32, blockBytes: 22 },
  7: { name: 'Q5_1', blockSize: 32, blockBytes: 24 },
  8: { name: 'Q8_0', blockSize: 32, blockBytes: 34, dtype: 'Q8_0' },
  9: { name: 'Q8_1', blockSize: 32, blockBytes: 36 },
  10: { name: 'Q2_K', blockSize: 256, blockBytes: 84 },
  11: { name: 'Q3_K', blockSize: 256, blockBytes: 110 },
  12: { name: 'Q4_K', blockSize: 256, blockBytes: 144 },
  13: { name: 'Q5_K', blockSize: 256, blockBytes: 176 },
  14: { name: 'Q6_K', blockSize: 256, blockBytes: 210 },
  15: { name: 'Q8_K', blockSize: 256, blockBytes: 292 },
  16: { name: 'IQ2_XXS', blockSize: 256, blockBytes: 66 },
  17: { name: 'IQ2_XS', blockSize: 256, blockBytes: 74 },
  18: { name: 'IQ3_XXS', blockSize: 256, blockBytes: 98 },
  19: { name: 'IQ1_S', blockSize: 256, blockBytes: 50 },
  20: { name: 'IQ4_NL', blockSize: 32, blockBytes: 18 },
  21: { name: 'IQ3_S', blockSize: 256, blockBytes: 110 },
  22: { name: 'IQ2_S', blockSize: 256, blockBytes: 82 },
  23: { name: 'IQ4_XS', blockSize: 256, blockBytes: 136 },
  24: { name: 'I8', blockSize: 1, blockBytes: 1 },
  25: { name: 'I16', blockSize: 1, blockBytes: 2 },
  26: { name: 'I32', blockSize: 1, blockBytes: 4, dtype: 'I32' },
  27: { name: 'I64', blockSize: 1, blockBytes: 8, dtype: 'I64' },
  28: { name: 'F64', blockSize: 1, blockBytes: 8, dtype: 'F64' },
  29: { name: 'IQ1_M', blockSize: 256, blockBytes: 56 },
  30: { name: 'BF16', blockSize: 1, blockBytes: 2, dtype: 'BF16' },
  34: { name: 'TQ1_0', blockSize: 256, blockBytes: 54 },
  35: { name: 'TQ2_0', blockSize: 256, blockBytes: 66 },
  39: { name: 'MXFP4', blockSize: 32, blockBytes: 17 },
};

// ---------------------------------------------------------------------------------------------------------------
// Metadata value types

const enum ValueType {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

/** Bytes per element for fixed-size value types. */
const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** The fewest bytes one value of a type can take: used to reject impossible array lengths before allocating. */
function minValueBytes(type: number): number {
  if (type === ValueType.String) return 8; // the u64 length prefix of an empty string
  if (type === ValueType.Array) return 12; // u32 element type + u64 count of an empty array
  return SCALAR_BYTES[type] ?? 1;
}

// ---------------------------------------------------------------------------------------------------------------

/** Reads a GGUF file's header. Throws a UserError naming the file for anything malformed or truncated. */
export function readGguf(path: string): GgufFile {
  const r = BinaryReader.open(path);
  try {
    return parse(r);
  } finally {
    r.close();
  }
}

function parse(r: BinaryReader): GgufFile {
  if (r.size === 0) throw r.error('empty file, expected a GGUF checkpoint');
  if (r.size < 4 || r.u32('magic') !== MAGIC) throw r.error('not a GGUF file (bad magic; expected "GGUF")');
  const version = r.u32('version');
  if (version === 1) throw r.error('GGUF version 1 is not supported (only versions 2 and 3); re-convert the model');
  if (version !== 2 && version !== 3) throw r.error(`unsupported GGUF version ${version} (supported: 2 and 3)`);

  // Each tensor info takes at least 24 bytes (empty name, n_dims, type, offset), each key/value at least 13.
  const tensorCount = r.checkCount(r.u64('tensor count'), 24, 'tensor count');
  const kvCount = r.checkCount(r.u64('metadata key/value count'), 13, 'metadata key/value count');

  const metadata = readMetadata(r, kvCount);
  const alignment = readAlignment(r, metadata);
  const infos = readTensorInfos(r, tensorCount);
  const dataOffset = alignUp(r.pos, alignment);
  const tensors = infos.map((info) => locateTensor(r, info, dataOffset, alignment));
  checkSequence(r, tensors, dataOffset, alignment);
  return { path: r.path, version, metadata, tensors, alignment, dataOffset };
}

function readMetadata(r: BinaryReader, count: number): Map<string, unknown> {
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    const key = r.string(`metadata key #${i}`);
    if (metadata.has(key)) throw r.error(`duplicate metadata key "${key}" at byte ${at}`);
    const type = r.u32(`type of metadata "${key}"`);
    metadata.set(key, readValue(r, type, `metadata "${key}"`, 0));
  }
  return metadata;
}

function readValue(r: BinaryReader, type: number, what: string, depth: number): unknown {
  switch (type) {
    case ValueType.U8: return r.u8(what);
    case ValueType.I8: return r.i8(what);
    case ValueType.U16: return r.u16(what);
    case ValueType.I16: return r.i16(what);
    case ValueType.U32: return r.u32(what);
    case ValueType.I32: return r.i32(what);
    case ValueType.F32: return r.f32(what);
    case ValueType.F64: return r.f64(what);
    case ValueType.U64: return r.u64Value(what);
    case ValueType.I64: return r.i64Value(what);
    case ValueType.Bool: return readBool(r, what);
    case ValueType.String: return r.string(what, 'u64', true);
    case ValueType.Array: return readArray(r, what, depth);
    default: throw r.error(`${what} has unknown value type ${type} (at byte ${r.pos - 4})`);
  }
}

function readBool(r: BinaryReader, what: string): boolean {
  const at = r.pos;
  const b = r.u8(what);
  if (b > 1) throw r.error(`${what} at byte ${at} is a bool with value ${b} (expected 0 or 1)`);
  return b === 1;
}

function readArray(r: BinaryReader, what: string, depth: number): unknown {
  if (depth >= MAX_ARRAY_NESTING) throw r.error(`${what} nests arrays more than ${MAX_ARRAY_NESTING} deep`);
  const elemType = r.u32(`${what} element type`);
  // Check the length against the bytes left before allocating anything: a corrupt length must fail fast.
  const n = r.checkCount(r.u64(`${what} length`), minValueBytes(elemType), `${what} array length`);
  const typed = readTypedArray(r, elemType, n, what);
  if (typed) return typed;
  if (elemType < 0 || elemType > ValueType.F64) throw r.error(`${what} has unknown array element type ${elemType}`);
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) out.push(readValue(r, elemType, `${what}[${i}]`, depth + 1));
  return out;
}

/** Arrays of fixed-size numbers are read in one bulk copy; returns null for other element types. */
function readTypedArray(r: BinaryReader, type: number, n: number, what: string): ArrayLike<number> | null {
  const bytes = SCALAR_BYTES[type];
  if (bytes === undefined || type === ValueType.Bool || type === ValueType.U64 || type === ValueType.I64) return null;
  const buf = r.array(n, bytes, what);
  switch (type) {
    case ValueType.U8: return new Uint8Array(buf);
    case ValueType.I8: return new Int8Array(buf);
    case ValueType.U16: return new Uint16Array(buf);
    case ValueType.I16: return new Int16Array(buf);
    case ValueType.U32: return new Uint32Array(buf);
    case ValueType.I32: return new Int32Array(buf);
    case ValueType.F32: return new Float32Array(buf);
    default: return new Float64Array(buf);
  }
}

function readAlignment(r: BinaryReader, metadata: Map<string, unknown>): number {
  const a = metadata.get('general.alignment');
  if (a === undefined) return DEFAULT_ALIGNMENT;
  // llama.cpp requires a non-zero power of two: tensor data is mapped and used in place.
  if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
    throw r.error(`general.alignment must be a power of two, got ${String(a)}`);
  }
  return a;
}

interface TensorInfo {
  name: string;
  /** ggml order: ne[0] is the innermost (contiguous) dimension. */
  ne: number[];
  type: number;
  relOffset: number;
}

function readTensorInfos(r: BinaryReader, count: number): TensorInfo[] {
  const infos: TensorInfo[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    const name = r.string(`name of tensor #${i}`);
    if (seen.has(name)) throw r.error(`duplicate tensor name "${name}" at byte ${at}`);
    seen.add(name);
    const nDims = r.u32(`dimension count of tensor ${name}`);
    if (nDims < 1 || nDims > MAX_DIMS) throw r.error(`tensor ${name} has ${nDims} dimensions (expected 1 to ${MAX_DIMS})`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.u64(`dimension ${d} of tensor ${name}`));
    const type = r.u32(`type of tensor ${name}`);
    const relOffset = r.u64(`offset of tensor ${name}`);
    infos.push({ name, ne, type, relOffset });
  }
  return infos;
}

/** Turns a tensor info into a StoredTensor, checking its type, size, alignment and that it lies inside the file. */
function locateTensor(r: BinaryReader, info: TensorInfo, dataOffset: number, alignment: number): GgufTensor {
  const { name, ne, type, relOffset } = info;
  const traits = GGML_TYPES[type];
  if (!traits) throw r.error(`tensor ${name} has unknown ggml type ${type}`);
  const nbytes = tensorBytes(r, name, ne, traits);
  if (relOffset % alignment !== 0) {
    throw r.error(`tensor ${name} offset ${relOffset} is not a multiple of the alignment ${alignment}`);
  }
  const offset = dataOffset + relOffset;
  if (offset + nbytes > r.size) {
    throw r.error(
      `truncated: tensor ${name} at byte ${offset} needs ${nbytes} bytes, file has ${r.size}` +
        (offset >= r.size ? ' (offset points past the end of the file)' : ''),
    );
  }
  return {
    name,
    shape: [...ne].reverse(),
    // Types without a StoredDType keep their ggml name; readers of tensor bytes reject them with that name.
    dtype: traits.dtype ?? (traits.name as StoredDType),
    ggmlType: traits.name,
    file: r.path,
    offset,
    nbytes,
  };
}

/**
 * llama.cpp's layout rule: tensor i starts exactly where tensor i-1 ends, rounded up to the alignment, and the first
 * at 0. So overlapping offsets, gaps and a tensor whose type id was changed (its size with it) are refused, as
 * llama.cpp refuses them. The file may end anywhere from the last tensor's end to that end padded to the alignment.
 */
function checkSequence(r: BinaryReader, tensors: GgufTensor[], dataOffset: number, alignment: number): void {
  let expected = dataOffset;
  let end = dataOffset;
  for (const t of tensors) {
    if (t.offset !== expected) {
      throw r.error(
        `tensor ${t.name} has offset ${t.offset - dataOffset}, expected ${expected - dataOffset} (right after the previous tensor); ` +
          'offsets overlap, leave a gap, or a tensor type was changed',
      );
    }
    end = t.offset + t.nbytes;
    expected = alignUp(end, alignment);
  }
  if (tensors.length > 0 && r.size > expected) {
    throw r.error(`has ${r.size - end} bytes after its last tensor (expected at most ${expected - end} bytes of padding); a tensor type or size was changed?`);
  }
}

function tensorBytes(r: BinaryReader, name: string, ne: number[], t: GgmlType): number {
  let elements = 1;
  for (const n of ne) {
    elements *= n;
    if (!Number.isSafeInteger(elements)) throw r.error(`tensor ${name} shape [${ne}] has too many elements`);
  }
  // Blocks run along the innermost dimension, so each row must hold whole blocks.
  if (ne[0]! % t.blockSize !== 0) {
    throw r.error(`tensor ${name} of type ${t.name} has row length ${ne[0]}, not a multiple of its block size ${t.blockSize}`);
  }
  return (elements / t.blockSize) * t.blockBytes;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Throws a UserError unless `value` is a GGUF metadata key of the expected JS type (convenience for callers). */
export function ggufString(file: GgufFile, key: string): string {
  const v = file.metadata.get(key);
  if (typeof v !== 'string') throw new UserError(`${file.path}: metadata ${key} is missing or not a string`);
  return v;
}
