/**
 * Opens a checkpoint, whatever its format, as one LoadedModel: a normalised config, the tensors under GGUF-style
 * names (located, not read) and the tokenizer that belongs to it. Nothing here reads weight bytes.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { assertRegularFile } from '../formats/files.js';
import { readGguf, type GgufFile } from '../formats/gguf.js';
import { readLlama2c } from '../formats/llama2c.js';
import type { StoredTensor } from '../formats/types.js';
import { readLlama2cTokenizer } from '../tokenizers/llama2c.js';
import { readTokenizerJson } from '../tokenizers/hf.js';
import { tokenizerFromGguf } from '../tokenizers/sentencepiece.js';
import { loadHfFolder } from './hf.js';
import { isCacheRepoFolder, snapshotOfRepoFolder } from '../hub/cache.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { ModelConfig } from './config.js';
import { specForGguf, specOf, SPECS } from './registry.js';
import type { GgufMeta } from './spec.js';

export type SourceFormat = 'gguf' | 'llama2c' | 'hf';

export interface LoadedModel {
  /** The path the user gave. */
  path: string;
  format: SourceFormat;
  config: ModelConfig;
  /** Tensors by GGUF-style name: token_embd.weight, blk.N.attn_q.weight, …, output_norm.weight, output.weight. */
  tensors: Map<string, StoredTensor>;
  tokenizer: Tokenizer | null;
  /** The dtype most weights are stored in (for `inspect`). */
  storedDtype: string;
  /** Tensors of a partly downloaded hub snapshot that are not on disk yet, by name → shard (hf.ts). */
  notDownloaded?: Map<string, string>;
  /** The file the tokenizer was read from, when it is not the checkpoint itself. */
  tokenizerPath?: string;
}

export interface LoadOptions {
  /** Explicit tokenizer file (llama2.c tokenizer.bin); otherwise one is looked for next to the checkpoint. */
  tokenizer?: string;
}

export function loadModel(modelPath: string, opts: LoadOptions = {}): LoadedModel {
  if (!existsSync(modelPath)) throw new UserError(`${modelPath}: no such file or directory`);
  if (statSync(modelPath).isDirectory()) return loadHf(isCacheRepoFolder(modelPath) ? snapshotOfRepoFolder(modelPath) : modelPath, opts.tokenizer);
  assertRegularFile(modelPath, 'checkpoint');
  const format = detectFormat(modelPath);
  const model = format === 'gguf' ? loadGguf(modelPath) : loadLlama2c(modelPath, opts.tokenizer);
  if (opts.tokenizer && format === 'gguf') {
    model.tokenizer = readTokenizerFile(opts.tokenizer, model.config.vocabSize);
    model.tokenizerPath = opts.tokenizer;
  }
  checkTensors(model);
  checkTokenizerFits(model, opts.tokenizer ?? (format === 'gguf' ? modelPath : model.tokenizerPath));
  return model;
}

/**
 * A tokenizer with more tokens than the embedding table has rows produces ids the model cannot embed; say so when the
 * model is opened, naming the tokenizer, instead of failing later on an id the user never typed.
 */
function checkTokenizerFits(m: LoadedModel, source: string | undefined): void {
  const tok = m.tokenizer;
  if (tok && tok.vocabSize > m.config.vocabSize) {
    throw new UserError(
      `${source ?? m.path}: the tokenizer has ${tok.vocabSize} tokens but the model's embedding table has ${m.config.vocabSize} rows; wrong tokenizer for this model?`,
    );
  }
}

/** An explicit tokenizer: tokenizer.json (Hugging Face) or a llama2.c tokenizer.bin. */
function readTokenizerFile(p: string, vocabSize: number): Tokenizer {
  return p.endsWith('.json') ? readTokenizerJson(p) : readLlama2cTokenizer(p, vocabSize);
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face folder

function loadHf(dir: string, tokenizerPath?: string): LoadedModel {
  const hf = loadHfFolder(dir);
  const jsonPath = path.join(dir, 'tokenizer.json');
  // Without a tokenizer.json, a llama2.c tokenizer.bin in the folder (as `random-model` writes for SentencePiece
  // vocabularies that came from a GGUF or llama2.c checkpoint) is the folder's tokenizer.
  const binPath = path.join(dir, 'tokenizer.bin');
  const tokPath = tokenizerPath ?? (hf.hasTokenizerJson ? jsonPath : existsSync(binPath) ? binPath : undefined);
  const tokenizer = tokenizerPath
    ? readTokenizerFile(tokenizerPath, hf.config.vocabSize)
    : hf.hasTokenizerJson
      ? readTokenizerJson(jsonPath)
      : existsSync(binPath)
        ? readLlama2cTokenizer(binPath, hf.config.vocabSize)
        : null;
  const model: LoadedModel = { path: dir, format: 'hf', config: hf.config, tensors: hf.tensors, tokenizer, storedDtype: hf.storedDtype, notDownloaded: hf.notDownloaded, tokenizerPath: tokPath };
  checkTokenizerFits(model, tokPath);
  return model;
}

function detectFormat(p: string): SourceFormat {
  if (p.endsWith('.gguf')) return 'gguf';
  if (p.endsWith('.bin')) return 'llama2c';
  throw new UserError(`${p}: unknown checkpoint format (expected a .gguf file, a llama2.c .bin, or a Hugging Face folder)`);
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF

function loadGguf(p: string): LoadedModel {
  const file = readGguf(p);
  const arch = metaString(file, 'general.architecture');
  const spec = specForGguf(arch);
  if (!spec?.fromGguf) {
    const supported = SPECS.flatMap((s) => (s.ggufArch ? [s.ggufArch] : [])).join(', ');
    throw new UserError(`${p}: GGUF architecture "${arch}" is not supported (supported: ${supported})`);
  }
  const tensors = new Map(file.tensors.map((t) => [t.name, t]));
  const meta: GgufMeta = {
    path: p,
    number: (key, fallback) => metaNumber(file, key, fallback),
    int: (key, fallback) => metaInt(file, key, fallback),
    has: (key) => file.metadata.has(key),
    tensorShape: (name) => tensors.get(name)?.shape ?? null,
    positive: (key, fallback) => metaPositive(file, key, fallback),
    tensorCount: tensors.size,
  };
  const config = spec.fromGguf(meta);
  validateConfig(p, config);
  // Key the tensors by the names the block code reads (the spec's GGUF names map onto them).
  const rename = new Map(spec.tensors(config).map((t) => [t.gguf ?? t.name, t.name]));
  const named = new Map([...tensors].map(([n, t]) => [rename.get(n) ?? n, t]));
  const tokenizer = file.metadata.has('tokenizer.ggml.tokens') ? tokenizerFromGguf(file) : null;
  return { path: p, format: 'gguf', config, tensors: named, tokenizer, storedDtype: dominantDtype(file.tensors) };
}

/** As for Hugging Face configs: more blocks than stored tensors is corrupt (and would drive a 2^32-step loop). */
function blockCount(file: GgufFile, tensorCount: number): number {
  const n = metaInt(file, 'llama.block_count');
  if (n > tensorCount) throw new UserError(`${file.path}: metadata llama.block_count is ${n}, but the file holds only ${tensorCount} tensors`);
  return n;
}

function metaNumber(file: GgufFile, key: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`${file.path}: metadata ${key} is missing or not a number`);
  return v;
}

/** A norm epsilon or RoPE base of 0 or below makes every activation NaN or nonsense: refuse it with the key's name. */
function metaPositive(file: GgufFile, key: string, fallback: number): number {
  const v = metaNumber(file, key, fallback);
  if (!(v > 0)) throw new UserError(`${file.path}: metadata ${key} must be a positive number, got ${v}`);
  return v;
}

function metaInt(file: GgufFile, key: string, fallback?: number): number {
  const v = metaNumber(file, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new UserError(`${file.path}: metadata ${key} must be a positive integer, got ${v}`);
  return v;
}

function metaString(file: GgufFile, key: string): string {
  const v = file.metadata.get(key);
  if (typeof v !== 'string') throw new UserError(`${file.path}: metadata ${key} is missing`);
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// llama2.c

function loadLlama2c(p: string, tokenizerPath?: string): LoadedModel {
  const file = readLlama2c(p);
  const h = file.header;
  const config: ModelConfig = {
    arch: 'llama',
    dim: h.dim,
    nLayers: h.nLayers,
    nHeads: h.nHeads,
    nKvHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    ffnDim: h.hiddenDim,
    vocabSize: h.vocabSize,
    // llama2.c fixes these in its run.c rather than storing them.
    normEps: 1e-5,
    maxSeqLen: h.seqLen,
    tiedHead: file.tied,
    ropeTheta: 10000,
    ropePairing: 'interleaved',
    ropeScaling: null,
    qkvBias: false,
  };
  validateConfig(p, config);
  const tokPath = tokenizerPath ?? findTokenizerBin(p, h.vocabSize);
  const tokenizer = tokPath ? readLlama2cTokenizer(tokPath, h.vocabSize) : null;
  return { path: p, format: 'llama2c', config, tensors: new Map(file.tensors.map((t) => [t.name, t])), tokenizer, storedDtype: 'F32', tokenizerPath: tokPath ?? undefined };
}

/** llama2.c keeps its tokenizer beside the checkpoint: tokenizer.bin, or tok{vocab}.bin for custom vocabularies. */
function findTokenizerBin(modelPath: string, vocabSize: number): string | null {
  const dir = path.dirname(modelPath);
  for (const name of [`tok${vocabSize}.bin`, 'tokenizer.bin']) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// Checks shared by every format

function validateConfig(p: string, c: ModelConfig): void {
  if (c.dim % c.nHeads !== 0) throw new UserError(`${p}: hidden size ${c.dim} is not divisible by ${c.nHeads} heads`);
  if (c.nHeads % c.nKvHeads !== 0) throw new UserError(`${p}: ${c.nHeads} heads are not divisible by ${c.nKvHeads} KV heads`);
  if (c.headDim % 2 !== 0) throw new UserError(`${p}: head size ${c.headDim} is odd; RoPE needs pairs`);
}

/** Every tensor the family's spec lists for this config exists with the shape the config implies. */
function checkTensors(m: LoadedModel): void {
  for (const want of specOf(m.config).tensors(m.config)) {
    const name = want.name;
    const t = m.tensors.get(name);
    if (!t) throw new UserError(`${m.path}: tensor ${name} is missing`);
    if (t.shape.length !== want.shape.length || t.shape.some((d, i) => d !== want.shape[i])) {
      throw new UserError(`${m.path}: tensor ${name} has shape [${t.shape}], config implies [${want.shape}]`);
    }
  }
}

/**
 * Whether the output head is the embedding table: no separate head, or a separate head holding the same bytes (as
 * llama.cpp's converters write for tied models). Compared in chunks, so untied heads stop at the first difference.
 */
export function headIsTied(m: LoadedModel): boolean {
  if (m.config.tiedHead) return true;
  const a = m.tensors.get('output.weight');
  const b = m.tensors.get('token_embd.weight');
  if (!a || !b || a.nbytes !== b.nbytes || a.dtype !== b.dtype) return false;
  const chunk = 1 << 20;
  const [fa, fb] = [openSync(a.file, 'r'), openSync(b.file, 'r')];
  try {
    const [ba, bb] = [Buffer.alloc(chunk), Buffer.alloc(chunk)];
    for (let pos = 0; pos < a.nbytes; pos += chunk) {
      const n = Math.min(chunk, a.nbytes - pos);
      readSync(fa, ba, 0, n, a.offset + pos);
      readSync(fb, bb, 0, n, b.offset + pos);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

function dominantDtype(tensors: StoredTensor[]): string {
  const bytes = new Map<string, number>();
  for (const t of tensors) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.nbytes);
  return [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
}
