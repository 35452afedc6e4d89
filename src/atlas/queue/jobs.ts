/**
 * What travels through the queue. Two kinds of job:
 *   build  one batch of selections for one model, block range, hook and settings (what one visualize call of a local
 *          `atlas build` runs: single features, or the one record of a `--direction` sweep); its result = the batch's
 *          RunResults.
 *   scan   one feature group of an `atlas scan` over the whole corpus (so each feature's quantiles are computed from
 *          every window in one place and need no merging); its result = the group's FeatureScans and, with
 *          --calibrate-tokens, their calibration grids.
 *
 * Jobs are plain JSON (BullMQ stores them as such), so typed arrays travel as number lists (a direction) or base64
 * (a float64 calibration grid: 10,001 values, 80 KB, where a number list would be ~200 KB). Every file a job depends on
 * is named by content hash with a path as a hint — the model, its tokenizer, a corpus — and a direction by the hash of
 * its float32 bytes beside the vector, so a worker refuses what is not byte for byte what the enqueueing machine had.
 * A job's id is a hash of everything that decides its results, so enqueueing the same sweep twice adds nothing
 * (BullMQ ignores an add whose id exists).
 */
import type { FeatureScan } from '../../features/scan.js';
import type { RunResult, VisualizeSettings } from '../../features/visualize.js';
import type { Hook } from '../../models/config.js';
import { recordSelect } from '../build.js';
import { canonicalJson, sha256Hex } from '../canonical.js';

/** One queue for every sweep; separate sweeps share it and are told apart by job id (another Redis DB separates more). */
export const QUEUE_NAME = 'llm-features';

/** Visualize settings without blocks and hook, as JSON: `objective.direction` is a plain number list. */
export type WireSettings = Omit<VisualizeSettings, 'blocks' | 'hook' | 'objective'> & {
  objective: Omit<VisualizeSettings['objective'], 'direction'> & { direction?: number[] };
};

export interface ModelRef {
  /** Content hash (atlas/hash.ts): the worker refuses a file whose hash differs. */
  hash: string;
  /** The name the atlas lists the model under. */
  name: string;
  /** Where the enqueueing machine opened it (absolute); a worker with `--models DIR` looks for its basename there. */
  path: string;
  /** The `--tokenizer` file it was opened with, if one was given (same lookup as the model). */
  tokenizer?: string;
  /** SHA-256 of the tokenizer file the model was opened with; null when it has none of its own (tokenizerHash). */
  tokenizer_hash: string | null;
}

/** A corpus named by content: a worker opens `path` (or its basename under `--models DIR`) and checks the hash. */
export interface CorpusRef {
  /** SHA-256 of the file's bytes (what readCorpus reports and an atlas scan is keyed by). */
  hash: string;
  /** The path as given on the enqueueing machine: what records name the corpus by (calibration.corpus). */
  name: string;
  path: string;
}

export interface BuildJobData {
  kind: 'build';
  /** llm-features version that wrote the job. */
  version: string;
  model: ModelRef;
  blocks: [number, number];
  hook: Hook;
  /** Features, or `[null]`: the one record of a direction sweep (the direction is in settings.objective). */
  features: (number | null)[];
  settings: WireSettings;
  /** The atlas's hash of the settings record (what the results are stored under). */
  settings_hash: string;
  /** With a direction: the SHA-256 of its float32 bytes (scan-build.ts directionHash), checked by the worker. */
  direction_hash?: string;
  /** `--corpus`: the worker computes each run's reference distribution from this corpus (percentiles, verdict). */
  corpus?: CorpusRef;
}

export interface ScanJobData {
  kind: 'scan';
  version: string;
  model: ModelRef;
  blocks: [number, number];
  hook: Hook;
  features: number[];
  corpus: CorpusRef;
  window: number;
  max_tokens: number | null;
  bos: boolean;
  direction?: number[];
  direction_hash?: string;
  /** Windows per forward pass. */
  batch: number;
  topk: number;
  bin_examples: number;
  calibrate_tokens: number | null;
  calibrate_bos: boolean;
  /** The scan's settings hash in the atlas (the scan row is keyed by it). */
  settings_hash: string;
}

/** What every result reports about its job's cost inside the worker (the benchmark's overhead shares come from it). */
export interface JobCost {
  /** Wall time of the computation (runFeatureBatch, or the scan of the group). */
  run_ms: number;
  /** CPU time of the whole worker process during that computation (all its threads): over run_ms, the cores it got. */
  cpu_ms: number;
  /** Time spent opening the model and hashing files for this job (0 when the worker's cached sessions served it). */
  open_ms: number;
  /** Graph sessions built during the computation (a new block range, hook or batch shape) and the time they took. */
  sessions: number;
  session_ms: number;
  worker: string;
}

export interface BuildJobResult extends JobCost {
  kind: 'build';
  results: RunResult[];
}

/** A calibration grid on the wire: the float64 bytes in base64. */
export interface WireCalibration {
  feature: number;
  windows: number;
  grid: string;
}

export interface ScanJobResult extends JobCost {
  kind: 'scan';
  features: FeatureScan[];
  calibration: WireCalibration[] | null;
}

export type JobData = BuildJobData | ScanJobData;
export type JobResult = BuildJobResult | ScanJobResult;

export function toWire(s: Omit<VisualizeSettings, 'blocks' | 'hook'>): WireSettings {
  const { direction, ...objective } = s.objective;
  return { ...s, objective: direction ? { ...objective, direction: Array.from(direction) } : objective };
}

export function fromWire(w: WireSettings, blocks: [number, number], hook: Hook): VisualizeSettings {
  const { direction, ...objective } = w.objective;
  return { ...w, blocks, hook, objective: direction ? { ...objective, direction: Float32Array.from(direction) } : objective };
}

export function gridToWire(grid: Float64Array): string {
  return Buffer.from(grid.buffer, grid.byteOffset, grid.byteLength).toString('base64');
}

export function gridFromWire(b64: string): Float64Array {
  const b = Buffer.from(b64, 'base64');
  // Copy into an aligned buffer: a decoded Buffer may start at any byte offset of Node's pool.
  const grid = new Float64Array(b.byteLength / 8);
  new Uint8Array(grid.buffer).set(b);
  return grid;
}

/**
 * The job id: a hash of the record keys (model and tokenizer, blocks, hook, settings, selections), of the full settings
 * (which also hold what the settings record leaves out, such as a direction vector) and of the corpus a reference is
 * computed from. Hex only: BullMQ refuses ids with `:`.
 */
export function buildJobId(d: Omit<BuildJobData, 'kind' | 'version' | 'model'> & { model: { hash: string; tokenizer_hash: string | null } }): string {
  const key = {
    kind: 'build',
    model: d.model.hash,
    tokenizer: d.model.tokenizer_hash,
    blocks: d.blocks,
    hook: d.hook,
    settings_hash: d.settings_hash,
    selects: d.features.map(recordSelect),
    settings: d.settings,
    corpus: d.corpus?.hash ?? null,
  };
  return 'b' + sha256Hex(canonicalJson(key)).slice(0, 40);
}

/** A scan job's id: the scan's key (model, tokenizer, blocks, hook, corpus, settings) and the group's features. */
export function scanJobId(d: Omit<ScanJobData, 'kind' | 'version'>): string {
  const key = {
    kind: 'scan',
    model: d.model.hash,
    tokenizer: d.model.tokenizer_hash,
    blocks: d.blocks,
    hook: d.hook,
    corpus: d.corpus.hash,
    settings_hash: d.settings_hash,
    features: d.features,
    // Settings the scan key does not hold but the computation uses.
    batch: d.batch,
    direction: d.direction_hash ?? null,
  };
  return 's' + sha256Hex(canonicalJson(key)).slice(0, 40);
}
