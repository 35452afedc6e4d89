/**
 * A disk cache of float32 copies of non-F32 weights, so onnxruntime can memory-map them like F32 checkpoints.
 *
 * Layout under the cache folder (default ~/.cache/llm-features, or $LLMF_CACHE):
 *   index.json                     source realpath → {size, mtimeMs, sha256}: files are hashed once, not every run
 *   f32/<sha256 of source>/<tensor>.f32   raw little-endian float32, row-major, nothing else
 *   finite/<sha256 of source>/<tensor>.f32.ok   empty: this tensor of this content was checked to hold no NaN/Inf
 *
 * Keying by content hash means a moved, copied or re-downloaded checkpoint reuses its conversions, and an edited one
 * never picks up stale ones. Only tensors that are asked for get converted, so unused blocks cost nothing.
 *
 * Crash safety: a cache file is written under a temporary name in the same folder, fsynced, then renamed. A file with
 * a final name is therefore always complete; leftovers of killed processes keep their temporary names, are never read,
 * and are removed once stale.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../errors.js';
import { elementCount, forEachFloat32Chunk } from '../formats/dequant.js';
import { assertFiniteChunk } from '../formats/finite.js';
import type { StoredTensor } from '../formats/types.js';
import type { F32Location } from './weights.js';

/** The cache folder: $LLMF_CACHE when set, else ~/.cache/llm-features. */
export function cacheDir(): string {
  return process.env.LLMF_CACHE || path.join(os.homedir(), '.cache', 'llm-features');
}

/** Temporary files carry this marker; a final name never does (it ends in .f32 or .json). */
const TEMP_MARKER = '.tmp-';
/** A temp file untouched this long belongs to a dead process (a live writer touches it every few milliseconds). */
const STALE_TEMP_MS = 60 * 60 * 1000;

interface HashEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
}

export class WeightCache {
  readonly dir: string;
  /** What this instance did (for tests and diagnostics): source files hashed, tensors converted, tensors scanned for NaN/Inf. */
  readonly stats = { hashed: 0, converted: 0, checked: 0 };
  private readonly hashes = new Map<string, string>();
  private readonly located = new Map<string, F32Location>();

  constructor(dir: string = cacheDir()) {
    this.dir = path.resolve(dir);
  }

  /** Where the tensor's float32 bytes are: in place for F32, else in the cache (converting it on first use). */
  locate(t: StoredTensor): F32Location {
    const key = `${t.file}\0${t.name}`;
    const known = this.located.get(key);
    if (known) return known;
    const loc = t.dtype === 'F32' ? this.locateF32(t) : this.locateConverted(t);
    this.located.set(key, loc);
    return loc;
  }

  /**
   * F32 is used in place, after a one-time check for non-finite values. The check is remembered by content hash, so a
   * later run (or a copy of the file) skips it; when the cache folder is not writable the check simply runs again.
   */
  private locateF32(t: StoredTensor): F32Location {
    let marker: string | null = null;
    try {
      marker = this.finiteMarker(t);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
    }
    if (marker === null || !existsSync(marker)) {
      forEachFloat32Chunk(t, (values, start) => assertFiniteChunk(t, values, start));
      this.stats.checked++;
      if (marker !== null) this.markFinite(marker);
    }
    return { file: t.file, offset: t.offset, length: t.nbytes };
  }

  private locateConverted(t: StoredTensor): F32Location {
    const sha = this.fileHash(t.file);
    const target = path.join(this.dir, 'f32', sha, cacheFileName(t.name));
    const marker = this.finiteMarker(t, sha);
    const length = elementCount(t.shape) * 4;
    if (!isComplete(target, length)) {
      this.convert(t, target); // checks every value on the way
      this.markFinite(marker);
    } else if (!existsSync(marker)) {
      // Converted by a version that did not check: check the converted copy once.
      const copy: StoredTensor = { ...t, dtype: 'F32', file: target, offset: 0, nbytes: length };
      forEachFloat32Chunk(copy, (values, start) => assertFiniteChunk(t, values, start));
      this.stats.checked++;
      this.markFinite(marker);
    }
    return { file: target, offset: 0, length };
  }

  private finiteMarker(t: StoredTensor, sha = this.fileHash(t.file)): string {
    return path.join(this.dir, 'finite', sha, `${cacheFileName(t.name)}.ok`);
  }

  /** Best effort: a marker that cannot be written only means the check runs again next time. */
  private markFinite(marker: string): void {
    try {
      mkdirSync(path.dirname(marker), { recursive: true });
      writeAtomically(marker, () => {});
    } catch {
      // read-only cache folder or full disk: nothing is wrong with the weights
    }
  }

  /** sha256 of a source file's content, from the index when the file's realpath, size and mtime are unchanged. */
  fileHash(file: string): string {
    const real = realPath(file);
    const known = this.hashes.get(real);
    if (known) return known;
    const st = statSync(real);
    const indexed = this.readIndex()[real];
    let sha256: string;
    // The hash becomes a folder name, so a hand-edited entry that is not 64 hex digits is ignored, not used.
    if (indexed && indexed.size === st.size && indexed.mtimeMs === st.mtimeMs && /^[0-9a-f]{64}$/.test(String(indexed.sha256))) {
      sha256 = indexed.sha256;
    } else {
      sha256 = hashFile(real);
      this.stats.hashed++;
      this.remember(real, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
    }
    this.hashes.set(real, sha256);
    return sha256;
  }

  private convert(t: StoredTensor, target: string): void {
    const folder = path.dirname(target);
    this.ensureFolder(folder);
    removeStaleTemps(folder);
    // A NaN/Inf throws a UserError mid-write; writeAtomically then removes the temp file, so nothing half-written stays.
    writeAtomically(target, (fd) =>
      forEachFloat32Chunk(t, (values, start) => {
        assertFiniteChunk(t, values, start);
        writeAll(fd, values);
      }),
    );
    this.stats.converted++;
    this.stats.checked++;
  }

  private indexPath(): string {
    return path.join(this.dir, 'index.json');
  }

  /** The hash index; a missing or damaged one is treated as empty (that only costs a rehash). */
  private readIndex(): Record<string, HashEntry> {
    try {
      const json = JSON.parse(readFileSync(this.indexPath(), 'utf8')) as { files?: Record<string, HashEntry> };
      return json.files && typeof json.files === 'object' ? json.files : {};
    } catch {
      return {};
    }
  }

  /** Adds one entry, re-reading the index first so entries another process added meanwhile are kept. */
  private remember(real: string, entry: HashEntry): void {
    this.ensureFolder(this.dir);
    removeStaleTemps(this.dir);
    const files = { ...this.readIndex(), [real]: entry };
    writeAtomically(this.indexPath(), (fd) => writeAll(fd, Buffer.from(JSON.stringify({ version: 1, files }, null, 1))));
  }

  private ensureFolder(folder: string): void {
    try {
      mkdirSync(folder, { recursive: true });
    } catch (e) {
      throw new UserError(`${folder}: cannot create the weight cache folder (${errCode(e)}); set LLMF_CACHE to a writable folder`);
    }
  }
}

/**
 * A file name for a tensor: its own name when that is a safe file name (the usual case: model.layers.0.mlp.up_proj.weight),
 * otherwise a sanitised form plus a hash of the real name, so two odd names never collide.
 */
export function cacheFileName(tensorName: string): string {
  if (/^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/.test(tensorName) && !tensorName.includes(TEMP_MARKER)) return `${tensorName}.f32`;
  const safe = tensorName.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_').slice(0, 100).replaceAll(TEMP_MARKER, '_tmp_');
  return `${safe}-${createHash('sha256').update(tensorName).digest('hex').slice(0, 16)}.f32`;
}

/** A final-named file of the right size was renamed into place after a complete, fsynced write: trust it. */
function isComplete(file: string, length: number): boolean {
  try {
    const st = statSync(file);
    return st.isFile() && st.size === length;
  } catch {
    return false;
  }
}

/** Streams the file through sha256 (multi-GB checkpoints never sit in memory). */
function hashFile(file: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Writes via a temp file in the same folder + fsync + rename, so `target` is either absent, old, or complete. */
function writeAtomically(target: string, write: (fd: number) => void): void {
  const temp = `${target}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = openSync(temp, 'wx');
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(temp, target);
  } catch (e) {
    if (fd !== null) closeSync(fd);
    tryUnlink(temp);
    if (e instanceof UserError) throw e;
    throw new UserError(`${target}: cannot write to the weight cache (${errCode(e)}); free some space or set LLMF_CACHE to another folder`);
  }
}

function writeAll(fd: number, data: ArrayBufferView): void {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Deletes temp files left by killed processes (only old ones: a fresh one may be another process still writing). */
function removeStaleTemps(folder: string): void {
  const now = Date.now();
  for (const name of readdirSync(folder)) {
    if (!name.includes(TEMP_MARKER)) continue;
    const file = path.join(folder, name);
    try {
      if (now - statSync(file).mtimeMs > STALE_TEMP_MS) unlinkSync(file);
    } catch {
      // Another process removed or renamed it first: fine.
    }
  }
}

function tryUnlink(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Never created, or already gone.
  }
}

function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch (e) {
    throw new UserError(`${file}: cannot read (${errCode(e)})`);
  }
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}
