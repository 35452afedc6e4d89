/**
 * `atlas scan`: scan a corpus for a model's features (features/scan.ts) and store the result in an atlas, resumable
 * per chunk of features like `atlas build`.
 */
import { specOf } from '../models/registry.js';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ModelRunner } from '../engine/runner.js';
import { UserError } from '../errors.js';
import { cutWindows, readCorpus, tokenizeStories, type Corpus, type Window } from '../features/corpus.js';
import { quantileGrid, referenceDistributions } from '../features/calibrate.js';
import { DEFAULT_SCAN, scanCorpus, type FeatureScan, type ScanProgress } from '../features/scan.js';
import { expandSelection } from '../features/selection.js';
import { DEFAULT_SETTINGS, layout, type VisualizeSettings } from '../features/visualize.js';
import type { Hook } from '../models/config.js';
import { featureMapOf, featureWidth, saeFeatureMap, type SaeFile } from '../features/sae.js';
import { atlasModelRow, modelHash, modelName } from './hash.js';
import { finishedScanFeatures, insertScanFeatures, upsertScan, type StoredCalibration } from './scans.js';
import type { Atlas } from './store.js';
import type { Tokenizer } from '../tokenizers/types.js';

export interface ScanRequest {
  atlas: Atlas;
  runner: ModelRunner;
  blocks: [number, number];
  hook: Hook;
  features: number[];
  corpus: string;
  window: number;
  maxTokens: number | null;
  bos: boolean;
  direction?: Float32Array | null;
  /** An SAE on the hook: scan its latents (recorded in the scan's settings by content hash). */
  sae?: SaeFile | null;
  batch?: number;
  topk?: number;
  binExamples?: number;
  /** Also store, per feature, the quantile grid of the `[:, :, f]` statistic for visualize runs of this many tokens. */
  calibrateTokens?: number | null;
  /** Those runs have BOS in front (visualize --bos). */
  calibrateBos?: boolean;
  onProgress?: (p: ScanProgress) => void;
  onHash?: (file: string, bytes: number) => void;
}

export interface ScanSummary {
  scan_id: number;
  model: { hash: string; name: string };
  corpus: { name: string; hash: string; stories: number };
  settings_hash: string;
  windows: number;
  tokens: number;
  features: number;
  skipped: number;
  inserted: number;
  elapsed_ms: number;
}

/** Whether a model is trained with BOS in front of every sequence: Llama-family SentencePiece models are. */
export function expectsBos(runner: ModelRunner): boolean {
  return specOf(runner.config).expectsBos && (runner.model.tokenizer?.bosId ?? null) !== null;
}

/** A direction's identity in scan settings: the SHA-256 of its float32 bytes. */
export function directionHash(d: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)).digest('hex');
}

/** What a scan needs before any feature runs: checked settings, the corpus's windows and, in the atlas, the scan row and what is not yet stored. */
export interface ScanPlan {
  model: { hash: string; name: string };
  corpus: { name: string; hash: string; stories: number };
  settingsHash: string;
  scanId: number;
  windows: Window[];
  tokens: number;
  topk: number;
  binExamples: number;
  pending: number[];
}

/** The windows a scan runs over: each story tokenised on its own, cut into windows of `window` tokens. */
export function scanWindows(tokenizer: Tokenizer, corpus: Corpus, window: number, maxTokens: number | null, bos: boolean): Window[] {
  return cutWindows(tokenizeStories(tokenizer, corpus.stories, { bos }), window, maxTokens ?? Infinity);
}

/**
 * Check the request, read and cut the corpus, register model, settings and scan in the atlas and list the pending
 * features: the part a local scan and a queued one (atlas/queue/collector.ts) share.
 */
export function planScan(req: Omit<ScanRequest, 'onProgress'>): ScanPlan {
  const { atlas, runner } = req;
  const tokenizer = runner.model.tokenizer;
  if (!tokenizer) throw new UserError(`${runner.model.path}: no tokenizer found (give --tokenizer PATH); a corpus scan tokenises text`);
  runner.checkRange(req.blocks);
  const F = featureWidth(runner.config, req.hook, req.sae ? saeFeatureMap(req.sae) : undefined);
  const width = req.direction ? 1 : F;
  for (const f of req.features) {
    if (f >= width) throw new UserError(`--features: feature ${f} is outside ${req.direction ? 'the direction (feature 0)' : req.sae ? `the SAE's latents 0-${F - 1}` : `the ${req.hook} hook's features 0-${F - 1}`}`);
  }
  if (!Number.isInteger(req.window) || req.window < 2) throw new UserError(`--window: must be an integer ≥ 2, got ${req.window}`);
  if (req.window > runner.config.maxSeqLen) throw new UserError(`--window: ${req.window} tokens exceed the model's context of ${runner.config.maxSeqLen}`);
  const corpus = readCorpus(req.corpus);
  const windows = scanWindows(tokenizer, corpus, req.window, req.maxTokens, req.bos);
  const tokens = windows.reduce((n, w) => n + w.ids.length, 0);

  const hash = modelHash(runner.model, atlas, req.onHash);
  const name = modelName(runner.model);
  atlas.upsertModel(atlasModelRow(runner.model, hash));
  const topk = req.topk ?? DEFAULT_SCAN.topk;
  const binExamples = req.binExamples ?? DEFAULT_SCAN.binExamples;
  const settingsHash = atlas.upsertSettings({
    kind: 'scan',
    window: req.window,
    max_tokens: req.maxTokens,
    bos: req.bos,
    direction: req.direction ? directionHash(req.direction) : null,
    topk,
    bin_examples: binExamples,
    calibrate_tokens: req.calibrateTokens ?? null,
    calibrate_bos: req.calibrateTokens ? req.calibrateBos === true : null,
    // Only when given, so the settings hash of every scan made before SAEs existed is unchanged.
    ...(req.sae ? { sae: req.sae.hash } : {}),
  });
  const key = { model_hash: hash, blocks: req.blocks, hook: req.hook, corpus_hash: corpus.hash, settings_hash: settingsHash };
  const scanId = upsertScan(atlas, key, { corpus_name: path.basename(corpus.file), windows: windows.length, tokens });
  const done = finishedScanFeatures(atlas, scanId);
  const pending = req.features.filter((f) => !done.has(f));
  return {
    model: { hash, name },
    corpus: { name: path.basename(corpus.file), hash: corpus.hash, stories: corpus.stories.length },
    settingsHash,
    scanId,
    windows,
    tokens,
    topk,
    binExamples,
    pending,
  };
}

/** What scanning one group of features needs: the scan's settings (a queue worker gets them from its job). */
export type GroupRequest = Pick<ScanRequest, 'runner' | 'blocks' | 'hook' | 'corpus' | 'direction' | 'sae' | 'batch' | 'calibrateTokens' | 'calibrateBos'> & {
  topk: number;
  binExamples: number;
};

/**
 * Scan a group of features over every window (and, with calibrateTokens, compute their calibration grids), handing
 * each finished chunk to `onChunk`: a local scan stores it at once, a queue worker returns the group.
 */
export async function scanGroup(
  req: GroupRequest,
  windows: Window[],
  features: number[],
  onChunk: (chunk: FeatureScan[], calibration: Map<number, StoredCalibration> | undefined) => void,
  onProgress?: (p: ScanProgress) => void,
): Promise<void> {
  if (features.length === 0) return;
  const calibration = req.calibrateTokens ? await calibrationGrids(req, features) : undefined;
  await scanCorpus(
    req.runner,
    req.runner.model.tokenizer,
    windows,
    { blocks: req.blocks, hook: req.hook, features, direction: req.direction ?? null, sae: req.sae ?? null, batch: req.batch ?? DEFAULT_SCAN.batch, topk: req.topk, binExamples: req.binExamples },
    (chunk) => onChunk(chunk, calibration),
    onProgress,
  );
}

export async function buildScan(req: ScanRequest): Promise<ScanSummary> {
  const t0 = performance.now();
  const plan = planScan(req);
  let inserted = 0;
  await scanGroup({ ...req, topk: plan.topk, binExamples: plan.binExamples }, plan.windows, plan.pending, (chunk, calibration) => (inserted += insertScanFeatures(req.atlas, plan.scanId, chunk, calibration)), req.onProgress);
  return {
    scan_id: plan.scanId,
    model: plan.model,
    corpus: plan.corpus,
    settings_hash: plan.settingsHash,
    windows: plan.windows.length,
    tokens: plan.tokens,
    features: req.features.length,
    skipped: req.features.length - plan.pending.length,
    inserted,
    elapsed_ms: Math.round(performance.now() - t0),
  };
}

/** Quantile grids of the `[:, :, f]` statistic (calibrate.ts) for the given features, in one corpus pass. */
async function calibrationGrids(req: GroupRequest, features: number[]): Promise<Map<number, StoredCalibration>> {
  const T = req.calibrateTokens!;
  const s: VisualizeSettings = {
    ...DEFAULT_SETTINGS,
    blocks: req.blocks,
    hook: req.hook,
    tokens: T,
    bos: req.calibrateBos === true,
    objective: { ...DEFAULT_SETTINGS.objective, ...(req.direction ? { direction: req.direction } : {}) },
    sae: req.sae ?? null,
  };
  const tokenizer = req.runner.model.tokenizer;
  const lay = layout(s, tokenizer?.bosId ?? null);
  const F = featureWidth(req.runner.config, req.hook, featureMapOf(s));
  const runs = features.map((f) => expandSelection(`[:, :, ${f}]`, lay.T, F)[0]!);
  const ref = await referenceDistributions(req.runner, tokenizer, runs, s, lay, { file: req.corpus });
  return new Map(features.map((f, i) => [f, { grid: quantileGrid(ref.sorted[i]!), windows: ref.info.windows }]));
}
