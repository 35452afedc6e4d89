/**
 * Group counts and recent failures, kept current incrementally. Counting ok/failed records needs each row's status,
 * which no index holds, so a full pass costs ~2 µs per record (a quarter of a second at 100,000). Atlas records are
 * only ever inserted, with growing ids, so after one full pass each refresh reads just the rows with ids past the
 * last one seen. A refresh runs only when SQLite's `data_version` says another connection committed; if the largest
 * id went down, or (checked at most every VERIFY_MS) the row count does not add up — rows deleted by some other
 * tool — it starts over with a full pass.
 *
 * Call refresh() inside the request's read transaction, so the numbers match what the request's other queries see.
 */
import type Database from 'better-sqlite3';
import type { AtlasGroup } from '../atlas/store.js';

/** An atlas group (as `ls` lists it) plus what the viewer needs to page and order it. */
export interface GroupStats extends AtlasGroup {
  /** Records with a single-feature selection (the ones a grid lists). */
  featured: number;
  /** Smallest record id: groups are listed in the order they were started. */
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

/** One row of the grouping query: blocks and feature range as separate columns. */
type GroupRow = Omit<GroupStats, 'blocks' | 'features'> & { block_a: number; block_b: number; fmin: number | null; fmax: number | null };

export const MAX_FAILURES = 50;
/** Most search entries (one per single-feature record) held in memory over all groups. */
export const MAX_SEARCH_ENTRIES = 2_000_000;

/** One grid record as the search sees it: lower-cased top-1 text, in feature order. */
export interface SearchEntry {
  feature: number;
  id: number;
  text: string;
  status: 'ok' | 'failed';
}

interface GroupSearch {
  entries: SearchEntry[];
  maxId: number;
}
/** How often (at most) a refresh also checks that no records were deleted behind its back. */
export const VERIFY_MS = 5_000;

export function groupKey(g: { model_hash: string; blocks: [number, number]; hook: string; settings_hash: string }): string {
  return `${g.model_hash}|${g.blocks[0]}|${g.blocks[1]}|${g.hook}|${g.settings_hash}`;
}

const minN = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
const maxN = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

export class AtlasStats {
  private version: number | null = null;
  private maxId = 0;
  private total = 0;
  private checkedAt = 0;
  private byKey = new Map<string, GroupStats>();
  private failures: FailureRow[] = [];
  private search = new Map<string, GroupSearch>();
  /** Groups with more single-feature records than this are searched by SQL instead (tests lower it). */
  maxSearchEntries = MAX_SEARCH_ENTRIES;
  /** Per-snapshot memo for other derived numbers (e.g. search match counts); cleared whenever the data changes. */
  readonly memo = new Map<string, unknown>();
  /** Full passes and incremental refreshes so far (for tests). */
  readonly passes = { full: 0, incremental: 0 };

  constructor(
    private readonly db: Database.Database,
    private readonly verifyMs = VERIFY_MS,
  ) {}

  refresh(): void {
    const version = this.db.pragma('data_version', { simple: true }) as number;
    if (version === this.version) return;
    this.version = version;
    const maxId = (this.db.prepare('SELECT max(id) FROM records').pluck().get() as number | null) ?? 0;
    let full = this.passes.full === 0 || maxId < this.maxId;
    // Counting every row to catch deletions costs a few ms on a large atlas, so it runs at most every verifyMs.
    const now = Date.now();
    if (!full && now - this.checkedAt >= this.verifyMs) {
      this.checkedAt = now;
      const total = this.db.prepare('SELECT count(*) FROM records').pluck().get() as number;
      const added = this.db.prepare('SELECT count(*) FROM records WHERE id > ?').pluck().get(this.maxId) as number;
      full = total !== this.total + added;
    }
    if (!full && maxId === this.maxId) return;
    this.memo.clear();
    if (full) {
      this.byKey.clear();
      this.failures = [];
      this.search.clear();
      this.read(0);
      this.passes.full++;
      this.checkedAt = now;
    } else {
      this.read(this.maxId);
      this.passes.incremental++;
    }
    this.maxId = maxId;
    this.total = [...this.byKey.values()].reduce((n, g) => n + g.records, 0);
  }

  /** Fold in the records with id > afterId. */
  private read(afterId: number): void {
    const rows = this.db
      .prepare(
        `SELECT r.model_hash, m.name AS model_name, r.block_a, r.block_b, r.hook, r.settings_hash, count(*) AS records,
                sum(r.status = 'ok') AS ok, sum(r.status = 'failed') AS failed, count(r.feature) AS featured,
                min(r.feature) AS fmin, max(r.feature) AS fmax, min(r.created_at) AS first_at, max(r.created_at) AS last_at, min(r.id) AS first_id
         FROM records r JOIN models m ON m.hash = r.model_hash WHERE r.id > ?
         GROUP BY r.model_hash, r.block_a, r.block_b, r.hook, r.settings_hash`,
      )
      .all(afterId) as GroupRow[];
    for (const r of rows) {
      const blocks: [number, number] = [r.block_a, r.block_b];
      const key = groupKey({ model_hash: r.model_hash, blocks, hook: r.hook, settings_hash: r.settings_hash });
      const g = this.byKey.get(key);
      if (!g) {
        this.byKey.set(key, {
          model_hash: r.model_hash,
          model_name: r.model_name,
          blocks,
          hook: r.hook,
          settings_hash: r.settings_hash,
          records: r.records,
          ok: r.ok,
          failed: r.failed,
          featured: r.featured,
          features: r.fmin === null || r.fmax === null ? null : [r.fmin, r.fmax],
          first_at: r.first_at,
          last_at: r.last_at,
          first_id: r.first_id,
        });
        continue;
      }
      g.records += r.records;
      g.ok += r.ok;
      g.failed += r.failed;
      g.featured += r.featured;
      const lo = minN(g.features?.[0] ?? null, r.fmin);
      const hi = maxN(g.features?.[1] ?? null, r.fmax);
      g.features = lo === null || hi === null ? null : [lo, hi];
      if (r.first_at < g.first_at) g.first_at = r.first_at;
      if (r.last_at > g.last_at) g.last_at = r.last_at;
      g.first_id = Math.min(g.first_id, r.first_id);
    }
    const failed = this.db
      .prepare(
        `SELECT r.id, m.name AS model_name, r.model_hash, r.block_a, r.block_b, r.hook, r.select_text AS "select", r.feature, r.settings_hash,
                json_extract(r.result_json, '$.error') AS error, r.created_at
         FROM records r JOIN models m ON m.hash = r.model_hash WHERE r.id > ? AND r.status = 'failed' ORDER BY r.id DESC LIMIT ?`,
      )
      .all(afterId, MAX_FAILURES) as (Omit<FailureRow, 'blocks'> & { block_a: number; block_b: number })[];
    const fresh = failed.map(({ block_a, block_b, ...f }) => ({ ...f, blocks: [block_a, block_b] as [number, number] }));
    this.failures = [...fresh, ...this.failures].slice(0, MAX_FAILURES);
  }

  /**
   * A group's records for searching, sorted by feature (loaded on first use, then topped up with new rows only, found
   * through the group's index by id). Null when the group alone is over maxSearchEntries; other groups' entries are
   * dropped, oldest first, to stay under it.
   */
  searchEntries(g: GroupStats): SearchEntry[] | null {
    if (g.featured > this.maxSearchEntries) return null;
    const key = groupKey(g);
    let gs = this.search.get(key);
    if (!gs) {
      let held = [...this.search.values()].reduce((n, x) => n + x.entries.length, 0);
      for (const [k, x] of this.search) {
        if (held + g.featured <= this.maxSearchEntries) break;
        held -= x.entries.length;
        this.search.delete(k);
      }
      gs = { entries: [], maxId: 0 };
      this.search.set(key, gs);
    }
    if (gs.maxId < this.maxId) {
      const rows = this.db
        .prepare(
          `SELECT id, feature, status, top1_text AS text FROM records
           WHERE model_hash = ? AND block_a = ? AND block_b = ? AND hook = ? AND settings_hash = ? AND feature IS NOT NULL AND id > ? AND id <= ?
           ORDER BY feature`,
        )
        .all(g.model_hash, g.blocks[0], g.blocks[1], g.hook, g.settings_hash, gs.maxId, this.maxId) as { id: number; feature: number; status: 'ok' | 'failed'; text: string | null }[];
      const fresh = rows.map((r) => ({ feature: r.feature, id: r.id, status: r.status, text: (r.text ?? '').toLowerCase() }));
      const last = gs.entries[gs.entries.length - 1];
      if (fresh.length && last && fresh[0]!.feature <= last.feature) gs.entries = [...gs.entries, ...fresh].sort((a, b) => a.feature - b.feature || a.id - b.id);
      else gs.entries.push(...fresh);
      gs.maxId = this.maxId;
    }
    return gs.entries;
  }

  groups(): GroupStats[] {
    return [...this.byKey.values()].sort((a, b) => a.first_id - b.first_id);
  }

  group(key: string): GroupStats | undefined {
    return this.byKey.get(key);
  }

  recentFailures(): FailureRow[] {
    return this.failures;
  }
}
