// WeightCache: F32 in place; others converted once, atomically, only when asked for; hash index; LLMF_CACHE.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { cacheDir, cacheFileName, WeightCache } from '../src/engine/weight-cache.js';
import { UserError } from '../src/errors.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import type { StoredTensor } from '../src/formats/types.js';
import { bf16Bytes, f32Bytes, u16Bytes, writeSafetensors } from './st-writer.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'llmf-wc-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (what: string) => path.join(root, `${what}${n++}`);

/** A checkpoint with one tensor of each kind; returns its tensors by name. */
function checkpoint(scale = 1): { file: string; t: Map<string, StoredTensor> } {
  const file = fresh('model') + '.safetensors';
  writeSafetensors(file, [
    { name: 'f32.weight', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) },
    { name: 'a.weight', dtype: 'BF16', shape: [2, 2], data: bf16Bytes([scale, -2, 0.5, 2 ** -130]) },
    { name: 'b.weight', dtype: 'F16', shape: [3], data: u16Bytes([0x3c00, 0x0001, 0xc000]) },
  ]);
  return { file, t: new Map(readSafetensors(file).map((x) => [x.name, x])) };
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const readF32 = (file: string) => new Float32Array(new Uint8Array(readFileSync(file)).buffer);

test('F32 tensors are used in place: checked for NaN/Inf once, the check remembered by content hash', () => {
  const { file, t } = checkpoint();
  const dir = fresh('cache');
  const cache = new WeightCache(dir);
  const f = t.get('f32.weight')!;
  assert.deepEqual(cache.locate(f), { file: f.file, offset: f.offset, length: 8 });
  assert.deepEqual(cache.stats, { hashed: 1, converted: 0, checked: 1 });
  assert.ok(existsSync(path.join(dir, 'finite', sha256(file), 'f32.weight.f32.ok')));
  assert.ok(!existsSync(path.join(dir, 'f32')), 'nothing converted');
  const again = new WeightCache(dir);
  again.locate(f);
  assert.deepEqual(again.stats, { hashed: 0, converted: 0, checked: 0 }, 'a later run neither hashes nor scans');
});

test('a tensor holding NaN or Inf is refused naming it, and no cache file is left behind', () => {
  const file = fresh('nan') + '.safetensors';
  writeSafetensors(file, [
    { name: 'ok.weight', dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) },
    { name: 'bad.weight', dtype: 'F32', shape: [3], data: f32Bytes([1, NaN, 3]) },
    { name: 'inf.weight', dtype: 'BF16', shape: [2], data: bf16Bytes([1, -Infinity]) },
  ]);
  const t = new Map(readSafetensors(file).map((x) => [x.name, x]));
  const dir = fresh('cache');
  const cache = new WeightCache(dir);
  cache.locate(t.get('ok.weight')!);
  assert.throws(() => cache.locate(t.get('bad.weight')!), (e: unknown) => e instanceof UserError && /tensor bad\.weight holds NaN at element 1/.test(e.message));
  assert.throws(() => cache.locate(t.get('inf.weight')!), (e: unknown) => e instanceof UserError && /tensor inf\.weight holds -Infinity at element 1/.test(e.message));
  const converted = path.join(dir, 'f32', sha256(file));
  assert.deepEqual(existsSync(converted) ? readdirSync(converted) : [], [], 'no .f32 and no temp file for the refused tensor');
  assert.deepEqual(readdirSync(path.join(dir, 'finite', sha256(file))), ['ok.weight.f32.ok']);
});

test('other dtypes are converted once into <cache>/f32/<sha256>/<name>.f32, and reused by later runs', () => {
  const { file, t } = checkpoint();
  const dir = fresh('cache');
  const first = new WeightCache(dir);
  const loc = first.locate(t.get('a.weight')!);
  assert.deepEqual(loc, { file: path.join(dir, 'f32', sha256(file), 'a.weight.f32'), offset: 0, length: 16 });
  assert.deepEqual(readF32(loc.file), toFloat32(t.get('a.weight')!));
  assert.deepEqual(first.stats, { hashed: 1, converted: 1, checked: 1 });
  assert.deepEqual(first.locate(t.get('a.weight')!), loc);
  assert.deepEqual(first.stats, { hashed: 1, converted: 1, checked: 1 }, 'same instance: nothing redone');

  // Only requested tensors are converted.
  assert.deepEqual(readdirSync(path.dirname(loc.file)), ['a.weight.f32']);

  // A new process (new instance) finds the hash in the index and the converted file on disk.
  const before = statSync(loc.file);
  const second = new WeightCache(dir);
  assert.deepEqual(second.locate(t.get('a.weight')!), loc);
  assert.deepEqual(second.stats, { hashed: 0, converted: 0, checked: 0 });
  const afterStat = statSync(loc.file);
  assert.equal(afterStat.mtimeMs, before.mtimeMs);
  assert.equal(afterStat.ino, before.ino);

  const b = second.locate(t.get('b.weight')!);
  assert.deepEqual([...readF32(b.file)], [1, 2 ** -24, -2]);
  assert.deepEqual(second.stats, { hashed: 0, converted: 1, checked: 1 });
});

test('a changed source file is rehashed and gets fresh conversions', () => {
  const dir = fresh('cache');
  const { file, t } = checkpoint(1);
  const one = new WeightCache(dir).locate(t.get('a.weight')!);
  // Same path, different content (and a different mtime, as a real rewrite would have).
  const other = checkpoint(4);
  writeFileSync(file, readFileSync(other.file));
  utimesSync(file, new Date(), new Date(Date.now() + 5000));
  const cache = new WeightCache(dir);
  const two = cache.locate({ ...other.t.get('a.weight')!, file });
  assert.equal(cache.stats.hashed, 1);
  assert.notEqual(two.file, one.file);
  assert.equal(readF32(two.file)[0], 4);
  assert.equal(readF32(one.file)[0], 1);
});

test('a half-written temp file or a short final file is never trusted', () => {
  const { file, t } = checkpoint();
  const dir = fresh('cache');
  const folder = path.join(dir, 'f32', sha256(file));
  mkdirSync(folder, { recursive: true });
  // What a killed converter leaves: a temp name with partial content (old enough to count as stale) …
  const stale = path.join(folder, 'a.weight.f32.tmp-12345-deadbeef');
  writeFileSync(stale, Buffer.alloc(7, 0xff));
  utimesSync(stale, new Date(Date.now() - 2 * 3600e3), new Date(Date.now() - 2 * 3600e3));
  // … a fresh temp that may belong to a live process …
  const live = path.join(folder, 'b.weight.f32.tmp-54321-cafebabe');
  writeFileSync(live, Buffer.alloc(5));
  // … and a final-named file of the wrong size (cannot come from this code, but must not be trusted either).
  writeFileSync(path.join(folder, 'b.weight.f32'), Buffer.alloc(4));

  const cache = new WeightCache(dir);
  const a = cache.locate(t.get('a.weight')!);
  const b = cache.locate(t.get('b.weight')!);
  assert.equal(cache.stats.converted, 2);
  assert.deepEqual(readF32(a.file), toFloat32(t.get('a.weight')!));
  assert.deepEqual(readF32(b.file), toFloat32(t.get('b.weight')!));
  assert.ok(!existsSync(stale), 'stale temp removed');
  assert.ok(existsSync(live), 'a recent temp is left alone');
  assert.deepEqual(readdirSync(folder).sort(), ['a.weight.f32', 'b.weight.f32', 'b.weight.f32.tmp-54321-cafebabe']);
});

test('a conversion that fails part-way leaves neither a final file nor a temp file behind', () => {
  const { file, t } = checkpoint();
  const dir = fresh('cache');
  const cache = new WeightCache(dir);
  cache.fileHash(file); // hash the intact file, then cut the tensor short as a concurrent rewrite might
  const a = t.get('a.weight')!;
  truncateSync(file, a.offset + 3);
  assert.throws(() => cache.locate(a), (e: unknown) => e instanceof UserError && /file ended while reading tensor a\.weight/.test(e.message));
  assert.deepEqual(readdirSync(path.join(dir, 'f32', cache.fileHash(file))), []);
});

test('a damaged hash index is ignored and rewritten', () => {
  const { t } = checkpoint();
  const dir = fresh('cache');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'index.json'), '{"files": ');
  const cache = new WeightCache(dir);
  cache.locate(t.get('a.weight')!);
  assert.equal(cache.stats.hashed, 1);
  assert.equal(Object.keys(JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')).files).length, 1);
});

test('LLMF_CACHE overrides the default ~/.cache/llm-features', () => {
  const saved = process.env.LLMF_CACHE;
  try {
    delete process.env.LLMF_CACHE;
    assert.equal(cacheDir(), path.join(os.homedir(), '.cache', 'llm-features'));
    const dir = fresh('env-cache');
    process.env.LLMF_CACHE = dir;
    assert.equal(cacheDir(), dir);
    const cache = new WeightCache();
    assert.equal(cache.dir, dir);
    const { t } = checkpoint();
    assert.ok(cache.locate(t.get('b.weight')!).file.startsWith(dir + path.sep));
  } finally {
    if (saved === undefined) delete process.env.LLMF_CACHE;
    else process.env.LLMF_CACHE = saved;
  }
});

test('tensor names that are not safe file names get a sanitised, collision-free file name', () => {
  assert.equal(cacheFileName('blk.0.attn_q.weight'), 'blk.0.attn_q.weight.f32');
  const a = cacheFileName('../x/y');
  const b = cacheFileName('.._x_y');
  assert.match(a, /^__x_y-[0-9a-f]{16}\.f32$/);
  assert.notEqual(a, b);
  assert.ok(!cacheFileName('w.tmp-1').includes('.tmp-'));
});
