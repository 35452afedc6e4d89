/**
 * Corpus scans in the atlas (schema v3): the SQL for the `scans` and `scan_features` tables. A scan is identified
 * by (model, blocks, hook, corpus content hash, scan settings); each scanned feature is one row, written in the
 * transaction of its chunk, so a killed scan loses at most the chunk in flight and the same scan again skips
 * features already stored.
 */
import type { FeatureScan } from '../features/scan.js';
import type { Atlas, RecordFilter } from './store.js';

export interface ScanKey {
  model_hash: string;
  blocks: [number, number];
  hook: string;
  corpus_hash: string;
  settings_hash: string;
}

export interface StoredScan extends ScanKey {
  id: number;
  model_name: string;
  corpus_name: string;
  settings: Record<string, unknown>;
  windows: number;
  tokens: number;
  /** Features stored so far. */
  features: number;
  created_at: string;
}

interface ScanRow {
  id: number;
  model_hash: string;
  model_name: string;
  block_a: number;
  block_b: number;
  hook: string;
  corpus_hash: string;
  corpus_name: string;
  settings_hash: string;
  settings_json: string;
  windows: number;
  tokens: number;
  features: number;
  created_at: string;
}

/** The scan row for a key, created when missing; returns its id. */
export function upsertScan(atlas: Atlas, key: ScanKey, info: { corpus_name: string; windows: number; tokens: number }): number {
  atlas.db
    .prepare(
      `INSERT INTO scans (model_hash, block_a, block_b, hook, corpus_hash, corpus_name, settings_hash, windows, tokens, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    )
    .run(key.model_hash, key.blocks[0], key.blocks[1], key.hook, key.corpus_hash, info.corpus_name, key.settings_hash, info.windows, info.tokens, new Date().toISOString());
  return atlas.db
    .prepare('SELECT id FROM scans WHERE model_hash = ? AND block_a = ? AND block_b = ? AND hook = ? AND corpus_hash = ? AND settings_hash = ?')
    .pluck()
    .get(key.model_hash, key.blocks[0], key.blocks[1], key.hook, key.corpus_hash, key.settings_hash) as number;
}

export function finishedScanFeatures(atlas: Atlas, scanId: number): Set<number> {
  return new Set(atlas.db.prepare('SELECT feature FROM scan_features WHERE scan_id = ?').pluck().all(scanId) as number[]);
}

/** A feature's stored calibration grid (calibrate.ts), if the scan made one. */
export interface StoredCalibration {
  grid: Float64Array;
  windows: number;
}

/**
 * One chunk of features in one transaction, with their calibration grids when given; a feature already stored is
 * kept as it is. Returns how many were new.
 */
export function insertScanFeatures(atlas: Atlas, scanId: number, features: FeatureScan[], calibration?: Map<number, StoredCalibration>): number {
  const insert = atlas.db.prepare(
    `INSERT INTO scan_features (scan_id, feature, stats_json, examples_json, calibration, calibration_windows, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  const now = new Date().toISOString();
  return atlas.db.transaction(() => {
    let n = 0;
    for (const f of features) {
      const stats = JSON.stringify({ tokens: f.tokens, position0: f.position0 });
      const examples = JSON.stringify({ top: f.top, top_position0: f.top_position0, bins: f.bins });
      const c = calibration?.get(f.feature);
      const blob = c ? Buffer.from(c.grid.buffer, c.grid.byteOffset, c.grid.byteLength) : null;
      n += insert.run(scanId, f.feature, stats, examples, blob, c?.windows ?? null, now).changes;
    }
    return n;
  }).immediate();
}

/** Scans matching a record filter (model, blocks, hook, settings prefix), oldest first. */
export function listScans(atlas: Atlas, filter: RecordFilter = {}): StoredScan[] {
  const w = atlas.where(filter, 's');
  const rows = atlas.db
    .prepare(
      `SELECT s.*, m.name AS model_name, st.json AS settings_json, (SELECT count(*) FROM scan_features f WHERE f.scan_id = s.id) AS features
       FROM scans s JOIN models m ON m.hash = s.model_hash JOIN settings st ON st.hash = s.settings_hash
       ${w.sql} ORDER BY s.id`,
    )
    .all(...w.params) as ScanRow[];
  return rows.map((r) => ({
    id: r.id,
    model_hash: r.model_hash,
    model_name: r.model_name,
    blocks: [r.block_a, r.block_b],
    hook: r.hook,
    corpus_hash: r.corpus_hash,
    corpus_name: r.corpus_name,
    settings_hash: r.settings_hash,
    settings: JSON.parse(r.settings_json) as Record<string, unknown>,
    windows: r.windows,
    tokens: r.tokens,
    features: r.features,
    created_at: r.created_at,
  }));
}

/** A scan's stored features in feature order, read lazily. */
export function* scanFeatures(atlas: Atlas, scanId: number): IterableIterator<FeatureScan> {
  const stmt = atlas.db.prepare('SELECT feature, stats_json, examples_json FROM scan_features WHERE scan_id = ? ORDER BY feature');
  for (const row of stmt.iterate(scanId) as IterableIterator<{ feature: number; stats_json: string; examples_json: string }>) {
    yield { feature: row.feature, ...JSON.parse(row.stats_json), ...JSON.parse(row.examples_json) } as FeatureScan;
  }
}

/** The calibration grid stored for one feature of a scan; null when the scan has none for it. */
export function scanCalibration(atlas: Atlas, scanId: number, feature: number): StoredCalibration | null {
  const row = atlas.db.prepare('SELECT calibration, calibration_windows FROM scan_features WHERE scan_id = ? AND feature = ?').get(scanId, feature) as
    | { calibration: Buffer | null; calibration_windows: number | null }
    | undefined;
  if (!row?.calibration) return null;
  const b = row.calibration;
  // Copy into an aligned buffer: a Buffer from SQLite may start at any byte offset.
  const grid = new Float64Array(b.byteLength / 8);
  new Uint8Array(grid.buffer).set(b);
  return { grid, windows: row.calibration_windows ?? 0 };
}

/** One feature's scan as the viewer's feature page shows it, with the scan it comes from. */
export interface ScanFeatureView {
  scan: { id: number; corpus_name: string; corpus_hash: string; windows: number; tokens: number; settings: Record<string, unknown>; created_at: string };
  feature: FeatureScan;
}

/**
 * The stored scan of one feature of (model, blocks, hook), for a record's page: among the scans of plain features
 * (no --direction), the one over `corpusHash` when there is one (the corpus the record's percentiles were measured
 * on), else the newest. Null when no scan holds the feature.
 */
export function scanFeatureFor(atlas: Atlas, key: Omit<ScanKey, 'corpus_hash' | 'settings_hash'>, feature: number, corpusHash: string | null): ScanFeatureView | null {
  const row = atlas.db
    .prepare(
      `SELECT s.id, s.corpus_name, s.corpus_hash, s.windows, s.tokens, s.created_at, st.json AS settings_json, f.stats_json, f.examples_json
       FROM scans s JOIN scan_features f ON f.scan_id = s.id JOIN settings st ON st.hash = s.settings_hash
       WHERE s.model_hash = ? AND s.block_a = ? AND s.block_b = ? AND s.hook = ? AND f.feature = ? AND json_extract(st.json, '$.direction') IS NULL
       ORDER BY s.corpus_hash = ? DESC, s.id DESC LIMIT 1`,
    )
    .get(key.model_hash, key.blocks[0], key.blocks[1], key.hook, feature, corpusHash ?? '') as
    | { id: number; corpus_name: string; corpus_hash: string; windows: number; tokens: number; created_at: string; settings_json: string; stats_json: string; examples_json: string }
    | undefined;
  if (!row) return null;
  const { settings_json, stats_json, examples_json, ...scan } = row;
  return {
    scan: { ...scan, settings: JSON.parse(settings_json) as Record<string, unknown> },
    feature: { feature, ...JSON.parse(stats_json), ...JSON.parse(examples_json) } as FeatureScan,
  };
}
