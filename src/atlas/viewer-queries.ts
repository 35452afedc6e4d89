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

/**
 * One grid cell: the indexed columns of a record, plus the few result fields a cell is coloured and sorted by. Those
 * are read with json_extract for the page's cells only (at most MAX_LIMIT rows), never for the whole group, except
 * when the grid is sorted or filtered by them (rankedCells), which has to read every record of the group.
 */
export interface GridCell {
  id: number;
  feature: number;
  status: 'ok' | 'failed';
  top1_text: string | null;
  act_continuous: number | null;
  act_decoded: number | null;
  act_random: number | null;
  /** The decoded activation's percentile of real text (0–100); null when the record is uncalibrated. */
  pct_decoded: number | null;
  /** Share of the optimum's objective carried by the skip path (resid only); null when absent or not applicable. */
  skip_share: number | null;
  /** Mean pairwise top-1 agreement over seeds (0–1); null without --seeds K > 1. */
  stability: number | null;
  /** The verdict's finding codes, in the record's order; null when the record predates verdicts. */
  verdict: string[] | null;
}

/** The result fields a grid can be ordered by, besides the feature index. */
export const GRID_SORTS = ['feature', 'percentile', 'skip', 'stability'] as const;
export type GridSort = (typeof GRID_SORTS)[number];

const SORT_EXPR: Record<GridSort, string> = {
  feature: 'feature',
  percentile: "json_extract(result_json, '$.percentile.decoded')",
  skip: "json_extract(result_json, '$.skip.share')",
  stability: "json_extract(result_json, '$.stability.agreement')",
};

/** The records of one group that a grid lists: single-feature ones, optionally with top-1 text and status filters. */
export interface GridFilter {
  group: GroupRef;
  /** A substring of the top-1 text (taken literally); '' for any. */
  q: string;
  status: 'ok' | 'failed' | 'all';
  /** A verdict finding code the record's verdict must contain; undefined for any. */
  verdict?: string;
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

const CELL_COLUMNS = `id, feature, status, top1_text, act_continuous, act_decoded, act_random,
  ${SORT_EXPR.percentile} AS pct_decoded, ${SORT_EXPR.skip} AS skip_share, ${SORT_EXPR.stability} AS stability,
  CASE WHEN json_type(result_json, '$.verdict') = 'array'
       THEN coalesce((SELECT json_group_array(json_extract(v.value, '$.code')) FROM json_each(result_json, '$.verdict') v), '[]') END AS verdict_json`;

type CellRow = Omit<GridCell, 'verdict'> & { verdict_json: string | null };
const cellOf = ({ verdict_json, ...c }: CellRow): GridCell => ({ ...c, verdict: verdict_json === null ? null : (JSON.parse(verdict_json) as string[]) });

/** One record found by the atlas-wide search. */
export interface SearchHit {
  id: number;
  model_hash: string;
  model_name: string;
  blocks: [number, number];
  hook: string;
  select: string;
  feature: number | null;
  settings_hash: string;
  status: 'ok' | 'failed';
  top1_text: string | null;
  /** Where the text matched: 'top-1', 'rank K' (a lower-ranked row of the decode) or 'refined' (the refined prompt). */
  matched_in: string;
  pct_decoded: number | null;
}

/** A record of the same run on another model of the same shape (see controlRecords). */
export interface ControlRow extends Pick<GridCell, 'id' | 'status' | 'top1_text' | 'act_continuous' | 'act_decoded' | 'act_random' | 'pct_decoded' | 'skip_share'> {
  model_hash: string;
  model_name: string;
  ids_json: string | null;
  free_json: string | null;
}
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
  if (f.verdict !== undefined) {
    where.push("EXISTS (SELECT 1 FROM json_each(result_json, '$.verdict') v WHERE json_extract(v.value, '$.code') = ?)");
    params.push(f.verdict);
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
    return (this.db.prepare(`SELECT ${CELL_COLUMNS} FROM records WHERE id IN (${ids.map(() => '?').join(', ')})`).all(...ids) as CellRow[]).map(cellOf);
  }

  /** Up to `limit` matching cells beyond feature `from` (keyset paging on records_page), nearest first. */
  gridCells(f: GridFilter, op: '<' | '>', from: number, limit: number): GridCell[] {
    const { cond, params } = gridWhere(f);
    return (
      this.db
        .prepare(
          `SELECT ${CELL_COLUMNS} FROM records
         WHERE ${cond} AND feature ${op} ? ORDER BY feature ${order(op)} LIMIT ?`,
        )
        .all(...params, from, limit) as CellRow[]
    ).map(cellOf);
  }

  /**
   * A page of matching cells ordered by a result field (records without it last, then by feature), by offset: a
   * sorted order has no key to page on. This reads every record of the group (json_extract has no index), so it costs
   * a pass over the group per page; fine for the tens of thousands of features a layer has.
   */
  rankedCells(f: GridFilter, sort: GridSort, descending: boolean, offset: number, limit: number): GridCell[] {
    const { cond, params } = gridWhere(f);
    const e = SORT_EXPR[sort];
    const dir = descending ? 'DESC' : 'ASC';
    const orderBy = sort === 'feature' ? `feature ${dir}` : `(${e}) IS NULL, ${e} ${dir}, feature ASC`;
    return (this.db.prepare(`SELECT ${CELL_COLUMNS} FROM records WHERE ${cond} ORDER BY ${orderBy} LIMIT ? OFFSET ?`).all(...params, limit, offset) as CellRow[]).map(cellOf);
  }

  /** How often each verdict finding code occurs among the group's single-feature records, by code. */
  verdictCounts(g: GroupRef): { code: string; records: number }[] {
    return this.db
      .prepare(
        `SELECT json_extract(v.value, '$.code') AS code, count(DISTINCT r.id) AS records
         FROM records r, json_each(r.result_json, '$.verdict') v
         WHERE r.model_hash = ? AND r.block_a = ? AND r.block_b = ? AND r.hook = ? AND r.settings_hash = ? AND r.feature IS NOT NULL
           AND json_extract(v.value, '$.code') IS NOT NULL
         GROUP BY code ORDER BY code`,
      )
      .all(...groupParams(g)) as { code: string; records: number }[];
  }

  /**
   * Records of every group whose decode text contains `q` (any rank of topk_text, or the refined prompt's text), in
   * record order. LIKE is case-insensitive for ASCII. One pass over the atlas's result JSON, stopped at offset + limit.
   */
  search(q: string, offset: number, limit: number): SearchHit[] {
    const pat = `%${likeEscape(q)}%`;
    const rows = this.db
      .prepare(
        `SELECT * FROM (
           SELECT r.id, r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.select_text AS "select", r.feature,
                  r.settings_hash, r.status, r.top1_text, json_extract(r.result_json, '$.percentile.decoded') AS pct_decoded,
                  (SELECT min(t.key) FROM json_each(r.result_json, '$.topk_text') t WHERE t.value LIKE ? ESCAPE '\\') AS rank,
                  json_extract(r.result_json, '$.refined.text') LIKE ? ESCAPE '\\' AS in_refined
           FROM records r JOIN models m ON m.hash = r.model_hash)
         WHERE rank IS NOT NULL OR in_refined
         ORDER BY id LIMIT ? OFFSET ?`,
      )
      .all(pat, pat, limit, offset) as (Omit<SearchHit, 'blocks' | 'matched_in'> & { block_a: number; block_b: number; rank: number | null; in_refined: number | null })[];
    return rows.map(({ block_a, block_b, rank, in_refined: _r, ...h }) => ({ ...h, blocks: [block_a, block_b], matched_in: rank === null ? 'refined' : rank === 0 ? 'top-1' : `rank ${rank + 1}` }));
  }

  /** How many records the search matches. */
  countSearch(q: string): number {
    const pat = `%${likeEscape(q)}%`;
    return this.db
      .prepare(
        `SELECT count(*) FROM records r
         WHERE EXISTS (SELECT 1 FROM json_each(r.result_json, '$.topk_text') t WHERE t.value LIKE ? ESCAPE '\\')
            OR json_extract(r.result_json, '$.refined.text') LIKE ? ESCAPE '\\'`,
      )
      .pluck()
      .get(pat, pat) as number;
  }

  /**
   * The same run (selection, blocks, hook, settings hash) on the atlas's other models of the same shape: same
   * architecture, block count, width and vocabulary. These are the candidates for a control: an untrained model
   * written by random-model has exactly the shape of the model it was drawn like. Whether a model is trained is not
   * in the atlas, so the caller marks controls by name.
   */
  controlRecords(rec: GroupRef & { select: string }, limit: number): ControlRow[] {
    return this.db
      .prepare(
        `SELECT r.id, r.model_hash, m.name AS model_name, r.status, r.top1_text, r.act_continuous, r.act_decoded, r.act_random,
                ${SORT_EXPR.percentile} AS pct_decoded, ${SORT_EXPR.skip} AS skip_share,
                json_extract(r.result_json, '$.ids') AS ids_json, json_extract(r.result_json, '$.free') AS free_json
         FROM records r JOIN models m ON m.hash = r.model_hash JOIN models me ON me.hash = ?
         WHERE r.select_text = ? AND r.block_a = ? AND r.block_b = ? AND r.hook = ? AND r.settings_hash = ? AND r.model_hash != me.hash
           AND m.architecture IS me.architecture AND m.n_layers IS me.n_layers AND m.dim IS me.dim AND m.vocab IS me.vocab
         ORDER BY m.added_at, r.model_hash LIMIT ?`,
      )
      .all(rec.model_hash, rec.select, rec.blocks[0], rec.blocks[1], rec.hook, rec.settings_hash, limit) as ControlRow[];
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
