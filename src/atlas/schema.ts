/**
 * The atlas file: an SQLite database of visualize results. Its schema version is SQLite's `PRAGMA user_version`;
 * opening an older file migrates it forward inside one transaction, so a migration either happens whole or not at all.
 *
 * Version history
 *   1  models(hash, name); records with the settings as inline JSON, no feature column, no timings in the result.
 *   2  models gain format/architecture/sizes; model_files remembers checkpoint hashes by path, size and mtime;
 *      settings move to their own table keyed by the SHA-256 of their canonical JSON; records gain `feature`,
 *      activation and timing columns and the paging index (model, blocks, hook, settings, feature).
 *   3  corpus scans: `scans` (one per model, blocks, hook, corpus and scan settings) and `scan_features` (one row
 *      per scanned feature: its per-token distribution and examples as JSON, and optionally the quantile grid of
 *      a visualize run's statistic for calibration). Records are unchanged.
 *   4  models gain `embedding_hash` (SHA-256 of the token embedding table as float32, with its shape) and
 *      `vocab_hash` (SHA-256 of the token strings), so `atlas compare` can tell whether two models share an embedding
 *      space or a tokenizer; NULL for models added before v4 until the next `atlas build` with them fills them in.
 *      `direction_maps` (one ridge map between two models' embedding tables, with its fit) and `mapped_directions`
 *      (per source feature, the mapped unit direction that `atlas build --map-from` optimised in the target model).
 */
import type Database from 'better-sqlite3';
import { canonicalJson, sha256Hex } from './canonical.js';

export const SCHEMA_VERSION = 4;
/** `meta.format`: marks a database as an llm-features atlas. */
export const ATLAS_FORMAT = 'llm-features-atlas';

/** The version-1 schema, frozen: kept for the record and for tests (scripts/make_atlas_v1_fixture.mjs writes it too). */
export const SCHEMA_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (hash TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE records (
  id INTEGER PRIMARY KEY,
  model_hash TEXT NOT NULL REFERENCES models(hash),
  block_a INTEGER NOT NULL,
  block_b INTEGER NOT NULL,
  hook TEXT NOT NULL,
  select_text TEXT NOT NULL,
  settings_json TEXT NOT NULL,
  status TEXT NOT NULL,
  result_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (model_hash, block_a, block_b, hook, select_text, settings_json)
);
`;

export const SCHEMA_V2_TABLES = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (
  hash TEXT PRIMARY KEY,          -- SHA-256 of the checkpoint's content (see hash.ts)
  name TEXT NOT NULL,             -- basename of the path it was first built from
  format TEXT,                    -- gguf | llama2c | hf
  architecture TEXT,
  n_layers INTEGER,
  dim INTEGER,
  vocab INTEGER,
  added_at TEXT NOT NULL
);
CREATE TABLE model_files (
  path TEXT PRIMARY KEY,          -- real path of one checkpoint file
  size INTEGER NOT NULL,
  mtime_ns TEXT NOT NULL,
  hash TEXT NOT NULL              -- SHA-256 of the file's bytes when it had this size and mtime
);
CREATE TABLE settings (
  hash TEXT PRIMARY KEY,          -- SHA-256 of json
  json TEXT NOT NULL              -- canonical JSON (sorted keys) of settingsRecord(): enough to reproduce a record
);
CREATE TABLE records (
  id INTEGER PRIMARY KEY,
  model_hash TEXT NOT NULL REFERENCES models(hash),
  block_a INTEGER NOT NULL,
  block_b INTEGER NOT NULL,
  hook TEXT NOT NULL,
  select_text TEXT NOT NULL,      -- the run in selection notation, e.g. "[:, :, 7]"
  feature INTEGER,                -- the feature index when the run is one feature at all positions, else NULL
  settings_hash TEXT NOT NULL REFERENCES settings(hash),
  status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
  top1_text TEXT,                 -- the top-1 decode as text (for listings)
  act_continuous REAL,
  act_decoded REAL,
  act_random REAL,
  optimize_ms REAL,
  decode_ms REAL,
  verify_ms REAL,
  result_json TEXT NOT NULL,      -- the RunResult without select/blocks/hook/settings (those are columns / the settings row)
  created_at TEXT NOT NULL,
  UNIQUE (model_hash, block_a, block_b, hook, select_text, settings_hash)
);
CREATE INDEX records_page ON records (model_hash, block_a, block_b, hook, settings_hash, feature);
CREATE INDEX records_feature ON records (feature);
`;

/** Added in version 3: corpus scans (features/scan.ts). */
const SCHEMA_V3_SCANS = `
CREATE TABLE scans (
  id INTEGER PRIMARY KEY,
  model_hash TEXT NOT NULL REFERENCES models(hash),
  block_a INTEGER NOT NULL,
  block_b INTEGER NOT NULL,
  hook TEXT NOT NULL,
  corpus_hash TEXT NOT NULL,      -- SHA-256 of the corpus file's bytes
  corpus_name TEXT NOT NULL,      -- basename of the corpus file it was first scanned from
  settings_hash TEXT NOT NULL REFERENCES settings(hash),  -- window, max_tokens, bos, direction (hash), topk, bins
  windows INTEGER NOT NULL,
  tokens INTEGER NOT NULL,        -- real tokens scanned (all positions)
  created_at TEXT NOT NULL,
  UNIQUE (model_hash, block_a, block_b, hook, corpus_hash, settings_hash)
);
CREATE TABLE scan_features (
  scan_id INTEGER NOT NULL REFERENCES scans(id),
  feature INTEGER NOT NULL,
  stats_json TEXT NOT NULL,       -- {tokens, position0}: DistributionSummary each
  examples_json TEXT NOT NULL,    -- {top, top_position0, bins}
  calibration BLOB,               -- with --calibrate-tokens: the [:, :, f] statistic's quantile grid, float64 LE (calibrate.ts)
  calibration_windows INTEGER,    -- real windows behind that grid
  created_at TEXT NOT NULL,
  PRIMARY KEY (scan_id, feature)
);
`;

/** Added in version 4: model identity beyond the checkpoint bytes, and vocabulary-aligned direction maps. */
const SCHEMA_V4_MODELS = `
ALTER TABLE models ADD COLUMN embedding_hash TEXT;   -- SHA-256 of "V×D" and the token embedding table's float32 bytes
ALTER TABLE models ADD COLUMN vocab_hash TEXT;       -- SHA-256 of the tokenizer's pieces, in id order (tokenizer-less: NULL)
`;
const SCHEMA_V4_MAPS = `
CREATE TABLE direction_maps (
  id INTEGER PRIMARY KEY,
  source_hash TEXT NOT NULL REFERENCES models(hash),  -- A: the model whose features are mapped
  target_hash TEXT NOT NULL REFERENCES models(hash),  -- B: the model the mapped directions are optimised in
  lambda REAL NOT NULL,           -- the ridge penalty used (features/direction-map.ts)
  r2 REAL NOT NULL,               -- the fit's R² over the shared vocabulary
  tokens INTEGER NOT NULL,        -- shared tokens the map was fitted on
  created_at TEXT NOT NULL,
  UNIQUE (source_hash, target_hash)
);
CREATE TABLE mapped_directions (
  map_id INTEGER NOT NULL REFERENCES direction_maps(id),
  feature INTEGER NOT NULL,       -- A's feature f (a residual-stream coordinate)
  vector_hash TEXT NOT NULL,      -- vectorHash of the unit direction e_f W / ‖e_f W‖: the target records' settings.direction
  vector BLOB NOT NULL,           -- that direction, float32 LE
  PRIMARY KEY (map_id, feature)
);
CREATE INDEX mapped_directions_vector ON mapped_directions (vector_hash);
`;

/** The columns of a v2 record row, in insertion order. */
export const RECORD_COLUMNS = [
  'model_hash',
  'block_a',
  'block_b',
  'hook',
  'select_text',
  'feature',
  'settings_hash',
  'status',
  'top1_text',
  'act_continuous',
  'act_decoded',
  'act_random',
  'optimize_ms',
  'decode_ms',
  'verify_ms',
  'result_json',
  'created_at',
] as const;

export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function tableNames(db: Database.Database): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
}

/** What the file is: a fresh database (no tables), an atlas of some version, or something else. */
export function inspectSchema(db: Database.Database): { kind: 'empty' } | { kind: 'atlas'; version: number } | { kind: 'foreign' } {
  const tables = tableNames(db);
  if (tables.length === 0) return { kind: 'empty' };
  if (!tables.includes('meta')) return { kind: 'foreign' };
  const row = db.prepare("SELECT value FROM meta WHERE key = 'format'").get() as { value: string } | undefined;
  if (row?.value !== ATLAS_FORMAT) return { kind: 'foreign' };
  return { kind: 'atlas', version: userVersion(db) };
}

/** The tables of the current schema that `db` lacks (a hand-edited or damaged atlas). */
export function missingTables(db: Database.Database): string[] {
  const have = new Set(tableNames(db));
  return ['meta', 'models', 'model_files', 'settings', 'records', 'direction_maps', 'mapped_directions'].filter((t) => !have.has(t));
}

/** Create the current schema in an empty database (inside the caller's transaction). */
export function createSchema(db: Database.Database): void {
  db.exec(SCHEMA_V2_TABLES);
  db.exec(SCHEMA_V3_SCANS);
  db.exec(SCHEMA_V4_MODELS);
  db.exec(SCHEMA_V4_MAPS);
  const meta = db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
  meta.run('format', ATLAS_FORMAT);
  meta.run('created_at', new Date().toISOString());
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

/** Migrate from `from` to SCHEMA_VERSION, one step at a time (inside the caller's transaction). */
export function migrate(db: Database.Database, from: number): void {
  let v = from;
  if (v === 1) {
    migrate1to2(db);
    v = 2;
  }
  if (v === 2) {
    db.exec(SCHEMA_V3_SCANS);
    v = 3;
  }
  if (v === 3) {
    db.exec(SCHEMA_V4_MODELS);
    db.exec(SCHEMA_V4_MAPS);
    v = 4;
  }
  if (v !== SCHEMA_VERSION) throw new Error(`no migration from atlas schema version ${from}`);
  db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_at', ?)").run(new Date().toISOString());
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

interface V1Record {
  id: number;
  model_hash: string;
  block_a: number;
  block_b: number;
  hook: string;
  select_text: string;
  settings_json: string;
  status: string;
  result_json: string;
  created_at: string;
}

/** `[:, :, 17]` → 17; anything else (several features, some positions) → null. */
export function singleFeature(select: string): number | null {
  const m = /^\[\s*:\s*,\s*:\s*,\s*(\d+)\s*\]$/.exec(select);
  return m ? Number(m[1]) : null;
}

function migrate1to2(db: Database.Database): void {
  const models = db.prepare('SELECT hash, name FROM models').all() as { hash: string; name: string }[];
  const records = db.prepare('SELECT * FROM records ORDER BY id').all() as V1Record[];
  db.exec('DROP TABLE records; DROP TABLE models;');
  db.exec(SCHEMA_V2_TABLES);
  const addModel = db.prepare('INSERT INTO models (hash, name, added_at) VALUES (?, ?, ?)');
  const firstSeen = new Map<string, string>();
  for (const r of records) if (!firstSeen.has(r.model_hash)) firstSeen.set(r.model_hash, r.created_at);
  for (const m of models) addModel.run(m.hash, m.name, firstSeen.get(m.hash) ?? new Date().toISOString());
  const addSettings = db.prepare('INSERT OR IGNORE INTO settings (hash, json) VALUES (?, ?)');
  const addRecord = db.prepare(
    `INSERT OR IGNORE INTO records (id, ${RECORD_COLUMNS.join(', ')}) VALUES (?, ${RECORD_COLUMNS.map(() => '?').join(', ')})`,
  );
  for (const r of records) {
    // v1 wrote settings JSON as it came; v2 keys them by the canonical form, so equal settings written with
    // different key orders become one settings row (and a record that then collides with an earlier one is dropped).
    const json = canonicalJson(JSON.parse(r.settings_json));
    const hash = sha256Hex(json);
    addSettings.run(hash, json);
    const res = JSON.parse(r.result_json) as Record<string, unknown>;
    const act = (res.activation ?? {}) as Record<string, number | null>;
    const topkText = res.topk_text as string[] | undefined;
    addRecord.run(
      r.id,
      r.model_hash,
      r.block_a,
      r.block_b,
      r.hook,
      r.select_text,
      singleFeature(r.select_text),
      hash,
      r.status === 'ok' ? 'ok' : 'failed',
      topkText?.[0] ?? null,
      act.continuous ?? null,
      act.decoded ?? null,
      act.random ?? null,
      null,
      null,
      null,
      JSON.stringify({ ...res, timings: null }),
      r.created_at,
    );
  }
}
