/**
 * `atlas compare`: two record sets (queries A and B) paired feature by feature, and how much their visualizations
 * agree — the original's alignment claims ("block 1 alone already finds the same tokens as blocks 1-4", "a trained
 * model vs its untrained control", "the same features in a larger model") as numbers that cannot mislead:
 *
 * - each side is one model, and two different models are compared only when both queries name them;
 * - features are paired by index only within one embedding space (one model, or two models with the same embedding
 *   table, e.g. a model and its `random-model --keep-embeddings` control); across spaces index pairing is refused
 *   unless forced (`--pair index`, then flagged as arbitrary), and `--pair vocab` pairs A's feature f with B's
 *   records optimised along f's image under a ridge map between the two embedding tables (atlas build --map-from);
 * - every agreement has a measured chance level beside it: the same measure between each A feature and B's records
 *   of the *other* features (same settings);
 * - the rank correlation is of decoded activations' percentiles when the records carry them (else of the decoded
 *   activations), never of the continuous activation, which the l1 objective clamps near C.
 */
import { UserError } from '../errors.js';
import { canonicalJson } from './canonical.js';
import { HOOKS } from '../models/config.js';
import { parseBlockRange } from '../models/block-range.js';
import type { Atlas, AtlasModel, AtlasRecord, RecordFilter } from './store.js';

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


/** How A's features were paired with B's. */
export type PairMode = 'auto' | 'index' | 'vocab';

/**
 * Off-diagonal pairs per A record for the chance level: all of them up to this many other features in a settings
 * group; beyond it, the next CHANCE_SAMPLE features in feature order, cyclically (a deterministic sample).
 */
export const CHANCE_SAMPLE = 1023;

export interface CompareSide {
  id: number;
  model: string;
  blocks: [number, number];
  hook: string;
  status: 'ok' | 'failed';
  top1_text: string | null;
  /** Kept for old readers of --json; not used by any measure (the l1 objective clamps it near C). */
  continuous: number | null;
  decoded: number | null;
  /** Percentile of the decoded activation on real text; null without a reference. */
  decoded_percentile: number | null;
}

export interface ComparePair {
  select: string;
  feature: number | null;
  /** A's settings hash (with --pair vocab B's record has its own: its direction differs). */
  settings_hash: string;
  a: CompareSide;
  b: CompareSide;
  /** Null when either record failed. */
  top1_agreement: number | null;
  jaccard: number | null;
  /** This A record against B's records of the other features (same settings): its own chance level. */
  chance_top1: number | null;
  chance_jaccard: number | null;
}

export interface CompareChance {
  /** Mean top-1 agreement of A's records with B's records of *other* features (same settings group). */
  top1_agreement: number;
  jaccard: number;
  /** Off-diagonal pairs averaged over. */
  pairs: number;
  /** True when a group was larger than CHANCE_SAMPLE + 1 and its off-diagonal pairs were sampled. */
  sampled: boolean;
}

export interface CompareSideInfo {
  query: string;
  records: number;
  /** The model(s) the side's records belong to (one, after compareAtlas's checks). */
  models: { hash: string; name: string }[];
}

export interface CompareReport {
  a: CompareSideInfo;
  b: CompareSideInfo;
  /** How features were paired: by index (same selection) or through a vocabulary map (A's feature → B's direction). */
  pairing: 'index' | 'vocab';
  /** Why that pairing is sound, or the warning that it is not (forced). */
  pairing_note: string;
  /** With --pair vocab: the stored ridge map's penalty and fit. */
  map: { lambda: number; r2: number; tokens: number } | null;
  warnings: string[];
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
  /** The measured chance level of the two means; null with fewer than two compared pairs in every settings group. */
  chance: CompareChance | null;
  /** Spearman correlation across compared pairs of `spearman_of` (null under two pairs or a constant side). */
  spearman: number | null;
  spearman_of: 'decoded percentile' | 'decoded activation';
  features: ComparePair[];
}

/** Records' settings with the objective's direction and kind left out: what a mapped-direction record shares with A's. */
function settingsBesideDirection(r: AtlasRecord): string {
  const { direction: _d, objective: _o, ...rest } = r.settings as Record<string, unknown>;
  return canonicalJson(rest);
}

/** The newest record per key (null key: not pairable, left out). */
function newestBy(records: Iterable<AtlasRecord>, key: (r: AtlasRecord) => string | null): Map<string, AtlasRecord> {
  const out = new Map<string, AtlasRecord>();
  for (const r of records) {
    const k = key(r);
    if (k === null) continue;
    const prev = out.get(k);
    if (!prev || r.id > prev.id) out.set(k, r);
  }
  return out;
}

function side(r: AtlasRecord): CompareSide {
  const ok = r.status === 'ok';
  return {
    id: r.id,
    model: r.model.name,
    blocks: r.blocks,
    hook: r.hook,
    status: r.status,
    top1_text: ok ? (r.topk_text[0] ?? null) : null,
    continuous: r.activation.continuous,
    decoded: ok ? r.activation.decoded : null,
    decoded_percentile: ok ? (r.percentile?.decoded ?? null) : null,
  };
}

export interface CompareOptions {
  /**
   * Vocabulary pairing: B's direction records are A's feature f when their direction's hash maps to f here (the
   * stored mapped directions of one map A → B). Without it, records pair by selection and settings hash.
   */
  mapped?: Map<string, number>;
  map?: { lambda: number; r2: number; tokens: number };
  pairingNote?: string;
  warnings?: string[];
}

/** Mean off-diagonal agreement within each settings group (see CHANCE_SAMPLE), written into the pairs. */
function chanceLevel(pairs: ComparePair[], records: Map<ComparePair, { a: AtlasRecord; b: AtlasRecord; group: string }>): CompareChance | null {
  const groups = new Map<string, ComparePair[]>();
  for (const p of pairs) {
    const g = records.get(p)!.group;
    let list = groups.get(g);
    if (!list) groups.set(g, (list = []));
    list.push(p);
  }
  let top1 = 0;
  let jac = 0;
  let n = 0;
  let sampled = false;
  for (const list of groups.values()) {
    const m = list.length;
    if (m < 2) continue;
    const others = Math.min(m - 1, CHANCE_SAMPLE);
    if (others < m - 1) sampled = true;
    for (let i = 0; i < m; i++) {
      const { a } = records.get(list[i]!)!;
      const positions = a.optimized ?? a.free;
      let t = 0;
      let j = 0;
      for (let s = 1; s <= others; s++) {
        const { b } = records.get(list[(i + s) % m]!)!;
        t += top1Agreement(a.topk, b.topk, positions);
        j += meanJaccard(a.topk, b.topk, positions);
      }
      list[i]!.chance_top1 = t / others;
      list[i]!.chance_jaccard = j / others;
      top1 += t;
      jac += j;
      n += others;
    }
  }
  return n === 0 ? null : { top1_agreement: top1 / n, jaccard: jac / n, pairs: n, sampled };
}

function modelsOf(records: AtlasRecord[]): { hash: string; name: string }[] {
  const out = new Map<string, { hash: string; name: string }>();
  for (const r of records) out.set(r.model.hash, { hash: r.model.hash, name: r.model.name });
  return [...out.values()];
}

/** Compare two sets of records already read (the library entry; compareAtlas reads them from an atlas and checks them). */
export function compareRecords(aRecords: Iterable<AtlasRecord>, bRecords: Iterable<AtlasRecord>, queries = { a: '', b: '' }, opts: CompareOptions = {}): CompareReport {
  const aList = [...aRecords];
  const bList = [...bRecords];
  const mapped = opts.mapped;
  // Index pairing: same selection, same settings. Vocab pairing: A's [:, :, f] with B's direction record whose
  // direction is f's mapped image, the rest of the settings equal.
  // When each side holds one hook (one block range), the two are compared across it — that is what the queries ask
  // for (--a blocks=1 --b blocks=5). When a side holds several, records pair only within the same hook (block range):
  // otherwise block 1's mlp neuron 3 would silently pair with block 5's resid feature 3.
  const one = (f: (r: AtlasRecord) => string) => new Set(aList.map(f)).size <= 1 && new Set(bList.map(f)).size <= 1;
  const hookOf = (r: AtlasRecord) => r.hook;
  const blocksOf = (r: AtlasRecord) => `${r.blocks[0]}-${r.blocks[1]}`;
  const acrossHooks = one(hookOf);
  const acrossBlocks = one(blocksOf);
  const within = (r: AtlasRecord) => `${acrossHooks ? '' : hookOf(r)}\u0000${acrossBlocks ? '' : blocksOf(r)}\u0000`;
  const keyA = mapped
    ? (r: AtlasRecord) => (r.feature === null || r.settings.direction !== undefined ? null : `${within(r)}${r.feature}\u0000${settingsBesideDirection(r)}`)
    : (r: AtlasRecord) => `${within(r)}${r.select}\u0000${r.settings_hash}`;
  const keyB = mapped
    ? (r: AtlasRecord) => {
        const f = typeof r.settings.direction === 'string' ? mapped.get(r.settings.direction) : undefined;
        return f === undefined ? null : `${within(r)}${f}\u0000${settingsBesideDirection(r)}`;
      }
    : keyA;
  const A = newestBy(aList, keyA);
  const B = newestBy(bList, keyB);
  const features: ComparePair[] = [];
  const held = new Map<ComparePair, { a: AtlasRecord; b: AtlasRecord; group: string }>();
  for (const [key, a] of A) {
    const b = B.get(key);
    if (!b) continue;
    const ok = a.status === 'ok' && b.status === 'ok' && a.topk.length > 0 && b.topk.length > 0;
    // Only optimised positions count (records from before `optimized` existed: every free position).
    const positions = a.optimized ?? a.free;
    const pair: ComparePair = {
      select: a.select,
      feature: a.feature,
      settings_hash: a.settings_hash,
      a: side(a),
      b: side(b),
      top1_agreement: ok ? top1Agreement(a.topk, b.topk, positions) : null,
      jaccard: ok ? meanJaccard(a.topk, b.topk, positions) : null,
      chance_top1: null,
      chance_jaccard: null,
    };
    features.push(pair);
    // A chance group: the same hook/block-range bucket and settings, any selection.
    if (ok) held.set(pair, { a, b, group: `${within(a)}${mapped ? settingsBesideDirection(a) : a.settings_hash}` });
  }
  features.sort((p, q) => (p.feature ?? Infinity) - (q.feature ?? Infinity) || p.select.localeCompare(q.select) || p.settings_hash.localeCompare(q.settings_hash));
  const compared = features.filter((p) => p.top1_agreement !== null);
  // Index pairing groups by settings hash: within a group the selections differ (features, positions), and a chance
  // pair is an A selection with another selection's B record.
  const chance = chanceLevel(compared, held);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
  // One measure for all pairs: percentiles only when every compared pair has them on both sides.
  const usePct = compared.length > 0 && compared.every((p) => p.a.decoded_percentile !== null && p.b.decoded_percentile !== null);
  const withAct = usePct ? compared : compared.filter((p) => p.a.decoded !== null && p.b.decoded !== null);
  const value = (s: CompareSide) => (usePct ? s.decoded_percentile! : s.decoded!);
  return {
    a: { query: queries.a, records: A.size, models: modelsOf(aList) },
    b: { query: queries.b, records: B.size, models: modelsOf(bList) },
    pairing: mapped ? 'vocab' : 'index',
    pairing_note: opts.pairingNote ?? (mapped ? 'through a vocabulary map' : 'by selection and settings'),
    map: opts.map ?? null,
    warnings: opts.warnings ?? [],
    pairs: features.length,
    compared: compared.length,
    failed: features.length - compared.length,
    only_a: A.size - features.length,
    only_b: B.size - features.length,
    top1_agreement: mean(compared.map((p) => p.top1_agreement!)),
    jaccard: mean(compared.map((p) => p.jaccard!)),
    chance,
    spearman: spearman(withAct.map((p) => value(p.a)), withAct.map((p) => value(p.b))),
    spearman_of: usePct ? 'decoded percentile' : 'decoded activation',
    features,
  };
}

const label = (m: Pick<AtlasModel, 'hash' | 'name'>) => `${m.name} (${m.hash.slice(0, 12)})`;

/** Hooks whose features are coordinates of the residual stream, i.e. of the embedding table's space. */
const RESIDUAL_HOOKS = new Set(['resid', 'attn_out', 'mlp_out', 'attn']);

/**
 * Why two different models' features cannot be paired by index, or null when they can: a feature index names the
 * same direction only in one embedding space (same width and the same embedding table, as a model and its
 * `random-model --keep-embeddings` control). Also the viewer's compare page asks this.
 */
export function indexPairingProblem(ma: AtlasModel, mb: AtlasModel): string | null {
  if (ma.hash === mb.hash) return null;
  if (ma.dim !== null && mb.dim !== null && ma.dim !== mb.dim) return `${label(ma)} has width ${ma.dim}, ${label(mb)} ${mb.dim}`;
  if (ma.embedding_hash === null || mb.embedding_hash === null) {
    const unknown = ma.embedding_hash === null ? ma : mb;
    return `the embedding table of ${label(unknown)} is not recorded (added before atlas schema v4; atlas build with it once records it)`;
  }
  if (ma.embedding_hash !== mb.embedding_hash) return `${label(ma)} and ${label(mb)} have different embedding tables`;
  return null;
}

/**
 * Read both sides, check that the pairing can mean something (see the module comment), and compare. Every refusal is
 * one UserError naming the query or flag.
 */
export function compareAtlas(atlas: Atlas, a: RecordFilter, b: RecordFilter, pair: PairMode = 'auto'): CompareReport {
  const qa = formatQuery(a);
  const qb = formatQuery(b);
  const aRecords = [...atlas.records(a)];
  if (aRecords.length === 0) throw new UserError(`a ${qa}: no records in ${atlas.file} match`, undefined, 'a');
  const bRecords = [...atlas.records(b)];
  if (bRecords.length === 0) throw new UserError(`b ${qb}: no records in ${atlas.file} match`, undefined, 'b');

  // One model per side: records of two models under one selection would be paired by whichever is newer.
  for (const [name, q, recs] of [['a', qa, aRecords], ['b', qb, bRecords]] as const) {
    const ms = modelsOf(recs);
    if (ms.length > 1) {
      throw new UserError(`${name} ${q}: matches records of ${ms.length} models (${ms.map(label).join(', ')}); name one with model=NAME or model=HASH-PREFIX`, undefined, name);
    }
  }
  const ma = atlas.model(aRecords[0]!.model.hash)!;
  const mb = atlas.model(bRecords[0]!.model.hash)!;
  const same = ma.hash === mb.hash;
  if (!same && (a.model === undefined || b.model === undefined)) {
    throw new UserError(
      `atlas compare: --a ${qa} is ${label(ma)} but --b ${qb} is ${label(mb)}; to compare two models name the model on both sides (model=)`,
    );
  }
  const hooks = new Set([...aRecords, ...bRecords].map((r) => r.hook));
  const warnings: string[] = [];

  if (pair === 'vocab') {
    if (same) throw new UserError(`pair: vocab maps between two models; both sides are ${label(ma)} (use --pair auto)`, undefined, 'pair');
    if (ma.vocab_hash !== null && mb.vocab_hash !== null && ma.vocab_hash !== mb.vocab_hash) {
      throw new UserError(`pair: ${label(ma)} and ${label(mb)} do not share a tokenizer (different token strings); vocab pairing needs one`, undefined, 'pair');
    }
    const map = atlas.directionMap(ma.hash, mb.hash);
    if (!map) {
      throw new UserError(
        `pair: no vocabulary map from ${label(ma)} to ${label(mb)} in ${atlas.file}; build B's mapped records first: atlas build --model ${mb.name} --map-from ${ma.name} --features … --db ${atlas.file}`,
        undefined,
        'pair',
      );
    }
    const mapped = new Map(atlas.mappedDirections(map.id).map((d) => [d.vector_hash, d.feature] as const));
    const objectives = new Set(aRecords.map((r) => String(r.settings.objective)));
    if ([...objectives].some((o) => o !== 'sum')) {
      warnings.push(
        `A's records optimise ${[...objectives].join('/')}, B's the mapped direction's dot product (unbounded, like --objective sum): build A with --objective sum for a like-for-like pairing`,
      );
    }
    const report = compareRecords(aRecords, bRecords, { a: qa, b: qb }, {
      mapped,
      map: { lambda: map.lambda, r2: map.r2, tokens: map.tokens },
      pairingNote: `A's feature f ↔ B's record along f's image under the ridge map ${ma.name} → ${mb.name} (R² ${map.r2.toFixed(3)} over ${map.tokens} shared tokens, λ ${map.lambda.toPrecision(3)})`,
      warnings,
    });
    if (report.pairs === 0) {
      throw new UserError(
        `atlas compare: no record of --a ${qa} pairs with a mapped-direction record of --b ${qb} (same settings besides the direction; ${mapped.size} features mapped); build them with atlas build --model ${mb.name} --map-from ${ma.name}`,
      );
    }
    return report;
  }

  // Index pairing: sound within one embedding space.
  let note: string;
  if (same) note = `by index within one model, ${label(ma)}`;
  else {
    const problem = indexPairingProblem(ma, mb);
    if (problem !== null && pair !== 'index') {
      throw new UserError(
        `pair: ${problem}, so feature indices are not the same directions; use --pair vocab (after atlas build --model ${mb.name} --map-from ${ma.name}), or --pair index to pair by index anyway`,
        undefined,
        'pair',
      );
    }
    if (problem !== null) {
      note = `by index, forced (--pair index): ${problem}`;
      warnings.push('index pairing across embedding spaces is arbitrary: agreement here is not evidence of shared features; compare it with the chance level');
    } else note = `by index: ${label(ma)} and ${label(mb)} share their embedding table (${ma.embedding_hash!.slice(0, 12)})`;
    if ([...hooks].some((h) => !RESIDUAL_HOOKS.has(h))) {
      warnings.push(`${[...hooks].filter((h) => !RESIDUAL_HOOKS.has(h)).join(', ')} features are neurons of each model's own blocks: no embedding table aligns them across models`);
    }
  }
  const report = compareRecords(aRecords, bRecords, { a: qa, b: qb }, { pairingNote: note, warnings });
  if (report.pairs === 0) throw new UserError(`atlas compare: no record of --a ${qa} pairs with one of --b ${qb} (same selection and settings)`);
  return report;
}
