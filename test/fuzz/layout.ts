/**
 * Where the fields of a GGUF header and a safetensors header sit in the bytes, found by walking the format
 * independently of the readers under test, so tests and the fuzz suite can corrupt exactly one field.
 */

export interface GgufKv {
  key: string;
  type: number;
  /** Byte position of the value (after the u32 type). */
  valuePos: number;
}

export interface GgufInfo {
  name: string;
  ne: number[];
  /** Byte positions of the u32 ggml type and the u64 relative offset. */
  typePos: number;
  offsetPos: number;
  offset: number;
}

export interface GgufLayout {
  kvs: GgufKv[];
  infos: GgufInfo[];
  /** End of the tensor-info section (before the alignment padding). */
  infoEnd: number;
}

const SCALAR: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function ggufLayout(b: Buffer): GgufLayout {
  let p = 8;
  const u64 = () => {
    const v = Number(b.readBigUInt64LE(p));
    p += 8;
    return v;
  };
  const u32 = () => {
    const v = b.readUInt32LE(p);
    p += 4;
    return v;
  };
  const str = () => {
    const n = u64();
    const s = b.subarray(p, p + n).toString('utf8');
    p += n;
    return s;
  };
  const skipValue = (type: number): void => {
    if (type === 8) {
      const len = u64();
      p += len;
    } else if (type === 9) {
      const et = u32();
      const n = u64();
      if (SCALAR[et] !== undefined) p += n * SCALAR[et]!;
      else for (let i = 0; i < n; i++) skipValue(et);
    } else p += SCALAR[type]!;
  };
  const nTensors = u64();
  const nKv = u64();
  const kvs: GgufKv[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    kvs.push({ key, type, valuePos: p });
    skipValue(type);
  }
  const infos: GgufInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    const typePos = p;
    u32();
    const offsetPos = p;
    const offset = u64();
    infos.push({ name, ne, typePos, offsetPos, offset });
  }
  return { kvs, infos, infoEnd: p };
}

/** The data section's start: the tensor-info end rounded up to 32 (these files use the default alignment). */
export function ggufDataStart(l: GgufLayout): number {
  return Math.ceil(l.infoEnd / 32) * 32;
}

export interface SafetensorsParts {
  headerLength: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Buffer;
}

export function safetensorsParts(b: Buffer): SafetensorsParts {
  const headerLength = Number(b.readBigUInt64LE(0));
  return { headerLength, header: JSON.parse(b.subarray(8, 8 + headerLength).toString('utf8')), data: b.subarray(8 + headerLength) };
}

/** A safetensors file from a header object (serialised as is, unpadded unless `pad`) and data. */
export function safetensorsBytes(header: string | object, data: Buffer, opts: { lengthDelta?: number; pad?: number } = {}): Buffer {
  const json = Buffer.from((typeof header === 'string' ? header : JSON.stringify(header)) + ' '.repeat(opts.pad ?? 0));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length + (opts.lengthDelta ?? 0)));
  return Buffer.concat([len, json, data]);
}
