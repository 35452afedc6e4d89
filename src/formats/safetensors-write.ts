/**
 * Writes `.safetensors` files: an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
 * data_offsets: [begin, end]}, "__metadata__": {...}}) padded with spaces to a multiple of 8, then the tensors' bytes
 * back to back in the order given (the layout readSafetensors in ./safetensors.ts reads, and the one the reference
 * implementation writes).
 *
 * Tensor bytes are streamed: each tensor supplies its bytes as chunks, written as they come, so a model far larger
 * than memory can be written while holding one chunk at a time. The header is computed first from names, dtypes and
 * shapes alone.
 */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { MAX_HEADER_BYTES } from './safetensors.js';

/** Bytes per element of the dtypes this writer accepts (the safetensors spelling). */
const ELEMENT_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDType = keyof typeof ELEMENT_BYTES;

/** One tensor to write: its table-of-contents entry and a producer of its bytes. */
export interface TensorSource {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /**
   * The tensor's bytes, little-endian, in order, in chunks of any size (called once, while the file is written).
   * Their total must be exactly what dtype × shape implies.
   */
  chunks(): Iterable<Uint8Array>;
}

export interface WriteResult {
  /** Total file size in bytes. */
  bytes: number;
  /** Header length N (the JSON, padding included). */
  headerBytes: number;
}

/**
 * `{format: "pt"}` unless told otherwise: transformers refuses a safetensors checkpoint whose metadata lacks a
 * recognised "format".
 */
export const DEFAULT_METADATA: Readonly<Record<string, string>> = { format: 'pt' };

/** Size in bytes of one tensor's data. Throws on an unknown dtype or a shape that is not a list of non-negative integers. */
export function tensorByteSize(t: Pick<TensorSource, 'name' | 'dtype' | 'shape'>): number {
  const elementBytes = (ELEMENT_BYTES as Record<string, number>)[t.dtype];
  if (elementBytes === undefined) throw new Error(`safetensors: tensor ${t.name}: unknown dtype ${t.dtype}`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`safetensors: tensor ${t.name}: invalid shape [${t.shape}]`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1) * elementBytes;
  if (!Number.isSafeInteger(n)) throw new Error(`safetensors: tensor ${t.name}: shape [${t.shape}] is too large`);
  return n;
}

/**
 * The bytes before the tensor data: the 8-byte length and the JSON header, padded with spaces to a multiple of 8 so
 * that the data (and every tensor whose offset is a multiple of its element size) starts aligned.
 */
export function safetensorsHeader(
  tensors: readonly Pick<TensorSource, 'name' | 'dtype' | 'shape'>[],
  metadata: Readonly<Record<string, string>> = DEFAULT_METADATA,
): { bytes: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '' || t.name === '__metadata__') throw new Error(`safetensors: invalid tensor name ${JSON.stringify(t.name)}`);
    if (Object.hasOwn(header, t.name)) throw new Error(`safetensors: tensor ${t.name} is listed twice`);
    const n = tensorByteSize(t);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  if (json.length > MAX_HEADER_BYTES) throw new Error(`safetensors: header of ${json.length} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const bytes = Buffer.alloc(8 + json.length);
  bytes.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(bytes, 8);
  return { bytes, dataBytes: offset };
}

/**
 * Writes `file` (created or truncated), streaming each tensor's chunks to disk, and fsyncs it. A producer that yields
 * more or fewer bytes than its shape implies is a bug: the partial file is removed and the error rethrown.
 */
export function writeSafetensors(
  file: string,
  tensors: readonly TensorSource[],
  metadata: Readonly<Record<string, string>> = DEFAULT_METADATA,
): WriteResult {
  const { bytes: head, dataBytes } = safetensorsHeader(tensors, metadata);
  const fd = openSync(file, 'w');
  let ok = false;
  try {
    let pos = writeFully(fd, head, 0);
    for (const t of tensors) {
      const want = tensorByteSize(t);
      let got = 0;
      for (const chunk of t.chunks()) {
        got += chunk.length;
        if (got > want) break;
        pos = writeFully(fd, chunk, pos);
      }
      if (got > want) throw new Error(`safetensors: tensor ${t.name} produced more than the ${want} bytes its shape needs`);
      if (got < want) throw new Error(`safetensors: tensor ${t.name} produced only ${got} bytes, its shape needs ${want}`);
    }
    fsyncSync(fd);
    ok = true;
    return { bytes: head.length + dataBytes, headerBytes: head.length - 8 };
  } finally {
    closeSync(fd);
    if (!ok) rmSync(file, { force: true });
  }
}

function writeFully(fd: number, data: Uint8Array, pos: number): number {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, pos + done);
  return pos + data.length;
}

const HOST_IS_LE = endianness() === 'LE';

/**
 * F32 bytes of `count` values drawn one at a time from `next`, in chunks of at most `chunkElements` values (one
 * buffer, reused: each chunk is valid until the next is requested, which is how writeSafetensors consumes them).
 */
export function* float32Chunks(count: number, next: () => number, chunkElements = 1 << 18): Generator<Uint8Array> {
  const buf = new Float32Array(Math.max(1, Math.min(count, chunkElements)));
  const bytes = new Uint8Array(buf.buffer);
  for (let start = 0; start < count; start += buf.length) {
    const n = Math.min(buf.length, count - start);
    for (let i = 0; i < n; i++) buf[i] = next();
    if (!HOST_IS_LE) swap32(bytes, n);
    yield bytes.subarray(0, n * 4);
  }
}

/** F32 bytes of `count` copies of `value`, chunked like float32Chunks. */
export function constantFloat32Chunks(count: number, value: number, chunkElements = 1 << 18): Generator<Uint8Array> {
  return float32Chunks(count, () => value, chunkElements);
}

function swap32(b: Uint8Array, n: number): void {
  for (let i = 0; i < n * 4; i += 4) {
    const [x, y] = [b[i]!, b[i + 1]!];
    b[i] = b[i + 3]!;
    b[i + 1] = b[i + 2]!;
    b[i + 2] = y;
    b[i + 3] = x;
  }
}
