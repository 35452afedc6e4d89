/**
 * Group counts and recent failures, kept current incrementally. Counting ok/failed records needs each row's status,
 * which no index holds, so a full pass costs ~2 µs per record (a quarter of a second at 100,000). Atlas records are
 * only ever inserted, with growing ids, so after one full pass each refresh reads just the rows with ids past the
 * last one seen. A refresh runs only when SQLite's `data_version` says another connection committed; if the largest
 * id went down, or (checked at most every VERIFY_MS) the row count does not add up — rows deleted by some other
 * tool — it starts over with a full pass.
 *
 * Call refresh() inside the request's read transaction, so the numbers match what the request's other queries see.
 * The SQL it runs is the atlas's (atlas.viewer, src/atlas/viewer-queries.ts); what is kept and when it is re-read is
 * decided here.
 */
import type { Atlas, AtlasGroup } from '../atlas/store.js';
import type { FailureRow, GroupRef } from '../atlas/viewer-queries.js';

/** An atlas group (as `ls` lists it) plus what the viewer needs to page and order it. */
export interface GroupStats extends AtlasGroup {
  /** Records with a single-feature selection (the ones a grid lists). */
  featured: number;
  /** Smallest record id: groups are listed in the order they were started. */
  first_id: number;
}

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

export function groupKey(g: GroupRef): string {
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
    private readonly atlas: Atlas,
    private readonly verifyMs = VERIFY_MS,
  ) {}

  refresh(): void {
    const version = this.atlas.viewer.dataVersion();
    if (version === this.version) return;
    this.version = version;
    const maxId = this.atlas.viewer.maxRecordId();
    let full = this.passes.full === 0 || maxId < this.maxId;
    // Counting every row to catch deletions costs a few ms on a large atlas, so it runs at most every verifyMs.
    const now = Date.now();
    if (!full && now - this.checkedAt >= this.verifyMs) {
      this.checkedAt = now;
      const total = this.atlas.count();
      const added = this.atlas.viewer.countAfter(this.maxId);
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
    const rows = this.atlas.viewer.groupCountsAfter(afterId);
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
    const fresh = this.atlas.viewer.failuresAfter(afterId, MAX_FAILURES);
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
      const rows = this.atlas.viewer.searchRows(g, gs.maxId, this.maxId);
      const fresh = rows.map((r) => ({ feature: r.feature, id: r.id, status: r.status, text: (r.text ?? '').toLowerCase() }));
      const last = gs.entries[gs.entries.length - 1];
      if (fresh.length && last && fresh[0]!.feature <= last.feature) gs.entries = [...gs.entries, ...fresh].sort((a, b) => a.feature - b.feature || a.id - b.id);
      // Not push(...fresh): spreading 100,000+ entries as arguments overflows the call stack.
      else for (const e of fresh) gs.entries.push(e);
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
