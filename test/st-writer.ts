// Test helpers: write small safetensors files (valid ones, and deliberately broken ones via writeRawSafetensors).
import { writeFileSync } from 'node:fs';

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** A valid safetensors file: tensors laid out back to back in the given order, header padded to 8 bytes. */
export function writeSafetensors(path: string, tensors: TensorSpec[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  const data = new Uint8Array(offset);
  offset = 0;
  for (const t of tensors) {
    data.set(t.data, offset);
    offset += t.data.length;
  }
  writeRawSafetensors(path, header, data);
}

/** Any header (it need not match the data) followed by `data`; `headerLength` overrides the stored length. */
export function writeRawSafetensors(path: string, header: unknown, data: Uint8Array, headerLength?: bigint): void {
  let json = JSON.stringify(header);
  while (json.length % 8 !== 0) json += ' ';
  const head = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLength ?? BigInt(head.length));
  writeFileSync(path, Buffer.concat([len, head, data]));
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Little-endian bytes of 16-bit patterns (F16 / BF16 bit patterns written by hand in the tests). */
export function u16Bytes(bits: number[]): Uint8Array {
  return new Uint8Array(Uint16Array.from(bits).buffer);
}

/** BF16 bytes of values that are exactly representable in bf16 (the top half of their f32 bits). */
export function bf16Bytes(values: number[]): Uint8Array {
  const u32 = new Uint32Array(Float32Array.from(values).buffer);
  return u16Bytes([...u32].map((b) => b >>> 16));
}
