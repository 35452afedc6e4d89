/**
 * `atlas build`: sweep visualize over block ranges × single features and store one record per run. Work is done in
 * batches of `settings.batch` runs; each batch is committed in one transaction, so an interrupted build loses at most
 * the batch in flight, and the same build again skips every record already there.
 */
import { paramError } from '../errors.js';
import { fitDirectionMap, mappedDirection, RIDGE_LAMBDA_REL } from '../features/direction-map.js';
import { decoderFor, embeddingTable } from '../features/embeddings.js';
import type { LoadedModel } from '../models/load.js';
import type { ModelRunner } from '../engine/runner.js';
import type { ReferenceProvider } from '../features/calibrate.js';
import { settingsRecord, vectorHash } from '../features/settings.js';
import { Visualizer, type RunResult, type VisualizeSettings } from '../features/visualize.js';
import type { Hook } from '../models/config.js';
import { featureMapOf, featureWidth } from '../features/sae.js';
import { atlasModelRow, modelHash, modelName, vocabHash } from './hash.js';
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

/** A pending entry's record selection: `[:, :, f]` for a feature, `[:, :, :]` for the one direction record (`null`). */
export function recordSelect(f: number | null): string {
  return f === null ? DIRECTION_SELECT : featureSelect(f);
}

/** What a sweep needs before any batch runs: the model's identity, the settings hash and, per block range, what is not yet recorded. */
export interface BuildPlan {
  model: { hash: string; name: string };
  settingsHash: string;
  /** Pending features per block range; `null` is the one direction record of a direction sweep. */
  plan: { blocks: [number, number]; pending: (number | null)[] }[];
  total: number;
  skipped: number;
}

/**
 * Check the request, register the model and settings in the atlas and list what is pending: the part of a build that
 * a local build and a queued one (atlas/queue/collector.ts) share.
 */
export function planBuild(req: Omit<BuildRequest, 'onProgress'>): BuildPlan {
  const { atlas, runner, hook } = req;
  const model = runner.model;
  // Check everything cheap before hashing the checkpoint or running anything.
  for (const b of req.blocks) runner.checkRange(b);
  const width = featureWidth(model.config, hook, featureMapOf(req.settings));
  const direction = req.settings.objective.direction;
  if (direction && req.features.length) throw paramError('features', 'a direction replaces the feature axis: give --direction or --features, not both');
  if (!direction && req.features.length === 0) throw paramError('features', 'no features to sweep');
  for (const f of req.features) {
    if (!Number.isInteger(f) || f < 0 || f >= width) throw paramError('features', `feature ${f} is outside ${req.settings.sae ? "the SAE's latents" : `the ${hook} hook's features`} 0-${width - 1}`);
  }

  const hash = modelHash(model, atlas, req.onHash);
  const name = modelName(model);
  atlas.upsertModel(atlasModelRow(model, hash));
  const sample: VisualizeSettings = { ...req.settings, blocks: req.blocks[0]!, hook };
  const settingsHash = atlas.upsertSettings(settingsRecord(sample));

  // One selection per feature, or the one direction selection.
  const perRange = direction ? 1 : req.features.length;
  const plan = req.blocks.map((blocks) => {
    const finished = atlas.finishedSelects(hash, blocks, hook, settingsHash);
    const pending: (number | null)[] = direction ? (finished.has(DIRECTION_SELECT) ? [] : [null]) : req.features.filter((f) => !finished.has(featureSelect(f)));
    return { blocks, pending };
  });
  const total = req.blocks.length * perRange;
  const skipped = total - plan.reduce((n, p) => n + p.pending.length, 0);
  return { model: { hash, name }, settingsHash, plan, total, skipped };
}

/** Split a block range's pending features into the batches one visualize call runs (and one queue job carries). */
export function batchesOf<T>(pending: T[], batch: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < pending.length; i += batch) out.push(pending.slice(i, i + batch));
  return out;
}

/**
 * Run one batch: the selections `[:, :, f]` for the given features in order (or, for `[null]`, the direction record).
 * Local builds and queue workers both call this, so a queued sweep computes exactly what a local one does. Each result
 * is stamped with the run's provenance (its run options, the device, the version): stored beside it, outside the
 * settings hash.
 */
export async function runFeatureBatch(
  visualizer: Visualizer,
  settings: VisualizeSettings,
  features: (number | null)[],
  runOptions: Record<string, unknown>,
  reference?: ReferenceProvider,
): Promise<RunResult[]> {
  const want = features.map(recordSelect);
  const select = features[0] === null ? DIRECTION_SELECT : `[:, :, ${features.join(',')}]`;
  const results = await visualizer.visualize({ select, settings, ...(reference ? { reference } : {}) });
  if (results.length !== features.length) throw new Error(`atlas build: ${results.length} runs for ${features.length} selections`);
  results.forEach((r, k) => {
    if (r.select !== want[k]) throw new Error(`atlas build: run ${k} is ${r.select}, expected ${want[k]}`);
    r.provenance = { ...runOptions, device: visualizer.runner.device, version: VERSION };
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
      const results = await runFeatureBatch(visualizer, settings, chunk, req.runOptions ?? {}, req.reference);
      inserted += atlas.insertResults(id.hash, settingsHash, results);
      failed += results.filter((r) => r.status === 'failed').length;
      report(blocks);
    }
  }
  return { model: id, settings_hash: settingsHash, total, skipped, inserted, failed, elapsed_ms: Math.round(performance.now() - t0) };
}

/** Hooks whose features are residual-stream coordinates: the space an embedding-table map carries. */
export const MAPPABLE_HOOKS: readonly Hook[] = ['resid', 'attn_out', 'mlp_out'];

export interface MappedBuildRequest extends Omit<BuildRequest, 'settings'> {
  /** Model A: the one whose features are mapped (the runner's model is B, where the mapped directions are optimised). */
  source: LoadedModel;
  /** Everything but blocks, hook and the direction (each feature's mapped direction is the objective). */
  settings: Omit<VisualizeSettings, 'blocks' | 'hook'>;
}

export interface MappedBuildSummary extends BuildSummary {
  source: { hash: string; name: string };
  map: { lambda: number; r2: number; tokens: number };
  /** Source features mapped (one --direction record per feature and block range). */
  directions: number;
}

/**
 * What --map-from needs before anything is opened or run: a residual-space hook, features (not a direction), one
 * tokenizer (same size and token strings), features inside A's width.
 */
export function checkMappable(source: LoadedModel, target: LoadedModel, hook: Hook, features: number[], direction?: Float32Array): void {
  if (!MAPPABLE_HOOKS.includes(hook)) {
    throw paramError('hook', `--map-from maps residual-stream coordinates (hooks ${MAPPABLE_HOOKS.join(', ')}); ${hook} features are not in the embedding space`);
  }
  if (direction) throw paramError('objective.direction', 'with --map-from the directions are the mapped features; give --features, not --direction');
  if (features.length === 0) throw paramError('features', 'no features to map');
  if (source.config.vocabSize !== target.config.vocabSize) {
    throw paramError('mapFrom', `${modelName(source)} has ${source.config.vocabSize} tokens, ${modelName(target)} ${target.config.vocabSize}: a vocabulary map needs one tokenizer`);
  }
  const va = vocabHash(source);
  const vb = vocabHash(target);
  if (va === null || vb === null) throw paramError('mapFrom', `${modelName(va === null ? source : target)} has no tokenizer, so the shared vocabulary cannot be checked (give --tokenizer)`);
  if (va !== vb) throw paramError('mapFrom', `${modelName(source)} and ${modelName(target)} have the same vocabulary size but different token strings: a vocabulary map needs one tokenizer`);
  for (const f of features) {
    if (!Number.isInteger(f) || f < 0 || f >= source.config.dim) throw paramError('features', `feature ${f} is outside ${modelName(source)}'s ${hook} features 0-${source.config.dim - 1}`);
  }
}

/**
 * `atlas build --model B --map-from A --features …`: fit the ridge map from A's embedding table to B's over their
 * shared vocabulary (features/direction-map.ts), store it and the mapped unit direction of each of A's features, then
 * build in B one direction record per feature and block range along that direction. `atlas compare --pair vocab`
 * finds them by (A, B, feature) through the stored map and pairs them with A's own `[:, :, f]` records.
 */
export async function buildMappedAtlas(req: MappedBuildRequest): Promise<MappedBuildSummary> {
  const { atlas, runner, hook, source } = req;
  const target = runner.model;
  checkMappable(source, target, hook, req.features, req.settings.objective.direction);
  for (const b of req.blocks) runner.checkRange(b);

  const map = fitDirectionMap(embeddingTable(source), embeddingTable(target), RIDGE_LAMBDA_REL);
  const sourceHash = modelHash(source, atlas, req.onHash);
  atlas.upsertModel(atlasModelRow(source, sourceHash));
  const targetHash = modelHash(target, atlas, req.onHash);
  atlas.upsertModel(atlasModelRow(target, targetHash));
  const directions = req.features.map((f) => {
    const vector = mappedDirection(map, f);
    return { feature: f, vector, vector_hash: vectorHash(vector) };
  });
  // Models are named by content and the fit is deterministic, so an existing map with the same λ is this map: add to
  // it (a later --features range); anything else replaces it.
  const stored = atlas.directionMap(sourceHash, targetHash);
  if (stored && stored.lambda === map.lambda) atlas.addMappedDirections(stored.id, directions);
  else atlas.saveDirectionMap({ source_hash: sourceHash, target_hash: targetHash, lambda: map.lambda, r2: map.r2, tokens: map.tokens }, directions);

  const t0 = performance.now();
  const total = directions.length * req.blocks.length;
  const sum = { total: 0, skipped: 0, inserted: 0, failed: 0 };
  let settingsHash = '';
  for (const d of directions) {
    const before = { ...sum };
    const one = await buildAtlas({
      ...req,
      features: [],
      settings: { ...req.settings, objective: { ...req.settings.objective, direction: d.vector } },
      onProgress: (p) =>
        req.onProgress?.({ ...p, done: before.skipped + before.inserted + p.done, total, skipped: before.skipped + p.skipped, inserted: before.inserted + p.inserted, elapsedMs: performance.now() - t0 }),
    });
    settingsHash ||= one.settings_hash;
    sum.total += one.total;
    sum.skipped += one.skipped;
    sum.inserted += one.inserted;
    sum.failed += one.failed;
  }
  return {
    model: { hash: targetHash, name: modelName(target) },
    // Each mapped feature has its own settings (its direction); the first one's hash stands for the sweep.
    settings_hash: settingsHash,
    ...sum,
    elapsed_ms: Math.round(performance.now() - t0),
    source: { hash: sourceHash, name: modelName(source) },
    map: { lambda: map.lambda, r2: map.r2, tokens: map.tokens },
    directions: directions.length,
  };
}
