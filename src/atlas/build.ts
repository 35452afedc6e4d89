/**
 * `atlas build`: sweep visualize over block ranges × single features and store one record per run. Work is done in
 * batches of `settings.batch` runs; each batch is committed in one transaction, so an interrupted build loses at most
 * the batch in flight, and the same build again skips every record already there.
 */
import { paramError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import type { ReferenceProvider } from '../features/calibrate.js';
import { decoderFor } from '../features/embeddings.js';
import { settingsRecord } from '../features/settings.js';
import { Visualizer, type VisualizeSettings } from '../features/visualize.js';
import { hookWidth, type Hook } from '../models/config.js';
import { modelHash, modelName } from './hash.js';
import { featureSelect } from './settings.js';
import type { Atlas } from './store.js';
import { VERSION } from '../version.js';

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
  /** Feature indices; each becomes the selection `[:, :, f]`. With a direction objective: none — the direction replaces
   *  the feature axis, so each block range gets one record, `[:, :, :]`. */
  features: number[];
  /** Everything but blocks and hook (those come from the sweep). */
  settings: Omit<VisualizeSettings, 'blocks' | 'hook'>;
  /** How the records are computed (threads, batch, memory mode): stored beside each result, outside the settings hash. */
  runOptions?: Record<string, unknown>;
  onProgress?: (p: BuildProgress) => void;
  /** Called before a checkpoint file is hashed (not when its hash is remembered). */
  onHash?: (file: string, bytes: number) => void;
  /** Real-text reference distributions to calibrate every record's activations against (features/calibrate.ts). */
  reference?: ReferenceProvider;
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

/** The selection of a direction record: every position; the direction stands for the feature axis. */
const DIRECTION_SELECT = '[:, :, :]';

export async function buildAtlas(req: BuildRequest): Promise<BuildSummary> {
  const { atlas, runner, hook } = req;
  const model = runner.model;
  // Check everything cheap before hashing the checkpoint or running anything.
  for (const b of req.blocks) runner.checkRange(b);
  const width = hookWidth(model.config, hook);
  const direction = req.settings.objective.direction;
  if (direction && req.features.length) throw paramError('features', 'a direction replaces the feature axis: give --direction or --features, not both');
  if (!direction && req.features.length === 0) throw paramError('features', 'no features to sweep');
  for (const f of req.features) {
    if (!Number.isInteger(f) || f < 0 || f >= width) throw paramError('features', `feature ${f} is outside the ${hook} hook's features 0-${width - 1}`);
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

  // One selection per feature, or the one direction selection; a chunk of single features runs as one visualize call.
  const selects = direction ? [DIRECTION_SELECT] : req.features.map(featureSelect);
  const plan = req.blocks.map((blocks) => {
    const finished = atlas.finishedSelects(hash, blocks, hook, settingsHash);
    return { blocks, pending: req.features.length ? req.features.filter((f) => !finished.has(featureSelect(f))) : finished.has(DIRECTION_SELECT) ? [] : [null] };
  });
  const total = req.blocks.length * selects.length;
  const skipped = total - plan.reduce((n, p) => n + p.pending.length, 0);
  let inserted = 0;
  let failed = 0;
  const t0 = performance.now();
  const report = (blocks: [number, number]) =>
    req.onProgress?.({ done: skipped + inserted, total, skipped, inserted, elapsedMs: performance.now() - t0, blocks });
  if (plan.length) report(plan[0]!.blocks);

  const visualizer = new Visualizer(runner, model.tokenizer, decoderFor(model));
  for (const { blocks, pending } of plan) {
    const settings: VisualizeSettings = { ...req.settings, blocks, hook };
    for (let i = 0; i < pending.length; i += settings.batch) {
      const chunk = pending.slice(i, i + settings.batch);
      const want = chunk.map((f) => (f === null ? DIRECTION_SELECT : featureSelect(f)));
      const select = direction ? DIRECTION_SELECT : `[:, :, ${chunk.join(',')}]`;
      const results = await visualizer.visualize({ select, settings, ...(req.reference ? { reference: req.reference } : {}) });
      results.forEach((r, k) => {
        if (r.select !== want[k]) throw new Error(`atlas build: run ${k} is ${r.select}, expected ${want[k]}`);
      });
      for (const r of results) r.provenance = { ...req.runOptions, device: runner.device, version: VERSION };
      inserted += atlas.insertResults(hash, settingsHash, results);
      failed += results.filter((r) => r.status === 'failed').length;
      report(blocks);
    }
  }
  return { model: { hash, name }, settings_hash: settingsHash, total, skipped, inserted, failed, elapsed_ms: Math.round(performance.now() - t0) };
}
