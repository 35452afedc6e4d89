/**
 * The viewer's JSON API over a read-only atlas. Every route validates its parameters (400), answers 404 for records,
 * models and groups the atlas does not hold, and reads with short indexed queries (an unsorted grid page reads result
 * JSON for its own cells only; sorting or filtering by a result field, the verdict counts and the atlas-wide search
 * pass over the JSON of a group or the atlas, memoised per snapshot; group counts and search entries are kept
 * incrementally, see stats.ts), so pages stay fast on large atlases and every
 * request sees the latest committed state while `atlas build` writes. The server runs each request in one read
 * transaction after AtlasStats.refresh(). The queries are the atlas's (atlas.viewer, src/atlas/viewer-queries.ts):
 * this file decides which to run, never how.
 */
import { indexPairingProblem, meanJaccard } from '../atlas/compare.js';
import { scanFeatureFor } from '../atlas/scans.js';
import type { Atlas, AtlasRecord } from '../atlas/store.js';
import { GRID_SORTS, type GridCell, type GridFilter, type GridSort } from '../atlas/viewer-queries.js';
import { UserError } from '../errors.js';
import { formatPercentile } from '../features/calibrate.js';
import {
  badRequest,
  DEFAULT_LIMIT,
  MAX_LIMIT,
  notFound,
  optInt,
  parseBlocksParam,
  parseHookParam,
  parseIntParam,
  parseModelParam,
  parseOrderParam,
  parseQueryText,
  parseSortParam,
  parseVerdictParam,
  parseSettingsParam,
  parseStatusParam,
  queryParams,
  requireParam,
} from './params.js';
import { reproduceCommand } from './reproduce.js';
import { AtlasStats, groupKey, type GroupStats, type SearchEntry } from './stats.js';
import { ModelSources, piecesOf } from './tokens.js';

/** Most columns a compare page shows (records of one feature across groups). */
export const MAX_COMPARE = 64;
/** Most control records a feature page lists. */
export const MAX_CONTROLS = 16;
/** Search hits per page (atlas-wide search). */
export const SEARCH_LIMIT = 50;
/**
 * A model the atlas marks as a control by its name: random-model writes untrained controls, and the atlas cannot tell
 * trained weights from random ones, so a name saying so is the only honest mark. Other models of the same shape are
 * listed too, as "same shape".
 */
export const CONTROL_NAME = /random|untrained|control|shuffled/i;

export interface GroupKey {
  model_hash: string;
  model_name: string;
  blocks: [number, number];
  hook: string;
  settings_hash: string;
}

export type { GridCell } from '../atlas/viewer-queries.js';

/** A grid cell as the API sends it: with its decoded percentile formatted as the CLI prints it. */
export type GridCellOut = GridCell & { pct_text: string | null };
const withPctText = (c: GridCell): GridCellOut => ({ ...c, pct_text: c.pct_decoded === null ? null : formatPercentile(c.pct_decoded) });

export interface GridPage {
  group: GroupKey & { records: number; ok: number; failed: number; features: [number, number] | null };
  q: string | null;
  status: 'ok' | 'failed' | 'all';
  /** feature: keyset paging by feature (after=/before=); offset: a sorted or verdict-filtered page (offset=). */
  paging: 'feature' | 'offset';
  sort: GridSort;
  order: 'asc' | 'desc';
  verdict: string | null;
  /** The page's offset= (offset paging), else null. */
  offset: number | null;
  next_offset: number | null;
  prev_offset: number | null;
  /** The group's finding codes and how many records carry each (for the verdict filter). */
  verdict_counts: { code: string; records: number }[];
  /** The page's after= (null when asked with before=). */
  after: number | null;
  before: number | null;
  limit: number;
  /** Records of the group matching q and status (all of the group's single-feature records when unfiltered). */
  matched: number;
  cells: GridCellOut[];
  /** The `after=` of the next page, null on the last one. */
  next_after: number | null;
  /** The `before=` of the previous page, null on the first one. */
  prev_before: number | null;
}

interface PageParts {
  cells: GridCell[];
  matched: number;
  next_after: number | null;
  prev_before: number | null;
}

const blockLabel = (b: [number, number]) => (b[0] === b[1] ? String(b[0]) : `${b[0]}-${b[1]}`);

const add1 = (x: number | null) => (x === null ? null : x + 1);
const sub1 = (x: number | null) => (x === null ? null : x - 1);

/** The routes. Its caller refreshes `stats` once per request, inside that request's read transaction (server.ts). */
export class AtlasApi {
  readonly sources: ModelSources;
  readonly stats: AtlasStats;

  constructor(readonly atlas: Atlas) {
    this.sources = new ModelSources(atlas);
    this.stats = new AtlasStats(atlas);
  }

  /** Model hashes for `model=`: a name or a hash prefix; 404 when none matches. */
  private modelHashes(spec: string): string[] {
    try {
      return this.atlas.resolveModel(spec);
    } catch (err) {
      if (err instanceof UserError) throw notFound(err.message);
      throw err;
    }
  }

  // ----- /api/overview --------------------------------------------------------------------------------------------

  overview(search: URLSearchParams) {
    queryParams(search, []);
    const models = this.atlas.models().map((m) => {
      const src = this.sources.get(m.hash);
      return { ...m, checkpoint: src?.path ?? null, tokenizer: src?.tokenizer ? src.tokenizer.kind : null };
    });
    const groups = this.groupList();
    const failures = this.stats.recentFailures();
    const sum = (k: 'records' | 'ok' | 'failed') => groups.reduce((n, g) => n + g[k], 0);
    return {
      db: this.atlas.file,
      schema_version: this.atlas.schemaVersion,
      records: sum('records'),
      ok: sum('ok'),
      failed: sum('failed'),
      models,
      hooks: [...new Set(groups.map((g) => g.hook))],
      block_ranges: [...new Map(groups.map((g) => [blockLabel(g.blocks), g.blocks])).values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]),
      groups,
      failures,
      failures_shown: failures.length,
    };
  }

  groups(search: URLSearchParams) {
    queryParams(search, []);
    return { groups: this.groupList() };
  }

  private groupList() {
    return this.stats.groups().map(({ first_id: _f, featured: _n, ...g }) => ({ ...g, blocks_label: blockLabel(g.blocks) }));
  }

  // ----- /api/grid ------------------------------------------------------------------------------------------------

  /** The one group that model, blocks, hook and (optionally) a settings prefix name: 404 when none, 400 when several. */
  private resolveGroup(model: string, blocks: [number, number], hook: string, settings: string | undefined): GroupStats {
    const hashes = new Set(this.modelHashes(model));
    const rows = this.stats
      .groups()
      .filter((g) => hashes.has(g.model_hash) && g.blocks[0] === blocks[0] && g.blocks[1] === blocks[1] && g.hook === hook && (settings === undefined || g.settings_hash.startsWith(settings)));
    const what = `model=${model} blocks=${blockLabel(blocks)} hook=${hook}${settings === undefined ? '' : ` settings=${settings}`}`;
    if (rows.length === 0) throw notFound(`no records for ${what}`);
    if (rows.length > 1) {
      const list = rows.map((r) => `${r.model_name} ${r.model_hash.slice(0, 12)} settings ${r.settings_hash.slice(0, 12)}`).join('; ');
      throw badRequest(`${what} names ${rows.length} groups (${list}); give a longer settings= or a model hash prefix`);
    }
    return rows[0]!;
  }

  grid(search: URLSearchParams): GridPage {
    const p = queryParams(search, ['model', 'blocks', 'hook', 'settings', 'after', 'before', 'limit', 'q', 'status', 'sort', 'order', 'verdict', 'offset']);
    const model = parseModelParam(requireParam(p, 'model'));
    const blocks = parseBlocksParam(requireParam(p, 'blocks'));
    const hook = parseHookParam(requireParam(p, 'hook'));
    const settings = p.has('settings') ? parseSettingsParam(requireParam(p, 'settings')) : undefined;
    if (p.has('after') && p.has('before')) throw badRequest('give after= or before=, not both');
    // after=F: the page of features > F (-1, the default, starts at feature 0); before=F: the page of features < F.
    const afterText = p.get('after');
    const after = afterText === undefined || afterText === '-1' ? -1 : parseIntParam(afterText, 'after');
    const before = p.has('before') ? parseIntParam(p.get('before')!, 'before') : null;
    const limit = optInt(p, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
    const q = p.has('q') ? parseQueryText(p.get('q')!) : '';
    const status = p.has('status') ? parseStatusParam(requireParam(p, 'status')) : 'all';
    const sort = p.has('sort') ? parseSortParam(requireParam(p, 'sort'), GRID_SORTS) : 'feature';
    const order = p.has('order') ? parseOrderParam(requireParam(p, 'order')) : sort === 'feature' ? 'asc' : 'desc';
    const verdict = p.has('verdict') ? parseVerdictParam(requireParam(p, 'verdict')) : undefined;
    // A sorted or verdict-filtered grid pages by offset (no key to page on); the plain grid keeps keyset paging.
    const ranked = p.has('sort') || p.has('order') || p.has('verdict') || p.has('offset');
    if (ranked && (p.has('after') || p.has('before'))) throw badRequest('after= and before= page by feature; with sort=, order=, verdict= or offset= page with offset=');
    const offset = ranked ? optInt(p, 'offset', 0) : null;
    const group = this.resolveGroup(model, blocks, hook, settings);
    const verdictCounts = this.memoized(`verdicts|${groupKey(group)}`, () => this.atlas.viewer.verdictCounts(group));
    const { first_id: _f, featured: _n, ...shown } = group;
    const common = { group: shown, q: q === '' ? null : q, status, sort, order, verdict: verdict ?? null, limit, verdict_counts: verdictCounts };

    if (offset !== null) {
      const filter: GridFilter = { group, q, status, verdict };
      const matched = this.memoized(`ranked|${groupKey(group)}|${status}|${verdict ?? ''}|${q}`, () => this.atlas.viewer.countMatching(filter));
      const cells = this.atlas.viewer.rankedCells(filter, sort, order === 'desc', offset, limit);
      return {
        ...common,
        paging: 'offset',
        offset,
        next_offset: offset + cells.length < matched ? offset + limit : null,
        prev_offset: offset > 0 ? Math.max(0, Math.min(offset, matched) - limit) : null,
        after: null,
        before: null,
        matched,
        cells: cells.map(withPctText),
        next_after: null,
        prev_before: null,
      };
    }
    const page = q !== '' || status !== 'all' ? this.filteredPage(group, q, status, after, before, limit) : null;
    const { cells, matched, next_after, prev_before } = page ?? this.sqlPage(group, q, status, after, before, limit);
    return {
      ...common,
      paging: 'feature',
      offset: null,
      next_offset: null,
      prev_offset: null,
      after: before !== null ? null : after,
      before,
      matched,
      cells: cells.map(withPctText),
      next_after,
      prev_before,
    };
  }

  /** A number derived from the current snapshot, computed once per snapshot (stats.memo is cleared on every change). */
  private memoized<T>(key: string, compute: () => T): T {
    if (this.stats.memo.has(key)) return this.stats.memo.get(key) as T;
    const v = compute();
    if (this.stats.memo.size > 32) this.stats.memo.clear();
    this.stats.memo.set(key, v);
    return v;
  }

  // ----- /api/search ----------------------------------------------------------------------------------------------

  /** Records of every group (all models, block ranges, hooks, settings) whose decode or refined text contains q. */
  search(search: URLSearchParams) {
    const p = queryParams(search, ['q', 'offset', 'limit']);
    const q = parseQueryText(requireParam(p, 'q'));
    const offset = optInt(p, 'offset', 0);
    const limit = optInt(p, 'limit', SEARCH_LIMIT, 1, MAX_LIMIT);
    const matched = this.memoized(`search|${q}`, () => this.atlas.viewer.countSearch(q));
    const hits = this.atlas.viewer.search(q, offset, limit).map((h) => ({ ...h, blocks_label: blockLabel(h.blocks), pct_text: h.pct_decoded === null ? null : formatPercentile(h.pct_decoded) }));
    return { q, offset, limit, matched, hits, next_offset: offset + hits.length < matched ? offset + limit : null, prev_offset: offset > 0 ? Math.max(0, offset - limit) : null };
  }

  /**
   * A search or status filter, over the group's in-memory search entries (a scan of a JS array, cheap even for a layer
   * of 100,000 features); the page's cells are then read by id.
   */
  private filteredPage(group: GroupStats, q: string, status: 'ok' | 'failed' | 'all', after: number, before: number | null, limit: number): PageParts | null {
    const all = this.stats.searchEntries(group);
    if (!all) return null;
    const key = `matches|${groupKey(group)}|${status}|${q}`;
    let matches = this.stats.memo.get(key) as SearchEntry[] | undefined;
    if (!matches) {
      const needle = q.toLowerCase();
      matches = all.filter((e) => (status === 'all' || e.status === status) && (needle === '' || e.text.includes(needle)));
      if (this.stats.memo.size > 32) this.stats.memo.clear();
      this.stats.memo.set(key, matches);
    }
    // First index whose feature is > x (upper) or >= x (lower).
    const bound = (x: number, strict: boolean) => {
      let lo = 0;
      let hi = matches!.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (strict ? matches![mid]!.feature <= x : matches![mid]!.feature < x) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    let start: number;
    let end: number;
    if (before !== null) {
      end = bound(before, false);
      start = Math.max(0, end - limit);
    } else {
      start = bound(after, true);
      end = Math.min(matches.length, start + limit);
    }
    const slice = matches.slice(start, end);
    const byId = new Map(this.atlas.viewer.cellsByIds(slice.map((e) => e.id)).map((c) => [c.id, c]));
    const cells = slice.map((e) => byId.get(e.id)).filter((c): c is GridCell => c !== undefined);
    return {
      cells,
      matched: matches.length,
      next_after: end < matches.length ? (slice.length ? slice[slice.length - 1]!.feature : matches[end]!.feature - 1) : null,
      prev_before: start > 0 ? (slice.length ? slice[0]!.feature : matches[start - 1]!.feature + 1) : null,
    };
  }

  /** A page by SQL: keyset paging on the group's index (unfiltered), or a LIKE scan (a group too large to hold). */
  private sqlPage(group: GroupStats, q: string, status: 'ok' | 'failed' | 'all', after: number, before: number | null, limit: number): PageParts {
    const filter: GridFilter = { group, q, status };
    const select = (op: '<' | '>', from: number) => this.atlas.viewer.gridCells(filter, op, from, limit);
    const nearest = (op: '<' | '>', from: number) => this.atlas.viewer.nearestFeature(filter, op, from);
    const exists = (op: '<' | '>', from: number) => nearest(op, from) !== null;
    const cells = before !== null ? select('<', before).reverse() : select('>', after);
    const first = cells[0]?.feature;
    const last = cells[cells.length - 1]?.feature;
    let matched = group.featured;
    if (q !== '' || status !== 'all') {
      const key = `matched|${groupKey(group)}|${status}|${q}`;
      matched = (this.stats.memo.get(key) as number | undefined) ?? this.atlas.viewer.countMatching(filter);
      if (this.stats.memo.size > 32) this.stats.memo.clear();
      this.stats.memo.set(key, matched);
    }
    return {
      cells,
      matched,
      next_after: last !== undefined ? (exists('>', last) ? last : null) : before !== null ? sub1(nearest('>', before - 1)) : null,
      prev_before: first !== undefined ? (exists('<', first) ? first : null) : before === null ? add1(nearest('<', after + 1)) : null,
    };
  }

  // ----- /api/record/:id ------------------------------------------------------------------------------------------

  private recordById(id: number): AtlasRecord | null {
    for (const r of this.atlas.records({}, { afterId: id - 1, limit: 1 })) return r.id === id ? r : null;
    return null;
  }

  record(idText: string, search: URLSearchParams) {
    queryParams(search, []);
    const id = parseIntParam(idText, 'record id', 1);
    const rec = this.recordById(id);
    if (!rec) throw notFound(`no record ${id}`);
    const src = this.sources.get(rec.model.hash);
    const tokenizer = src?.tokenizer ?? null;
    const ids = new Set<number>();
    const add = (xs: unknown) => {
      if (Array.isArray(xs)) for (const x of xs) if (Number.isInteger(x)) ids.add(x as number);
    };
    add(rec.ids);
    for (const row of rec.topk ?? []) add(row);
    add(rec.baseline?.tokens);
    const refined = (rec as { refined?: { ids?: unknown; start_ids?: unknown } | null }).refined;
    if (refined) {
      add(refined.ids);
      add(refined.start_ids);
    }
    // Neighbours in the group, for stepping through a layer; and how many records the compare link will add.
    const group = { model_hash: rec.model.hash, blocks: rec.blocks, hook: rec.hook, settings_hash: rec.settings_hash };
    const neighbour = (op: '<' | '>') => (rec.feature === null ? null : this.atlas.viewer.neighbour(group, op, rec.feature));
    const elsewhere = rec.feature === null ? 0 : this.atlas.viewer.sameFeatureElsewhere(rec.feature, rec.hook, rec.settings_hash, rec.id);
    // The real-data side: the feature's corpus scan (histogram, top windows, quantile-bin samples), preferring the
    // corpus the record's percentiles were measured on. A --direction record has no feature index to look up.
    const scan = rec.feature === null ? null : scanFeatureFor(this.atlas, group, rec.feature, rec.calibration?.corpus_hash ?? null);
    if (scan) {
      const f = scan.feature;
      for (const e of [...f.top, ...f.top_position0, ...f.bins.flatMap((b) => b.examples)]) add(e.ids);
    }
    return {
      record: rec,
      percentile_text: percentileTexts(rec),
      scan,
      controls: this.controlsOf(rec),
      pieces: piecesOf(tokenizer, ids),
      tokenizer: tokenizer ? tokenizer.kind : null,
      checkpoint: src?.path ?? null,
      prev: neighbour('<'),
      next: neighbour('>'),
      same_feature_elsewhere: elsewhere,
      reproduce: reproduceCommand(rec, { path: src?.path ?? null, name: rec.model.name }, tokenizer, this.atlas.file),
    };
  }

  /**
   * The same run on the atlas's other models of the same shape (viewer-queries.ts controlRecords), each marked a
   * control when its name says so, with the share of this record's free positions where its top-1 token is the same
   * (by token text when both models have a tokenizer, else by id).
   */
  private controlsOf(rec: AtlasRecord) {
    const rows = this.atlas.viewer.controlRecords({ model_hash: rec.model.hash, blocks: rec.blocks, hook: rec.hook, settings_hash: rec.settings_hash, select: rec.select }, MAX_CONTROLS);
    const mine = this.sources.tokenizer(rec.model.hash);
    const keyOf = (tok: ReturnType<ModelSources['tokenizer']>, id: number, text: boolean) => (text && tok ? `t:${tok.piece(id)}` : `i:${id}`);
    return rows.map(({ ids_json, free_json: _free, act_continuous, act_decoded, act_random, ...c }) => {
      const ids = ids_json === null ? [] : (JSON.parse(ids_json) as number[]);
      const tok = this.sources.tokenizer(c.model_hash);
      const free = (rec.free ?? []).filter((t) => rec.ids[t] !== undefined && ids[t] !== undefined);
      const text = mine !== null && tok !== null;
      const agreement = rec.status === 'ok' && c.status === 'ok' && free.length ? free.filter((t) => keyOf(mine, rec.ids[t]!, text) === keyOf(tok, ids[t]!, text)).length / free.length : null;
      return {
        ...c,
        kind: CONTROL_NAME.test(c.model_name) ? ('control' as const) : ('same shape' as const),
        activation: { continuous: act_continuous, decoded: act_decoded, random: act_random },
        pct_decoded_text: c.pct_decoded === null ? null : formatPercentile(c.pct_decoded),
        top1_agreement: agreement,
        agreement_positions: agreement === null ? 0 : free.length,
      };
    });
  }

  // ----- /api/compare ---------------------------------------------------------------------------------------------

  /**
   * One feature across every block range and model (optionally narrowed by hook, model, settings): each record's top-1
   * token per position, and pairwise agreement. Tokens are compared by their text when both models have a tokenizer
   * (so different checkpoints of one vocabulary line up), else by id within one model.
   */
  compare(search: URLSearchParams) {
    const p = queryParams(search, ['feature', 'hook', 'model', 'settings']);
    const feature = parseIntParam(requireParam(p, 'feature'), 'feature');
    const hook = p.has('hook') ? parseHookParam(requireParam(p, 'hook')) : undefined;
    const model = p.has('model') ? parseModelParam(requireParam(p, 'model')) : undefined;
    const settings = p.has('settings') ? parseSettingsParam(requireParam(p, 'settings')) : undefined;
    const modelHashes = model === undefined ? undefined : this.modelHashes(model);
    const idRows = this.atlas.viewer.compareIds({ feature, hook, modelHashes, settings }, MAX_COMPARE + 1);
    if (idRows.length === 0) throw notFound(`no records of feature ${feature}${hook ? ` at hook ${hook}` : ''}${model ? ` for model ${model}` : ''}${settings ? ` with settings ${settings}` : ''}`);
    const truncated = idRows.length > MAX_COMPARE;
    const records = idRows.slice(0, MAX_COMPARE).map((id) => this.recordById(id)!).filter((r) => r !== null);

    const columns = records.map((r) => {
      const tok = this.sources.tokenizer(r.model.hash);
      const ok = r.status === 'ok' && Array.isArray(r.topk) && r.topk.length > 0;
      const top1 = ok ? r.topk[0]! : [];
      const pieces = piecesOf(tok, r.topk?.flat() ?? []);
      const free = new Set(r.free ?? []);
      const positions = ok
        ? top1.map((id, t) => ({
            position: t,
            free: free.has(t),
            id,
            text: pieces[String(id)] ?? null,
            key: pieces[String(id)] !== null && pieces[String(id)] !== undefined ? `t:${pieces[String(id)]}` : `i:${r.model.hash}:${id}`,
            cosine: r.cosine?.[t] ?? null,
          }))
        : [];
      return {
        id: r.id,
        model: r.model,
        blocks: r.blocks,
        blocks_label: blockLabel(r.blocks),
        hook: r.hook,
        settings_hash: r.settings_hash,
        status: r.status,
        error: r.error ?? null,
        top1_text: ok ? (r.topk_text?.[0] ?? null) : null,
        activation: r.activation,
        baseline_agreement: r.baseline?.agreement ?? null,
        positions,
        topk: ok ? r.topk.map((row) => row.map((id) => ({ id, text: pieces[String(id)] ?? null }))) : [],
        keysets: ok ? r.topk : [],
      };
    });
    // Pairwise agreement over the free positions both records have.
    // Across models, one feature index is one direction only within one embedding space (compare.ts); elsewhere the
    // pair gets no agreement but the reason, as `atlas compare` refuses it.
    const pairs: { a: number; b: number; top1_agreement: number | null; jaccard: number | null; positions: number; not_pairable?: string }[] = [];
    const modelRow = (hash: string) => this.atlas.model(hash);
    const keyRows = (c: (typeof columns)[number]) => c.topk.map((row) => row.map((x) => (x.text !== null ? `t:${x.text}` : `i:${c.model.hash}:${x.id}`)));
    for (let i = 0; i < columns.length; i++) {
      for (let j = i + 1; j < columns.length; j++) {
        const a = columns[i]!;
        const b = columns[j]!;
        const ma = modelRow(a.model.hash);
        const mb = modelRow(b.model.hash);
        const problem = ma && mb ? indexPairingProblem(ma, mb) : null;
        if (problem !== null) {
          pairs.push({ a: a.id, b: b.id, top1_agreement: null, jaccard: null, positions: 0, not_pairable: `${problem}: feature ${feature} is not the same direction in both (use atlas compare --pair vocab)` });
          continue;
        }
        const shared = a.positions.filter((x) => x.free && b.positions[x.position]?.free).map((x) => x.position);
        if (a.status !== 'ok' || b.status !== 'ok' || shared.length === 0) {
          pairs.push({ a: a.id, b: b.id, top1_agreement: null, jaccard: null, positions: 0 });
          continue;
        }
        const agree = shared.filter((t) => a.positions[t]!.key === b.positions[t]!.key).length / shared.length;
        // meanJaccard works on ids; the keys (text or model-scoped ids) are mapped to shared small integers first.
        const intern = new Map<string, number>();
        const num = (k: string) => intern.get(k) ?? (intern.set(k, intern.size), intern.size - 1);
        const ka = keyRows(a).map((row) => row.map(num));
        const kb = keyRows(b).map((row) => row.map(num));
        pairs.push({ a: a.id, b: b.id, top1_agreement: agree, jaccard: meanJaccard(ka, kb, shared), positions: shared.length });
      }
    }
    // Per position: how many columns share each top-1 key (the page highlights keys shared by two or more).
    const maxT = Math.max(0, ...columns.map((c) => c.positions.length));
    const consensus = Array.from({ length: maxT }, (_, t) => {
      const counts = new Map<string, number>();
      for (const c of columns) {
        const x = c.positions[t];
        if (x?.free) counts.set(x.key, (counts.get(x.key) ?? 0) + 1);
      }
      let best: string | null = null;
      let n = 0;
      for (const [k, v] of counts) if (v > n) [best, n] = [k, v];
      return { position: t, key: best, count: n, shared: Object.fromEntries([...counts].filter(([, v]) => v > 1)) };
    });
    return {
      feature,
      hook: hook ?? null,
      model: model ?? null,
      settings: settings ?? null,
      truncated,
      columns: columns.map(({ keysets: _k, ...c }) => c),
      pairs,
      consensus,
    };
  }
}

/** Every percentile of a record as the CLI prints it (calibrate.ts formatPercentile), so the page never re-formats. */
function percentileTexts(rec: AtlasRecord): Record<string, string | null> | null {
  const p = rec.percentile;
  if (!p) return null;
  const f = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? null : formatPercentile(x));
  const stab = (rec as { stability?: { percentile?: { min: number; max: number } | null } | null }).stability?.percentile;
  return {
    continuous: f(p.continuous),
    decoded: f(p.decoded),
    random: f(p.random),
    skip_baseline: f(p.skip_baseline),
    refined: f(p.refined),
    exhaustive_best: f(p.exhaustive_repeated?.[0]),
    stability_min: f(stab?.min),
    stability_max: f(stab?.max),
  };
}
