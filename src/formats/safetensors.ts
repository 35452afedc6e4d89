/**
 * Reads the table of contents of a `.safetensors` file: an 8-byte little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}), then the tensor bytes, with every
 * offset relative to byte 8 + N. Only the header is read; tensor bytes stay on disk (they are mmapped or converted
 * later), so every offset is checked against the file size here, once.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { assertRegularFile } from './files.js';
import { findDuplicateKey } from './json-keys.js';
import type { StoredDType, StoredTensor } from './types.js';

/** Bytes per element of the dtypes the engine can use (directly or after conversion); anything else is refused. */
const ELEMENT_BYTES: ReadonlyMap<string, number> = new Map([
  ['F32', 4],
  ['F16', 2],
  ['BF16', 2],
]);

/** The reference implementation refuses headers over 100 MB; a larger one is corrupt, so never allocate for it. */
export const MAX_HEADER_BYTES = 100_000_000;

export function readSafetensors(p: string): StoredTensor[] {
  const fd = openFile(p);
  try {
    const size = fstatSync(fd).size;
    const headerLen = readHeaderLength(fd, p, size);
    const header = parseHeader(p, readExactly(fd, p, 8, headerLen));
    const dataStart = 8 + headerLen;
    const file = path.resolve(p);
    const tensors: StoredTensor[] = [];
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue; // free-form string map (e.g. {"format": "pt"}); nothing we need
      tensors.push(toTensor(p, file, name, entry, dataStart, size));
    }
    checkLayout(p, tensors, dataStart, size);
    return tensors;
  } finally {
    closeSync(fd);
  }
}

function openFile(p: string): number {
  assertRegularFile(p, 'safetensors file'); // before open: a FIFO would block the open forever
  let fd: number;
  try {
    fd = openSync(p, 'r');
  } catch (e) {
    throw new UserError(`${p}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  // Linux lets you open a directory for reading; the failure would otherwise come later as a confusing EISDIR.
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new UserError(`${p}: not a regular file`);
  }
  return fd;
}

function readHeaderLength(fd: number, p: string, size: number): number {
  if (size < 8) throw new UserError(`${p}: file is ${size} bytes, too short for a safetensors header`);
  const n = Buffer.from(readExactly(fd, p, 0, 8)).readBigUInt64LE(0);
  // Compare as bigint: a corrupt length can exceed 2^53 and would round if converted first.
  if (n > BigInt(size - 8)) {
    throw new UserError(`${p}: header length ${n} runs past the end of the file (${size} bytes); the file is truncated or not safetensors`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) throw new UserError(`${p}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  return Number(n);
}

function parseHeader(p: string, bytes: Uint8Array): Record<string, unknown> {
  let json: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${p}: header is not valid UTF-8`);
  }
  try {
    json = JSON.parse(text);
  } catch (e) {
    // V8 quotes part of the input in its message; keep the error on one line whatever that snippet holds.
    throw new UserError(`${p}: header is not valid JSON (${String((e as Error).message).replace(/\s+/g, ' ')})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`${p}: header is not a JSON object`);
  // As the reference implementation: the object starts at the header's first byte (padding only after it).
  if (!text.startsWith('{')) throw new UserError(`${p}: header does not start with "{"; the header length is wrong or this is not safetensors`);
  const dup = findDuplicateKey(text);
  if (dup !== null) throw new UserError(`${p}: header has the key ${JSON.stringify(dup)} twice`);
  return json as Record<string, unknown>;
}

function toTensor(p: string, file: string, name: string, entry: unknown, dataStart: number, size: number): StoredTensor {
  if (typeof entry !== 'object' || entry === null) throw new UserError(`${p}: tensor ${name}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;

  if (typeof dtype !== 'string') throw new UserError(`${p}: tensor ${name}: dtype is missing`);
  const elementBytes = ELEMENT_BYTES.get(dtype);
  if (elementBytes === undefined) {
    throw new UserError(`${p}: tensor ${name} has dtype ${dtype}, which is not supported (supported: ${[...ELEMENT_BYTES.keys()].join(', ')})`);
  }

  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    throw new UserError(`${p}: tensor ${name} has invalid shape ${JSON.stringify(shape)} (expected a list of non-negative integers)`);
  }
  const count = shape.reduce((a: number, b: number) => a * b, 1);
  if (!Number.isSafeInteger(count * elementBytes)) throw new UserError(`${p}: tensor ${name} shape [${shape}] is too large`);

  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt) || offsets[0] > offsets[1]) {
    throw new UserError(`${p}: tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end] with 0 <= begin <= end)`);
  }
  const [begin, end] = offsets as [number, number];
  if (dataStart + end > size) {
    throw new UserError(
      `${p}: tensor ${name} data ends at byte ${dataStart + end}, past the end of the file (${size} bytes); the file is truncated or corrupt`,
    );
  }
  if (end - begin !== count * elementBytes) {
    throw new UserError(`${p}: tensor ${name} has ${end - begin} bytes of data, but shape [${shape}] of ${dtype} needs ${count * elementBytes}`);
  }
  return { name, shape: shape as number[], dtype: dtype as StoredDType, file, offset: dataStart + begin, nbytes: end - begin };
}

/**
 * The reference implementation's layout rule: sorted by offset, the tensors tile the data section exactly — the
 * first starts at 0, each starts where the previous ends (no gap, no overlap) and the last ends at the end of the
 * file. A header length off by even one byte, or an edited offset, fails here instead of reading shifted garbage.
 */
function checkLayout(p: string, tensors: StoredTensor[], dataStart: number, size: number): void {
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset || a.nbytes - b.nbytes);
  let expected = dataStart;
  for (const t of sorted) {
    if (t.offset !== expected) {
      const rel = (n: number) => n - dataStart;
      throw new UserError(
        t.offset > expected
          ? `${p}: tensor ${t.name} starts at data offset ${rel(t.offset)}, leaving a gap after ${rel(expected)} (tensors must be contiguous)`
          : `${p}: tensor ${t.name} starts at data offset ${rel(t.offset)}, overlapping the tensor that ends at ${rel(expected)}`,
      );
    }
    expected = t.offset + t.nbytes;
  }
  if (expected !== size) {
    throw new UserError(
      `${p}: the tensors' data ends at byte ${expected} but the file has ${size} bytes; the header length or an offset is wrong`,
    );
  }
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads exactly `length` bytes at `position`; the caller has already checked the range against the file size. */
function readExactly(fd: number, p: string, position: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new UserError(`${p}: file ended early (it changed while being read?)`);
    done += n;
  }
  return buf;
}
