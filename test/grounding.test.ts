/**
 * Real-data grounding: corpus reading and window cutting, quantiles and percentiles, corpus scans against a brute
 * force on stories260K, calibration against a brute force, verdict thresholds, the token-by-token display.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Ajv from 'ajv';
import Database from 'better-sqlite3';
import { buildAtlas } from '../src/atlas/build.js';
import { CSV_COLUMNS, csvRow, exportCsv, exportJson } from '../src/atlas/export.js';
import { buildScan } from '../src/atlas/scan-build.js';
import { listScans, scanFeatures } from '../src/atlas/scans.js';
import { SCHEMA_V2_TABLES, SCHEMA_VERSION } from '../src/atlas/schema.js';
import { Atlas } from '../src/atlas/store.js';
import { ModelRunner } from '../src/engine/runner.js';
import { applyPercentiles, corpusReference, formatPercentile, percentileFromGrid, quantileGrid, referenceDistributions, sortedReference } from '../src/features/calibrate.js';
import { cutWindows, parseJsonl, readCorpus, slidingStarts, splitStories, tokenizeStories } from '../src/features/corpus.js';
import { decoderFor } from '../src/features/embeddings.js';
import { optimizedPositions } from '../src/features/optimized.js';
import { histogram, percentileRank, quantileSorted } from '../src/features/quantiles.js';
import { scanCorpus, type FeatureScan } from '../src/features/scan.js';
import { expandSelection } from '../src/features/selection.js';
import { verdictOf } from '../src/features/verdict.js';
import { DEFAULT_SETTINGS, layout, Visualizer, type RunResult, type VisualizeSettings } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { tokenCell, tokenCells } from '../src/tokenizers/cells.js';
import { cli } from './cli-helpers.js';
import { modelPath, projectRoot } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-grounding-'));
const model = loadModel(modelPath('stories260K.bin'));
const tok = model.tokenizer!;
const runner = new ModelRunner(model);
after(async () => {
  await runner.close();
  rmSync(dir, { recursive: true, force: true });
});

const STORIES = [
  'Once upon a time, there was a little girl named Lily. She liked the sun.',
  'Tom had a red ball.\nHe played with it all day.',
  'The cat sat.',
];
const corpusFile = path.join(dir, 'tiny.txt');
writeFileSync(corpusFile, STORIES.map((s) => `${s}\n<|endoftext|>\n`).join('') + '\n');

// ---------------------------------------------------------------------------------------------------------------
// Corpus and windows

test('stories split on separator lines (JSONL on its text field); empty stories are dropped; errors name the line', () => {
  assert.deepEqual(splitStories('a\nb\n<|endoftext|>\n\n<|endoftext|>\nc <|endoftext|>\n<|endoftext|>\r\nd'), ['a\nb', 'c <|endoftext|>', 'd']);
  assert.deepEqual(readCorpus(corpusFile).stories, STORIES);
  assert.deepEqual(parseJsonl('{"text":"x y"}\n\n{"text":"z","id":3}\n', 'f.jsonl'), ['x y', 'z']);
  assert.throws(() => parseJsonl('{"text":"x"}\n{"txt":"y"}', 'f.jsonl'), /--corpus: f\.jsonl:2: expected an object with a string "text" field/);
  assert.throws(() => parseJsonl('{"text":', 'f.jsonl'), /f\.jsonl:1: not valid JSON/);
  assert.throws(() => readCorpus(path.join(dir, 'missing.txt')), /--corpus: .*missing\.txt: cannot read the file/);
  const empty = path.join(dir, 'empty.txt');
  writeFileSync(empty, '<|endoftext|>\n  \n');
  assert.throws(() => readCorpus(empty), /holds no stories/);
});

test('windows: stride = window, never across a story, the last one shorter; max-tokens cuts; BOS starts each story', () => {
  const stories = [[1, 10, 11, 12, 13, 14, 15], [1, 20, 21], [1, 30, 31, 32, 33]];
  assert.deepEqual(cutWindows(stories, 3), [
    { story: 0, start: 0, ids: [1, 10, 11] },
    { story: 0, start: 3, ids: [12, 13, 14] },
    { story: 0, start: 6, ids: [15] },
    { story: 1, start: 0, ids: [1, 20, 21] },
    { story: 2, start: 0, ids: [1, 30, 31] },
    { story: 2, start: 3, ids: [32, 33] },
  ]);
  assert.deepEqual(cutWindows(stories, 4, 9).map((w) => w.ids), [[1, 10, 11, 12], [13, 14, 15], [1, 20]]);
  assert.deepEqual(slidingStarts([[5, 6, 7], [8], [9, 10]], 2), [[0, 0], [0, 1], [2, 0]]);
  const ids = tokenizeStories(tok, STORIES, { bos: true });
  assert.ok(ids.every((s, i) => s[0] === tok.bosId && s.slice(1).join() === tok.encode(STORIES[i]!).join()));
  assert.ok(tokenizeStories(tok, STORIES, { bos: false }).every((s) => s[0] !== tok.bosId));
});

// ---------------------------------------------------------------------------------------------------------------
// Quantiles and percentiles

test('quantiles interpolate linearly (numpy default); percentile ranks are mid-ranks; the histogram counts every value', () => {
  const sorted = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(quantileSorted(sorted, 0.5), 5.5);
  assert.ok(Math.abs(quantileSorted(sorted, 0.9) - 9.1) < 1e-12);
  assert.equal(quantileSorted(sorted, 1), 10);
  assert.equal(percentileRank(sorted, 5), 45); // 4 below, 1 equal: (4 + 0.5) / 10
  assert.equal(percentileRank(sorted, 5.5), 50);
  assert.equal(percentileRank(sorted, 11), 100);
  assert.equal(percentileRank(sorted, 0), 0);
  assert.equal(percentileRank(Float64Array.from([2, 2, 2, 2]), 2), 50);
  assert.ok(Number.isNaN(percentileRank(new Float64Array(0), 1)));
  const h = histogram(sorted, 3);
  assert.deepEqual(h.counts, [3, 3, 4]); // [1, 4) [4, 7) [7, 10]
  assert.equal(h.edges[0], 1);
  assert.equal(h.edges[3], 10);
  assert.equal(formatPercentile(99.9999), 'p99.99');
  assert.equal(formatPercentile(100), 'p100');
  assert.equal(formatPercentile(91.27), 'p91.2');
});

// ---------------------------------------------------------------------------------------------------------------
// Scans against a brute force

/** numpy-style linear quantile, written out again independently of quantiles.ts. */
function bruteQuantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  return s[Math.floor(h)]! + (h - Math.floor(h)) * (s[Math.ceil(h)]! - s[Math.floor(h)]!);
}

async function bruteForce(windows: { ids: number[] }[], blocks: [number, number], hook: 'resid' | 'mlp' | 'attn', f: (row: Float32Array) => number) {
  // Each window alone, unpadded, batch 1: no padding or batching can leak into the reference.
  const per: number[][] = [];
  for (const w of windows) {
    const h = await runner.hidden([w.ids], blocks, hook);
    const F = h.shape[2];
    per.push(w.ids.map((_, t) => f(h.data.subarray(t * F, (t + 1) * F))));
  }
  return per;
}

function checkFeature(got: FeatureScan, per: number[][]) {
  const rest = per.flatMap((v) => v.slice(1));
  const first = per.map((v) => v[0]!);
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  assert.equal(got.tokens.count, rest.length);
  assert.equal(got.position0.count, first.length);
  const mean = rest.reduce((a, b) => a + b, 0) / rest.length;
  close(got.tokens.mean, mean, 'mean');
  close(got.tokens.std, Math.sqrt(rest.reduce((a, b) => a + (b - mean) ** 2, 0) / rest.length), 'std');
  close(got.tokens.max, Math.max(...rest), 'max');
  close(got.tokens.min, Math.min(...rest), 'min');
  for (const [k, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99], ['p99_9', 0.999]] as const) close(got.tokens[k], bruteQuantile(rest, q), k);
  close(got.tokens.positive_share, rest.filter((x) => x > 0).length / rest.length, 'positive share');
  close(got.position0.max, Math.max(...first), 'position 0 max');
  assert.equal(got.tokens.exact, true);
  assert.equal(got.tokens.histogram.counts.reduce((a, b) => a + b, 0), rest.length);
  // The top example is the brute force's largest value at a position ≥ 1, with the window's values alongside.
  const top = got.top[0]!;
  close(top.activation, Math.max(...rest), 'top example');
  close(per[top.window]![top.position]!, top.activation, 'top example in its window');
  top.token_activations.forEach((x, t) => close(x, per[top.window]![t]!, `token activation ${t}`));
  assert.ok(top.position >= 1);
  for (let i = 1; i < got.top.length; i++) assert.ok(got.top[i - 1]!.activation >= got.top[i]!.activation);
  // Bin examples lie inside their bins.
  for (const b of got.bins) for (const e of b.examples) assert.ok(e.activation >= b.lo - 1e-6 && e.activation <= b.hi + 1e-6, `${b.label}: ${e.activation} outside [${b.lo}, ${b.hi}]`);
}

test('scan statistics equal a brute force over the same windows (resid, mlp, a direction); batching and padding change nothing', async () => {
  const windows = cutWindows(tokenizeStories(tok, STORIES, { bos: true }), 8);
  const collect = async (settings: Parameters<typeof scanCorpus>[3]) => {
    const out: FeatureScan[] = [];
    await scanCorpus(runner, tok, windows, settings, (c) => out.push(...c));
    return out;
  };
  const base = { topk: 5, binExamples: 2 };
  const resid = await collect({ ...base, blocks: [1, 2], hook: 'resid', features: [3, 40], batch: 3 });
  for (const [i, f] of [3, 40].entries()) checkFeature(resid[i]!, await bruteForce(windows, [1, 2], 'resid', (row) => row[f]!));
  assert.equal(resid[0]!.top[0]!.feature, 3);
  assert.deepEqual(resid[0]!.top[0]!.ids, windows[resid[0]!.top[0]!.window]!.ids);
  // memoryBytes: 1 forces one feature per corpus pass (two chunks).
  const mlp = await collect({ ...base, blocks: [2, 2], hook: 'mlp', features: [5, 171], batch: 16, memoryBytes: 1 });
  for (const [i, f] of [5, 171].entries()) checkFeature(mlp[i]!, await bruteForce(windows, [2, 2], 'mlp', (row) => row[f]!));
  const dirv = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  const dir = await collect({ ...base, blocks: [1, 1], hook: 'attn', features: [0], direction: dirv, batch: 4 });
  checkFeature(dir[0]!, await bruteForce(windows, [1, 1], 'attn', (row) => row.reduce((s, x, i) => s + x * dirv[i]!, 0)));
});

test('the sketch beyond the exact limit keeps every k-th value, marks itself inexact, and keeps exact moments', async () => {
  const windows = cutWindows(tokenizeStories(tok, STORIES, { bos: true }), 8);
  const out: FeatureScan[] = [];
  await scanCorpus(runner, tok, windows, { blocks: [1, 1], hook: 'resid', features: [0], batch: 8, topk: 3, binExamples: 1, exactLimit: 10 }, (c) => out.push(...c));
  const per = await bruteForce(windows, [1, 1], 'resid', (row) => row[0]!);
  const rest = per.flatMap((v) => v.slice(1));
  const k = Math.ceil(rest.length / 10);
  assert.equal(out[0]!.tokens.exact, false);
  assert.equal(out[0]!.tokens.sample_every, k);
  assert.equal(out[0]!.tokens.count, rest.length);
  assert.ok(Math.abs(out[0]!.tokens.max - Math.max(...rest)) < 1e-6);
  const sample = rest.filter((_, i) => i % k === 0);
  assert.ok(Math.abs(out[0]!.tokens.p50 - bruteQuantile(sample, 0.5)) < 1e-6);
});

// ---------------------------------------------------------------------------------------------------------------
// Calibration

const vsettings = (over: Partial<VisualizeSettings> = {}): VisualizeSettings => ({ ...DEFAULT_SETTINGS, blocks: [1, 2], hook: 'resid', tokens: 3, ...over });

test('the reference distribution is the run statistic on every stride-1 stretch of the corpus, with the fixed context applied', async () => {
  const s = vsettings({ bos: true, suffix: tok.encode('the') });
  const lay = layout(s, tok.bosId);
  // Positions 1 and 2 (the first two free ones, after BOS) and features 3, 4, combined into one objective.
  const runs = expandSelection('[:, 1:3, 3:5]', lay.T, 64);
  assert.equal(runs.length, 1);
  const ref = await referenceDistributions(runner, tok, runs, s, lay, { file: corpusFile, batch: 7 });
  const stories = tokenizeStories(tok, STORIES, { bos: false });
  const starts = slidingStarts(stories, 3);
  assert.equal(ref.info.windows, starts.length);
  const want: number[] = [];
  for (const [story, start] of starts) {
    const ids = [tok.bosId!, ...stories[story]!.slice(start, start + 3), ...s.suffix];
    const h = await runner.hidden([ids], s.blocks, s.hook);
    let acc = 0;
    for (const t of [1, 2]) for (const f of [3, 4]) acc += h.data[t * 64 + f]!;
    want.push(acc / 4);
  }
  want.sort((a, b) => a - b);
  want.forEach((x, i) => assert.ok(Math.abs(ref.sorted[0]![i]! - x) < 1e-5, `${i}: ${ref.sorted[0]![i]} vs ${x}`));
  // A known value's percentile: the median of the reference sits near p50, anything above the max is p100.
  const r = { activation: { continuous: 1e9, decoded: want[Math.floor(want.length / 2)]!, random: -1e9 }, baseline: null, refined: null, exhaustive: null } as unknown as RunResult;
  applyPercentiles(r, sortedReference(ref.sorted[0]!, ref.info));
  assert.equal(r.percentile!.continuous, 100);
  assert.equal(r.percentile!.random, 0);
  assert.ok(Math.abs(r.percentile!.decoded! - 50) <= 100 / want.length + 1e-9);
  assert.equal(r.calibration!.max, want[want.length - 1]);
  assert.equal(r.calibration!.source, 'corpus');
  assert.equal(r.calibration!.sample_every, 1);
  // Over the memory bound, every k-th window is kept (and said so).
  const small = await referenceDistributions(runner, tok, runs, s, lay, { file: corpusFile, maxValues: 10 });
  const k = Math.ceil(starts.length / 10);
  assert.equal(small.info.sample_every, k);
  assert.equal(small.info.windows, Math.ceil(starts.length / k));
  // The stored grid (atlas scans) reads percentiles within 0.01 points + 100/n of the exact mid-rank.
  const grid = quantileGrid(ref.sorted[0]!);
  for (const v of [...want.filter((_, i) => i % 7 === 0), want[0]! - 1, want[want.length - 1]! + 1, (want[3]! + want[4]!) / 2]) {
    const exact = percentileRank(ref.sorted[0]!, v);
    assert.ok(Math.abs(percentileFromGrid(grid, v) - exact) <= 0.01 + 100 / want.length + 1e-9, `${v}: grid ${percentileFromGrid(grid, v)} vs exact ${exact}`);
  }
  assert.equal(percentileFromGrid(Float64Array.from([0, 1, 1, 1, 2]), 1), 50);
});

// ---------------------------------------------------------------------------------------------------------------
// Verdicts and display

test('verdict thresholds on hand-made results', () => {
  const base = { status: 'ok' as const, settings: { objective: 'l1' }, objective: { initial: 500, final: 10 }, activation: { continuous: 99, decoded: 1, random: 0 } };
  const pct = (decoded: number, continuous = 50) => ({ continuous, decoded, random: 40, skip_baseline: null, refined: null, exhaustive_repeated: null, exhaustive_context: null });
  const codes = (r: Parameters<typeof verdictOf>[0]) => verdictOf(r).map((f) => f.code);
  assert.deepEqual(codes({ ...base, percentile: pct(99) }), ['decoded-high']);
  assert.deepEqual(codes({ ...base, percentile: pct(98.99) }), []);
  assert.deepEqual(codes({ ...base, percentile: pct(89.9) }), ['decoded-typical']);
  assert.deepEqual(codes({ ...base, percentile: pct(95, 100) }), ['continuous-beyond-real']);
  assert.deepEqual(codes({ ...base, activation: { continuous: 1, decoded: -0.013, random: 0.801 }, percentile: pct(95) }), ['decoded-below-random']);
  const unreachable = verdictOf({ ...base, objective: { initial: 499.5, final: 456.9 }, percentile: pct(95) });
  assert.deepEqual(unreachable.map((f) => f.message), ['target unreachable (objective fell 9 %)']);
  assert.deepEqual(codes({ ...base, objective: { initial: 500, final: 250 }, percentile: pct(95) }), []);
  assert.deepEqual(codes({ ...base, settings: { objective: 'max' }, objective: { initial: -1, final: -5 }, percentile: pct(95) }), []);
  assert.deepEqual(codes(base), ['uncalibrated']);
  assert.deepEqual(codes({ ...base, status: 'failed' }), []);
});

test('display: token boundaries, byte-fallback and special tokens marked, non-optimised positions bracketed', () => {
  const byte = tok.encode('\x0b').find((id) => tok.piece(id) === '<0x0B>') ?? 0x0b + 3;
  assert.equal(tok.piece(byte), '<0x0B>');
  assert.equal(tokenCell(tok, byte), '⟨0x0B⟩');
  assert.equal(tokenCell(tok, tok.bosId!), '⟨s⟩');
  const ed = tok.encode('ed');
  assert.equal(tokenCells(tok, [tok.bosId!, tok.bosId!, ...ed, byte]), `⟨s⟩·⟨s⟩·${ed.map((id) => tok.piece(id)).join('·')}·⟨0x0B⟩`);
  const st = tok.encode('st st');
  assert.equal(tokenCells(tok, [...st, byte], new Set([0])), `${tok.piece(st[0]!)}·[${tok.piece(st[1]!)}]·[⟨0x0B⟩]`);
  assert.equal(tokenCell(tok, tok.encode('a\nb').find((id) => tok.piece(id) === '<0x0A>') ?? 13), '⟨0x0A⟩');
  const T = 5;
  const free = [0, 1, 2, 3, 4];
  assert.deepEqual(optimizedPositions(expandSelection('[:, 1, 0]', T, 64)[0]!, free), [0, 1]);
  assert.deepEqual(optimizedPositions(expandSelection('[:, :, 0]', T, 64)[0]!, free), free);
  assert.deepEqual(optimizedPositions(expandSelection('[:, 0:4, 0]', T, 64)[0]!, [1, 2, 3, 4]), [1, 2, 3]);
});

test('a one-position run shows the positions after it as context, counts only optimised positions, and carries percentile and verdict', async () => {
  const visualizer = new Visualizer(runner, tok, decoderFor(model));
  const [r] = await visualizer.visualize({ select: '[:, 1, 0]', settings: vsettings({ blocks: [1, 1], tokens: 4, steps: 30, randomDraws: 2 }), reference: corpusReference(runner, tok, { file: corpusFile }) });
  assert.equal(r!.status, 'ok');
  assert.deepEqual(r!.optimized, [0, 1]);
  const cells = r!.topk_cells![0]!.split('·');
  assert.equal(cells.length, 4);
  assert.ok(!cells[0]!.startsWith('[') && !cells[1]!.startsWith('['));
  assert.ok(cells[2]!.startsWith('[') && cells[3]!.startsWith('['));
  assert.ok(r!.baseline!.agreement === 0 || r!.baseline!.agreement === 0.5 || r!.baseline!.agreement === 1);
  assert.ok(r!.percentile && r!.percentile.decoded !== null && r!.percentile.random !== null && r!.percentile.continuous !== null);
  assert.ok(r!.percentile.skip_baseline !== null);
  assert.ok(Array.isArray(r!.verdict) && !r!.verdict.some((f) => f.code === 'uncalibrated'));
  assert.equal(r!.timings.batch_runs, 1);
});

// ---------------------------------------------------------------------------------------------------------------
// Atlas scans

test('atlas scan stores per-feature distributions, resumes, exports with examples; a v2 atlas migrates to v3', async () => {
  const file = path.join(dir, 'scan.db');
  const atlas = Atlas.open(file);
  const req = { atlas, runner, blocks: [1, 1] as [number, number], hook: 'resid' as const, corpus: corpusFile, window: 8, maxTokens: null, bos: true, batch: 4, topk: 3, binExamples: 1 };
  const first = await buildScan({ ...req, features: [0, 1] });
  assert.equal(first.inserted, 2);
  const again = await buildScan({ ...req, features: [0, 1, 2] });
  assert.deepEqual([again.inserted, again.skipped, again.scan_id], [1, 2, first.scan_id]);
  const [scan] = listScans(atlas);
  assert.equal(scan!.features, 3);
  const stored = [...scanFeatures(atlas, scan!.id)];
  assert.deepEqual(stored.map((f) => f.feature), [0, 1, 2]);
  let json = '';
  exportJson(atlas, {}, (s) => void (json += s));
  atlas.close();
  const doc = JSON.parse(json) as { records: unknown[]; scans: { features: FeatureScan[]; corpus_name: string }[] };
  assert.equal(doc.records.length, 0);
  assert.equal(doc.scans[0]!.corpus_name, 'tiny.txt');
  const ex = doc.scans[0]!.features[1]!.top[0]!;
  for (const k of ['feature', 'ids', 'position', 'activation', 'token_activations'] as const) assert.ok(k in ex, k);
  assert.equal(ex.feature, 1);
  assert.equal(ex.token_activations.length, ex.ids.length);

  const v2 = path.join(dir, 'v2.db');
  const raw = new Database(v2);
  raw.exec(SCHEMA_V2_TABLES);
  raw.prepare("INSERT INTO meta (key, value) VALUES ('format', 'llm-features-atlas')").run();
  raw.pragma('user_version = 2');
  raw.close();
  const migrated = Atlas.open(v2, { readonly: true });
  assert.equal(migrated.schemaVersion, SCHEMA_VERSION);
  assert.deepEqual(listScans(migrated), []);
  migrated.close();
});

test('CLI: atlas scan and visualize --corpus; generate --samples writes a corpus; bad input is one line, exit 2', () => {
  const db = path.join(dir, 'cli.db');
  const m = modelPath('stories260K.bin');
  const scan = cli(['atlas', 'scan', '--model', m, '--db', db, '--blocks', '1', '--features', '0-3', '--corpus', corpusFile, '--window', '16', '--json']);
  assert.equal(scan.code, 0, scan.stderr);
  assert.equal(JSON.parse(scan.stdout).inserted, 4);
  const ls = cli(['atlas', 'ls', '--db', db]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /scan 1 {2}stories260K\.bin blocks 1-1 resid: 4 features over tiny\.txt \(\d+ windows of ≤ 16 tokens, \d+ tokens\)/);
  const bad = cli(['atlas', 'scan', '--model', m, '--db', db, '--blocks', '1', '--features', '64', '--corpus', corpusFile]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr.trim(), /^llm-features: --features: feature 64 is outside the resid hook's features 0-63$/);
  const missing = cli(['visualize', '--model', m, '--blocks', '1', '--select', '[:, :, 0]', '--steps', '2', '--corpus', path.join(dir, 'nope.txt')]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  assert.match(missing.stderr, /--corpus: .*nope\.txt: cannot read the file/);
  const vis = cli(['visualize', '--model', m, '--blocks', '1', '--select', '[:, :, 0]', '--steps', '50', '--tokens', '3', '--corpus', corpusFile]);
  assert.equal(vis.code, 0, vis.stderr);
  assert.match(vis.stdout, /activation: decoded p\d+(\.\d+)? \(/);
  assert.match(vis.stdout, /percentiles of \d+ real windows/);
  const out = path.join(dir, 'samples.txt');
  const gen = cli(['generate', '--model', m, '--samples', '2', '--max-tokens', '20', '--out', out]);
  assert.equal(gen.code, 0, gen.stderr);
  assert.equal(readCorpus(out).stories.length, 2);
  assert.match(readFileSync(out, 'utf8'), /<\|endoftext\|>\n$/);
  const noOut = cli(['generate', '--model', m, '--samples', '2']);
  assert.equal(noOut.code, 2);
  assert.match(noOut.stderr, /--samples: needs --out FILE/);
});

test('visualize --scan-db reads the calibration an atlas scan stored (--calibrate-tokens) and agrees with --corpus; other shapes are refused', () => {
  const db = path.join(dir, 'calib.db');
  const m = modelPath('stories260K.bin');
  const scan = cli(['atlas', 'scan', '--model', m, '--db', db, '--blocks', '1-2', '--features', '0-2', '--corpus', corpusFile, '--window', '16', '--calibrate-tokens', '3', '--json']);
  assert.equal(scan.code, 0, scan.stderr);
  const common = ['visualize', '--model', m, '--blocks', '1-2', '--select', '[:, :, 0-2]', '--steps', '40', '--tokens', '3', '--json'];
  const fromScan = JSON.parse(cli([...common, '--scan-db', db]).stdout).runs as RunResult[];
  const fromCorpus = JSON.parse(cli([...common, '--corpus', corpusFile]).stdout).runs as RunResult[];
  assert.equal(fromScan.length, 3);
  const validate = new Ajv.default({ allErrors: true }).compile(JSON.parse(readFileSync(path.join(projectRoot, 'schemas/visualize.schema.json'), 'utf8')));
  for (const runs of [fromScan, fromCorpus]) assert.ok(validate({ model: { path: m, format: 'llama2c', architecture: 'llama' }, runs }), JSON.stringify(validate.errors));
  fromScan.forEach((r, i) => {
    const c = fromCorpus[i]!;
    assert.equal(r.calibration!.source, 'scan');
    assert.equal(r.calibration!.windows, c.calibration!.windows);
    assert.ok(Math.abs(r.calibration!.max - c.calibration!.max) < 1e-9);
    for (const k of ['continuous', 'decoded', 'random'] as const) {
      assert.ok(Math.abs(r.percentile![k]! - c.percentile![k]!) <= 0.01 + 100 / c.calibration!.windows + 1e-9, `${r.select} ${k}: ${r.percentile![k]} vs ${c.percentile![k]}`);
    }
  });
  const shape = cli([...common.slice(0, 6), '[:, 1, 0]', ...common.slice(7), '--scan-db', db]);
  assert.equal(shape.code, 2);
  assert.match(shape.stderr, /^llm-features: --scan-db: run \[:, 1, 0\]: stored calibrations cover \[:, :, f\] runs only/);
  const tokens = cli([...common.slice(0, -2), '4', '--json', '--scan-db', db]);
  assert.equal(tokens.code, 2);
  assert.match(tokens.stderr, /--scan-db: .*calib\.db holds no scan of this model with blocks 1-2, hook resid, --calibrate-tokens 4/);
  const both = cli([...common, '--scan-db', db, '--corpus', corpusFile]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--corpus\/--scan-db: give at most one of them/);
});

test('atlas build with a reference stores percentiles and verdicts in every record; CSV exports them', async () => {
  const file = path.join(dir, 'build.db');
  const atlas = Atlas.open(file);
  await buildAtlas({
    atlas,
    runner,
    blocks: [[1, 1]],
    hook: 'resid',
    features: [0, 1],
    settings: { ...DEFAULT_SETTINGS, steps: 10, batch: 2, randomDraws: 1, tokens: 3 },
    reference: corpusReference(runner, tok, { file: corpusFile }),
  });
  const records = [...atlas.records()];
  assert.equal(records.length, 2);
  for (const r of records) {
    assert.equal(typeof r.percentile!.decoded, 'number');
    assert.ok(Array.isArray(r.verdict) && !r.verdict.some((f) => f.code === 'uncalibrated'));
  }
  let csv = '';
  exportCsv(atlas, {}, (s) => void (csv += s));
  atlas.close();
  assert.ok(csv.split('\n')[0]!.split(',').includes('pct_decoded'));
  const row = csvRow(records[0]!);
  assert.equal(row[CSV_COLUMNS.indexOf('pct_decoded')], records[0]!.percentile!.decoded);
  assert.equal(row[CSV_COLUMNS.indexOf('verdict')], records[0]!.verdict!.map((f) => f.code).join(' '));
  assert.ok(csv.includes(String(records[0]!.percentile!.decoded)));
});
