/**
 * Models are identified by content, not path: the SHA-256 of the checkpoint file (what `sha256sum` prints), or for a
 * Hugging Face folder the SHA-256 of its sorted "name<TAB>sha256" lines over config.json and the weight files.
 * Hashing a large checkpoint takes a while, so each file's hash is remembered by real path, size and mtime.
 */
import { closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { LoadedModel } from '../models/load.js';
import type { Atlas } from './store.js';
import { sha256Hex } from './canonical.js';
import { embeddingTable } from '../features/embeddings.js';

/** SHA-256 of a file's bytes, read in chunks. */
export function hashFile(file: string): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(16 << 20);
  const fd = openSync(file, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** The files whose bytes define the model. */
export function modelFiles(model: LoadedModel): string[] {
  const files = new Set<string>();
  for (const t of model.tensors.values()) files.add(realpathSync(t.file));
  if (model.format === 'hf') files.add(realpathSync(path.join(model.path, 'config.json')));
  return [...files].sort();
}

export interface FileHashCache {
  cachedFileHash(file: string, size: number, mtimeNs: string): string | undefined;
  rememberFileHash(file: string, size: number, mtimeNs: string, hash: string): void;
}

/** A file's hash, from the cache when its size and mtime are unchanged. */
export function fileHash(file: string, cache?: FileHashCache, onHash?: (file: string, bytes: number) => void): string {
  const st = statSync(file, { bigint: true });
  const size = Number(st.size);
  const mtime = st.mtimeNs.toString();
  const known = cache?.cachedFileHash(file, size, mtime);
  if (known) return known;
  onHash?.(file, size);
  const hash = hashFile(file);
  cache?.rememberFileHash(file, size, mtime, hash);
  return hash;
}

export function modelHash(model: LoadedModel, cache?: FileHashCache | Atlas, onHash?: (file: string, bytes: number) => void): string {
  const files = modelFiles(model);
  const hashes = files.map((f) => fileHash(f, cache, onHash));
  if (files.length === 1) return hashes[0]!;
  return sha256Hex(files.map((f, i) => `${path.basename(f)}\t${hashes[i]}\n`).join(''));
}

/** The name a model is listed under: the basename of the path it was given as. */
export function modelName(model: LoadedModel): string {
  return path.basename(path.resolve(model.path));
}

/**
 * SHA-256 of the token embedding table as float32 (its shape first): two models with the same hash share their
 * embedding space bit for bit — a model and its `random-model --keep-embeddings` control do, a full redraw does not —
 * so their residual-stream coordinates can be paired by index.
 */
export function embeddingHash(model: LoadedModel): string {
  const t = embeddingTable(model);
  return createHash('sha256').update(`${t.vocab}x${t.dim}\n`).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');
}

/** SHA-256 of the tokenizer's pieces in id order (null without a tokenizer): equal hashes = the same token strings. */
export function vocabHash(model: LoadedModel): string | null {
  const tok = model.tokenizer;
  if (!tok) return null;
  const h = createHash('sha256').update(`${tok.vocabSize}\n`);
  for (let id = 0; id < tok.vocabSize; id++) h.update(tok.piece(id)).update('\u0000');
  return h.digest('hex');
}

/** The models row `atlas build` / `atlas scan` register a model under (the one place its identity columns come from). */
export function atlasModelRow(model: LoadedModel, hash: string) {
  const cfg = model.config;
  return {
    hash,
    name: modelName(model),
    format: model.format,
    architecture: cfg.arch,
    n_layers: cfg.nLayers,
    dim: cfg.dim,
    vocab: cfg.vocabSize,
    embedding_hash: embeddingHash(model),
    vocab_hash: vocabHash(model),
  };
}

/**
 * The tokenizer's identity beside the model's: the SHA-256 of the file it was read from, or null when it has no file of
 * its own (no tokenizer, or one inside the checkpoint, as in a GGUF file, which the model hash already covers). A Hugging
 * Face folder's tokenizer.json and a llama2.c tokenizer.bin are not model files, so a worker that found another
 * tokenizer beside the same weights would decode other text without this.
 */
export function tokenizerHash(model: LoadedModel, cache?: FileHashCache | Atlas, onHash?: (file: string, bytes: number) => void): string | null {
  if (!model.tokenizer || !model.tokenizerPath) return null;
  return fileHash(realpathSync(model.tokenizerPath), cache, onHash);
}
