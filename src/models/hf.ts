/**
 * Opens a Hugging Face model folder (config.json + model.safetensors, or shards listed in model.safetensors.index.json)
 * as a normalised ModelConfig plus tensors under the GGUF-style names the block code reads — the same shape of result
 * load.ts produces for GGUF and llama2.c. HF cache snapshot folders work as they are: their files are symlinks into
 * ../../blobs, which are opened through the link (StoredTensor.file keeps the snapshot path; the engine resolves
 * real paths itself). Nothing here reads weight bytes, only safetensors headers.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { readSafetensors } from '../formats/safetensors.js';
import type { StoredTensor } from '../formats/types.js';
import type { ModelConfig } from './config.js';
import { readJsonObject } from './config-reader.js';
import { specForHfConfig, supportedModelTypes } from './registry.js';
import type { TensorSpec } from './spec.js';

export interface HfFolder {
  config: ModelConfig;
  /** By GGUF-style name (token_embd.weight, blk.N.attn_q.weight, …; GPT-2 keeps its own names). `.name` is the HF name. */
  tensors: Map<string, StoredTensor>;
  /** The dtype most weight bytes are stored in. */
  storedDtype: string;
  hasTokenizerJson: boolean;
  /**
   * Tensors (by block-code name → the shard that holds them) of a partly downloaded cache snapshot: the hub download
   * fetches only the shards a request's blocks need, so later blocks and the head may be absent (see hub/).
   */
  notDownloaded: Map<string, string>;
}

export function loadHfFolder(dir: string): HfFolder {
  if (!existsSync(dir)) throw new UserError(`${dir}: no such file or directory`);
  if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: not a directory`);
  const configPath = path.join(dir, 'config.json');
  const json = readJsonObject(configPath, configHint(dir));
  const spec = specForHfConfig(json);
  if (!spec) {
    const arch = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
    const named = typeof arch === 'string' ? arch : typeof json.model_type === 'string' ? json.model_type : '(none given)';
    throw new UserError(`${configPath}: architecture ${named} is not supported (supported: ${supportedModelTypes().join(', ')})`);
  }
  const { stored, absent } = readCheckpoint(dir);
  const reading = spec.fromHfConfig({ path: configPath, json, has: (n) => stored.has(n) || absent.has(n), tensorCount: stored.size + absent.size });
  const wants = spec.tensors(reading.config);
  const notDownloaded = new Map<string, string>();
  for (const w of wants) {
    const shard = absent.get(reading.prefix + w.hf);
    if (shard === undefined) continue;
    // What comes before the blocks (embeddings, positions) is needed by every request; the download fetches it.
    if (w.layer < 0) throw new UserError(`${dir}: tensor ${reading.prefix + w.hf} is in ${shard}, which is not downloaded`);
    notDownloaded.set(w.name, shard);
  }
  const tensors = pickTensors(dir, stored, wants.filter((w) => !notDownloaded.has(w.name)), reading.prefix, (n) => reading.ignore(n) || absent.has(n));
  return {
    config: reading.config,
    notDownloaded,
    tensors,
    storedDtype: dominantDtype([...tensors.values()]),
    hasTokenizerJson: existsSync(path.join(dir, 'tokenizer.json')),
  };
}

/** Why config.json is needed, with a pointer into snapshots/ when `dir` looks like a Hugging Face cache repo folder. */
function configHint(dir: string): string {
  const base = path.basename(path.resolve(dir));
  if (existsSync(path.join(dir, 'snapshots')) || base.startsWith('models--')) {
    return 'a Hugging Face cache repo folder keeps its files under snapshots/<commit>/';
  }
  return 'a Hugging Face model folder needs config.json';
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the safetensors file(s)

/** Stored tensors by HF name. */
type Stored = Map<string, StoredTensor>;

/** The stored tensors, and (in a partly downloaded cache snapshot) the HF names of tensors in shards not yet fetched. */
interface Checkpoint {
  stored: Stored;
  absent: Map<string, string>;
}

function readCheckpoint(dir: string): Checkpoint {
  // Same precedence as transformers: a single model.safetensors wins over an index.
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(single)) return { stored: collectShards(dir, [single]), absent: new Map() };
  const index = path.join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) return readShardedCheckpoint(dir, index);
  throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported)`);
}

function readShardedCheckpoint(dir: string, indexPath: string): Checkpoint {
  const weightMap = readJsonObject(indexPath).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new UserError(`${indexPath}: weight_map is missing or not an object`);
  }
  const entries = Object.entries(weightMap as Record<string, unknown>);
  // Sorted so that reading order, and so any error message, does not depend on the index's key order.
  const shardNames = [...new Set(entries.map(([name, file]) => checkShardName(indexPath, name, file)))].sort();
  // A cache snapshot may hold only some shards (the hub download fetches those a request needs); any other folder
  // must be complete. existsSync follows symlinks, so a snapshot link to a blob that was never downloaded is missing.
  const snapshot = isCacheSnapshot(dir);
  const missing = new Set(shardNames.filter((file) => !existsSync(path.join(dir, file))));
  if (missing.size > 0 && !snapshot) throw new UserError(`${indexPath}: lists shard ${[...missing][0]}, which does not exist`);
  const stored = collectShards(
    dir,
    shardNames.filter((f) => !missing.has(f)).map((f) => path.join(dir, f)),
  );
  const absent = new Map<string, string>();
  for (const [name, file] of entries) {
    if (missing.has(file as string)) {
      absent.set(name, file as string);
      continue;
    }
    const t = stored.get(name);
    if (!t || t.file !== path.resolve(dir, file as string)) {
      throw new UserError(`${indexPath}: lists tensor ${name} in ${file}, but ${file} does not contain it`);
    }
  }
  return { stored, absent };
}

/** A Hugging Face cache snapshot: <cache>/models--org--name/snapshots/<commit>/ beside ../../blobs. */
function isCacheSnapshot(dir: string): boolean {
  const abs = path.resolve(dir);
  return path.basename(path.dirname(abs)) === 'snapshots' && existsSync(path.join(abs, '..', '..', 'blobs'));
}

/** Shard names come from a downloaded file: keep them inside the folder. */
function checkShardName(indexPath: string, tensor: string, file: unknown): string {
  if (typeof file !== 'string' || file === '' || path.isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
    throw new UserError(`${indexPath}: tensor ${tensor} maps to ${JSON.stringify(file)}, not a file name inside the folder`);
  }
  return file;
}

/** Every tensor of every shard by name; a name in two shards is ambiguous, so refuse it. */
function collectShards(dir: string, files: string[]): Stored {
  const stored: Stored = new Map();
  for (const file of files) {
    for (const t of readSafetensors(file)) {
      const other = stored.get(t.name);
      if (other) {
        throw new UserError(`${dir}: tensor ${t.name} is stored twice, in ${path.basename(other.file)} and ${path.basename(t.file)}`);
      }
      stored.set(t.name, t);
    }
  }
  return stored;
}

/**
 * Renames the wanted tensors, checking each exists with the shape config.json implies. Stored tensors nobody wants
 * (and not deliberately ignored) mean the checkpoint has parts this architecture would silently drop — e.g. Llama
 * `attention_bias` / `mlp_bias` variants — so they are refused rather than producing wrong activations.
 */
function pickTensors(dir: string, stored: Stored, wants: TensorSpec[], prefix: string, ignore: (hfName: string) => boolean): Map<string, StoredTensor> {
  const tensors = new Map<string, StoredTensor>();
  for (const want of wants) {
    const w = { ...want, hf: prefix + want.hf };
    const t = stored.get(w.hf);
    if (!t) throw new UserError(`${dir}: tensor ${w.hf} is missing (config.json implies shape [${w.shape}])`);
    if (t.shape.length !== w.shape.length || t.shape.some((n, i) => n !== w.shape[i])) {
      throw new UserError(`${dir}: tensor ${w.hf} in ${path.basename(t.file)} has shape [${t.shape}], config.json implies [${w.shape}]`);
    }
    tensors.set(w.name, t);
  }
  const wanted = new Set(wants.map((w) => prefix + w.hf));
  for (const [name, t] of stored) {
    if (!wanted.has(name) && !ignore(name)) {
      throw new UserError(`${dir}: tensor ${name} in ${path.basename(t.file)} is not part of the architecture config.json describes`);
    }
  }
  return tensors;
}

function dominantDtype(tensors: StoredTensor[]): string {
  const bytes = new Map<string, number>();
  for (const t of tensors) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.nbytes);
  return [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
}
