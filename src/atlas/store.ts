/**
 * The atlas store: one SQLite file (WAL mode) holding one record per (model, blocks, hook, selection, settings).
 *
 * Writers (`atlas build`) insert a whole batch of records in one transaction, so a killed build loses at most its
 * in-flight batch and never leaves a partial record; the UNIQUE key makes a re-run skip (never duplicate) what is
 * there. Readers (`compare`, `export`, `ls`, a future server) open the file read-only and, thanks to WAL, can read
 * while a build writes.
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UserError } from '../errors.js';
import type { RunResult } from '../features/visualize.js';
import type { Hook } from '../models/config.js';
import { canonicalJson, sha256Hex } from './canonical.js';
import type { FileHashCache } from './hash.js';
import { createSchema, inspectSchema, migrate, missingTables, RECORD_COLUMNS, SCHEMA_VERSION, singleFeature } from './schema.js';
import { ViewerQueries } from './viewer-queries.js';

export interface AtlasModel {
  hash: string;
  name: string;
  format: string | null;
  architecture: string | null;
  n_layers: number | null;
  dim: number | null;
  vocab: number | null;
  /** SHA-256 of the token embedding table (hash.ts embeddingHash); null for models added before atlas schema v4. */
  embedding_hash: string | null;
  /** SHA-256 of the tokenizer's pieces (hash.ts vocabHash); null without a tokenizer or before v4. */
  vocab_hash: string | null;
  added_at: string;
}

/** A ridge map from one model's embedding space to another's (features/direction-map.ts), as stored. */
export interface StoredDirectionMap {
  id: number;
  source_hash: string;
  target_hash: string;
  lambda: number;
  r2: number;
  tokens: number;
  created_at: string;
}

/** One mapped direction: source feature → the unit vector optimised in the target model. */
export interface StoredMappedDirection {
  feature: number;
  vector_hash: string;
  vector: Float32Array;
}

/** A stored record: the visualize result (a RunResult) plus where it sits in the atlas. */
export type AtlasRecord = Omit<RunResult, 'timings' | 'cosine_scale'> & {
  id: number;
  model: { hash: string; name: string };
  /** The feature index when the selection is one feature at all positions (`[:, :, f]`), else null. */
  feature: number | null;
  settings_hash: string;
  created_at: string;
  /** Absent from records written before visualize reported it. */
  cosine_scale?: number;
  /** Null for records migrated from a version-1 atlas, which did not keep timings. */
  timings: RunResult['timings'] | null;
};

/** Filters over records; every given field must match. */
export interface RecordFilter {
  /** A model name (exact) or a prefix of its hash (4+ hex digits). */
  model?: string;
  blocks?: [number, number];
  hook?: string;
  /** A prefix of the settings hash. */
  settings?: string;
}

/** A set of records sharing model, blocks, hook and settings: what `ls` lists and a server would page through. */
export interface AtlasGroup {
  model_hash: string;
  model_name: string;
  blocks: [number, number];
  hook: string;
  settings_hash: string;
  records: number;
  ok: number;
  failed: number;
  /** Smallest and largest single-feature index, null when no record is a single feature. */
  features: [number, number] | null;
  first_at: string;
  last_at: string;
}

interface RecordRow {
  id: number;
  model_hash: string;
  model_name: string;
  block_a: number;
  block_b: number;
  hook: Hook;
  select_text: string;
  feature: number | null;
  settings_hash: string;
  settings_json: string;
  status: 'ok' | 'failed';
  result_json: string;
  created_at: string;
}

/** A checkpoint file as hashed by `atlas build`: its hash holds while its size and mtime do. */
export interface ModelFileRow {
  path: string;
  size: number;
  mtime_ns: string;
  hash: string;
}

export interface OpenOptions {
  /** Read-only (compare, export, ls): the file must exist; an older schema is migrated first, then reopened read-only. */
  readonly?: boolean;
}

const BUSY_TIMEOUT_MS = 10_000;

/**
 * SQLite's own errors about the file (not about our SQL) become one-line UserErrors naming it. `migrating` says the
 * write was a migration (a read-only open of an old atlas), not a build.
 */
function wrapOpenError(file: string, err: unknown, migrating = false): never {
  if (err instanceof UserError) throw err;
  const code = String((err as { code?: string }).code ?? '');
  if (code === 'SQLITE_NOTADB') throw new UserError(`${file}: not an SQLite database (expected an llm-features atlas)`);
  if (code === 'SQLITE_CANTOPEN') throw new UserError(`${file}: cannot open the atlas`);
  if (code === 'SQLITE_BUSY') throw new UserError(`${file}: the atlas is locked by another process`);
  if (code.startsWith('SQLITE_READONLY')) {
    throw new UserError(
      migrating
        ? `${file}: the atlas is read-only here and needs migrating; open it once where it is writable`
        : `${file}: cannot write the atlas (the file or its folder is read-only)`,
    );
  }
  throw atlasFileError(file, err);
}

/** Errors SQLite raises while reading a damaged or vanished file: the file's fault, so a UserError naming it. */
export function atlasFileError(file: string, err: unknown): unknown {
  if (err instanceof UserError) return err;
  const code = String((err as { code?: string }).code ?? '');
  if (code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT_') || code === 'SQLITE_NOTADB') {
    return new UserError(`${file}: the atlas file is corrupt (${oneLine((err as Error).message)}); rebuild it or restore a copy`);
  }
  if (code.startsWith('SQLITE_IOERR')) return new UserError(`${file}: cannot read the atlas (${oneLine((err as Error).message)})`);
  if (code === 'SQLITE_FULL') return new UserError(`${file}: the disk is full`);
  return err;
}

/** A version this code can read or migrate, and, at the current version, every table it reads. */
function checkVersion(file: string, db: Database.Database, version: number): void {
  if (version > SCHEMA_VERSION) throw new UserError(`${file}: atlas schema version ${version} is newer than this llm-features supports (${SCHEMA_VERSION})`);
  if (version < 1) throw new UserError(`${file}: atlas schema version ${version} is not one llm-features ever wrote (1-${SCHEMA_VERSION}); the file is damaged`);
  if (version === SCHEMA_VERSION) {
    const missing = missingTables(db);
    if (missing.length) throw new UserError(`${file}: the atlas lacks its ${missing.join(', ')} table${missing.length > 1 ? 's' : ''}; the file is damaged`);
  }
}

/** A migration that fails on the file's content (tables that do not match their version) is a damaged file. */
function migrateOrExplain(file: string, db: Database.Database, version: number): void {
  try {
    migrate(db, version);
  } catch (err) {
    if (err instanceof UserError || !(err instanceof Database.SqliteError)) throw err;
    throw new UserError(`${file}: cannot migrate the atlas from schema version ${version} (${oneLine(err.message)}); the file is damaged`);
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ');
}

/** Refuses what SQLite would report confusingly: a directory ("disk I/O error"), a missing parent folder, a FIFO. */
function checkAtlasPath(file: string, mustExist: boolean): void {
  let st;
  try {
    st = statSync(file);
  } catch {
    if (mustExist) throw new UserError(`${file}: no such atlas`);
    const parent = path.dirname(path.resolve(file));
    if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new UserError(`${file}: the folder ${parent} does not exist`);
    return;
  }
  if (st.isDirectory()) throw new UserError(`${file}: is a directory, expected an atlas file`);
  if (!st.isFile()) throw new UserError(`${file}: not a regular file, expected an atlas file`);
}

/**
 * A read-only open of a WAL database needs its -shm file, which SQLite creates beside it. In a folder this user
 * cannot write, and with no -wal file present (so every record is in the main file), the file is read into memory
 * instead — a snapshot, as nobody can be writing it without a -wal file. (better-sqlite3 is built without URI support,
 * so SQLite's `immutable=1` is not available.)
 */
const MAX_SNAPSHOT_BYTES = 2 ** 31;

function openSnapshot(file: string): Database.Database {
  const size = statSync(file).size;
  if (size > MAX_SNAPSHOT_BYTES) {
    throw new UserError(`${file}: the atlas's folder is not writable and the atlas is too large (${size} bytes) to read into memory; copy it to a writable folder`);
  }
  const bytes = readFileSync(file);
  // Bytes 18-19 = 2 mark WAL mode, which an in-memory database cannot use; 1 = rollback journal, same content.
  if (bytes.length >= 20 && bytes[18] === 2 && bytes[19] === 2) bytes[18] = bytes[19] = 1;
  return new Database(bytes, { readonly: true });
}

function needsSnapshot(file: string): boolean {
  if (existsSync(`${file}-wal`)) return false;
  try {
    accessSync(path.dirname(path.resolve(file)), constants.W_OK);
    return false;
  } catch {
    return true;
  }
}

export class Atlas implements FileHashCache {
  private settingsCache = new Map<string, Record<string, unknown>>();
  /** The viewer's queries (viewer-queries.ts), kept apart so this file stays the store's own reads and writes. */
  readonly viewer: ViewerQueries;

  private constructor(
    readonly db: Database.Database,
    readonly file: string,
    readonly readonly: boolean,
  ) {
    this.viewer = new ViewerQueries(db);
  }

  static open(file: string, opts: OpenOptions = {}): Atlas {
    checkAtlasPath(file, opts.readonly === true);
    if (opts.readonly) {
      let db: Database.Database | null = null;
      let migrating = false;
      try {
        db = needsSnapshot(file) ? openSnapshot(file) : new Database(file, { readonly: true, fileMustExist: true });
        db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
        const info = inspectSchema(db);
        if (info.kind !== 'atlas') throw new UserError(`${file}: not an llm-features atlas`);
        checkVersion(file, db, info.version);
        if (info.version < SCHEMA_VERSION) {
          db.close();
          db = null;
          migrating = true;
          Atlas.openWritable(file, true).close();
          return Atlas.open(file, opts);
        }
        return new Atlas(db, file, true);
      } catch (err) {
        db?.close();
        wrapOpenError(file, err, migrating);
      }
    }
    return Atlas.openWritable(file, false);
  }

  private static openWritable(file: string, migrating: boolean): Atlas {
    let db: Database.Database | null = null;
    try {
      db = new Database(file);
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('journal_mode = WAL');
      // NORMAL is durable against a killed process in WAL mode (only a power cut can lose the last transactions).
      db.pragma('synchronous = NORMAL');
      const d = db;
      d.transaction(() => {
        const info = inspectSchema(d);
        if (info.kind === 'foreign') throw new UserError(`${file}: not an llm-features atlas (the database holds other tables)`);
        if (info.kind === 'empty') createSchema(d);
        else {
          checkVersion(file, d, info.version);
          if (info.version < SCHEMA_VERSION) migrateOrExplain(file, d, info.version);
        }
      }).immediate();
      return new Atlas(db, file, false);
    } catch (err) {
      db?.close();
      wrapOpenError(file, err, migrating);
    }
  }

  close(): void {
    this.db.close();
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** Run `fn` in one read transaction: every query it makes sees the same commit, even while a build writes. */
  read<T>(fn: () => T): T {
    return this.guarded(() => this.db.transaction(fn)());
  }

  // ----- model identity -----------------------------------------------------------------------------------------

  cachedFileHash(file: string, size: number, mtimeNs: string): string | undefined {
    const row = this.db.prepare('SELECT hash FROM model_files WHERE path = ? AND size = ? AND mtime_ns = ?').get(file, size, mtimeNs) as { hash: string } | undefined;
    return row?.hash;
  }

  rememberFileHash(file: string, size: number, mtimeNs: string, hash: string): void {
    if (this.readonly) return;
    this.db.prepare('INSERT OR REPLACE INTO model_files (path, size, mtime_ns, hash) VALUES (?, ?, ?, ?)').run(file, size, mtimeNs, hash);
  }

  /** Every checkpoint file hashed so far, by path. */
  modelFileRows(): ModelFileRow[] {
    return this.db.prepare('SELECT path, size, mtime_ns, hash FROM model_files ORDER BY path').all() as ModelFileRow[];
  }

  /** Add a model (or fill in what an older row lacks, e.g. a pre-v4 row's embedding hash); the first name it was seen under stays. */
  upsertModel(m: Omit<AtlasModel, 'added_at' | 'embedding_hash' | 'vocab_hash'> & Partial<Pick<AtlasModel, 'embedding_hash' | 'vocab_hash'>>): void {
    this.db
      .prepare(
        `INSERT INTO models (hash, name, format, architecture, n_layers, dim, vocab, embedding_hash, vocab_hash, added_at)
         VALUES (@hash, @name, @format, @architecture, @n_layers, @dim, @vocab, @embedding_hash, @vocab_hash, @added_at)
         ON CONFLICT (hash) DO UPDATE SET format = coalesce(format, excluded.format), architecture = coalesce(architecture, excluded.architecture),
           n_layers = coalesce(n_layers, excluded.n_layers), dim = coalesce(dim, excluded.dim), vocab = coalesce(vocab, excluded.vocab),
           embedding_hash = coalesce(embedding_hash, excluded.embedding_hash), vocab_hash = coalesce(vocab_hash, excluded.vocab_hash)`,
      )
      .run({ embedding_hash: null, vocab_hash: null, ...m, added_at: new Date().toISOString() });
  }

  model(hash: string): AtlasModel | undefined {
    return this.guarded(() => this.db.prepare('SELECT * FROM models WHERE hash = ?').get(hash) as AtlasModel | undefined);
  }

  // ----- direction maps (atlas build --map-from, atlas compare --pair vocab) ---------------------------------------

  /**
   * Store (or replace) the map from `source` to `target` and its mapped directions, in one transaction. A refit
   * replaces the old map's directions; records already optimised along them keep their own copy (RunResult.direction).
   */
  saveDirectionMap(m: Omit<StoredDirectionMap, 'id' | 'created_at'>, directions: StoredMappedDirection[]): number {
    return this.db.transaction(() => {
      const old = this.db.prepare('SELECT id FROM direction_maps WHERE source_hash = ? AND target_hash = ?').pluck().get(m.source_hash, m.target_hash) as number | undefined;
      if (old !== undefined) {
        this.db.prepare('DELETE FROM mapped_directions WHERE map_id = ?').run(old);
        this.db.prepare('DELETE FROM direction_maps WHERE id = ?').run(old);
      }
      const id = Number(
        this.db
          .prepare('INSERT INTO direction_maps (source_hash, target_hash, lambda, r2, tokens, created_at) VALUES (@source_hash, @target_hash, @lambda, @r2, @tokens, @created_at)')
          .run({ ...m, created_at: new Date().toISOString() }).lastInsertRowid,
      );
      const add = this.db.prepare('INSERT OR REPLACE INTO mapped_directions (map_id, feature, vector_hash, vector) VALUES (?, ?, ?, ?)');
      for (const d of directions) add.run(id, d.feature, d.vector_hash, Buffer.from(d.vector.buffer, d.vector.byteOffset, d.vector.byteLength));
      return id;
    }).immediate();
  }

  /** Add mapped directions to an existing map (a later --features range with the same fit). */
  addMappedDirections(mapId: number, directions: StoredMappedDirection[]): void {
    const add = this.db.prepare('INSERT OR REPLACE INTO mapped_directions (map_id, feature, vector_hash, vector) VALUES (?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const d of directions) add.run(mapId, d.feature, d.vector_hash, Buffer.from(d.vector.buffer, d.vector.byteOffset, d.vector.byteLength));
    }).immediate();
  }

  /** Every stored map with its endpoints' names and how many features it has mapped (atlas ls). */
  directionMaps(): (StoredDirectionMap & { source_name: string; target_name: string; features: number })[] {
    return this.guarded(
      () =>
        this.db
          .prepare(
            `SELECT d.*, s.name AS source_name, t.name AS target_name, (SELECT count(*) FROM mapped_directions m WHERE m.map_id = d.id) AS features
             FROM direction_maps d JOIN models s ON s.hash = d.source_hash JOIN models t ON t.hash = d.target_hash ORDER BY d.id`,
          )
          .all() as (StoredDirectionMap & { source_name: string; target_name: string; features: number })[],
    );
  }

  directionMap(sourceHash: string, targetHash: string): StoredDirectionMap | undefined {
    return this.guarded(
      () => this.db.prepare('SELECT * FROM direction_maps WHERE source_hash = ? AND target_hash = ?').get(sourceHash, targetHash) as StoredDirectionMap | undefined,
    );
  }

  mappedDirections(mapId: number): StoredMappedDirection[] {
    const rows = this.guarded(
      () => this.db.prepare('SELECT feature, vector_hash, vector FROM mapped_directions WHERE map_id = ? ORDER BY feature').all(mapId) as { feature: number; vector_hash: string; vector: Buffer }[],
    );
    return rows.map((r) => ({
      feature: r.feature,
      vector_hash: r.vector_hash,
      vector: new Float32Array(r.vector.buffer.slice(r.vector.byteOffset, r.vector.byteOffset + r.vector.byteLength)),
    }));
  }

  models(): AtlasModel[] {
    return this.guarded(() => this.db.prepare('SELECT * FROM models ORDER BY added_at, hash').all() as AtlasModel[]);
  }

  // ----- settings -------------------------------------------------------------------------------------------------

  /** Store settings (any JSON object; stored canonically) and return their hash. */
  upsertSettings(settings: Record<string, unknown>): string {
    const json = canonicalJson(settings);
    const hash = sha256Hex(json);
    this.db.prepare('INSERT OR IGNORE INTO settings (hash, json) VALUES (?, ?)').run(hash, json);
    return hash;
  }

  settingsOf(hash: string): Record<string, unknown> {
    let s = this.settingsCache.get(hash);
    if (!s) {
      const row = this.db.prepare('SELECT json FROM settings WHERE hash = ?').get(hash) as { json: string } | undefined;
      if (!row) throw new Error(`atlas: no settings row ${hash}`);
      s = this.parseJson(row.json, `settings ${hash.slice(0, 12)}`) as Record<string, unknown>;
      this.settingsCache.set(hash, s);
    }
    return s;
  }

  // ----- records --------------------------------------------------------------------------------------------------

  /** Selections already recorded for one (model, blocks, hook, settings). */
  finishedSelects(modelHash: string, blocks: [number, number], hook: string, settingsHash: string): Set<string> {
    const rows = this.db
      .prepare('SELECT select_text FROM records WHERE model_hash = ? AND block_a = ? AND block_b = ? AND hook = ? AND settings_hash = ?')
      .pluck()
      .all(modelHash, blocks[0], blocks[1], hook, settingsHash) as string[];
    return new Set(rows);
  }

  /**
   * Insert one batch of results in one transaction: all of them or none. A result whose key is already there (another
   * build got there first) is skipped. Returns how many were inserted.
   */
  insertResults(modelHash: string, settingsHash: string, results: RunResult[]): number {
    const insert = this.db.prepare(
      `INSERT INTO records (${RECORD_COLUMNS.join(', ')}) VALUES (${RECORD_COLUMNS.map((c) => '@' + c).join(', ')})
       ON CONFLICT (model_hash, block_a, block_b, hook, select_text, settings_hash) DO NOTHING`,
    );
    const now = new Date().toISOString();
    return this.db.transaction(() => {
      let n = 0;
      for (const r of results) {
        const { select, blocks, hook, settings: _settings, ...rest } = r;
        n += insert.run({
          model_hash: modelHash,
          block_a: blocks[0],
          block_b: blocks[1],
          hook,
          select_text: select,
          feature: singleFeature(select),
          settings_hash: settingsHash,
          status: r.status,
          top1_text: r.topk_text[0] ?? null,
          act_continuous: finiteOrNull(r.activation.continuous),
          act_decoded: finiteOrNull(r.activation.decoded),
          act_random: finiteOrNull(r.activation.random),
          optimize_ms: r.timings.optimize_ms,
          decode_ms: r.timings.decode_ms,
          verify_ms: r.timings.verify_ms,
          result_json: JSON.stringify(rest),
          created_at: now,
        }).changes;
      }
      return n;
    }).immediate();
  }

  /**
   * A record filter (model, blocks, hook, settings prefix) as a WHERE clause over a table with those columns, under
   * `alias` (records `r`, scans `s`); '' when the filter is empty.
   */
  where(filter: RecordFilter, alias = 'r'): { sql: string; params: unknown[] } {
    const clauses: string[] = [];
    const params: unknown[] = [];
    if (filter.model !== undefined) {
      const hashes = this.resolveModel(filter.model);
      clauses.push(`${alias}.model_hash IN (${hashes.map(() => '?').join(', ')})`);
      params.push(...hashes);
    }
    if (filter.blocks) {
      clauses.push(`${alias}.block_a = ? AND ${alias}.block_b = ?`);
      params.push(filter.blocks[0], filter.blocks[1]);
    }
    if (filter.hook !== undefined) {
      clauses.push(`${alias}.hook = ?`);
      params.push(filter.hook);
    }
    if (filter.settings !== undefined) {
      clauses.push(`${alias}.settings_hash LIKE ? || '%'`);
      params.push(filter.settings.toLowerCase());
    }
    return { sql: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
  }

  /** Model hashes a `model=` filter names: an exact name, else a hash prefix of 4+ hex digits. */
  resolveModel(spec: string): string[] {
    const byName = this.db.prepare('SELECT hash FROM models WHERE name = ?').pluck().all(spec) as string[];
    if (byName.length) return byName;
    if (/^[0-9a-fA-F]{4,64}$/.test(spec)) {
      const byHash = this.db.prepare("SELECT hash FROM models WHERE hash LIKE ? || '%'").pluck().all(spec.toLowerCase()) as string[];
      if (byHash.length) return byHash;
    }
    const known = this.models().map((m) => `${m.name} (${m.hash.slice(0, 12)})`);
    throw new UserError(`model=${spec}: no model in the atlas has this name or hash prefix (models: ${known.join(', ') || 'none'})`);
  }

  count(filter: RecordFilter = {}): number {
    const w = this.where(filter);
    return this.guarded(() => this.db.prepare(`SELECT count(*) FROM records r ${w.sql}`).pluck().get(...w.params) as number);
  }

  /** Records matching the filter, oldest first, read lazily (so an export of a large atlas streams). */
  *records(filter: RecordFilter = {}, opts: { afterId?: number; limit?: number } = {}): IterableIterator<AtlasRecord> {
    const w = this.where(filter);
    const extra: string[] = [];
    const params = [...w.params];
    if (opts.afterId !== undefined) {
      extra.push(`${w.sql ? 'AND' : 'WHERE'} r.id > ?`);
      params.push(opts.afterId);
    }
    const limit = opts.limit !== undefined ? `LIMIT ${Math.max(0, Math.floor(opts.limit))}` : '';
    const stmt = this.db.prepare(
      `SELECT r.id, r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.select_text, r.feature, r.settings_hash,
              s.json AS settings_json, r.status, r.result_json, r.created_at
       FROM records r JOIN models m ON m.hash = r.model_hash JOIN settings s ON s.hash = r.settings_hash
       ${w.sql} ${extra.join(' ')} ORDER BY r.id ${limit}`,
    );
    const rows = this.guarded(() => stmt.iterate(...params) as IterableIterator<RecordRow>);
    try {
      for (;;) {
        const next = this.guarded(() => rows.next());
        if (next.done) return;
        yield this.toRecord(next.value);
      }
    } finally {
      // An open iterator keeps the connection busy: a damaged record must not also make close() fail.
      rows.return?.();
    }
  }

  /**
   * One page of a group ordered by feature index, after `afterFeature` (keyset paging on the records_page index):
   * what a read-only server lists.
   */
  page(group: { model_hash: string; blocks: [number, number]; hook: string; settings_hash: string }, afterFeature: number, limit: number): AtlasRecord[] {
    const rows = this.guarded(() => this.db
      .prepare(
        `SELECT r.id, r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.select_text, r.feature, r.settings_hash,
                s.json AS settings_json, r.status, r.result_json, r.created_at
         FROM records r JOIN models m ON m.hash = r.model_hash JOIN settings s ON s.hash = r.settings_hash
         WHERE r.model_hash = ? AND r.block_a = ? AND r.block_b = ? AND r.hook = ? AND r.settings_hash = ? AND r.feature > ?
         ORDER BY r.feature LIMIT ?`,
      )
      .all(group.model_hash, group.blocks[0], group.blocks[1], group.hook, group.settings_hash, afterFeature, limit) as RecordRow[]);
    return rows.map((r) => this.toRecord(r));
  }

  /** Stored JSON that does not parse (or is not an object) is a damaged atlas, not a bug: a UserError naming it. */
  private parseJson(text: string, what: string): Record<string, unknown> {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new UserError(`${this.file}: ${what} holds invalid JSON; the atlas is damaged`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${this.file}: ${what} is not a JSON object; the atlas is damaged`);
    return v as Record<string, unknown>;
  }

  /** Runs a read, turning SQLite's complaints about the file (corrupt, I/O error) into UserErrors naming it. */
  private guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw atlasFileError(this.file, err);
    }
  }

  private toRecord(row: RecordRow): AtlasRecord {
    if (!this.settingsCache.has(row.settings_hash)) this.settingsCache.set(row.settings_hash, this.parseJson(row.settings_json, `settings ${row.settings_hash.slice(0, 12)}`));
    const result = this.parseJson(row.result_json, `record ${row.id} (result_json)`) as unknown as Omit<AtlasRecord, 'id' | 'model' | 'blocks' | 'hook' | 'select' | 'feature' | 'settings_hash' | 'settings' | 'created_at'>;
    return {
      id: row.id,
      model: { hash: row.model_hash, name: row.model_name },
      blocks: [row.block_a, row.block_b],
      hook: row.hook,
      select: row.select_text,
      feature: row.feature,
      settings_hash: row.settings_hash,
      settings: this.settingsCache.get(row.settings_hash)!,
      created_at: row.created_at,
      ...result,
      status: row.status,
      timings: result.timings ?? null,
    };
  }

  groups(filter: RecordFilter = {}): AtlasGroup[] {
    const w = this.where(filter);
    const rows = this.guarded(() => this.db
      .prepare(
        `SELECT r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.settings_hash, count(*) AS records,
                sum(r.status = 'ok') AS ok, sum(r.status = 'failed') AS failed, min(r.feature) AS fmin, max(r.feature) AS fmax,
                min(r.created_at) AS first_at, max(r.created_at) AS last_at
         FROM records r JOIN models m ON m.hash = r.model_hash ${w.sql}
         GROUP BY r.model_hash, r.block_a, r.block_b, r.hook, r.settings_hash
         ORDER BY min(r.id)`,
      )
      .all(...w.params) as (Omit<AtlasGroup, 'blocks' | 'features'> & { block_a: number; block_b: number; fmin: number | null; fmax: number | null })[]);
    return rows.map(({ block_a, block_b, fmin, fmax, ...g }) => ({
      ...g,
      blocks: [block_a, block_b],
      features: fmin === null || fmax === null ? null : [fmin, fmax],
    }));
  }
}

function finiteOrNull(x: number | null): number | null {
  return x !== null && Number.isFinite(x) ? x : null;
}
