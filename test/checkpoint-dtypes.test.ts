// Checkpoints stored as F16, BF16 and Q8_0 (GGUF files written by test/gguf-writer.ts from stories260K.gguf) and an
// untied llama2.c file give the F32 model's outputs within each format's precision.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { halfToFloat, toFloat32 } from '../src/formats/dequant.js';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2c } from '../src/formats/llama2c.js';
import type { Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { convertGguf, floatToHalf, Q8_0_BLOCK, type GgufDType } from './gguf-writer.js';
import { modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-dtypes-'));
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'llmf-dtypes-cache-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(cacheDir, { recursive: true, force: true });
});

const SOURCE = modelPath('stories260K.gguf');
const IDS = [[1, 403, 407, 261, 378, 432, 317]];
const PROBES: { range: [number, number]; hook: Hook }[] = [
  { range: [1, 5], hook: 'resid' },
  { range: [2, 3], hook: 'mlp' },
];

type Lossy = Exclude<GgufDType, 'F32'>;

/**
 * Bounds on maxRelError (error relative to the reference tensor's largest magnitude) of each output against the F32
 * model. Measured on this model (logits / resid 1-5 / mlp 2-3): F16 6.0e-4 / 3.7e-4 / 7.1e-4, BF16 3.5e-3 / 2.9e-3 /
 * 7.2e-3, Q8_0 1.2e-2 / 2.0e-2 / 2.2e-2. These errors come from rounding the weights, so they do not vary between runs.
 * Wrong decodings give errors of order 1 (q read unsigned: 5.6 on the logits; a Q8_0 block using its neighbour's scale:
 * 0.93; BF16 losing the sign: 2.4; F16 exponent off by one: 1.3); even F16 dividing its mantissa by 1023 instead of
 * 1024 (1e-3 per weight) exceeds the F16 bound. The per-value test above catches all of these on its own.
 */
const TOLERANCE: Record<Lossy, number> = { F16: 1e-3, BF16: 1e-2, Q8_0: 3e-2 };

interface Outputs {
  logits: Float32Array;
  hidden: Float32Array[];
}

async function outputs(file: string): Promise<Outputs> {
  const runner = new ModelRunner(loadModel(file), { cacheDir });
  try {
    const logits = (await runner.logits(IDS)).data;
    const hidden: Float32Array[] = [];
    for (const p of PROBES) hidden.push((await runner.hidden(IDS, p.range, p.hook)).data);
    return { logits, hidden };
  } finally {
    await runner.close();
  }
}

let referenceRun: Promise<Outputs> | undefined;
const reference = (): Promise<Outputs> => (referenceRun ??= outputs(SOURCE));

const converted = new Map<Lossy, string>();
/** The stories260K.gguf copy with its matrices stored as `dtype` (written once per file). */
function convertedFile(dtype: Lossy): string {
  let file = converted.get(dtype);
  if (!file) {
    file = path.join(dir, `stories260K-${dtype}.gguf`);
    convertGguf(SOURCE, file, dtype);
    converted.set(dtype, file);
  }
  return file;
}

/** Largest error allowed for one value decoded from `dtype`, given the original `x` and its Q8_0 block's max |x|. */
function roundingBound(dtype: GgufDType, x: number, blockMax: number): number {
  switch (dtype) {
    case 'F32':
      return 0;
    case 'F16':
      return Math.max(Math.abs(x) * 2 ** -11, 2 ** -25); // half an ulp; subnormals have an absolute spacing of 2^-24
    case 'BF16':
      return Math.abs(x) * 2 ** -8;
    case 'Q8_0': {
      // q = round(x / d) is off by at most d/2; d itself is stored as f16 (relative error ≤ 2^-11, times |q| ≤ 127).
      const d = blockMax / 127;
      return d * (0.5 + 127 * 2 ** -11) * (1 + 1e-6);
    }
  }
}

for (const dtype of ['F16', 'BF16', 'Q8_0'] as const) {
  test(`${dtype} GGUF: matrices stored as ${dtype}, norms as F32, every value within ${dtype} rounding of the original`, () => {
    const file = convertedFile(dtype);
    const original = new Map(readGguf(SOURCE).tensors.map((t) => [t.name, t]));
    const stored = readGguf(file);
    assert.equal(stored.version, 3);
    assert.equal(stored.tensors.length, original.size);
    // Metadata (tokenizer included) survives the copy.
    assert.deepEqual(stored.metadata, readGguf(SOURCE).metadata);
    for (const t of stored.tensors) {
      const o = original.get(t.name)!;
      assert.deepEqual(t.shape, o.shape, t.name);
      // Q8_0 needs rows of whole 32-value blocks: ffn_down's rows hold 172 values, so it falls back to F16.
      const expected = t.shape.length === 1 ? 'F32' : dtype === 'Q8_0' && t.name.endsWith('ffn_down.weight') ? 'F16' : dtype;
      assert.equal(t.dtype, expected, t.name);
      const x = toFloat32(o);
      const y = toFloat32(t);
      const rowLength = t.shape[t.shape.length - 1]!;
      let exact = 0;
      for (let b = 0; b < x.length; b += Q8_0_BLOCK) {
        const n = Math.min(Q8_0_BLOCK, x.length - b);
        let blockMax = 0;
        for (let j = 0; j < n; j++) blockMax = Math.max(blockMax, Math.abs(x[b + j]!));
        for (let j = 0; j < n; j++) {
          const err = Math.abs(y[b + j]! - x[b + j]!);
          if (err === 0) exact++;
          if (!(err <= roundingBound(t.dtype, x[b + j]!, blockMax))) {
            assert.fail(`${t.name} (${t.dtype}) [${b + j}]: ${y[b + j]} for ${x[b + j]} (row length ${rowLength})`);
          }
        }
      }
      // A lossy dtype must actually round (otherwise this test would pass for a writer that stored F32).
      if (t.dtype !== 'F32') assert.ok(exact < x.length, `${t.name}: no value was rounded`);
    }
  });

  test(`${dtype} GGUF: logits and hidden states match the F32 model within ${TOLERANCE[dtype]}`, async (t) => {
    const ref = await reference();
    const got = await outputs(convertedFile(dtype));
    const errors = [maxRelError(got.logits, ref.logits), ...got.hidden.map((h, i) => maxRelError(h, ref.hidden[i]!))];
    const names = ['logits', ...PROBES.map((p) => `${p.hook} ${p.range.join('-')}`)];
    t.diagnostic(`${dtype}: ` + names.map((n, i) => `${n} ${errors[i]!.toExponential(2)}`).join(', '));
    errors.forEach((e, i) => assert.ok(e <= TOLERANCE[dtype], `${dtype} ${names[i]}: max relative error ${e} > ${TOLERANCE[dtype]}`));
    // Lossy weights must change something: an error of exactly 0 would mean the F32 weights were used.
    assert.ok(errors[0]! > 0, `${dtype}: logits identical to F32`);
  });

  test(`${dtype} GGUF: inspect reports stored_dtype ${dtype}`, () => {
    const r = cli(['inspect', '--model', convertedFile(dtype)]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { stored_dtype: string; tokenizer: string | null; tied_head: boolean };
    assert.equal(info.stored_dtype, dtype);
    assert.notEqual(info.tokenizer, null, 'the tokenizer metadata was copied');
    // stories260K.gguf stores output.weight as a byte copy of token_embd.weight; both are encoded identically.
    assert.equal(info.tied_head, true);
  });
}

test('F16 GGUF: greedy generation gives the F32 model\'s text', () => {
  const run = (file: string) => cli(['generate', '--model', file, '--max-tokens', '20'], { LLMF_CACHE: cacheDir });
  const want = run(SOURCE);
  const got = run(convertedFile('F16'));
  assert.equal(want.code, 0, want.stderr);
  assert.equal(got.code, 0, got.stderr);
  assert.ok(want.stdout.trim().length > 0);
  assert.equal(got.stdout, want.stdout);
});

/** Every file under `root`, with what a rewrite would change. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const st = statSync(file);
    out.set(path.relative(root, file), `${st.size}:${st.mtimeMs}:${st.ino}`);
  }
  return out;
}

test('a second run over a cached checkpoint converts nothing and gives identical outputs', async () => {
  const file = convertedFile('Q8_0');
  const first = await outputs(file); // converts whatever earlier tests did not
  const before = snapshot(cacheDir);
  // One f32 file per non-F32 tensor (token_embd, output, 7 matrices per block), in the folder named by the file's hash.
  const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
  const cached = readdirSync(path.join(cacheDir, 'f32', hash)).sort();
  const matrices = readGguf(file).tensors.filter((t) => t.dtype !== 'F32');
  assert.equal(matrices.length, 2 + 5 * 7);
  assert.deepEqual(cached, matrices.map((t) => `${t.name}.f32`).sort());

  const second = await outputs(file);
  assert.deepEqual(snapshot(cacheDir), before, 'no cache file was rewritten (same sizes, mtimes and inodes)');
  assert.deepEqual(second, first);
});

// ---------------------------------------------------------------------------------------------------------------
// Untied llama2.c: a negative vocab_size in the header, and the classifier wcls [V, dim] appended at the end.

const BIN = modelPath('stories260K.bin');

/** stories260K.bin made untied, with wcls = scale × token_embedding. */
function untiedBin(scale: number): string {
  const bytes = readFileSync(BIN);
  const header = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 28));
  const [dim, , , , , vocab] = header;
  header[5] = -vocab!;
  const embedding = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 28, bytes.byteOffset + 28 + vocab! * dim! * 4));
  const wcls = embedding.map((v) => v * scale);
  const file = path.join(dir, `stories260K-untied-x${scale}.bin`);
  writeFileSync(file, Buffer.concat([Buffer.from(header.buffer), bytes.subarray(28), Buffer.from(wcls.buffer)]));
  return file;
}

test('untied llama2.c: the classifier is read from the end of the file, and inspect says tied_head false', async () => {
  const file = untiedBin(2);
  const f = readLlama2c(file);
  assert.equal(f.tied, false);
  assert.equal(f.header.vocabSize, 512);
  const head = f.tensors.find((t) => t.name === 'output.weight')!;
  assert.deepEqual(head.shape, [512, 64]);
  assert.equal(head.offset + head.nbytes, statSync(file).size);
  const embd = toFloat32(f.tensors.find((t) => t.name === 'token_embd.weight')!);
  assert.deepEqual(toFloat32(head), embd.map((v) => 2 * v));

  const r = cli(['inspect', '--model', file]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { format: string; tied_head: boolean; vocab_size: number };
  assert.equal(info.format, 'llama2c');
  assert.equal(info.vocab_size, 512);
  assert.equal(info.tied_head, false);
});

test('untied llama2.c: wcls = 2 × embedding gives twice the tied model\'s logits, and the same hidden states', async () => {
  const tied = await outputs(BIN);
  const untied = await outputs(untiedBin(2));
  // Doubling every weight of the head doubles every product and sum exactly (rounding commutes with powers of 2): the
  // logits measured bit-equal to 2× the tied ones; the bound leaves room for a kernel that sums in another order.
  assert.ok(maxRelError(untied.logits, tied.logits.map((v) => 2 * v)) <= 1e-6);
  assert.ok(maxRelError(untied.logits, tied.logits) > 0.5, 'the head in the file is used, not the embedding');
  // The blocks do not touch the head.
  assert.deepEqual(untied.hidden, tied.hidden);
});

test('untied llama2.c: wcls equal to the embedding gives the tied model\'s logits', async () => {
  const file = untiedBin(1);
  assert.equal(readLlama2c(file).tied, false);
  const tied = await outputs(BIN);
  const untied = await outputs(file);
  assert.ok(maxRelError(untied.logits, tied.logits) <= 1e-6);
  // inspect compares the bytes: an explicit head equal to the embedding counts as tied.
  const r = cli(['inspect', '--model', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { tied_head: boolean }).tied_head, true);
});

test('gguf-writer: F16 encoding round-trips every finite half value', () => {
  for (let h = 0; h < 0x10000; h++) {
    const f = halfToFloat(h);
    if (!Number.isNaN(f)) assert.equal(floatToHalf(f), h, `0x${h.toString(16)}`);
  }
});
