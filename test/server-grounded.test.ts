/**
 * The viewer's grounded API (issue 14): grid cells with decoded percentile, skip share, stability and verdict codes;
 * sorting by those in SQL and filtering by verdict, paged by offset; the atlas-wide search; a record's corpus scan
 * (the one over the corpus its percentiles were measured on) and its controls (same run on same-shape models). The
 * records are hand-made, carrying issue 13's contract fields (skip, stability, logit_effects, new finding codes),
 * and every expectation is computed here from the records inserted, not copied from the server's answers.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { hashFile } from '../src/atlas/hash.js';
import { insertScanFeatures, upsertScan } from '../src/atlas/scans.js';
import { Atlas } from '../src/atlas/store.js';
import { formatPercentile } from '../src/features/calibrate.js';
import { Moments, sortedCopy, summarize } from '../src/features/quantiles.js';
import type { FeatureScan, ScanExample } from '../src/features/scan.js';
import type { RunResult } from '../src/features/visualize.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { modelPath } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-grounded-'));
const DB = path.join(dir, 'atlas.db');
const MODEL = modelPath('stories260K.bin');
const CONTROL = 'c'.repeat(64);
const SAME_SHAPE = 'd'.repeat(64);
const OTHER_SHAPE = 'e'.repeat(64);
const S = { tokens: 4, steps: 10, lr: 2, objective: 'l1', seed: 0 };
const N = 40;
const CORPUS_A = 'a1'.repeat(32);
const CORPUS_B = 'b2'.repeat(32);

let server: RunningServer;
let realHash: string;
let settings: string;
const made: RunResult[] = [];

type Extra = Partial<RunResult> & Record<string, unknown>;

/** A result of feature f; the fields issue 13 adds vary with f so that sorting and filtering have work to do. */
function result(f: number, opts: { ids?: number[]; extra?: Extra } = {}): RunResult {
  const ids = opts.ids ?? [10 + f, 20 + f, 30 + f, 40 + f];
  const calibrated = f % 5 !== 4;
  const pct = calibrated ? ((f * 37) % 101) - (f % 3) * 0.013 : null;
  const verdict: { code: string; message: string }[] = [];
  if (pct !== null && pct >= 99) verdict.push({ code: 'decoded-high', message: 'high' });
  if (pct !== null && pct < 90) verdict.push({ code: 'decoded-typical', message: 'typical' });
  if (f % 4 === 0) verdict.push({ code: 'skip-path', message: 'explained by the skip path' });
  if (f % 6 === 1) verdict.push({ code: 'unstable', message: 'unstable across seeds' });
  if (!calibrated) verdict.push({ code: 'uncalibrated', message: 'no real-data percentile' });
  const r = {
    select: `[:, :, ${f}]`,
    blocks: [1, 1],
    hook: 'resid',
    settings: {},
    ids,
    free: [0, 1, 2, 3],
    topk: [ids, ids.map((x) => x + 100)],
    topk_text: [`top ${f}`, f === 17 ? 'needle in rank two' : `second ${f}`],
    cosine: [0.5, 0.5, 0.5, 0.5],
    cosine_scale: 0.4,
    activation: { continuous: 10 + f, decoded: f / 4, random: 0.1 },
    objective: { initial: 10, final: 2 },
    baseline: null,
    loss: [[0, 10]],
    status: 'ok',
    timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 },
    ...(pct === null
      ? { percentile: null }
      : { percentile: { continuous: 100, decoded: pct, random: 40, skip_baseline: null, refined: null, exhaustive_repeated: null, exhaustive_context: null }, calibration: { source: 'corpus', corpus: 'a.txt', corpus_hash: CORPUS_A, windows: 500, p50: 0, p90: 1, p99: 2, max: 3 } }),
    // Skip share on most records, "not applicable" on some, absent on the rest; stability on every third.
    ...(f % 7 === 6 ? {} : { skip: f % 7 === 5 ? { share: null, not_applicable: 'mlp hook' } : { share: ((f * 13) % 17) / 17 } }),
    ...(f % 3 === 0 ? { stability: { seeds: 3, agreement: ((f * 11) % 10) / 10, decoded: { min: 0, max: 1, mean: 0.5, std: 0.1 }, percentile: { min: 90.5, max: 99.95 }, best: 1 } } : {}),
    verdict,
    ...opts.extra,
  } as unknown as RunResult;
  return r;
}

function example(f: number, window: number, position: number, activation: number): ScanExample {
  const ids = [1, 300 + f, 301, 302, 303, 304];
  const token_activations = ids.map((_, t) => (t === position ? activation : activation / (2 + t)));
  return { feature: f, window, story: window, start: 0, ids, text: 'x', position, activation, token_activations };
}

function featureScan(f: number, shift: number): FeatureScan {
  const values = Array.from({ length: 200 }, (_, i) => Math.sin(i * 0.7 + f) + shift);
  const m = new Moments();
  for (const v of values) m.add(v);
  const tokens = summarize(m, sortedCopy(values), 1);
  const m0 = new Moments();
  m0.add(5);
  return {
    feature: f,
    tokens,
    position0: summarize(m0, sortedCopy([5]), 1),
    top: [example(f, 0, 2, tokens.max), example(f, 1, 3, tokens.max * 0.9)],
    top_position0: [example(f, 2, 0, 5)],
    bins: [{ label: 'p0-p50', lo: tokens.min, hi: tokens.p50, examples: [example(f, 3, 1, tokens.min)] }],
  };
}

before(async () => {
  const atlas = Atlas.open(DB);
  realHash = hashFile(MODEL);
  const st = statSync(MODEL, { bigint: true });
  atlas.rememberFileHash(realpathSync(MODEL), Number(st.size), st.mtimeNs.toString(), realHash);
  const shape = { format: 'llama2c', architecture: 'llama', n_layers: 5, dim: 64, vocab: 512 };
  atlas.upsertModel({ hash: realHash, name: 'stories260K.bin', ...shape });
  atlas.upsertModel({ hash: CONTROL, name: 'stories260K-random', ...shape, format: 'hf' });
  atlas.upsertModel({ hash: SAME_SHAPE, name: 'sibling.bin', ...shape });
  atlas.upsertModel({ hash: OTHER_SHAPE, name: 'wide-random.bin', ...shape, dim: 128 });
  settings = atlas.upsertSettings(S);
  for (let f = 0; f < N; f++) made.push(result(f));
  atlas.insertResults(realHash, settings, made);
  // Controls of feature 3: the untrained one agrees at 2 of 4 positions; the sibling everywhere; the wider model is
  // not the same shape and must not be listed; nor a record of another selection or other settings.
  atlas.insertResults(CONTROL, settings, [result(3, { ids: [13, 23, 99, 98] }), result(5)]);
  atlas.insertResults(SAME_SHAPE, settings, [result(3)]);
  atlas.insertResults(OTHER_SHAPE, settings, [result(3)]);
  atlas.insertResults(CONTROL, atlas.upsertSettings({ ...S, seed: 1 }), [result(3)]);
  // Another group, for the atlas-wide search, with a refined prompt whose text is searched too.
  const refined = { method: 'gcg', ids: [1, 2, 3, 4], text: 'a refined NEEDLE', activation: 9, cross_entropy: 3, start_ids: [5, 6, 7, 8], start_activation: 4, start_cross_entropy: 5, steps: 10, evaluations: 100, improvements: 3, rejected: 0, converged: true, retokenizes: true, settings: {} };
  atlas.insertResults(realHash, settings, [{ ...result(2), blocks: [1, 3], hook: 'mlp', refined } as unknown as RunResult]);

  // Scans of blocks 1 resid: over corpus A (the records' calibration corpus), a newer one over corpus B, and a newer
  // direction scan; the record page must show corpus A's.
  const scanSettings = (direction: string | null) => atlas.upsertSettings({ kind: 'scan', window: 64, bos: true, topk: 10, bin_examples: 3, direction });
  const key = (corpus: string, sh: string) => ({ model_hash: realHash, blocks: [1, 1] as [number, number], hook: 'resid', corpus_hash: corpus, settings_hash: sh });
  const a = upsertScan(atlas, key(CORPUS_A, scanSettings(null)), { corpus_name: 'a.txt', windows: 20, tokens: 220 });
  insertScanFeatures(atlas, a, [featureScan(3, 0), featureScan(4, 0)]);
  const b = upsertScan(atlas, key(CORPUS_B, scanSettings(null)), { corpus_name: 'b.txt', windows: 20, tokens: 220 });
  insertScanFeatures(atlas, b, [featureScan(3, 100), featureScan(4, 100)]);
  const d = upsertScan(atlas, key(CORPUS_A, scanSettings('f'.repeat(64))), { corpus_name: 'a.txt', windows: 20, tokens: 220 });
  insertScanFeatures(atlas, d, [featureScan(3, 1000)]);
  atlas.close();
  server = await startServer({ db: DB, port: 0 });
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function get(p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: server.port, path: p, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      })
      .on('error', reject);
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function json(p: string, status = 200): Promise<any> {
  const r = await get(p);
  assert.equal(r.status, status, `${p}: ${r.body}`);
  return JSON.parse(r.body);
}

const grid = (extra: string) => `/api/grid?model=stories260K.bin&blocks=1&hook=resid${extra}`;
/* eslint-disable @typescript-eslint/no-explicit-any */
const pctOf = (r: RunResult) => (r as any).percentile?.decoded ?? null;
const skipOf = (r: RunResult) => (r as any).skip?.share ?? null;
const stabOf = (r: RunResult) => (r as any).stability?.agreement ?? null;
const codesOf = (r: RunResult) => ((r as any).verdict as { code: string }[]).map((v) => v.code);
/* eslint-enable @typescript-eslint/no-explicit-any */

/** The expected order: records with the value first, by value (ties by feature), then the rest by feature. */
function expectedOrder(key: (r: RunResult) => number | null, desc: boolean, keep: (r: RunResult) => boolean = () => true): number[] {
  const feat = (r: RunResult) => Number(/\d+/.exec(r.select)![0]);
  const rs = made.filter(keep);
  const some = rs.filter((r) => key(r) !== null).sort((a, b) => (desc ? key(b)! - key(a)! : key(a)! - key(b)!) || feat(a) - feat(b));
  const none = rs.filter((r) => key(r) === null).sort((a, b) => feat(a) - feat(b));
  return [...some, ...none].map(feat);
}

test('grid cells carry the decoded percentile (and its text), skip share, stability and verdict codes', async () => {
  const g = await json(grid('&limit=500'));
  assert.equal(g.cells.length, N);
  for (const c of g.cells) {
    const r = made[c.feature]!;
    assert.equal(c.pct_decoded, pctOf(r), `feature ${c.feature}`);
    assert.equal(c.pct_text, pctOf(r) === null ? null : formatPercentile(pctOf(r)));
    assert.equal(c.skip_share, skipOf(r));
    assert.equal(c.stability, stabOf(r));
    assert.deepEqual(c.verdict, codesOf(r));
  }
  const counts = new Map<string, number>();
  for (const r of made) for (const code of new Set(codesOf(r))) counts.set(code, (counts.get(code) ?? 0) + 1);
  assert.deepEqual(
    g.verdict_counts,
    [...counts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([code, records]) => ({ code, records })),
  );
});

test('grid sorts by percentile, skip share and stability in SQL (missing values last), pages by offset', async () => {
  for (const [sort, key] of [
    ['percentile', pctOf],
    ['skip', skipOf],
    ['stability', stabOf],
  ] as const) {
    for (const order of ['desc', 'asc'] as const) {
      const page = await json(grid(`&sort=${sort}&order=${order}&limit=500`));
      assert.equal(page.paging, 'offset');
      assert.deepEqual(
        page.cells.map((c: { feature: number }) => c.feature),
        expectedOrder(key, order === 'desc'),
        `${sort} ${order}`,
      );
    }
  }
  // Descending is the default for a sorted grid; pages of 7 by offset put the whole order back together.
  const want = expectedOrder(pctOf, true);
  const got: number[] = [];
  let offset: number | null = 0;
  let pages = 0;
  while (offset !== null) {
    const page: { cells: { feature: number }[]; next_offset: number | null; prev_offset: number | null; matched: number } = await json(grid(`&sort=percentile&limit=7&offset=${offset}`));
    assert.equal(page.matched, N);
    assert.equal(page.prev_offset, offset === 0 ? null : offset - 7);
    got.push(...page.cells.map((c) => c.feature));
    offset = page.next_offset;
    pages++;
  }
  assert.deepEqual(got, want);
  assert.equal(pages, Math.ceil(N / 7));
});

test('grid filters by verdict code (with sorting and the top-1 search), counting only the matches', async () => {
  for (const code of ['skip-path', 'unstable', 'uncalibrated', 'decoded-high']) {
    const page = await json(grid(`&verdict=${code}&limit=500`));
    const want = made.filter((r) => codesOf(r).includes(code)).map((r) => Number(/\d+/.exec(r.select)![0]));
    assert.deepEqual(
      page.cells.map((c: { feature: number }) => c.feature),
      want,
      code,
    );
    assert.equal(page.matched, want.length);
  }
  const sorted = await json(grid('&verdict=skip-path&sort=skip&limit=500'));
  assert.deepEqual(
    sorted.cells.map((c: { feature: number }) => c.feature),
    expectedOrder(skipOf, true, (r) => codesOf(r).includes('skip-path')),
  );
  const both = await json(grid('&verdict=skip-path&q=top%202&limit=500'));
  assert.deepEqual(
    both.cells.map((c: { feature: number }) => c.feature),
    [20, 24, 28],
  );
  const none = await json(grid('&verdict=no-such-code'));
  assert.deepEqual([none.matched, none.cells.length, none.next_offset], [0, 0, null]);
});

test('grid and search refuse bad sort, order, verdict, offset and mixed paging with a one-line 400', async () => {
  const bad = [
    grid('&sort=bogus'),
    grid('&sort='),
    grid('&order=up'),
    grid('&verdict=Decoded_High'),
    grid('&verdict='),
    grid(`&verdict=${'a'.repeat(41)}`),
    grid('&sort=skip&offset=-1'),
    grid('&sort=skip&offset=x'),
    grid('&sort=skip&after=3'),
    grid('&verdict=unstable&before=3'),
    grid('&offset=5&after=3'),
    '/api/search',
    '/api/search?q=',
    `/api/search?q=${'x'.repeat(201)}`,
    '/api/search?q=a&offset=-1',
    '/api/search?q=a&limit=0',
    '/api/search?q=a&limit=501',
    '/api/search?q=a&model=x',
  ];
  for (const p of bad) {
    const r = await get(p);
    assert.equal(r.status, 400, `${p} → ${r.status} ${r.body}`);
    const e = JSON.parse(r.body).error as string;
    assert.ok(e.length > 5 && e.length < 300 && !e.includes('\n'), `${p}: ${e}`);
  }
  assert.match((await json(grid('&sort=bogus'), 400)).error, /^sort=: "bogus" is not one of feature, percentile, skip, stability$/);
  assert.match((await json(grid('&sort=skip&after=3'), 400)).error, /page with offset=/);
});

test('search: every group, any rank of the decode and the refined prompt, case-insensitive, paged', async () => {
  const rank2 = await json('/api/search?q=NEEDLE%20IN');
  assert.equal(rank2.matched, 1);
  assert.equal(rank2.hits[0].feature, 17);
  assert.equal(rank2.hits[0].matched_in, 'rank 2');
  const both = await json('/api/search?q=needle');
  assert.deepEqual(
    both.hits.map((x: { feature: number; hook: string; matched_in: string }) => `${x.feature} ${x.hook} ${x.matched_in}`),
    ['17 resid rank 2', '2 mlp refined'],
  );
  assert.equal(both.hits[1].blocks_label, '1-3');
  // "top 3" is feature 3's top-1 on four models (the wider one too: search is not about shape) and two settings.
  const everywhere = await json('/api/search?q=top%203&limit=2');
  const models = new Set<string>();
  let offset: number | null = 0;
  let total = 0;
  while (offset !== null) {
    const page: { hits: { model_name: string; matched_in: string; top1_text: string }[]; next_offset: number | null; matched: number } = await json(`/api/search?q=top%203&limit=2&offset=${offset}`);
    for (const x of page.hits) {
      models.add(x.model_name);
      assert.equal(x.matched_in, 'top-1');
      assert.match(x.top1_text, /top 3/);
    }
    total += page.hits.length;
    offset = page.next_offset;
  }
  // top 3 and top 30–39 on the real model; top 3 on the control (twice: two settings), sibling and wider model.
  assert.equal(total, everywhere.matched);
  assert.equal(everywhere.matched, 11 + 4);
  assert.deepEqual([...models].sort(), ['sibling.bin', 'stories260K-random', 'stories260K.bin', 'wide-random.bin']);
  const pct = await json('/api/search?q=%25');
  assert.equal(pct.matched, 0, '% is literal');
});

test('record: the scan over the corpus of its percentiles, percentile texts, and its same-shape controls', async () => {
  const g = await json(grid('&limit=10'));
  const id3 = g.cells.find((c: { feature: number }) => c.feature === 3).id;
  const r = await json(`/api/record/${id3}`);
  // Corpus A's scan (shift 0), not the newer corpus B scan nor the direction scan.
  assert.equal(r.scan.scan.corpus_name, 'a.txt');
  assert.equal(r.scan.scan.corpus_hash, CORPUS_A);
  const want = featureScan(3, 0);
  assert.equal(r.scan.feature.tokens.max, want.tokens.max);
  assert.deepEqual(r.scan.feature.tokens.histogram.counts, want.tokens.histogram.counts);
  assert.deepEqual(r.scan.feature.top[0].token_activations, want.top[0]!.token_activations);
  for (const id of want.top[0]!.ids) assert.equal(typeof r.pieces[String(id)], 'string', `piece of example token ${id}`);
  const p = made[3]!.percentile!;
  assert.deepEqual(r.percentile_text, {
    continuous: formatPercentile(p.continuous!),
    decoded: formatPercentile(p.decoded!),
    random: formatPercentile(p.random!),
    skip_baseline: null,
    refined: null,
    exhaustive_best: null,
    stability_min: formatPercentile(90.5),
    stability_max: formatPercentile(99.95),
  });
  assert.equal(r.record.stability.seeds, 3);
  assert.deepEqual(
    r.controls.map((c: { model_name: string; kind: string; top1_agreement: number; agreement_positions: number }) => [c.model_name, c.kind, c.top1_agreement, c.agreement_positions]),
    [
      ['stories260K-random', 'control', 0.5, 4],
      ['sibling.bin', 'same shape', 1, 4],
    ],
  );
  // Without a scan of the feature there is none; a record of the control lists the trained model as same shape.
  const id5 = g.cells.find((c: { feature: number }) => c.feature === 5).id;
  assert.equal((await json(`/api/record/${id5}`)).scan, null);
  const back = await json(`/api/record/${r.controls[0].id}`);
  assert.deepEqual(
    back.controls.map((c: { model_name: string; kind: string }) => `${c.model_name} ${c.kind}`),
    ['stories260K.bin same shape', 'sibling.bin same shape'],
  );
  // An uncalibrated record has no percentile texts.
  const id4 = g.cells.find((c: { feature: number }) => c.feature === 4).id;
  assert.equal((await json(`/api/record/${id4}`)).percentile_text, null);
});
