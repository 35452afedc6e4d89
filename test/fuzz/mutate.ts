/**
 * Seeded mutations for the fuzz suite: byte-level (flips, interesting integers, truncation, insertion, deletion,
 * NaN/Inf in float data) and JSON-level (a random node deleted, replaced or duplicated). Every choice comes from the
 * case's own generator, so a case is reproduced from (format, seed) alone.
 */
import { uniformStream } from '../../src/util/random.js';

export class Rng {
  private readonly u: () => number;
  constructor(readonly seed: number) {
    this.u = uniformStream(seed);
  }
  float(): number {
    return this.u();
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.u() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.u() < p;
  }
}

/** Values that sit on the edges readers get wrong: zero, one, sign bits, all ones, powers of two. */
const INTERESTING_U32 = [0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 64, 255, 256, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING_U64 = [0n, 1n, 8n, 32n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
const FLOATS = [NaN, Infinity, -Infinity, -1, 0, -0, 1e-45, 3.4e38];

/** Where a mutation lands: inside `hot` (a header) most of the time, anywhere otherwise. */
export interface Region {
  start: number;
  end: number;
}

function position(rng: Rng, size: number, hot?: Region): number {
  if (hot && hot.end > hot.start && rng.chance(0.85)) return hot.start + rng.int(hot.end - hot.start);
  return rng.int(Math.max(1, size));
}

/** One or a few byte-level mutations of `src`; returns the new bytes and a label saying what was done. */
export function mutateBytes(rng: Rng, src: Buffer, hot?: Region, floats?: Region): { bytes: Buffer; label: string } {
  let b = Buffer.from(src);
  const labels: string[] = [];
  const count = 1 + (rng.chance(0.3) ? rng.int(4) : 0);
  for (let k = 0; k < count; k++) {
    const kind = rng.int(floats ? 9 : 8);
    const at = position(rng, b.length, hot);
    switch (kind) {
      case 0: {
        const bit = rng.int(8);
        if (at < b.length) b[at] = b[at]! ^ (1 << bit);
        labels.push(`flip bit ${bit} of byte ${at}`);
        break;
      }
      case 1: {
        const v = rng.pick([0, 0xff, 0x7f, 0x80, 0x01, rng.int(256)]);
        if (at < b.length) b[at] = v;
        labels.push(`byte ${at} = ${v}`);
        break;
      }
      case 2: {
        const v = rng.pick(INTERESTING_U32);
        if (at + 4 <= b.length) b.writeUInt32LE(v, at);
        labels.push(`u32 at ${at} = ${v}`);
        break;
      }
      case 3: {
        const v = rng.pick(INTERESTING_U64);
        if (at + 8 <= b.length) b.writeBigUInt64LE(v, at);
        labels.push(`u64 at ${at} = ${v}`);
        break;
      }
      case 4: {
        const len = rng.chance(0.5) ? at : rng.int(b.length + 1);
        b = b.subarray(0, len);
        labels.push(`truncate to ${len}`);
        break;
      }
      case 5: {
        const n = 1 + rng.int(16);
        const ins = Buffer.from(Array.from({ length: n }, () => rng.int(256)));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        labels.push(`insert ${n} bytes at ${at}`);
        break;
      }
      case 6: {
        const n = 1 + rng.int(16);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
        labels.push(`delete ${n} bytes at ${at}`);
        break;
      }
      case 7: {
        const n = 1 + rng.int(32);
        b = Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]);
        labels.push(`duplicate ${n} bytes at ${at}`);
        break;
      }
      default: {
        // A non-finite or extreme float inside the tensor data, on a 4-byte boundary of the region.
        const r = floats!;
        const slot = r.start + 4 * rng.int(Math.max(1, Math.floor((r.end - r.start) / 4)));
        const v = rng.pick(FLOATS);
        if (slot + 4 <= b.length) b.writeFloatLE(v, slot);
        labels.push(`f32 at ${slot} = ${v}`);
      }
    }
  }
  return { bytes: b, label: labels.join('; ') };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const INTERESTING_JSON: Json[] = [null, true, false, 0, -1, 1, 0.5, -0.5, 1e308, -1e308, 2 ** 53 + 2, 4294967296, '', 'x', 'F32', 'BF16', 'I8', [], [0], [-1, 2], [[1]], {}, { a: 1 }];

/** Every path (list of keys/indices) in a JSON value, the root included. */
function paths(v: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

function at(v: Json, p: (string | number)[]): Json {
  return p.reduce<Json>((x, k) => (x as Record<string | number, Json>)[k]!, v);
}

/**
 * One JSON-level mutation; `bias` names keys worth hitting more often (e.g. data_offsets). Text-level damage
 * (truncation, a flipped character, a duplicated key) is part of the mix, as files are damaged as text too.
 */
export function mutateJson(rng: Rng, text: string, bias: string[] = []): { text: string; label: string } {
  const kind = rng.int(10);
  if (kind === 0) {
    const n = rng.int(text.length);
    return { text: text.slice(0, n), label: `truncate text to ${n}` };
  }
  if (kind === 1) {
    const i = rng.int(text.length);
    const c = rng.pick(['"', '{', '}', '[', ']', ',', ':', '0', '-', 'e', '\\', ' ', '\u0000', 'é']);
    return { text: text.slice(0, i) + c + text.slice(i + 1), label: `char ${i} = ${JSON.stringify(c)}` };
  }
  let root = JSON.parse(text) as Json;
  const all = paths(root);
  const biased = all.filter((p) => p.some((k) => bias.includes(String(k))));
  const p = biased.length && rng.chance(0.6) ? rng.pick(biased) : rng.pick(all);
  const where = JSON.stringify(p);
  const parent = p.length ? at(root, p.slice(0, -1)) : null;
  const key = p[p.length - 1];
  const replaceWith = (v: Json): void => {
    if (!p.length) root = v;
    else (parent as Record<string | number, Json>)[key!] = v;
  };
  let label: string;
  if (kind === 2 && p.length && parent && typeof parent === 'object') {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete (parent as Record<string, Json>)[key as string];
    label = `delete ${where}`;
  } else if (kind === 3) {
    const cur = at(root, p);
    const v = typeof cur === 'number' ? rng.pick([cur + 1, cur - 1, cur * 2, -cur, cur + 0.5, cur * 1e9]) : rng.pick(INTERESTING_JSON);
    replaceWith(v);
    label = `${where} = ${JSON.stringify(v)}`;
  } else if (kind === 4 && parent && !Array.isArray(parent) && typeof parent === 'object' && typeof key === 'string') {
    // A duplicate key: JSON.stringify cannot write one, so splice it into the text after the object's first brace.
    const dup = `${JSON.stringify(key)}:${JSON.stringify(rng.pick(INTERESTING_JSON))},`;
    const out = JSON.stringify(root);
    const inner = JSON.stringify(parent);
    const i = out.indexOf(inner);
    return { text: out.slice(0, i + 1) + dup + out.slice(i + 1), label: `duplicate key ${where}` };
  } else {
    const v = rng.pick(INTERESTING_JSON);
    replaceWith(v);
    label = `${where} = ${JSON.stringify(v)}`;
  }
  return { text: JSON.stringify(root), label };
}
