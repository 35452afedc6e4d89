/**
 * A bounds-checked little-endian reader over a file descriptor. Checkpoints can be many GB, so nothing here reads a
 * whole file: headers are read through a small sliding buffer, and tensor bytes only on request (readTensorF32).
 *
 * Every read past the end of the file, and every header-supplied count that could not possibly fit in the bytes
 * left, is a UserError naming the file: a corrupt download must produce a one-line message, never a RangeError or an
 * attempt to allocate terabytes.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { UserError } from '../errors.js';
import { assertRegularFile } from './files.js';
import type { StoredTensor } from './types.js';

/** Header bytes are fetched in chunks of this size; small enough to be cheap, large enough to amortise syscalls. */
const CHUNK = 64 * 1024;

/** How a length prefix is stored: GGUF uses u64, llama2.c's tokenizer.bin uses i32. */
export type LengthPrefix = 'u64' | 'u32' | 'i32';

/** Opens `path` for reading, turning the common OS errors into one-line UserErrors. */
export function openForRead(path: string): { fd: number; size: number } {
  // stat before open: opening a FIFO blocks until a writer comes, so a FIFO given as a model would hang.
  assertRegularFile(path);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UserError(`${path}: ${describeOpenError(e)}`);
  }
  const st = fstatSync(fd);
  if (st.isDirectory()) {
    closeSync(fd);
    throw new UserError(`${path}: is a directory, expected a file`);
  }
  return { fd, size: st.size };
}

function describeOpenError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  return `cannot open (${code ?? String(e)})`;
}

export class BinaryReader {
  readonly path: string;
  /** File size in bytes, fixed at open time. */
  readonly size: number;
  /** Absolute byte position of the next read. */
  pos = 0;
  private fd: number;
  private buf: Buffer = Buffer.alloc(0);
  /** File offset of buf[0]; the buffer holds [bufStart, bufStart + buf.length). */
  private bufStart = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  private readonly lenientDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

  private constructor(path: string, fd: number, size: number) {
    this.path = path;
    this.fd = fd;
    this.size = size;
  }

  static open(path: string): BinaryReader {
    const { fd, size } = openForRead(path);
    return new BinaryReader(path, fd, size);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Bytes between the cursor and the end of the file. */
  remaining(): number {
    return Math.max(0, this.size - this.pos);
  }

  /** A UserError "<path>: <problem>". */
  error(problem: string): UserError {
    return new UserError(`${this.path}: ${problem}`);
  }

  /** Throws "truncated" unless `n` bytes are available at the cursor. `what` names the field for the message. */
  need(n: number, what: string): void {
    if (n > this.remaining()) {
      throw this.error(`truncated: ${what} at byte ${this.pos} needs ${n} bytes, file has ${this.size}`);
    }
  }

  /**
   * Checks that `count` items of at least `minItemBytes` each could fit in the rest of the file, before anything is
   * allocated for them. Returns the count for convenient chaining.
   */
  checkCount(count: number, minItemBytes: number, what: string): number {
    if (!Number.isSafeInteger(count) || count < 0) throw this.error(`${what} ${count} is not a valid count`);
    if (count * minItemBytes > this.remaining()) {
      throw this.error(
        `truncated or corrupt: ${what} ${count} at byte ${this.pos} needs at least ${count * minItemBytes} bytes, ` +
          `only ${this.remaining()} left (file has ${this.size})`,
      );
    }
    return count;
  }

  seek(pos: number): void {
    this.pos = pos;
  }

  skip(n: number, what: string): void {
    this.need(n, what);
    this.pos += n;
  }

  /** Makes `n` bytes at the cursor available in `this.buf`; returns their index in it. */
  private fill(n: number, what: string): number {
    this.need(n, what);
    const end = this.bufStart + this.buf.length;
    if (this.pos >= this.bufStart && this.pos + n <= end) return this.pos - this.bufStart;
    const len = Math.min(Math.max(CHUNK, n), this.size - this.pos);
    const buf = Buffer.allocUnsafe(len);
    readFully(this.fd, buf, this.pos, this.path);
    this.buf = buf;
    this.bufStart = this.pos;
    return 0;
  }

  /** A copy of the next `n` bytes. */
  bytes(n: number, what = 'bytes'): Uint8Array {
    const i = this.fill(n, what);
    this.pos += n;
    return new Uint8Array(this.buf.subarray(i, i + n));
  }

  u8(what = 'u8'): number {
    const i = this.fill(1, what);
    this.pos += 1;
    return this.buf.readUInt8(i);
  }
  i8(what = 'i8'): number {
    const i = this.fill(1, what);
    this.pos += 1;
    return this.buf.readInt8(i);
  }
  u16(what = 'u16'): number {
    const i = this.fill(2, what);
    this.pos += 2;
    return this.buf.readUInt16LE(i);
  }
  i16(what = 'i16'): number {
    const i = this.fill(2, what);
    this.pos += 2;
    return this.buf.readInt16LE(i);
  }
  u32(what = 'u32'): number {
    const i = this.fill(4, what);
    this.pos += 4;
    return this.buf.readUInt32LE(i);
  }
  i32(what = 'i32'): number {
    const i = this.fill(4, what);
    this.pos += 4;
    return this.buf.readInt32LE(i);
  }
  /** u64 as a JS number; values above 2^53 - 1 cannot be represented exactly and are an error. */
  u64(what = 'u64'): number {
    const start = this.pos;
    const i = this.fill(8, what);
    this.pos += 8;
    const v = this.buf.readBigUInt64LE(i);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`${what} at byte ${start} is too large (${v})`);
    return Number(v);
  }
  /** u64 as a number when it is exactly representable, otherwise as a bigint (for metadata values, never sizes). */
  u64Value(what = 'u64'): number | bigint {
    const i = this.fill(8, what);
    this.pos += 8;
    const v = this.buf.readBigUInt64LE(i);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  /** i64 as a number when it is exactly representable, otherwise as a bigint. */
  i64Value(what = 'i64'): number | bigint {
    const i = this.fill(8, what);
    this.pos += 8;
    const v = this.buf.readBigInt64LE(i);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
  }
  i64(what = 'i64'): number {
    const start = this.pos;
    const i = this.fill(8, what);
    this.pos += 8;
    const v = this.buf.readBigInt64LE(i);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw this.error(`${what} at byte ${start} is out of range (${v})`);
    }
    return Number(v);
  }
  f32(what = 'f32'): number {
    const i = this.fill(4, what);
    this.pos += 4;
    return this.buf.readFloatLE(i);
  }
  f64(what = 'f64'): number {
    const i = this.fill(8, what);
    this.pos += 8;
    return this.buf.readDoubleLE(i);
  }

  /** A UTF-8 string of exactly `n` bytes (already known); invalid UTF-8 is an error. */
  utf8(n: number, what = 'string'): string {
    const start = this.pos;
    const i = this.fill(n, what);
    this.pos += n;
    try {
      return this.decoder.decode(this.buf.subarray(i, i + n));
    } catch {
      throw this.error(`${what} at byte ${start} is not valid UTF-8`);
    }
  }

  /**
   * A length-prefixed string. `lenient` decodes invalid UTF-8 with U+FFFD instead of failing (for metadata values,
   * where one odd string should not make a whole checkpoint unreadable); names and keys stay strict.
   */
  string(what = 'string', prefix: LengthPrefix = 'u64', lenient = false): string {
    const at = this.pos;
    const n = this.lengthPrefix(prefix, `${what} length`);
    if (n < 0) throw this.error(`${what} at byte ${at} has negative length ${n}`);
    this.need(n, what);
    if (!lenient) return this.utf8(n, what);
    const i = this.fill(n, what);
    this.pos += n;
    return this.lenientDecoder.decode(this.buf.subarray(i, i + n));
  }

  private lengthPrefix(prefix: LengthPrefix, what: string): number {
    if (prefix === 'u64') return this.u64(what);
    return prefix === 'u32' ? this.u32(what) : this.i32(what);
  }

  /**
   * `count` fixed-size little-endian elements copied into a fresh, aligned buffer (one bulk read instead of one call
   * per element). The count is checked against the remaining bytes first.
   */
  array(count: number, elemBytes: number, what: string): ArrayBuffer {
    this.checkCount(count, elemBytes, what);
    const bytes = this.bytes(count * elemBytes, what);
    // bytes() returns a copy with byteOffset 0, so its buffer is suitably aligned for any typed array.
    return bytes.buffer as ArrayBuffer;
  }
}

/** Reads exactly buf.length bytes at `offset`, in pieces (readSync caps one call at ~2 GiB). */
function readFully(fd: number, buf: Uint8Array, offset: number, path: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, Math.min(buf.length - done, 1 << 30), offset + done);
    if (n <= 0) {
      throw new UserError(`${path}: truncated: read at byte ${offset + done} returned no data (file shrank while reading?)`);
    }
    done += n;
  }
}

/** Number of elements of a shape; a reader has already checked that it is a safe integer. */
export function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Reads an F32 tensor's bytes into a fresh Float32Array (little-endian host assumed, as on every platform Node runs
 * on). Other dtypes need conversion, which comes later.
 */
export function readTensorF32(t: StoredTensor): Float32Array {
  if (t.dtype !== 'F32') {
    throw new UserError(`${t.file}: tensor ${t.name} is ${t.dtype}: unsupported dtype for now (only F32 can be read)`);
  }
  const n = elementCount(t.shape);
  if (n * 4 !== t.nbytes) {
    throw new UserError(`${t.file}: tensor ${t.name} has ${t.nbytes} bytes, but shape [${t.shape}] of F32 needs ${n * 4}`);
  }
  const { fd, size } = openForRead(t.file);
  try {
    if (t.offset + t.nbytes > size) {
      throw new UserError(
        `${t.file}: truncated: tensor ${t.name} at byte ${t.offset} needs ${t.nbytes} bytes, file has ${size}`,
      );
    }
    const out = new Float32Array(n);
    readFully(fd, new Uint8Array(out.buffer), t.offset, t.file);
    return out;
  } finally {
    closeSync(fd);
  }
}
