/**
 * What travels through the queue: one job = one batch of single-feature selections for one model, block range, hook
 * and settings (what one visualize call of a local `atlas build` runs), and its result = the RunResults of that batch.
 *
 * Jobs are plain JSON (BullMQ stores them as such), so the settings' one typed array, a `--direction` vector, travels as
 * a number list. A job's id is a hash of everything that decides its records, so enqueueing the same sweep twice adds
 * nothing (BullMQ ignores an add whose id exists). `kind` leaves room for other job types (an `atlas scan` job would
 * carry one feature group and a corpus named by content hash the same way).
 */
import type { RunResult, VisualizeSettings } from '../../features/visualize.js';
import type { Hook } from '../../models/config.js';
import { canonicalJson, sha256Hex } from '../canonical.js';
import { featureSelect } from '../settings.js';

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
}

export interface BuildJobData {
  kind: 'build';
  /** llm-features version that wrote the job. */
  version: string;
  model: ModelRef;
  blocks: [number, number];
  hook: Hook;
  features: number[];
  settings: WireSettings;
  /** The atlas's hash of the settings record (what the results are stored under). */
  settings_hash: string;
}

export interface BuildJobResult {
  kind: 'build';
  results: RunResult[];
  /** Wall time of the batch inside the worker (the benchmark compares it with the job's whole time in the queue). */
  run_ms: number;
  worker: string;
}

export type JobData = BuildJobData;
export type JobResult = BuildJobResult;

export function toWire(s: Omit<VisualizeSettings, 'blocks' | 'hook'>): WireSettings {
  const { direction, ...objective } = s.objective;
  return { ...s, objective: direction ? { ...objective, direction: Array.from(direction) } : objective };
}

export function fromWire(w: WireSettings, blocks: [number, number], hook: Hook): VisualizeSettings {
  const { direction, ...objective } = w.objective;
  return { ...w, blocks, hook, objective: direction ? { ...objective, direction: Float32Array.from(direction) } : objective };
}

/**
 * The job id: a hash of the record keys (model, blocks, hook, settings, selections) and of the full settings (which
 * also hold what the settings record leaves out, such as a direction vector). Hex only: BullMQ refuses ids with `:`.
 */
export function buildJobId(d: Omit<BuildJobData, 'kind' | 'version' | 'model'> & { model: { hash: string } }): string {
  const key = { kind: 'build', model: d.model.hash, blocks: d.blocks, hook: d.hook, settings_hash: d.settings_hash, selects: d.features.map(featureSelect), settings: d.settings };
  return 'b' + sha256Hex(canonicalJson(key)).slice(0, 40);
}
