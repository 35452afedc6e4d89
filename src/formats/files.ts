/**
 * The checks every reader makes before it opens a file the user named. `stat` first, never `open` first: opening a
 * FIFO for reading blocks until a writer appears (a hang, not an error), and reading a device or a huge file into
 * memory is an allocation the user never asked for.
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import { UserError } from '../errors.js';

/** JSON side files (config.json, tokenizer.json, an index, a direction) above this are refused as not what they claim. */
export const MAX_JSON_FILE_BYTES = 512 * 1024 * 1024;

/** Throws a one-line UserError unless `path` is (a symlink to) a regular file; returns its stats. */
export function assertRegularFile(path: string, what = 'file'): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw new UserError(`${path}: ${describeStatError(e)}`);
  }
  if (st.isDirectory()) throw new UserError(`${path}: is a directory, expected a ${what}`);
  if (!st.isFile()) throw new UserError(`${path}: not a regular file (a FIFO, socket or device?), expected a ${what}`);
  return st;
}

/** A whole small file as text, after the regular-file check and a size limit (so nothing huge is allocated). */
export function readSmallText(path: string, what: string, maxBytes = MAX_JSON_FILE_BYTES): string {
  return readSmallFile(path, what, maxBytes).toString('utf8');
}

export function readSmallFile(path: string, what: string, maxBytes = MAX_JSON_FILE_BYTES): Buffer {
  const st = assertRegularFile(path, what);
  if (st.size > maxBytes) throw new UserError(`${path}: ${st.size} bytes, more than the ${maxBytes}-byte limit for a ${what}`);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UserError(`${path}: ${describeStatError(e)}`);
  }
}

export function describeStatError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'ENOTDIR') return 'no such file (a parent is not a directory)';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, expected a file';
  if (code === 'ELOOP') return 'too many levels of symbolic links';
  return `cannot read (${code ?? String(e)})`;
}
