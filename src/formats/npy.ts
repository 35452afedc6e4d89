/** Direction vectors from disk: a JSON array of numbers, or a 1-D little-endian float32/float64 `.npy` file. */
import { readFileSync } from 'node:fs';
import { paramError } from '../errors.js';

/** Read a direction vector; errors name `param` and the file. */
export function readDirectionFile(path: string, param = 'direction'): Float32Array {
  const fail = (problem: string) => paramError(param, `${path}: ${problem}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    throw fail('cannot read the file');
  }
  if (path.endsWith('.npy')) {
    if (bytes.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw fail('not a .npy file');
    const major = bytes[6]!;
    const headerLen = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
    const start = (major === 1 ? 10 : 12) + headerLen;
    const header = bytes.subarray(major === 1 ? 10 : 12, start).toString('latin1');
    const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]?.split(',').filter((s) => s.trim() !== '').map(Number);
    if (/'fortran_order':\s*True/.test(header)) throw fail('Fortran-ordered arrays are not supported');
    if (!shape || shape.length !== 1) throw fail(`expected a 1-D array, got shape (${shape?.join(', ') ?? '?'})`);
    const n = shape[0]!;
    const body = bytes.subarray(start);
    if (descr === '<f4' && body.length >= n * 4) return new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + n * 4));
    if (descr === '<f8' && body.length >= n * 8) return Float32Array.from(new Float64Array(body.buffer.slice(body.byteOffset, body.byteOffset + n * 8)));
    throw fail(`unsupported dtype ${descr} or truncated data`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw fail('not valid JSON (expected an array of numbers)');
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw fail('expected a non-empty array of finite numbers');
  }
  return Float32Array.from(parsed as number[]);
}
