/**
 * The viewer's SQL (`atlas.viewer`): the short, indexed reads behind the server's group counts, grid pages, record
 * neighbours and compare columns. It lives here, next to the schema and its indexes, so that every statement that
 * has to match an index (the grid's keyset paging uses records_page) is written where the index is; src/server/
 * decides what to ask for and never writes SQL. Statements are prepared per call, as the rest of the store does.
 */
import type Database from 'better-sqlite3';

/** One (model, blocks, hook, settings) group, as the viewer names it. */
export interface GroupRef {
  model_hash: string;
  blocks: [number, number];
  hook: string;
  settings_hash: string;
}

/** One grid cell: the indexed columns of a record (the grid never parses result JSON). */
export interface GridCell {
  id: number;
  feature: number;
  status: 'ok' | 'failed';
  top1_text: string | null;
  act_continuous: number | null;
  act_decoded: number | null;
  act_random: number | null;
}

/** The records of one group that a grid lists: single-feature ones, optionally with top-1 text and status filters. */
export interface GridFilter {
  group: GroupRef;
  /** A substring of the top-1 text (taken literally); '' for any. */
  q: string;
  status: 'ok' | 'failed' | 'all';
}

/** Per-group counts over the records with ids past some id (see AtlasStats). */
export interface GroupCountRow {
  model_hash: string;
  model_name: string;
  block_a: number;
  block_b: number;
  hook: string;
  settings_hash: string;
  records: number;
  ok: number;
  failed: number;
  /** Records with a single-feature selection. */
  featured: number;
  fmin: number | null;
  fmax: number | null;
  first_at: string;
  last_at: string;
  first_id: number;
}

export interface FailureRow {
  id: number;
  model_name: string;
  model_hash: string;
  blocks: [number, number];
  hook: string;
  select: string;
  feature: number | null;
  settings_hash: string;
  error: string | null;
  created_at: string;
}

/** A single-feature record as the in-memory search holds it, before lower-casing. */
export interface SearchRow {
  id: number;
  feature: number;
  status: 'ok' | 'failed';
  text: string | null;
}

export interface CompareFilter {
  feature: number;
  hook?: string;
  /** Model hashes (already resolved from a name or prefix). */
  modelHashes?: string[];
  /** A settings hash prefix. */
  settings?: string;
}

const CELL_COLUMNS = 'id, feature, status, top1_text, act_continuous, act_decoded, act_random';
const GROUP_COND = 'model_hash = ? AND block_a = ? AND block_b = ? AND hook = ? AND settings_hash = ?';

const groupParams = (g: GroupRef): unknown[] => [g.model_hash, g.blocks[0], g.blocks[1], g.hook, g.settings_hash];

/** `%`, `_` and `\` taken literally in a LIKE pattern (ESCAPE '\'). */
function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** The WHERE condition (and its parameters) of a grid filter; unfiltered, it is exactly records_page's prefix. */
function gridWhere(f: GridFilter): { cond: string; params: unknown[] } {
  const where = [GROUP_COND, 'feature IS NOT NULL'];
  const params = groupParams(f.group);
  if (f.q !== '') {
    where.push("top1_text LIKE ? ESCAPE '\\'");
    params.push(`%${likeEscape(f.q)}%`);
  }
  if (f.status !== 'all') {
    where.push('status = ?');
    params.push(f.status);
  }
  return { cond: where.join(' AND '), params };
}

const order = (op: '<' | '>') => (op === '<' ? 'DESC' : 'ASC');

export class ViewerQueries {
  constructor(private readonly db: Database.Database) {}

  /** SQLite's data_version: changes whenever another connection has committed since this one last read. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /** The largest record id, 0 when there are none. */
  maxRecordId(): number {
    return (this.db.prepare('SELECT max(id) FROM records').pluck().get() as number | null) ?? 0;
  }

  /** How many records have ids past `afterId`. */
  countAfter(afterId: number): number {
    return this.db.prepare('SELECT count(*) FROM records WHERE id > ?').pluck().get(afterId) as number;
  }

  /** Per-group counts of the records with id > afterId. */
  groupCountsAfter(afterId: number): GroupCountRow[] {
    return this.db
      .prepare(
        `SELECT r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.settings_hash, count(*) AS records,
                sum(r.status = 'ok') AS ok, sum(r.status = 'failed') AS failed, count(r.feature) AS featured,
                min(r.feature) AS fmin, max(r.feature) AS fmax, min(r.created_at) AS first_at, max(r.created_at) AS last_at, min(r.id) AS first_id
         FROM records r JOIN models m ON m.hash = r.model_hash WHERE r.id > ?
         GROUP BY r.model_hash, r.block_a, r.block_b, r.hook, r.settings_hash`,
      )
      .all(afterId) as GroupCountRow[];
  }

  /** The newest `limit` failed records with id > afterId, newest first. */
  failuresAfter(afterId: number, limit: number): FailureRow[] {
    const rows = this.db
      .prepare(
        `SELECT r.id, m.name AS model_name, r.model_hash, r.block_a, r.block_b, r.hook, r.select_text AS "select", r.feature, r.settings_hash,
                json_extract(r.result_json, '$.error') AS error, r.created_at
         FROM records r JOIN models m ON m.hash = r.model_hash WHERE r.id > ? AND r.status = 'failed' ORDER BY r.id DESC LIMIT ?`,
      )
      .all(afterId, limit) as (Omit<FailureRow, 'blocks'> & { block_a: number; block_b: number })[];
    return rows.map(({ block_a, block_b, ...f }) => ({ ...f, blocks: [block_a, block_b] }));
  }

  /** A group's single-feature records with afterId < id <= uptoId, in feature order (found through the group's index). */
  searchRows(g: GroupRef, afterId: number, uptoId: number): SearchRow[] {
    return this.db
      .prepare(
        `SELECT id, feature, status, top1_text AS text FROM records
         WHERE ${GROUP_COND} AND feature IS NOT NULL AND id > ? AND id <= ?
         ORDER BY feature`,
      )
      .all(...groupParams(g), afterId, uptoId) as SearchRow[];
  }

  /** The grid cells of the given record ids, in no particular order. */
  cellsByIds(ids: number[]): GridCell[] {
    if (ids.length === 0) return [];
    return this.db.prepare(`SELECT ${CELL_COLUMNS} FROM records WHERE id IN (${ids.map(() => '?').join(', ')})`).all(...ids) as GridCell[];
  }

  /** Up to `limit` matching cells beyond feature `from` (keyset paging on records_page), nearest first. */
  gridCells(f: GridFilter, op: '<' | '>', from: number, limit: number): GridCell[] {
    const { cond, params } = gridWhere(f);
    return this.db
      .prepare(
        `SELECT ${CELL_COLUMNS} FROM records
         WHERE ${cond} AND feature ${op} ? ORDER BY feature ${order(op)} LIMIT ?`,
      )
      .all(...params, from, limit) as GridCell[];
  }

  /** The nearest matching feature beyond `from`, or null. */
  nearestFeature(f: GridFilter, op: '<' | '>', from: number): number | null {
    const { cond, params } = gridWhere(f);
    return (this.db.prepare(`SELECT feature FROM records WHERE ${cond} AND feature ${op} ? ORDER BY feature ${order(op)} LIMIT 1`).pluck().get(...params, from) as number | undefined) ?? null;
  }

  /** How many records match the filter. */
  countMatching(f: GridFilter): number {
    const { cond, params } = gridWhere(f);
    return this.db.prepare(`SELECT count(*) FROM records WHERE ${cond}`).pluck().get(...params) as number;
  }

  /** The record of the nearest feature beyond `feature` in the group, or null. */
  neighbour(g: GroupRef, op: '<' | '>', feature: number): { id: number; feature: number } | null {
    return (
      (this.db.prepare(`SELECT id, feature FROM records WHERE ${GROUP_COND} AND feature ${op} ? ORDER BY feature ${order(op)} LIMIT 1`).get(...groupParams(g), feature) as
        | { id: number; feature: number }
        | undefined) ?? null
    );
  }

  /** Records of the same feature, hook and settings other than record `id` (other block ranges and models). */
  sameFeatureElsewhere(feature: number, hook: string, settingsHash: string, id: number): number {
    return this.db.prepare('SELECT count(*) FROM records WHERE feature = ? AND hook = ? AND settings_hash = ? AND id != ?').pluck().get(feature, hook, settingsHash, id) as number;
  }

  /** Ids of up to `limit` records of one feature, in the compare page's column order. */
  compareIds(f: CompareFilter, limit: number): number[] {
    const where = ['r.feature = ?'];
    const params: unknown[] = [f.feature];
    if (f.hook !== undefined) {
      where.push('r.hook = ?');
      params.push(f.hook);
    }
    if (f.modelHashes !== undefined) {
      where.push(`r.model_hash IN (${f.modelHashes.map(() => '?').join(', ')})`);
      params.push(...f.modelHashes);
    }
    if (f.settings !== undefined) {
      where.push("r.settings_hash LIKE ? || '%'");
      params.push(f.settings);
    }
    return this.db
      .prepare(
        `SELECT r.id FROM records r JOIN models m ON m.hash = r.model_hash WHERE ${where.join(' AND ')}
         ORDER BY r.hook, m.added_at, r.model_hash, r.block_a, r.block_b, r.settings_hash LIMIT ?`,
      )
      .pluck()
      .all(...params, limit) as number[];
  }
}
