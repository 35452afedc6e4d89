// `random-model`: an untrained control with a source's architecture and tokenizer, written as a Hugging Face folder.
// Checked end to end through the CLI (the output opens in inspect / tokenize / forward like any model), and in the
// library: the weights follow the documented init, seeds are reproducible, failures leave nothing behind.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { toFloat32 } from '../src/formats/dequant.js';
import { readGguf } from '../src/formats/gguf.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { float32Chunks, safetensorsHeader, writeSafetensors } from '../src/formats/safetensors-write.js';
import { loadModel, type LoadedModel } from '../src/models/load.js';
import { INIT_STD, randomModelPlan } from '../src/models/random-model.js';
import { cli, type CliResult } from './cli-helpers.js';
import { inferValueType, writeGguf, type GgufMetadata } from './gguf-writer.js';
import { fixturePath, modelPath } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'llmf-random-model-'));
after(() => rmSync(root, { recursive: true, force: true }));

const gguf = modelPath('stories260K.gguf');
const bin = modelPath('stories260K.bin');
const gpt2 = fixturePath('hf/gpt2-f16');
const TEXTS = ['Once upon a time, there was a little girl named Lily.', 'Hello wörld 🍎 — "quoted"\nnew line'];

let counter = 0;
function outDir(name: string): string {
  return path.join(root, `${name}-${counter++}`);
}

function ok(r: CliResult): string {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `random-model`, expecting success; returns the output folder. */
function randomModel(like: string, name: string, ...extra: string[]): string {
  const out = outDir(name);
  const stdout = ok(cli(['random-model', '--like', like, '--out', out, ...extra]));
  assert.match(stdout, /^wrote /);
  return out;
}

/** A one-line usage error: exit 2, "llm-features: " + message on stderr, nothing on stdout. */
function assertOneLineError(r: CliResult, re: RegExp): void {
  assert.equal(r.code, 2, `expected exit 2, got ${r.code}: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0]!, /^llm-features: /);
  assert.match(lines[0]!, re);
}

function inspect(model: string): Record<string, unknown> {
  return JSON.parse(ok(cli(['inspect', '--model', model])));
}

/** Same architecture, as `inspect` reports it. */
function assertSameShape(out: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const key of ['architecture', 'hidden_size', 'layers', 'heads', 'kv_heads', 'head_dim', 'ffn_size', 'vocab_size', 'tied_head', 'norm_eps']) {
    assert.deepEqual(out[key], src[key], key);
  }
  assert.equal(out.format, 'hf');
  assert.equal(out.stored_dtype, 'F32');
}

function values(m: LoadedModel, name: string): Float32Array {
  const t = m.tensors.get(name);
  assert.ok(t, `tensor ${name}`);
  return toFloat32(t);
}

function meanStd(v: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const x of v) s += x;
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) ** 2;
  return { mean, std: Math.sqrt(q / v.length) };
}

function assertNormal(v: Float32Array, what: string): void {
  const { mean, std } = meanStd(v);
  assert.ok(Math.abs(std - INIT_STD) < 0.1 * INIT_STD, `${what}: std ${std}, expected ${INIT_STD} ± 10%`);
  assert.ok(Math.abs(mean) < 0.1 * INIT_STD, `${what}: mean ${mean}`);
}

function assertConstant(v: Float32Array, value: number, what: string): void {
  assert.ok(v.length > 0 && v.every((x) => x === value), `${what}: all ${value}`);
}

// ---------------------------------------------------------------------------------------------------------------

/** The control for stories260K.gguf with the default seed, made once (lazily, so a failure is one test's, not the file's). */
let fromGgufDir: string | undefined;
function fromGguf(): string {
  fromGgufDir ??= randomModel(gguf, 'gguf');
  return fromGgufDir;
}

test('from stories260K.gguf: a Hugging Face folder with the same architecture, F32 weights and a tokenizer', () => {
  assert.deepEqual(readdirSync(fromGguf()).sort(), ['config.json', 'model.safetensors', 'tokenizer.bin']);
  const out = inspect(fromGguf());
  const src = inspect(gguf);
  assertSameShape(out, src);
  assert.notEqual(out.tokenizer, null);
  const config = JSON.parse(readFileSync(path.join(fromGguf(), 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['LlamaForCausalLM']);
  assert.equal(config.hidden_act, 'silu');
  assert.equal(config.tie_word_embeddings, true);
  // Reloaded as a Hugging Face folder: rotate-half RoPE, the HF convention (random weights have no pairing to keep).
  assert.deepEqual(out.rope, { ...(src.rope as object), pairing: 'half' });
});

test('from stories260K.gguf: tokenize gives the source tokenizer\'s ids', () => {
  for (const text of TEXTS) {
    const a = JSON.parse(ok(cli(['tokenize', '--model', fromGguf(), '--text', text, '--bos'])));
    const b = JSON.parse(ok(cli(['tokenize', '--model', gguf, '--text', text, '--bos'])));
    assert.deepEqual(a, b, text);
  }
});

test('from stories260K.gguf: forward --blocks 1-5 --json runs', () => {
  const r = JSON.parse(ok(cli(['forward', '--model', fromGguf(), '--text', TEXTS[0]!, '--bos', '--blocks', '1-5', '--json'])));
  assert.equal(r.shape[1], 64);
  assert.equal(r.values.length, r.shape[0]);
  assert.ok(r.values.flat().every((x: number) => Number.isFinite(x)));
  ok(cli(['forward', '--model', fromGguf(), '--ids', '1,403,407', '--json']));
});

test('from stories260K.gguf: fresh weights that follow the init, not the source\'s', () => {
  const m = loadModel(fromGguf());
  const src = loadModel(gguf);
  assert.equal(m.tensors.size, 2 + 9 * 5);
  for (const name of ['token_embd.weight', 'blk.0.attn_q.weight', 'blk.2.attn_k.weight', 'blk.4.ffn_gate.weight', 'blk.1.ffn_down.weight']) {
    assertNormal(values(m, name), name);
    const a = values(m, name);
    const b = values(src, name);
    assert.equal(a.length, b.length);
    assert.ok(a.some((x, i) => x !== b[i]), `${name} differs from the source`);
  }
  for (const name of ['output_norm.weight', 'blk.0.attn_norm.weight', 'blk.4.ffn_norm.weight']) assertConstant(values(m, name), 1, name);
  // Every tensor its own stream: no two weight matrices start with the same values.
  const q0 = values(m, 'blk.0.attn_q.weight');
  const q1 = values(m, 'blk.1.attn_q.weight');
  assert.notDeepEqual(q0.subarray(0, 16), q1.subarray(0, 16));
});

test('from stories260K.bin: same architecture and tokenizer; same seed → the same weights as from the GGUF', () => {
  const fromBin = randomModel(bin, 'bin');
  assertSameShape(inspect(fromBin), inspect(bin));
  for (const text of TEXTS) {
    const a = JSON.parse(ok(cli(['tokenize', '--model', fromBin, '--text', text])));
    const b = JSON.parse(ok(cli(['tokenize', '--model', bin, '--text', text])));
    assert.deepEqual(a, b, text);
  }
  ok(cli(['forward', '--model', fromBin, '--text', TEXTS[0]!, '--blocks', '1-5', '--json']));
  // The two sources are one model in two formats: the control is the same too.
  assert.ok(readFileSync(path.join(fromBin, 'model.safetensors')).equals(readFileSync(path.join(fromGguf(), 'model.safetensors'))));
  // The written tokenizer.bin is spelled exactly as llama2.c's tokenizer.py writes it.
  assert.ok(readFileSync(path.join(fromBin, 'tokenizer.bin')).equals(readFileSync(modelPath('tok512.bin'))));
  assert.ok(readFileSync(path.join(fromGguf(), 'tokenizer.bin')).equals(readFileSync(modelPath('tok512.bin'))));
});

test('--seed: the same seed gives a byte-identical model.safetensors, another seed different weights', () => {
  const a = randomModel(gguf, 'seed', '--seed', '42');
  const b = randomModel(gguf, 'seed', '--seed', '42');
  const c = randomModel(gguf, 'seed', '--seed', '43');
  const st = (d: string) => readFileSync(path.join(d, 'model.safetensors'));
  assert.ok(st(a).equals(st(b)));
  assert.ok(!st(a).equals(st(c)));
  assert.ok(!st(a).equals(st(fromGguf())), 'the default seed (0) differs from 42');
  assert.equal(st(a).length, st(c).length);
});

test('from a GPT-2 Hugging Face folder without a tokenizer', () => {
  const out = randomModel(gpt2, 'gpt2', '--seed', '1');
  assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model.safetensors']);
  const info = inspect(out);
  assertSameShape(info, inspect(gpt2));
  assert.equal(info.tokenizer, null);
  assert.equal(info.context_length, 64);
  const r = JSON.parse(ok(cli(['forward', '--model', out, '--ids', '1,2,3', '--blocks', '1-2', '--json'])));
  assert.deepEqual(r.shape, [3, 32]);
  const m = loadModel(out);
  for (const name of ['wte.weight', 'wpe.weight', 'h.0.attn.c_attn.weight', 'h.1.mlp.c_fc.weight']) assertNormal(values(m, name), name);
  for (const name of ['h.0.ln_1.weight', 'h.1.ln_2.weight', 'ln_f.weight']) assertConstant(values(m, name), 1, name);
  for (const name of ['h.0.ln_1.bias', 'ln_f.bias', 'h.0.attn.c_attn.bias', 'h.1.attn.c_proj.bias', 'h.1.mlp.c_fc.bias']) {
    assertConstant(values(m, name), 0, name);
  }
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['GPT2LMHeadModel']);
});

test('from a Qwen2 folder with a tokenizer.json: the file is copied, q/k/v biases are zero', () => {
  const src = path.join(root, 'qwen2-with-tokenizer');
  mkdirSync(src);
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(fixturePath(path.join('hf/qwen2-tied', f)), path.join(src, f));
  // A small BPE vocabulary the size of the fixture's (96 tokens).
  const vocab: Record<string, number> = { '<s>': 0, '</s>': 1, a: 2, b: 3, ab: 4 };
  for (let id = 5; id < 96; id++) vocab[`t${id}`] = id;
  const tokenizerJson = JSON.stringify({
    added_tokens: [
      { id: 0, content: '<s>', special: true },
      { id: 1, content: '</s>', special: true },
    ],
    model: { type: 'BPE', vocab, merges: ['a b'] },
  });
  writeFileSync(path.join(src, 'tokenizer.json'), tokenizerJson);
  const out = randomModel(src, 'qwen2');
  assert.equal(readFileSync(path.join(out, 'tokenizer.json'), 'utf8'), tokenizerJson);
  assertSameShape(inspect(out), inspect(src));
  assert.deepEqual(JSON.parse(ok(cli(['tokenize', '--model', out, '--text', 'abab']))).ids, [4, 4]);
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['Qwen2ForCausalLM']);
  const m = loadModel(out);
  assert.equal(m.config.qkvBias, true);
  assertConstant(values(m, 'blk.1.attn_k.bias'), 0, 'blk.1.attn_k.bias');
});

test('--out: an existing non-empty folder or a file is refused in one line and left alone; an empty folder is used', () => {
  const full = outDir('full');
  mkdirSync(full);
  writeFileSync(path.join(full, 'keep.txt'), 'mine');
  assertOneLineError(cli(['random-model', '--like', gguf, '--out', full]), /--out: .* exists and is not empty$/);
  assert.deepEqual(readdirSync(full), ['keep.txt']);
  const file = path.join(root, 'a-file');
  writeFileSync(file, 'x');
  assertOneLineError(cli(['random-model', '--like', gguf, '--out', file]), /--out: .* exists and is not a directory$/);
  assert.equal(readFileSync(file, 'utf8'), 'x');

  const empty = outDir('empty');
  mkdirSync(empty);
  ok(cli(['random-model', '--like', gguf, '--out', empty]));
  assert.deepEqual(readdirSync(empty).sort(), ['config.json', 'model.safetensors', 'tokenizer.bin']);
});

test('bad --like / flags: one-line errors, nothing written', () => {
  const out = outDir('never');
  assertOneLineError(cli(['random-model', '--like', path.join(root, 'missing.gguf'), '--out', out]), /missing\.gguf: no such file/);
  const corrupt = path.join(root, 'corrupt.gguf');
  writeFileSync(corrupt, 'GGUF but not really');
  assertOneLineError(cli(['random-model', '--like', corrupt, '--out', out]), /corrupt\.gguf/);
  assertOneLineError(cli(['random-model', '--out', out]), /--like: required/);
  assertOneLineError(cli(['random-model', '--like', gguf]), /--out: required/);
  assertOneLineError(cli(['random-model', '--like', gguf, '--out', out, '--seed', '-1']), /--seed/);
  assert.equal(existsSync(out), false);
  assert.deepEqual(leftovers(out), []);
});

/** Temporary folders beside `out` (`out.tmp-…`). */
function leftovers(out: string): string[] {
  return readdirSync(path.dirname(out)).filter((f) => f.startsWith(path.basename(out) + '.tmp-'));
}

test('a failure part way leaves neither the output folder nor its temporary folder', () => {
  // A GGUF whose vocabulary tokenizer.bin cannot carry: token 5 is a control token, which tokenizer.bin would read
  // back as a normal piece. The tokenizer is written into the temporary folder before the check fails.
  const file = readGguf(gguf);
  const metadata: GgufMetadata = [...file.metadata].map(([k, v]) => {
    if (k === 'tokenizer.ggml.token_type') {
      const types = Int32Array.from(v as ArrayLike<number>);
      types[5] = 3;
      return [k, 'i32[]', types];
    }
    return [k, inferValueType(k, v), v];
  });
  const odd = path.join(root, 'odd-vocab.gguf');
  writeGguf(odd, { metadata, tensors: file.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: 'F32', values: toFloat32(t) })) });
  const out = outDir('failed');
  assertOneLineError(cli(['random-model', '--like', odd, '--out', out]), /cannot be carried as a llama2\.c tokenizer\.bin \(token 5 /);
  assert.equal(existsSync(out), false);
  assert.deepEqual(leftovers(out), []);
});

// ---------------------------------------------------------------------------------------------------------------
// The library

test('randomModelPlan names exactly the tensors the Hugging Face loader wants', () => {
  const m = loadModel(fromGguf());
  const plan = randomModelPlan(m.config);
  assert.deepEqual(plan.map((t) => t.name).sort(), [...m.tensors.values()].map((t) => t.name).sort());
  const untied = randomModelPlan({ ...m.config, tiedHead: false, qkvBias: true });
  assert.ok(untied.some((t) => t.name === 'lm_head.weight'));
  assert.equal(untied.filter((t) => t.name.endsWith('_proj.bias')).length, 3 * m.config.nLayers);
});

test('writeSafetensors: streamed chunks, 8-byte-aligned header, readable by readSafetensors', () => {
  const file = path.join(root, 'w.safetensors');
  let i = 0;
  const { bytes } = writeSafetensors(file, [
    { name: 'a', dtype: 'F32', shape: [3, 5], chunks: () => float32Chunks(15, () => i++, 4) },
    { name: 'empty', dtype: 'F32', shape: [0, 7], chunks: () => [] },
    { name: 'b.bias', dtype: 'F16', shape: [2], chunks: () => [new Uint8Array([0, 0x3c]), new Uint8Array([0, 0xc0])] },
  ]);
  const raw = readFileSync(file);
  assert.equal(raw.length, bytes);
  const n = Number(raw.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8'));
  assert.deepEqual(header.__metadata__, { format: 'pt' });
  assert.deepEqual(header.a, { dtype: 'F32', shape: [3, 5], data_offsets: [0, 60] });
  const ts = new Map(readSafetensors(file).map((t) => [t.name, t]));
  assert.deepEqual([...toFloat32(ts.get('a')!)], Array.from({ length: 15 }, (_, k) => k));
  assert.deepEqual(ts.get('empty')!.shape, [0, 7]);
  assert.deepEqual([...toFloat32(ts.get('b.bias')!)], [1, -2]);
  assert.equal(safetensorsHeader([{ name: 'a', dtype: 'F32', shape: [3, 5] }]).dataBytes, 60);

  // A producer with the wrong number of bytes is a bug: it throws and the partial file is removed.
  const bad = path.join(root, 'bad.safetensors');
  assert.throws(() => writeSafetensors(bad, [{ name: 'x', dtype: 'F32', shape: [4], chunks: () => float32Chunks(3, () => 0) }]), /only 12 bytes/);
  assert.equal(existsSync(bad), false);
  assert.throws(() => writeSafetensors(bad, [{ name: 'x', dtype: 'F32', shape: [2], chunks: () => float32Chunks(3, () => 0) }]), /more than/);
  assert.throws(() => safetensorsHeader([{ name: 'x', dtype: 'F32', shape: [1] }, { name: 'x', dtype: 'F32', shape: [1] }]), /listed twice/);
});

test('random-model --keep-embeddings: the trained embedding table, positions, final norm and head bit for bit; blocks as the full redraw draws them', () => {
  const bits = (m: LoadedModel, name: string) => Buffer.from(toFloat32(m.tensors.get(name)!).buffer.slice(0));
  for (const source of [bin, gguf, gpt2, fixturePath('hf/llama-gqa-bf16')]) {
    const tag = path.basename(source).replace(/\W/g, '_');
    const keptDir = path.join(root, `keep-${tag}`);
    const fullDir = path.join(root, `full-${tag}`);
    const r = cli(['random-model', '--like', source, '--out', keptDir, '--keep-embeddings', '--seed', '3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(cli(['random-model', '--like', source, '--out', fullDir, '--seed', '3']).code, 0);
    const like = loadModel(source);
    const kept = loadModel(keptDir);
    const full = loadModel(fullDir);
    const summary = JSON.parse(r.stdout) as { kept: string[] };
    assert.ok(summary.kept.length >= 2, `${source}: kept ${summary.kept.join(', ')}`);
    const n = like.config.nLayers;
    for (const name of kept.tensors.keys()) {
      const layer = /(?:^blk\.|(?:^|\.)h\.|layers\.)(\d+)\./.exec(name);
      if (!layer && like.tensors.has(name)) {
        // Outside the blocks: the source's values exactly (converted to f32 from its stored dtype).
        assert.ok(bits(kept, name).equals(bits(like, name)), `${source}: ${name} kept`);
      } else if (layer && Number(layer[1]) < n) {
        // Inside the blocks: fresh, and the same draw as the full redraw with this seed.
        assert.ok(bits(kept, name).equals(bits(full, name)), `${source}: ${name} as the redraw draws it`);
        if (like.tensors.get(name)!.shape.length === 2) assert.ok(!bits(kept, name).equals(bits(like, name)), `${source}: ${name} is not the trained one`);
      }
    }
  }
  const embd = (m: LoadedModel) => [...m.tensors.keys()].find((k) => /embd|wte|embed_tokens/.test(k))!;
  const trained = loadModel(bin);
  const redrawn = loadModel(path.join(root, `full-${path.basename(bin).replace(/\W/g, '_')}`));
  assert.ok(!bits(redrawn, embd(redrawn)).equals(bits(trained, embd(trained))), 'the full redraw changes the table');
});
