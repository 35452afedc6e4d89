/**
 * `atlas build`: sweep visualize over block ranges × single features and store one record per run. Work is done in
 * batches of `settings.batch` runs; each batch is committed in one transaction, so an interrupted build loses at most
 * the batch in flight, and the same build again skips every record already there.
 */
import { UserError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import { decoderFor } from '../features/embeddings.js';
import { settingsRecord, Visualizer, type RunResult, type VisualizeSettings } from '../features/visualize.js';
import { hookWidth, type Hook } from '../models/config.js';
import { modelHash, modelName } from './hash.js';
import { featureSelect } from './settings.js';
import type { Atlas } from './store.js';

export interface BuildProgress {
  /** Records in the atlas for this sweep (skipped + inserted so far). */
  done: number;
  total: number;
  /** Records that were already there when the build started. */
  skipped: number;
  /** Records this build has inserted so far. */
  inserted: number;
  elapsedMs: number;
  blocks: [number, number];
}

export interface BuildRequest {
  atlas: Atlas;
  runner: ModelRunner;
  blocks: [number, number][];
  hook: Hook;
  /** Feature indices; each becomes the selection `[:, :, f]`. */
  features: number[];
  /** Everything but blocks and hook (those come from the sweep). */
  settings: Omit<VisualizeSettings, 'blocks' | 'hook'>;
  onProgress?: (p: BuildProgress) => void;
  /** Called before a checkpoint file is hashed (not when its hash is remembered). */
  onHash?: (file: string, bytes: number) => void;
}

export interface BuildSummary {
  model: { hash: string; name: string };
  settings_hash: string;
  total: number;
  skipped: number;
  inserted: number;
  failed: number;
  elapsed_ms: number;
}

/** What a sweep needs before any batch runs: the model's identity, the settings hash and, per block range, the features not yet recorded. */
export interface BuildPlan {
  model: { hash: string; name: string };
  settingsHash: string;
  plan: { blocks: [number, number]; pending: number[] }[];
  total: number;
  skipped: number;
}

/**
 * Check the request, register the model and settings in the atlas and list the pending features: the part of a build
 * that a local build and a queued one (atlas/queue/collector.ts) share.
 */
export function planBuild(req: Omit<BuildRequest, 'onProgress'>): BuildPlan {
  const { atlas, runner, hook } = req;
  const model = runner.model;
  // Check everything cheap before hashing the checkpoint or running anything.
  for (const b of req.blocks) runner.checkRange(b);
  const width = hookWidth(model.config, hook);
  for (const f of req.features) {
    if (!Number.isInteger(f) || f < 0 || f >= width) throw new UserError(`--features: feature ${f} is outside the ${hook} hook's features 0-${width - 1}`);
  }

  const hash = modelHash(model, atlas, req.onHash);
  const name = modelName(model);
  atlas.upsertModel({
    hash,
    name,
    format: model.format,
    architecture: model.config.arch,
    n_layers: model.config.nLayers,
    dim: model.config.dim,
    vocab: model.config.vocabSize,
  });
  const sample: VisualizeSettings = { ...req.settings, blocks: req.blocks[0]!, hook };
  const settingsHash = atlas.upsertSettings(settingsRecord(sample));

  const plan = req.blocks.map((blocks) => {
    const finished = atlas.finishedSelects(hash, blocks, hook, settingsHash);
    return { blocks, pending: req.features.filter((f) => !finished.has(featureSelect(f))) };
  });
  const total = req.blocks.length * req.features.length;
  const skipped = total - plan.reduce((n, p) => n + p.pending.length, 0);
  return { model: { hash, name }, settingsHash, plan, total, skipped };
}

/** Split a block range's pending features into the batches one visualize call runs (and one queue job carries). */
export function batchesOf(pending: number[], batch: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < pending.length; i += batch) out.push(pending.slice(i, i + batch));
  return out;
}

/**
 * Run one batch: the selections `[:, :, f]` for the given features, in order. Local builds and queue workers both
 * call this, so a queued sweep computes exactly what a local one does.
 */
export async function runFeatureBatch(visualizer: Visualizer, settings: VisualizeSettings, features: number[]): Promise<RunResult[]> {
  const results = await visualizer.visualize({ select: `[:, :, ${features.join(',')}]`, settings });
  if (results.length !== features.length) throw new Error(`atlas build: ${results.length} runs for ${features.length} features`);
  results.forEach((r, k) => {
    if (r.select !== featureSelect(features[k]!)) throw new Error(`atlas build: run ${k} is ${r.select}, expected ${featureSelect(features[k]!)}`);
  });
  return results;
}

export async function buildAtlas(req: BuildRequest): Promise<BuildSummary> {
  const { atlas, runner, hook } = req;
  const model = runner.model;
  const { model: id, settingsHash, plan, total, skipped } = planBuild(req);
  let inserted = 0;
  let failed = 0;
  const t0 = performance.now();
  const report = (blocks: [number, number]) =>
    req.onProgress?.({ done: skipped + inserted, total, skipped, inserted, elapsedMs: performance.now() - t0, blocks });
  if (plan.length) report(plan[0]!.blocks);

  const visualizer = new Visualizer(runner, model.tokenizer, decoderFor(model));
  for (const { blocks, pending } of plan) {
    const settings: VisualizeSettings = { ...req.settings, blocks, hook };
    for (const chunk of batchesOf(pending, settings.batch)) {
      const results = await runFeatureBatch(visualizer, settings, chunk);
      inserted += atlas.insertResults(id.hash, settingsHash, results);
      failed += results.filter((r) => r.status === 'failed').length;
      report(blocks);
    }
  }
  return { model: id, settings_hash: settingsHash, total, skipped, inserted, failed, elapsed_ms: Math.round(performance.now() - t0) };
}
