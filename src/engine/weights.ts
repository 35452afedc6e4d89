import { realpathSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { StoredTensor } from '../formats/types.js';
import type { ExternalLocation, Graph } from '../graph/graph.js';
import type { Value } from '../graph/value.js';

/**
 * onnxruntime resolves every external-data `location` against ONE folder per session, refuses `..` and absolute paths,
 * and resolves symlinks first. So bind weights against the deepest common ancestor of the files' real paths, and name
 * each tensor by its real path relative to that folder (this also covers Hugging Face cache snapshots, whose files are
 * symlinks into ../../blobs). `dirs` are real (symlink-free) absolute folders.
 */
export function commonAncestor(dirs: string[]): string {
  if (dirs.length === 0) return '/';
  let common = dirs[0]!.split(path.sep);
  for (const d of dirs.slice(1)) {
    const parts = d.split(path.sep);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.join(path.sep) || '/';
}

/** A source of float32 tensor bytes the engine can bind: the original file when it is F32, else a converted cache file. */
export interface F32Location {
  file: string;
  offset: number;
  length: number;
}

/**
 * Creates each weight a graph asks for once, as an initializer whose bytes stay in the checkpoint file. Only the
 * tensors a graph actually touches are bound, so a request for blocks 1-2 maps nothing of blocks 3..N.
 */
export class WeightBinder {
  private readonly bound = new Map<string, Value>();
  private readonly realFiles = new Map<string, string>();
  private readonly pending: [StoredTensor, ExternalLocation][] = [];

  constructor(
    private readonly graph: Graph,
    private readonly tensors: Map<string, StoredTensor>,
    private readonly locate: (t: StoredTensor) => F32Location,
    readonly folder: string,
    /** Tensors of a partly downloaded hub snapshot that are not on disk (name → shard), for a clear refusal. */
    private readonly notDownloaded: Map<string, string> = new Map(),
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get = (name: string): Value => {
    const cached = this.bound.get(name);
    if (cached) return cached;
    const t = this.tensors.get(name);
    if (!t) {
      const shard = this.notDownloaded.get(name);
      if (shard) {
        throw new UserError(`weight ${name} is in ${shard}, which is not downloaded (the hub download fetched the shards of the blocks asked for; ask for the blocks or the command that needs it and it is fetched)`);
      }
      throw new Error(`weight ${name} is missing from the checkpoint`);
    }
    // The location is filled in by materialize(), after the memory check: converting a tensor is the expensive part.
    const loc = { location: '', offset: 0, length: 0 };
    const v = this.graph.weight(name, t.shape, loc);
    this.bound.set(name, v);
    this.pending.push([t, loc]);
    return v;
  };

  /** Locate (converting if needed) every bound tensor and point its initializer at the bytes. */
  materialize(): void {
    for (const [t, loc] of this.pending) {
      const found = this.locate(t);
      let real = this.realFiles.get(found.file);
      if (!real) {
        real = realpathSync(found.file);
        this.realFiles.set(found.file, real);
      }
      loc.location = path.relative(this.folder, real);
      loc.offset = found.offset;
      loc.length = found.length;
    }
    this.pending.length = 0;
  }

  optional = (name: string): Value | null => (this.tensors.has(name) ? this.get(name) : null);

  /** The tensors bound so far (for memory estimates and tests of what a request maps). */
  boundNames(): string[] {
    return [...this.bound.keys()];
  }
}
