// Regressions for the holes an independent fuzz campaign found (issue 15, items 1-8 and the .npy part of 9): each
// input below crashed, hung, gave an internal error or passed silently before; now each is one line on stderr naming
// the file or flag, exit code 2 (or a UserError in-process), and nothing half-written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { UserError } from '../src/errors.js';
import { readDirectionFile } from '../src/formats/npy.js';
import { readGguf } from '../src/formats/gguf.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { HfJsonTokenizer, readTokenizerJson } from '../src/tokenizers/hf.js';
import { readLlama2cTokenizer } from '../src/tokenizers/llama2c.js';
import { cli, type CliResult } from './cli-helpers.js';
import { ggufLayout, safetensorsBytes, safetensorsParts } from './fuzz/layout.js';
import { fixturePath, modelPath, projectRoot } from './helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-holes-'));
chmodSync(tmp, 0o755); // item 2 runs a reader as another user
after(() => rmSync(tmp, { recursive: true, force: true }));
const cache = path.join(tmp, 'cache');
const env = { LLMF_CACHE: cache };
const bin = modelPath('stories260K.bin');
const gguf = modelPath('stories260K.gguf');
const qwen = fixturePath('hf/qwen2-tied');

let n = 0;
const put = (name: string, bytes: Uint8Array | string): string => {
  const p = path.join(tmp, `${n++}-${name}`);
  writeFileSync(p, bytes);
  return p;
};

/** Exit 2, one stderr line matching every pattern, no stack trace. */
function expectExit2(r: CliResult, ...patterns: RegExp[]): void {
  assert.equal(r.code, 2, `exit ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  for (const re of patterns) assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
}

function expectUserError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e instanceof Error ? e.stack : String(e)}`);
    assert.ok(!e.message.includes('\n'), e.message);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

/** A copy of `src` with `edit` applied to its bytes. */
function edited(src: string, name: string, edit: (b: Buffer) => unknown): string {
  const b = Buffer.from(readFileSync(src));
  edit(b);
  return put(name, b);
}

/** A copy of the qwen2 fixture folder whose model.safetensors went through `edit`. */
function qwenCopy(edit: (b: Buffer) => unknown): string {
  const dir = path.join(tmp, `${n++}-qwen`);
  cpSync(qwen, dir, { recursive: true });
  const file = path.join(dir, 'model.safetensors');
  const b = Buffer.from(readFileSync(file));
  const out = edit(b);
  writeFileSync(file, Buffer.isBuffer(out) ? out : b);
  return dir;
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Long command lines, and the run cap

test('1: a command line of 30 KB is refused before onnxruntime loads (it segfaulted), pointing to @FILE', () => {
  const select = `[:, :, ${Array.from({ length: 15000 }, (_, i) => i % 64).join(',')}]`;
  const r = cli(['visualize', '--model', bin, '--blocks', '1', '--select', select], env);
  expectExit2(r, /^llm-features: --select: the command line is \d+ bytes, more than the 24576 accepted; .*--select @FILE/);
});

test('1: --select @FILE reads the selection from a file; more than 4096 runs are refused pointing to atlas build', () => {
  const big = put('big.sel', `[:, :, ${Array.from({ length: 15000 }, (_, i) => i % 64).join(',')}]\n`);
  expectExit2(cli(['visualize', '--model', bin, '--blocks', '1', '--select', `@${big}`], env), /--select: 15000 runs, more than the 4096 one call accepts; .*atlas build/);
  const small = put('small.sel', '[:, :, 3-4]\n');
  const r = cli(['visualize', '--model', bin, '--blocks', '1', '--select', `@${small}`, '--steps', '2', '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).runs.map((x: { select: string }) => x.select), ['[:, :, 3]', '[:, :, 4]']);
  expectExit2(cli(['visualize', '--model', bin, '--blocks', '1', '--select', `@${path.join(tmp, 'none.sel')}`], env), /--select: .*none\.sel: no such file/);
});

// ---------------------------------------------------------------------------------------------------------------
// 2. An atlas in a folder the reader cannot write

test('2: an atlas in a read-only folder can be listed and exported by another user (no -wal/-shm there)', () => {
  const dir = path.join(tmp, 'ro-atlas');
  mkdirSync(dir);
  const db = path.join(dir, 'a.db');
  const built = cli(['atlas', 'build', '--model', bin, '--db', db, '--blocks', '1', '--features', '0-1', '--steps', '2'], env);
  assert.equal(built.code, 0, built.stderr);
  chmodSync(dir, 0o555);
  chmodSync(db, 0o444);
  try {
    // As root, permissions do not bind: run the reader as nobody. Otherwise the folder's 555 binds this user.
    const asOther = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const run = (args: string[]) => {
      const r = spawnSync(process.execPath, [path.join(projectRoot, 'dist/src/cli/entry.js'), ...args], { encoding: 'utf8', cwd: '/', ...asOther });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const ls = run(['atlas', 'ls', '--db', db]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /2 records/);
    const ex = run(['atlas', 'export', '--db', db]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(JSON.parse(ex.stdout).records.length, 2);
    // build on a current-version atlas it cannot write: says so, not "needs migrating".
    const b = run(['atlas', 'build', '--model', bin, '--db', db, '--blocks', '1', '--features', '2', '--steps', '2']);
    expectExit2(b, /a\.db: cannot write the atlas \(the file or its folder is read-only\)/);
  } finally {
    chmodSync(dir, 0o755);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Corrupt numbers

test('3: a NaN weight in GGUF, safetensors or llama2.c is refused naming the tensor (it gave null logits, exit 0)', () => {
  const info = readGguf(gguf).tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
  const g = edited(gguf, 'nan.gguf', (b) => b.writeFloatLE(NaN, info.offset + 4 * 7));
  expectExit2(cli(['forward', '--model', g, '--ids', '1,2,3', '--blocks', '1'], env), /nan\.gguf: tensor blk\.0\.attn_q\.weight holds NaN at element 7/);

  const st = readSafetensors(path.join(qwen, 'model.safetensors')).find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
  const dir = qwenCopy((b) => b.writeFloatLE(Infinity, st.offset));
  expectExit2(cli(['forward', '--model', dir, '--ids', '1,2', '--blocks', '1'], env), /model\.safetensors: tensor model\.layers\.0\.self_attn\.q_proj\.weight holds Infinity at element 0/);

  // llama2.c: token_embd.weight starts right after the 28-byte header; a tokenizer sits beside the copy.
  const l2 = path.join(tmp, 'nan-l2');
  mkdirSync(l2);
  writeFileSync(path.join(l2, 'tok512.bin'), readFileSync(modelPath('tok512.bin')));
  const b = Buffer.from(readFileSync(bin));
  b.writeFloatLE(-Infinity, 28 + 4 * 64 * 5);
  writeFileSync(path.join(l2, 'm.bin'), b);
  expectExit2(cli(['generate', '--model', path.join(l2, 'm.bin'), '--max-tokens', '3'], env), /m\.bin: tensor token_embd\.weight holds -Infinity at element 320/);
  // inspect reports its decoder check's failure in its JSON: it names the value instead of "EᵀE is singular".
  const ins = cli(['inspect', '--model', path.join(l2, 'm.bin')], env);
  assert.equal(ins.code, 0, ins.stderr);
  assert.match(JSON.parse(ins.stdout).decoder.error, /tensor token_embd\.weight holds -Infinity at element 320/);
});

test('3: the non-finite check runs once: a second run finds it remembered under the cache', () => {
  const c = path.join(tmp, 'cache-once');
  const first = cli(['forward', '--model', bin, '--ids', '1,2', '--blocks', '1'], { LLMF_CACHE: c });
  assert.equal(first.code, 0, first.stderr);
  const markers = path.join(c, 'finite');
  const count = () => spawnSync('find', [markers, '-name', '*.ok'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;
  const after1 = count();
  assert.ok(after1 >= 9, `one marker per bound tensor, got ${after1}`);
  const mtime = statSync(markers).mtimeMs;
  assert.equal(cli(['forward', '--model', bin, '--ids', '1,2', '--blocks', '1'], { LLMF_CACHE: c }).code, 0);
  assert.equal(count(), after1);
  assert.equal(statSync(markers).mtimeMs, mtime);
});

test('3: a negative GGUF rms_epsilon and NaN tokenizer scores are refused (they were accepted)', () => {
  const kv = ggufLayout(readFileSync(gguf)).kvs.find((k) => k.key === 'llama.attention.layer_norm_rms_epsilon')!;
  const g = edited(gguf, 'eps.gguf', (b) => b.writeFloatLE(-1, kv.valuePos));
  expectExit2(cli(['inspect', '--model', g], env), /eps\.gguf: metadata llama\.attention\.layer_norm_rms_epsilon must be a positive number, got -1/);

  // tokenizer.bin: i32 max_token_length, then per token f32 score, i32 length, bytes. Token 0's score is at byte 4.
  const tok = edited(modelPath('tok512.bin'), 'nan-tok.bin', (b) => b.writeFloatLE(NaN, 4));
  expectUserError(() => readLlama2cTokenizer(tok, 512), /nan-tok\.bin: score of token 0 is NaN/);
  const scores = ggufLayout(readFileSync(gguf)).kvs.find((k) => k.key === 'tokenizer.ggml.scores')!;
  // An array value: u32 element type, u64 count, then the f32 scores; token 3's score.
  const g2 = edited(gguf, 'nan-scores.gguf', (b) => b.writeFloatLE(NaN, scores.valuePos + 12 + 4 * 3));
  expectExit2(cli(['tokenize', '--model', g2, '--text', 'hi'], env), /nan-scores\.gguf: score of token 3 is NaN/);
});

// ---------------------------------------------------------------------------------------------------------------
// 4. Layout corruption

test('4: safetensors with a header length one short, a gap, overlapping offsets or duplicate keys is refused', () => {
  const src = readFileSync(path.join(qwen, 'model.safetensors'));
  const parts = safetensorsParts(src);
  const withHeader = (h: string | object, opts?: { lengthDelta?: number; pad?: number }) => qwenCopy(() => safetensorsBytes(h, parts.data, opts));
  const forward = (dir: string) => cli(['forward', '--model', dir, '--ids', '1,2', '--blocks', '1'], env);

  // Padded with spaces (as writers do), one byte short still parses as JSON: the data section is one byte longer.
  expectExit2(forward(withHeader(parts.header, { pad: 8, lengthDelta: -1 })), /model\.safetensors: tensor .* starts at data offset 0, leaving a gap|data ends at byte \d+ but the file has \d+ bytes/);

  const h = structuredClone(parts.header) as Record<string, { data_offsets: [number, number] }>;
  const gap = structuredClone(h);
  for (const v of Object.values(gap)) if (v.data_offsets) v.data_offsets = [v.data_offsets[0] + 4, v.data_offsets[1] + 4];
  expectExit2(forward(qwenCopy(() => safetensorsBytes(gap, Buffer.concat([Buffer.alloc(4), parts.data])))), /starts at data offset 4, leaving a gap after 0/);

  const overlap = structuredClone(h);
  overlap['model.layers.0.input_layernorm.weight']!.data_offsets = [0, 128];
  expectExit2(forward(withHeader(overlap)), /overlapping the tensor that ends at|leaving a gap/);

  const text = JSON.stringify(parts.header);
  const dupEntry = `"model.norm.weight":${JSON.stringify((parts.header as Record<string, unknown>)['model.norm.weight'])}`;
  expectExit2(forward(withHeader(`{${dupEntry},${text.slice(1)}`)), /header has the key "model\.norm\.weight" twice/);
});

test('4: GGUF tensors whose offsets overlap or whose type id changed (F32 → BF16) are refused as llama.cpp does', () => {
  const b = readFileSync(gguf);
  const l = ggufLayout(b);
  const second = l.infos[1]!;
  const g1 = edited(gguf, 'overlap.gguf', (x) => x.writeBigUInt64LE(BigInt(l.infos[0]!.offset), second.offsetPos));
  expectExit2(cli(['inspect', '--model', g1], env), /overlap\.gguf: tensor output_norm\.weight has offset 0, expected 131072/);
  const q = l.infos.find((i) => i.name === 'blk.0.attn_q.weight')!;
  const g2 = edited(gguf, 'retyped.gguf', (x) => x.writeUInt32LE(30, q.typePos));
  expectExit2(cli(['inspect', '--model', g2], env), /retyped\.gguf: tensor blk\.0\.attn_k\.weight has offset \d+, expected \d+/);
});

// ---------------------------------------------------------------------------------------------------------------
// 5. Lengths

test('5: ids past the context, and texts past the encode limit, are refused naming the flag', async () => {
  const ids = Array.from({ length: 600 }, () => 5).join(',');
  expectExit2(cli(['forward', '--model', bin, '--ids', ids], env), /^llm-features: --ids: 600 tokens exceed the model's context of 512$/);
  const text = 'Once upon a time. '.repeat(150);
  expectExit2(cli(['forward', '--model', bin, '--text', text], env), /^llm-features: --text: \d+ tokens exceed the model's context of 512$/);
  // In the library: 50,000 ids (it tried to allocate 5e9 floats) and a text over the limit.
  const runner = new ModelRunner(loadModel(bin), { cacheDir: cache });
  await assert.rejects(runner.logits([new Array(50_000).fill(5)]), (e: unknown) => e instanceof UserError && /50000 tokens exceed/.test(e.message));
  expectUserError(() => loadModel(bin).tokenizer!.encode('x'.repeat(1_000_001)), /text of 1000001 characters is longer than the 1000000-character limit/);
});

// ---------------------------------------------------------------------------------------------------------------
// 6. tokenizer.json

const bpe = (extra: Record<string, unknown> = {}, vocab: Record<string, number> = { a: 0, b: 1, ab: 2, '<s>': 3 }) => ({
  version: '1.0',
  added_tokens: [],
  normalizer: null,
  pre_tokenizer: null,
  post_processor: null,
  decoder: null,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['a b'] },
  ...extra,
});

test('6: tokenizer.json with a special token outside the vocabulary, an empty vocabulary or "single": 5 is refused', () => {
  const template = (single: unknown, ids: number[]) => ({ type: 'TemplateProcessing', single, pair: [], special_tokens: { '<x>': { id: '<x>', ids, tokens: ['<x>'] } } });
  const outside = bpe({ post_processor: template([{ SpecialToken: { id: '<x>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], [99]) });
  expectUserError(() => new HfJsonTokenizer('t.json', outside), /t\.json: the post-processor's first special token has id 99, outside the vocabulary \(0\.\.3\)/);
  expectUserError(() => new HfJsonTokenizer('t.json', bpe({}, {})), /t\.json: the vocabulary is empty/);
  expectUserError(() => new HfJsonTokenizer('t.json', bpe({ post_processor: template(5, [3]) })), /t\.json: malformed tokenizer\.json pipeline/);
});

test('6: a tokenizer with more tokens than the embedding table is refused when the model opens, naming it', () => {
  const dir = qwenCopy(() => {});
  const vocab = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`t${i}`, i]));
  const tj = path.join(dir, 'tokenizer.json');
  writeFileSync(tj, JSON.stringify(bpe({}, vocab)));
  expectExit2(cli(['forward', '--model', dir, '--text', 't1'], env), /tokenizer\.json: the tokenizer has 200 tokens but the model's embedding table has 96 rows/);
});

// ---------------------------------------------------------------------------------------------------------------
// 7. Corrupt atlases

test('7: truncated atlases, broken JSON in records or settings, a directory and a missing folder as --db', () => {
  const db = path.join(tmp, 'good.db');
  assert.equal(cli(['atlas', 'build', '--model', bin, '--db', db, '--blocks', '1', '--features', '0-2', '--steps', '2'], env).code, 0);
  const cut = put('cut.db', readFileSync(db).subarray(0, 20000));
  expectExit2(cli(['atlas', 'ls', '--db', cut]), /cut\.db: the atlas file is corrupt/);
  expectExit2(cli(['atlas', 'export', '--db', cut]), /cut\.db: the atlas file is corrupt/);

  const broken = (sql: string) => {
    const p = put('broken.db', readFileSync(db));
    const r = spawnSync('/usr/bin/python3', ['-c', `import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()`, p, sql], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return p;
  };
  const badRecord = broken("UPDATE records SET result_json = '{bad' WHERE id = 2");
  expectExit2(cli(['atlas', 'export', '--db', badRecord]), /broken\.db: record 2 \(result_json\) holds invalid JSON; the atlas is damaged/);
  const badSettings = broken("UPDATE settings SET json = '[1'");
  expectExit2(cli(['atlas', 'compare', '--db', badSettings, '--a', 'blocks=1', '--b', 'blocks=1']), /broken\.db: settings [0-9a-f]{12} holds invalid JSON/);

  expectExit2(cli(['atlas', 'ls', '--db', tmp]), /is a directory, expected an atlas file/);
  expectExit2(cli(['atlas', 'build', '--model', bin, '--db', path.join(tmp, 'no', 'such', 'x.db'), '--blocks', '1', '--features', '0']), /x\.db: the folder .*no\/such does not exist/);
});

// ---------------------------------------------------------------------------------------------------------------
// 8. Hangs

test('8: a FIFO as --model is refused at once instead of blocking forever', () => {
  const fifo = path.join(tmp, 'f.gguf');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'dist/src/cli/entry.js'), 'inspect', '--model', fifo], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, 'it hung');
  expectExit2({ code: r.status, stdout: r.stdout, stderr: r.stderr }, /f\.gguf: not a regular file/);
});

test('8: a 100,000-character Prepend normalizer is refused quickly (encoding it was quadratic)', () => {
  const p = put('prepend.json', JSON.stringify(bpe({ normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: 'x'.repeat(100_000) }] } })));
  const t0 = Date.now();
  expectUserError(() => readTokenizerJson(p), /prepend\.json: normalizer Prepend adds 100000 characters \(at most 256 accepted\)/);
  assert.ok(Date.now() - t0 < 2000);
});

// ---------------------------------------------------------------------------------------------------------------
// 9 (the .npy part): direction files

test('9: a .npy direction with NaN, or of 7 bytes, is a UserError naming --direction', () => {
  const npy = (values: number[], header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${values.length},), }`) => {
    const h = Buffer.from(header.padEnd(118) + '\n');
    const data = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => data.writeFloatLE(v, i * 4));
    return Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([h.length & 0xff, h.length >> 8]), h, data]);
  };
  assert.deepEqual([...readDirectionFile(put('ok.npy', npy([1, -2, 0.5])))], [1, -2, 0.5]);
  expectUserError(() => readDirectionFile(put('nan.npy', npy([1, NaN]))), /^direction: .*nan\.npy: element 1 is NaN; a direction must be finite$/);
  expectUserError(() => readDirectionFile(put('seven.npy', Buffer.from('\x93NUMPY\x01', 'latin1'))), /^direction: .*seven\.npy: not a \.npy file|truncated/);
  expectUserError(() => readDirectionFile(put('short.npy', npy([1, 2]).subarray(0, 130))), /short\.npy: shape \(2,\) of <f4 needs 8 data bytes, the file has 1/);
  expectUserError(() => readDirectionFile(put('d.json', '[1, 2, "x"]')), /d\.json: expected a non-empty array of finite numbers/);
});

// ---------------------------------------------------------------------------------------------------------------
// Found by the fuzz suite's soak run: a layer count of 2^32 drove a per-layer loop until the heap ran out.

test('fuzz find: a layer count of 2^32 in config.json or GGUF is refused at once (the process ran out of heap)', () => {
  const dir = qwenCopy(() => {});
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 2 ** 32 }));
  expectUserError(() => loadModel(dir), /config\.json: num_hidden_layers is 4294967296, but the checkpoint holds only \d+ tensors/);
  const kv = ggufLayout(readFileSync(gguf)).kvs.find((k) => k.key === 'llama.block_count')!;
  const g = edited(gguf, 'blocks.gguf', (b) => b.writeUInt32LE(0xffffffff, kv.valuePos));
  expectUserError(() => loadModel(g), /blocks\.gguf: metadata llama\.block_count is 4294967295, but the file holds only 48 tensors/);
});

test('fuzz find: tokenizer.json vocabulary ids that are not unique integers from 0 are refused (encode returned them)', () => {
  for (const [bad, re] of [[-1, /vocab token "b" has id -1/], [0.5, /vocab token "b" has id 0\.5/], [1e308, /has id 1e\+308/], [0, /vocab id 0 is used by both "a" and "b"/]] as const) {
    const p = put('ids.json', JSON.stringify(bpe({}, { a: 0, b: bad, ab: 2 })));
    expectUserError(() => readTokenizerJson(p), re);
  }
});
