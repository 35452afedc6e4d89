/**
 * A feature direction (a probe or SAE vector) from a file: a NumPy `.npy` array (1-D, little-endian f4 or f8, C
 * order) or a JSON array of numbers. Every problem is a UserError naming the parameter (`direction` by default; the CLI names its flag) and the file.
 *
 * .npy layout (NumPy's format spec, versions 1–3): magic "\x93NUMPY", u8 major, u8 minor, header length (u16 LE for
 * version 1, u32 LE for 2 and 3), an ASCII/UTF-8 Python dict literal padded with spaces and ended by '\n', then the
 * raw data.
 */
import { UserError } from '../errors.js';
import { readSmallFile } from './files.js';

const MAGIC = '\x93NUMPY';
const DTYPES: Record<string, { bytes: number; read: (b: Buffer, i: number) => number }> = {
  '<f4': { bytes: 4, read: (b, i) => b.readFloatLE(i) },
  '<f8': { bytes: 8, read: (b, i) => b.readDoubleLE(i) },
};

export function readDirectionFile(path: string, param = 'direction'): Float32Array {
  const fail = (problem: string): never => {
    throw new UserError(`${param}: ${path}: ${problem}`, undefined, param);
  };
  let bytes: Buffer;
  try {
    bytes = readSmallFile(path, 'direction file');
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${param}: ${e.message}`, undefined, param) : e;
  }
  const values = path.endsWith('.npy') ? parseNpy(bytes, fail) : parseJson(bytes, fail);
  if (values.length === 0) fail('the direction is empty');
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) fail(`element ${i} is ${values[i]}; a direction must be finite`);
  }
  return values;
}

function parseNpy(bytes: Buffer, fail: (p: string) => never): Float32Array {
  const { shape, data } = parseNpyArray(bytes, fail);
  if (shape.length !== 1) fail(`expected a 1-D array, got shape ${pyShape(shape)}`);
  return data;
}

/** A shape as Python prints a tuple: (2,) and (2, 3). */
const pyShape = (shape: number[]) => `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;

/** Any C-ordered little-endian f4/f8 .npy array (an SAE's matrices in a Gemma Scope params.npz), as float32. */
export function parseNpyArray(bytes: Buffer, fail: (p: string) => never): { shape: number[]; data: Float32Array } {
  if (bytes.length < 10 || bytes.subarray(0, 6).toString('latin1') !== MAGIC) fail('not a .npy file (bad magic)');
  const major = bytes[6]!;
  if (major < 1 || major > 3) fail(`unsupported .npy version ${major}`);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) fail(`truncated: ${bytes.length} bytes, too short for a .npy header`);
  const headerLen = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = 8 + lenBytes + headerLen;
  if (start > bytes.length) fail(`truncated: the header claims ${headerLen} bytes, the file has ${bytes.length}`);
  const header = bytes.subarray(8 + lenBytes, start).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail('header has no descr, fortran_order or shape');
  if (fortran === 'True') fail('Fortran-ordered arrays are not supported');
  const dims = shapeText!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (dims.some((d) => !/^\d+$/.test(d))) fail(`unreadable shape (${shapeText})`);
  const shape = dims.map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(n)) fail(`shape (${shapeText}) is too large`);
  const dtype = DTYPES[descr!];
  if (!dtype) fail(`unsupported dtype ${descr} (supported: ${Object.keys(DTYPES).join(', ')})`);
  const need = n * dtype!.bytes;
  const have = bytes.length - start;
  if (have !== need) fail(`shape ${pyShape(shape)} of ${descr} needs ${need} data bytes, the file has ${have}`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = dtype!.read(bytes, start + i * dtype!.bytes);
  return { shape, data };
}

function parseJson(bytes: Buffer, fail: (p: string) => never): Float32Array {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    fail('not valid JSON (expected an array of numbers)');
  }
  if (!Array.isArray(parsed) || parsed.some((x) => typeof x !== 'number')) fail('expected a non-empty array of finite numbers');
  return Float32Array.from(parsed as number[]);
}
