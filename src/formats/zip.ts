/**
 * The members of a ZIP archive (what NumPy's `savez` / `savez_compressed` write: a Gemma Scope `params.npz`). Only
 * what such archives use: stored (method 0) or deflated (method 8) members, the classic end-of-central-directory
 * record and the ZIP64 extra field NumPy writes for large members. Read from the central directory (the authority on
 * names and sizes; local headers are only skipped), one member at a time, so an archive is never read whole.
 */
import { closeSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { UserError } from '../errors.js';
import { openForRead } from './binary.js';

export interface ZipMember {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  /** Offset of the member's local header. */
  headerOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const ZIP64_EOCD = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;

function readAt(fd: number, file: string, offset: number, length: number, size: number): Buffer {
  if (offset < 0 || offset + length > size) throw new UserError(`${file}: truncated: the archive points at bytes ${offset}-${offset + length}, the file has ${size}`);
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, Math.min(length - done, 1 << 30), offset + done);
    if (n <= 0) throw new UserError(`${file}: truncated at byte ${offset + done}`);
    done += n;
  }
  return buf;
}

/** The archive's members by name. */
export function zipMembers(file: string): Map<string, ZipMember> {
  const { fd, size } = openForRead(file);
  try {
    // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
    const tailLen = Math.min(size, 22 + 65535);
    const tail = readAt(fd, file, size - tailLen, tailLen, size);
    let at = -1;
    for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === EOCD) { at = i; break; }
    if (at < 0) throw new UserError(`${file}: not a ZIP archive (no end-of-central-directory record)`);
    let count = tail.readUInt16LE(at + 10);
    let cdSize = tail.readUInt32LE(at + 12);
    let cdOffset = tail.readUInt32LE(at + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const locAt = size - tailLen + at - 20;
      const loc = readAt(fd, file, locAt, 20, size);
      if (loc.readUInt32LE(0) !== ZIP64_LOCATOR) throw new UserError(`${file}: ZIP64 archive without its locator`);
      const z = readAt(fd, file, Number(loc.readBigUInt64LE(8)), 56, size);
      if (z.readUInt32LE(0) !== ZIP64_EOCD) throw new UserError(`${file}: bad ZIP64 end record`);
      count = Number(z.readBigUInt64LE(32));
      cdSize = Number(z.readBigUInt64LE(40));
      cdOffset = Number(z.readBigUInt64LE(48));
    }
    const cd = readAt(fd, file, cdOffset, cdSize, size);
    const out = new Map<string, ZipMember>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw new UserError(`${file}: corrupt central directory (entry ${i})`);
      const method = cd.readUInt16LE(p + 10);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size_ = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let headerOffset = cd.readUInt32LE(p + 42);
      const name = cd.subarray(p + 46, p + 46 + nameLen).toString('utf8');
      // ZIP64 extra field (id 1): the 64-bit values of exactly those fields that hold 0xFFFFFFFF, in this order.
      let e = p + 46 + nameLen;
      const end = e + extraLen;
      while (e + 4 <= end) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 1) {
          let q = e + 4;
          const next = () => { const v = Number(cd.readBigUInt64LE(q)); q += 8; return v; };
          if (size_ === 0xffffffff) size_ = next();
          if (compressedSize === 0xffffffff) compressedSize = next();
          if (headerOffset === 0xffffffff) headerOffset = next();
        }
        e += 4 + len;
      }
      out.set(name, { name, method, compressedSize, size: size_, headerOffset });
      p = end + commentLen;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** One member's bytes, uncompressed. */
export function readZipMember(file: string, m: ZipMember): Buffer {
  const { fd, size } = openForRead(file);
  try {
    const local = readAt(fd, file, m.headerOffset, 30, size);
    if (local.readUInt32LE(0) !== LOCAL) throw new UserError(`${file}: member ${m.name}: bad local header`);
    const start = m.headerOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    const raw = readAt(fd, file, start, m.compressedSize, size);
    if (m.method === 0) return raw;
    if (m.method !== 8) throw new UserError(`${file}: member ${m.name}: compression method ${m.method} is not supported (stored or deflate only)`);
    let data: Buffer;
    try {
      data = inflateRawSync(raw);
    } catch {
      throw new UserError(`${file}: member ${m.name}: corrupt deflate data`);
    }
    if (data.length !== m.size) throw new UserError(`${file}: member ${m.name}: inflates to ${data.length} bytes, the directory says ${m.size}`);
    return data;
  } finally {
    closeSync(fd);
  }
}
