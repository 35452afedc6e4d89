/**
 * `atlas compare`: two record sets (queries A and B) paired by selection and identical settings, and how much their
 * visualizations agree — the original's alignment claims ("block 1 alone already finds the same tokens as blocks
 * 1-4", "a trained model vs its untrained control") as numbers.
 */
import { UserError } from '../errors.js';
import { HOOKS } from '../models/config.js';
import { parseBlockRange } from '../models/block-range.js';
import type { Atlas, AtlasRecord, RecordFilter } from './store.js';

const QUERY_KEYS = ['model', 'blocks', 'hook', 'settings'] as const;

/** `model=stories260K.bin,blocks=1-4,hook=resid` → a RecordFilter. An empty query matches everything. */
export function parseQuery(text: string, param = 'a'): RecordFilter {
  const fail = (problem: string) => new UserError(`${param}: ${problem}`, undefined, param);
  const out: RecordFilter = {};
  const seen = new Set<string>();
  for (const part of text.split(',').map((s) => s.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw fail(`expected key=value filters (keys: ${QUERY_KEYS.join(', ')}), got "${part}"`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!(QUERY_KEYS as readonly string[]).includes(key)) throw fail(`unknown key "${key}" (keys: ${QUERY_KEYS.join(', ')})`);
    if (seen.has(key)) throw fail(`"${key}" given twice`);
    seen.add(key);
    if (value === '') throw fail(`${key}= needs a value`);
    if (key === 'model') out.model = value;
    else if (key === 'blocks') out.blocks = parseBlockRange(value, `${param} blocks=`);
    else if (key === 'hook') {
      if (!(HOOKS as readonly string[]).includes(value)) throw fail(`hook "${value}" is not one of ${HOOKS.join(', ')}`);
      out.hook = value;
    } else {
      if (!/^[0-9a-fA-F]{1,64}$/.test(value)) throw fail(`settings= takes a hash prefix (hex digits), got "${value}"`);
      out.settings = value;
    }
  }
  return out;
}

export function formatQuery(f: RecordFilter): string {
  const parts: string[] = [];
  if (f.model !== undefined) parts.push(`model=${f.model}`);
  if (f.blocks) parts.push(`blocks=${f.blocks[0] === f.blocks[1] ? f.blocks[0] : `${f.blocks[0]}-${f.blocks[1]}`}`);
  if (f.hook !== undefined) parts.push(`hook=${f.hook}`);
  if (f.settings !== undefined) parts.push(`settings=${f.settings}`);
  return parts.join(',') || '(all)';
}

/** Share of positions whose top-1 token is equal. */
export function top1Agreement(a: number[][], b: number[][], positions: number[]): number {
  if (positions.length === 0) return 0;
  return positions.filter((t) => a[0]?.[t] !== undefined && a[0][t] === b[0]?.[t]).length / positions.length;
}

/** Mean over positions of the Jaccard index of the two top-k token sets. */
export function meanJaccard(a: number[][], b: number[][], positions: number[]): number {
  if (positions.length === 0) return 0;
  let sum = 0;
  for (const t of positions) {
    const sa = new Set(a.map((row) => row[t]!));
    const sb = new Set(b.map((row) => row[t]!));
    let inter = 0;
    for (const x of sa) if (sb.has(x)) inter++;
    const union = sa.size + sb.size - inter;
    sum += union === 0 ? 1 : inter / union;
  }
  return sum / positions.length;
}

/** Average ranks (1-based), ties sharing the mean of their ranks. */
export function ranks(xs: number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
  const out = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) out[order[k]![1]] = r;
    i = j + 1;
  }
  return out;
}

export function pearson(x: number[], y: number[]): number | null {
  const n = x.length;
  if (n < 2 || y.length !== n) return null;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  return sxy / Math.sqrt(sxx * syy);
}

/** Spearman's rank correlation (Pearson on average ranks); null with fewer than two pairs or a constant side. */
export function spearman(x: number[], y: number[]): number | null {
  return pearson(ranks(x), ranks(y));
}

export interface CompareSide {
  id: number;
  model: string;
  blocks: [number, number];
  hook: string;
  status: 'ok' | 'failed';
  top1_text: string | null;
  continuous: number | null;
}

export interface ComparePair {
  select: string;
  feature: number | null;
  settings_hash: string;
  a: CompareSide;
  b: CompareSide;
  /** Null when either record failed. */
  top1_agreement: number | null;
  jaccard: number | null;
}

export interface CompareReport {
  a: { query: string; records: number };
  b: { query: string; records: number };
  /** Selections (with identical settings) present on both sides. */
  pairs: number;
  /** Pairs where both records are ok: the ones the averages are over. */
  compared: number;
  /** Pairs left out because a record failed. */
  failed: number;
  only_a: number;
  only_b: number;
  /** Means over compared pairs. */
  top1_agreement: number | null;
  jaccard: number | null;
  /** Spearman correlation of the continuous activations across compared pairs (null under two pairs). */
  spearman: number | null;
  features: ComparePair[];
}

/** The newest record per (selection, settings). */
function newestBySelection(records: Iterable<AtlasRecord>): Map<string, AtlasRecord> {
  const out = new Map<string, AtlasRecord>();
  for (const r of records) {
    const key = `${r.select}\u0000${r.settings_hash}`;
    const prev = out.get(key);
    if (!prev || r.id > prev.id) out.set(key, r);
  }
  return out;
}

function side(r: AtlasRecord): CompareSide {
  return {
    id: r.id,
    model: r.model.name,
    blocks: r.blocks,
    hook: r.hook,
    status: r.status,
    top1_text: r.status === 'ok' ? (r.topk_text[0] ?? null) : null,
    continuous: r.activation.continuous,
  };
}

/** Compare two sets of records already read (the library entry; compareAtlas reads them from an atlas). */
export function compareRecords(aRecords: Iterable<AtlasRecord>, bRecords: Iterable<AtlasRecord>, queries = { a: '', b: '' }): CompareReport {
  const A = newestBySelection(aRecords);
  const B = newestBySelection(bRecords);
  const features: ComparePair[] = [];
  for (const [key, a] of A) {
    const b = B.get(key);
    if (!b) continue;
    const ok = a.status === 'ok' && b.status === 'ok' && a.topk.length > 0 && b.topk.length > 0;
    features.push({
      select: a.select,
      feature: a.feature,
      settings_hash: a.settings_hash,
      a: side(a),
      b: side(b),
      // Only optimised positions count (records from before `optimized` existed: every free position).
      top1_agreement: ok ? top1Agreement(a.topk, b.topk, a.optimized ?? a.free) : null,
      jaccard: ok ? meanJaccard(a.topk, b.topk, a.optimized ?? a.free) : null,
    });
  }
  features.sort((p, q) => (p.feature ?? Infinity) - (q.feature ?? Infinity) || p.select.localeCompare(q.select) || p.settings_hash.localeCompare(q.settings_hash));
  const compared = features.filter((p) => p.top1_agreement !== null);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
  const withAct = compared.filter((p) => p.a.continuous !== null && p.b.continuous !== null);
  return {
    a: { query: queries.a, records: A.size },
    b: { query: queries.b, records: B.size },
    pairs: features.length,
    compared: compared.length,
    failed: features.length - compared.length,
    only_a: A.size - features.length,
    only_b: B.size - features.length,
    top1_agreement: mean(compared.map((p) => p.top1_agreement!)),
    jaccard: mean(compared.map((p) => p.jaccard!)),
    spearman: spearman(withAct.map((p) => p.a.continuous!), withAct.map((p) => p.b.continuous!)),
    features,
  };
}

export function compareAtlas(atlas: Atlas, a: RecordFilter, b: RecordFilter): CompareReport {
  const qa = formatQuery(a);
  const qb = formatQuery(b);
  const aRecords = [...atlas.records(a)];
  if (aRecords.length === 0) throw new UserError(`a ${qa}: no records in ${atlas.file} match`, undefined, 'a');
  const bRecords = [...atlas.records(b)];
  if (bRecords.length === 0) throw new UserError(`b ${qb}: no records in ${atlas.file} match`, undefined, 'b');
  const report = compareRecords(aRecords, bRecords, { a: qa, b: qb });
  if (report.pairs === 0) throw new UserError(`atlas compare: no record of --a ${qa} pairs with one of --b ${qb} (same selection and settings)`);
  return report;
}
