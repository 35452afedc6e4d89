/**
 * Token text for the viewer. An atlas stores token ids (and each top-k row decoded as one string), not the vocabulary,
 * so per-token text comes from the model's own tokenizer when its checkpoint is still where `atlas build` saw it:
 * the model_files table remembers each checkpoint file's path, size, mtime and hash. A file is used only when its
 * size and mtime still match the remembered ones and its hash is the model's (for a Hugging Face folder, when the
 * folder's files combine to the model's hash as atlas/hash.ts computes it). Nothing is ever hashed here and no weight
 * bytes are read (loadModel reads headers and the tokenizer only). Without a match the viewer shows token ids.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../atlas/canonical.js';
import { modelFiles } from '../atlas/hash.js';
import type { Atlas, ModelFileRow } from '../atlas/store.js';
import { loadModel, type LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';

export interface ModelSource {
  /** The checkpoint (file or folder) the tokenizer came from. */
  path: string;
  tokenizer: Tokenizer | null;
}

/** Whether a file still has the size and mtime it had when hashed. */
function unchanged(row: ModelFileRow): boolean {
  try {
    const st = statSync(row.path, { bigint: true });
    return st.isFile() && Number(st.size) === row.size && st.mtimeNs.toString() === row.mtime_ns;
  } catch {
    return false;
  }
}

function tryLoad(p: string): LoadedModel | null {
  try {
    return loadModel(p);
  } catch {
    return null;
  }
}

export class ModelSources {
  private cache = new Map<string, ModelSource | null>();

  constructor(private readonly atlas: Atlas) {}

  /** The checkpoint and tokenizer of a model hash, or null when none can be found unchanged; cached per hash. */
  get(hash: string): ModelSource | null {
    if (!this.cache.has(hash)) this.cache.set(hash, this.find(hash));
    return this.cache.get(hash)!;
  }

  tokenizer(hash: string): Tokenizer | null {
    return this.get(hash)?.tokenizer ?? null;
  }

  private find(hash: string): ModelSource | null {
    const rows = this.atlas.modelFileRows();
    // A single-file checkpoint: its file's hash is the model's.
    for (const row of rows) {
      if (row.hash !== hash || !unchanged(row)) continue;
      const m = tryLoad(row.path);
      if (m) return { path: row.path, tokenizer: m.tokenizer };
    }
    // A Hugging Face folder: its files' hashes combine to the model's.
    const byPath = new Map(rows.map((r) => [r.path, r]));
    const folders = new Set(rows.filter((r) => path.basename(r.path) === 'config.json').map((r) => path.dirname(r.path)));
    for (const dir of folders) {
      const m = tryLoad(dir);
      if (!m || m.format !== 'hf') continue;
      let files: string[];
      try {
        files = modelFiles(m);
      } catch {
        continue;
      }
      const known = files.map((f) => byPath.get(f));
      if (known.some((r) => !r || !unchanged(r))) continue;
      const combined = files.length === 1 ? known[0]!.hash : sha256Hex(files.map((f, i) => `${path.basename(f)}\t${known[i]!.hash}\n`).join(''));
      if (combined === hash) return { path: dir, tokenizer: m.tokenizer };
    }
    return null;
  }
}

/** Token id → display piece for every id given (null text when there is no tokenizer or the id is out of range). */
export function piecesOf(tokenizer: Tokenizer | null, ids: Iterable<number>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const id of ids) {
    if (String(id) in out) continue;
    let text: string | null = null;
    if (tokenizer && Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize) {
      try {
        text = tokenizer.piece(id);
      } catch {
        text = null;
      }
    }
    out[String(id)] = text;
  }
  return out;
}
