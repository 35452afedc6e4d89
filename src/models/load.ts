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
import type { Tokenizer } from '../tokenizers/types.js';
import type { ModelConfig } from './config.js';

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
  /** The file the tokenizer was read from, when it is not the checkpoint itself. */
  tokenizerPath?: string;
}

export interface LoadOptions {
  /** Explicit tokenizer file (llama2.c tokenizer.bin); otherwise one is looked for next to the checkpoint. */
  tokenizer?: string;
}

export function loadModel(modelPath: string, opts: LoadOptions = {}): LoadedModel {
  if (!existsSync(modelPath)) throw new UserError(`${modelPath}: no such file or directory`);
  if (statSync(modelPath).isDirectory()) return loadHf(modelPath, opts.tokenizer);
  assertRegularFile(modelPath, 'checkpoint');
  const format = detectFormat(modelPath);
  const model = format === 'gguf' ? loadGguf(modelPath) : loadLlama2c(modelPath, opts.tokenizer);
  if (opts.tokenizer && format === 'gguf') model.tokenizer = readTokenizerFile(opts.tokenizer, model.config.vocabSize);
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
  const model: LoadedModel = { path: dir, format: 'hf', config: hf.config, tensors: hf.tensors, tokenizer, storedDtype: hf.storedDtype, tokenizerPath: tokPath };
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
  if (arch !== 'llama') throw new UserError(`${p}: GGUF architecture "${arch}" is not supported (supported: llama)`);
  const tensors = new Map(file.tensors.map((t) => [t.name, t]));
  const embd = tensors.get('token_embd.weight');
  if (!embd || embd.shape.length !== 2) throw new UserError(`${p}: missing or malformed tensor token_embd.weight`);
  const dim = metaInt(file, 'llama.embedding_length');
  const nHeads = metaInt(file, 'llama.attention.head_count');
  const config: ModelConfig = {
    arch: 'llama',
    dim,
    nLayers: blockCount(file, tensors.size),
    nHeads,
    nKvHeads: metaInt(file, 'llama.attention.head_count_kv', nHeads),
    headDim: dim / nHeads,
    ffnDim: metaInt(file, 'llama.feed_forward_length'),
    vocabSize: embd.shape[0]!,
    normEps: metaPositive(file, 'llama.attention.layer_norm_rms_epsilon', 1e-5),
    maxSeqLen: metaInt(file, 'llama.context_length', 2048),
    tiedHead: !tensors.has('output.weight'),
    ropeTheta: metaPositive(file, 'llama.rope.freq_base', 10000),
    // llama.cpp's converters permute Hugging Face q/k weights so that GGUF llama always pairs (2i, 2i+1).
    ropePairing: 'interleaved',
    ropeScaling: null,
    qkvBias: tensors.has('blk.0.attn_q.bias'),
  };
  validateConfig(p, config);
  const tokenizer = file.metadata.has('tokenizer.ggml.tokens') ? tokenizerFromGguf(file) : null;
  return { path: p, format: 'gguf', config, tensors, tokenizer, storedDtype: dominantDtype(file.tensors) };
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

/** Every tensor a Llama block needs exists with the shape the config implies. */
function checkTensors(m: LoadedModel): void {
  const c = m.config;
  const kv = c.nKvHeads * c.headDim;
  const expect: [string, number[]][] = [['token_embd.weight', [c.vocabSize, c.dim]], ['output_norm.weight', [c.dim]]];
  if (!c.tiedHead) expect.push(['output.weight', [c.vocabSize, c.dim]]);
  for (let i = 0; i < c.nLayers; i++) {
    const b = `blk.${i}.`;
    expect.push(
      [b + 'attn_norm.weight', [c.dim]],
      [b + 'attn_q.weight', [c.nHeads * c.headDim, c.dim]],
      [b + 'attn_k.weight', [kv, c.dim]],
      [b + 'attn_v.weight', [kv, c.dim]],
      [b + 'attn_output.weight', [c.dim, c.nHeads * c.headDim]],
      [b + 'ffn_norm.weight', [c.dim]],
      [b + 'ffn_gate.weight', [c.ffnDim, c.dim]],
      [b + 'ffn_up.weight', [c.ffnDim, c.dim]],
      [b + 'ffn_down.weight', [c.dim, c.ffnDim]],
    );
  }
  for (const [name, shape] of expect) {
    const t = m.tensors.get(name);
    if (!t) throw new UserError(`${m.path}: tensor ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new UserError(`${m.path}: tensor ${name} has shape [${t.shape}], config implies [${shape}]`);
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
