// `atlas compare` that cannot mislead (issue 13 item 5): one model per side, two models only when both queries name
// them, index pairing only within one embedding space (or forced, with a warning), vocabulary pairing through a ridge
// map between the embedding tables, a measured chance level beside every agreement, and a rank correlation of
// decoded percentiles/activations. Plus the schema v3 → v4 migration that records each model's embedding table hash.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { CHANCE_SAMPLE, compareAtlas, compareRecords } from '../src/atlas/compare.js';
import { SCHEMA_VERSION } from '../src/atlas/schema.js';
import { Atlas, type AtlasRecord } from '../src/atlas/store.js';
import { embeddingTable } from '../src/features/embeddings.js';
import { fitDirectionMap, mappedDirection } from '../src/features/direction-map.js';
import { vectorHash } from '../src/features/settings.js';
import type { RunResult } from '../src/features/visualize.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { writeSafetensors } from '../src/formats/safetensors-write.js';
import { loadModel } from '../src/models/load.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-compare-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BIN = modelPath('stories260K.bin');
const FAST = ['--steps', '5', '--tokens', '3', '--random-draws', '2', '--batch', '8'];

/** A hand-made ok record at positions 0..n-1 with the given top-k rows. */
function rec(select: string, rows: number[][], opts: { decoded?: number; percentile?: number | null; blocks?: [number, number] } = {}): RunResult {
  const n = rows[0]!.length;
  return {
    select,
    blocks: opts.blocks ?? [1, 1],
    hook: 'resid',
    settings: {},
    ids: rows[0]!,
    free: [...Array(n).keys()],
    optimized: [...Array(n).keys()],
    topk: rows,
    topk_text: rows.map((r) => r.join(' ')),
    cosine: rows[0]!.map(() => 1),
    cosine_scale: 0.5,
    activation: { continuous: 100, decoded: opts.decoded ?? 1, random: 0 },
    objective: { initial: 10, final: 1 },
    baseline: null,
    loss: [[0, 10]],
    status: 'ok',
    percentile:
      opts.percentile === undefined || opts.percentile === null
        ? null
        : { continuous: null, decoded: opts.percentile, random: null, skip_baseline: null, refined: null, exhaustive_repeated: null, exhaustive_context: null },
    timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 },
  };
}

const close = (x: number | null | undefined, y: number, tol = 1e-12) => assert.ok(x !== null && x !== undefined && Math.abs(x - y) < tol, `${x} vs ${y}`);

/** An atlas with models A and B (given dims and embedding hashes) and records per side. */
function handAtlas(
  name: string,
  models: { dim: number | null; emb: string | null }[],
  records: RunResult[][],
  settings: Record<string, unknown> = { tokens: 2, topk: 2 },
): string {
  const file = path.join(dir, name);
  const atlas = Atlas.open(file);
  const S = atlas.upsertSettings(settings);
  models.forEach((m, i) => {
    const hash = String.fromCharCode(97 + i).repeat(64);
    atlas.upsertModel({ hash, name: `model-${'ab'[i]}.bin`, format: null, architecture: null, n_layers: null, dim: m.dim, vocab: 512, embedding_hash: m.emb, vocab_hash: null });
    atlas.insertResults(hash, S, records[i]!);
  });
  atlas.close();
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// The chance level and the rank correlation on hand-made records

test('chance level: each A feature against B records of the other features (same settings), by hand', () => {
  // Top-1 rows over positions 0,1; a second row of 99 everywhere, so a match has Jaccard 1 and a mismatch 1/3.
  //   A_0 = [0,0]  A_1 = [1,1]  A_2 = [2,2];   B_g = [g,0].
  // Paired: A_0/B_0 = 1, A_1/B_1 = 0.5, A_2/B_2 = 0.5 → 2/3.  Off-diagonal: A_0/B_1 = A_0/B_2 = 0.5 (position 1),
  // the other four 0 → chance 1/6. Jaccard off-diagonal: A_0/B_1 = A_0/B_2 = (1/3 + 1)/2 = 2/3, the other four 1/3
  // → (4/3 + 4/3)/6 = 4/9.
  const A = [0, 1, 2].map((f) => rec(`[:, :, ${f}]`, [[f, f], [99, 99]], { decoded: f, percentile: 10 * f }));
  const B = [0, 1, 2].map((g) => rec(`[:, :, ${g}]`, [[g, 0], [99, 99]], { decoded: [5, 3, 4][g], percentile: [50, 70, 60][g] }));
  const file = handAtlas('chance.db', [{ dim: 64, emb: 'e'.repeat(64) }, { dim: 64, emb: 'e'.repeat(64) }], [A, B]);
  const atlas = Atlas.open(file, { readonly: true });
  // A lone record in other settings: paired, but alone in its settings group, so no chance pairs.
  const r = compareAtlas(atlas, { model: 'model-a.bin' }, { model: 'model-b.bin' });
  atlas.close();
  assert.equal(r.pairing, 'index');
  assert.match(r.pairing_note, /share their embedding table/);
  close(r.top1_agreement, 2 / 3);
  assert.ok(r.chance);
  close(r.chance.top1_agreement, 1 / 6);
  close(r.chance.jaccard, 4 / 9);
  assert.equal(r.chance.pairs, 6);
  assert.equal(r.chance.sampled, false);
  assert.deepEqual(r.features.map((p) => p.chance_top1), [0.5, 0, 0]);
  close(r.features[0]!.chance_jaccard, 2 / 3);
  // Percentiles on every record → Spearman of decoded percentiles: A (0, 10, 20) vs B (50, 70, 60) → ranks (1,2,3) vs (1,3,2) → 0.5.
  assert.equal(r.spearman_of, 'decoded percentile');
  close(r.spearman, 0.5);

  // The same through the CLI, text and JSON: chance beside each agreement, which correlation it is.
  const text = cli(['atlas', 'compare', '--db', file, '--a', 'model=model-a.bin', '--b', 'model=model-b.bin']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^A: model=model-a\.bin — model-a\.bin \(aaaaaaaaaaaa\)/m);
  assert.match(text.stdout, /^B: model=model-b\.bin — model-b\.bin \(bbbbbbbbbbbb\)/m);
  assert.match(text.stdout, /top-1 agreement: +0\.667 +chance 0\.167/);
  assert.match(text.stdout, /mean top-k Jaccard: +0\.\d+ +chance 0\.444/);
  assert.match(text.stdout, /Spearman of decoded percentiles: 0\.500/);
  assert.doesNotMatch(text.stdout, /continuous/);
  const json = JSON.parse(cli(['atlas', 'compare', '--db', file, '--a', 'model=model-a.bin', '--b', 'model=model-b.bin', '--json']).stdout);
  close(json.chance.top1_agreement, 1 / 6);
  assert.equal(json.spearman_of, 'decoded percentile');
  assert.equal(json.features[0].a.continuous, 100, 'the old field stays for old readers');
});

test('chance level groups by settings, falls back to decoded activations without percentiles, and samples large groups', () => {
  const mk = (model: string, r: RunResult, id: number, settingsHash: string): AtlasRecord =>
    ({ ...r, id, model: { hash: model, name: model }, feature: Number(/\d+/.exec(r.select)![0]), settings_hash: settingsHash, created_at: '', timings: null }) as AtlasRecord;
  // Two settings groups of two features each: chance pairs only inside a group (2 + 2 = 4 pairs, not 12).
  const A = [
    mk('a', rec('[:, :, 0]', [[0]], { decoded: 1 }), 1, 's1'),
    mk('a', rec('[:, :, 1]', [[1]], { decoded: 2 }), 2, 's1'),
    mk('a', rec('[:, :, 0]', [[5]], { decoded: 3, percentile: 10 }), 3, 's2'),
    mk('a', rec('[:, :, 1]', [[6]], { decoded: 4 }), 4, 's2'),
  ];
  // B's s1 records carry each other's tokens: paired 0, chance 1. s2: paired 1, chance 0.
  const B = [
    mk('b', rec('[:, :, 0]', [[1]], { decoded: 40 }), 5, 's1'),
    mk('b', rec('[:, :, 1]', [[0]], { decoded: 30 }), 6, 's1'),
    mk('b', rec('[:, :, 0]', [[5]], { decoded: 20 }), 7, 's2'),
    mk('b', rec('[:, :, 1]', [[6]], { decoded: 10 }), 8, 's2'),
  ];
  const r = compareRecords(A, B);
  assert.equal(r.compared, 4);
  close(r.top1_agreement, 0.5);
  assert.equal(r.chance!.pairs, 4);
  close(r.chance!.top1_agreement, 0.5);
  // Only one record has a percentile: decoded activations for all, (1,2,3,4) vs (40,30,20,10) → −1.
  assert.equal(r.spearman_of, 'decoded activation');
  close(r.spearman, -1);

  // A group larger than CHANCE_SAMPLE + 1: every A feature gets CHANCE_SAMPLE others, and the report says so.
  const n = CHANCE_SAMPLE + 11;
  const big = (model: string, off: number) => Array.from({ length: n }, (_, f) => mk(model, rec(`[:, :, ${f}]`, [[f % 2]]), off + f, 's'));
  const rb = compareRecords(big('a', 0), big('b', n));
  assert.equal(rb.chance!.sampled, true);
  assert.equal(rb.chance!.pairs, n * CHANCE_SAMPLE);
  // Tokens alternate 0,1 by feature: among the next CHANCE_SAMPLE (odd) features cyclically, (CHANCE_SAMPLE − 1)/2 share f's parity.
  close(rb.chance!.top1_agreement, (CHANCE_SAMPLE - 1) / 2 / CHANCE_SAMPLE, 1e-9);
});

// ---------------------------------------------------------------------------------------------------------------
// Refusals: one line, exit 2

function refused(args: string[], pattern: RegExp): void {
  const r = cli(['atlas', 'compare', ...args]);
  assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\bat \w+ \(/, 'no stack trace');
  assert.match(r.stderr, pattern);
}

test('mixed models: a side spanning two models, or two models not both named, is refused', () => {
  const same = { dim: 64, emb: 'e'.repeat(64) };
  const A = [rec('[:, :, 0]', [[1, 2]]), rec('[:, :, 0]', [[1, 2]], { blocks: [5, 5] })];
  const B = [rec('[:, :, 0]', [[1, 2]]), rec('[:, :, 0]', [[1, 3]], { blocks: [5, 5] })];
  const file = handAtlas('mixed.db', [same, same], [A, B]);
  // The case: blocks=1 vs blocks=5 on a two-model atlas silently paired different models.
  refused(['--db', file, '--a', 'blocks=1', '--b', 'blocks=5'], /--a blocks=1: matches records of 2 models \(model-a\.bin \(aaaaaaaaaaaa\), model-b\.bin \(bbbbbbbbbbbb\)\); name one with model=/);
  refused(['--db', file, '--a', 'model=model-a.bin,blocks=1', '--b', 'blocks=5'], /--b blocks=5: matches records of 2 models/);
  // One side named, the other one model by accident of the filter: still two models, not both named.
  const one = handAtlas('mixed-one.db', [same, same], [[rec('[:, :, 0]', [[1, 2]])], [rec('[:, :, 0]', [[1, 2]], { blocks: [5, 5] })]]);
  refused(['--db', one, '--a', 'model=model-a.bin', '--b', 'blocks=5'], /--a model=model-a\.bin is model-a\.bin \(aaaaaaaaaaaa\) but --b blocks=5 is model-b\.bin \(bbbbbbbbbbbb\); to compare two models name the model on both sides/);
  // Named on both sides, same table: allowed, and one model per side.
  const ok = cli(['atlas', 'compare', '--db', file, '--a', 'model=model-a.bin,blocks=1', '--b', 'model=model-b.bin,blocks=5']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /top-1 agreement: +0\.500/);
  // Within one model nothing needs naming.
  const within = cli(['atlas', 'compare', '--db', file, '--a', 'model=model-a.bin,blocks=1', '--b', 'model=model-a.bin,blocks=5']);
  assert.equal(within.code, 0, within.stderr);
  assert.match(within.stdout, /pairing: by index within one model, model-a\.bin/);
});

test('mixed widths, different tables and unrecorded tables: index pairing refused unless --pair index, then warned', () => {
  const rows = [rec('[:, :, 0]', [[1, 2]]), rec('[:, :, 1]', [[3, 4]])];
  const q = ['--a', 'model=model-a.bin', '--b', 'model=model-b.bin'];
  const widths = handAtlas('widths.db', [{ dim: 64, emb: 'e'.repeat(64) }, { dim: 128, emb: 'f'.repeat(64) }], [rows, rows]);
  refused(['--db', widths, ...q], /--pair: model-a\.bin \(aaaaaaaaaaaa\) has width 64, model-b\.bin \(bbbbbbbbbbbb\) 128, so feature indices are not the same directions; use --pair vocab/);
  const tables = handAtlas('tables.db', [{ dim: 64, emb: 'e'.repeat(64) }, { dim: 64, emb: 'f'.repeat(64) }], [rows, rows]);
  refused(['--db', tables, ...q], /--pair: .* have different embedding tables/);
  const unknown = handAtlas('unknown.db', [{ dim: 64, emb: null }, { dim: 64, emb: 'f'.repeat(64) }], [rows, rows]);
  refused(['--db', unknown, ...q], /--pair: the embedding table of model-a\.bin \(aaaaaaaaaaaa\) is not recorded/);
  for (const file of [widths, tables, unknown]) {
    const r = cli(['atlas', 'compare', '--db', file, ...q, '--pair', 'index']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /pairing: by index, forced \(--pair index\)/);
    assert.match(r.stdout, /WARNING: index pairing across embedding spaces is arbitrary/);
    const json = JSON.parse(cli(['atlas', 'compare', '--db', file, ...q, '--pair', 'index', '--json']).stdout);
    assert.ok(json.warnings.some((w: string) => /arbitrary/.test(w)));
  }
  // --pair vocab: two models with no stored map, and one model on both sides.
  refused(['--db', tables, ...q, '--pair', 'vocab'], /--pair: no vocabulary map from model-a\.bin .* to model-b\.bin .*atlas build --model model-b\.bin --map-from model-a\.bin/);
  refused(['--db', tables, '--a', 'model=model-a.bin', '--b', 'model=model-a.bin', '--pair', 'vocab'], /--pair: vocab maps between two models/);
});

// ---------------------------------------------------------------------------------------------------------------
// Schema v3 → v4, against the committed v3 atlas

test('a version-3 atlas migrates to v4: records kept, embedding hash unknown until a build records it', () => {
  const file = path.join(dir, 'v3.db');
  copyFileSync(fixturePath('atlas-v3.sqlite'), file);
  const raw = new Database(file, { readonly: true });
  assert.equal(raw.pragma('user_version', { simple: true }), 3);
  const before = raw.prepare('SELECT id, result_json FROM records ORDER BY id').all();
  raw.close();
  assert.equal(before.length, 6);
  const atlas = Atlas.open(file, { readonly: true });
  assert.equal(atlas.schemaVersion, SCHEMA_VERSION);
  assert.equal(SCHEMA_VERSION, 4);
  assert.deepEqual([...atlas.records()].map((r) => r.id), before.map((r) => (r as { id: number }).id));
  const [m] = atlas.models();
  assert.equal(m!.name, 'stories260K.bin');
  assert.equal(m!.embedding_hash, null);
  assert.equal(m!.vocab_hash, null);
  // Same model, blocks 1 vs 2: still compares (no table needed within one model).
  const r = compareAtlas(atlas, { blocks: [1, 1] }, { blocks: [2, 2] });
  assert.equal(r.pairs, 3);
  atlas.close();
  // A build with the model fills the hashes in (and keeps the old records).
  const b = cli(['atlas', 'build', '--model', BIN, '--db', file, '--blocks', '1', '--features', '0', ...FAST]);
  assert.equal(b.code, 0, b.stderr);
  const again = Atlas.open(file, { readonly: true });
  const filled = again.models()[0]!;
  assert.match(filled.embedding_hash ?? '', /^[0-9a-f]{64}$/);
  assert.match(filled.vocab_hash ?? '', /^[0-9a-f]{64}$/);
  assert.equal(again.count(), 7);
  again.close();
});

// ---------------------------------------------------------------------------------------------------------------
// Real models: the two untrained controls, and --pair vocab on a rotated table

test('a model against both untrained controls: the kept-embedding control pairs by index, the full redraw only when forced', () => {
  const kept = path.join(dir, 'kept');
  const full = path.join(dir, 'full');
  assert.equal(cli(['random-model', '--like', BIN, '--out', kept, '--keep-embeddings', '--seed', '1']).code, 0);
  assert.equal(cli(['random-model', '--like', BIN, '--out', full, '--seed', '1']).code, 0);
  const db = path.join(dir, 'controls.db');
  for (const m of [BIN, kept, full]) {
    const r = cli(['atlas', 'build', '--model', m, '--db', db, '--blocks', '1', '--features', '0-3', ...FAST]);
    assert.equal(r.code, 0, r.stderr);
  }
  const a = ['--a', 'model=stories260K.bin', '--db', db];
  const vsKept = cli(['atlas', 'compare', ...a, '--b', 'model=kept']);
  assert.equal(vsKept.code, 0, vsKept.stderr);
  assert.match(vsKept.stdout, /pairing: by index: stories260K\.bin .* and kept .* share their embedding table/);
  assert.match(vsKept.stdout, /top-1 agreement: +\d\.\d{3} +chance \d\.\d{3}/);
  refused([...a, '--b', 'model=full'], /--pair: stories260K\.bin .* and full .* have different embedding tables/);
  const forced = cli(['atlas', 'compare', ...a, '--b', 'model=full', '--pair', 'index']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /WARNING: index pairing across embedding spaces is arbitrary/);
});

/** A uniformly random orthogonal matrix (QR of a Gaussian by modified Gram-Schmidt, float64), seeded. */
function randomOrthogonal(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const Q = Float64Array.from({ length: n * n }, gauss);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < i; k++) {
      let d = 0;
      for (let j = 0; j < n; j++) d += Q[i * n + j]! * Q[k * n + j]!;
      for (let j = 0; j < n; j++) Q[i * n + j]! -= d * Q[k * n + j]!;
    }
    let norm = 0;
    for (let j = 0; j < n; j++) norm += Q[i * n + j]! ** 2;
    norm = Math.sqrt(norm);
    for (let j = 0; j < n; j++) Q[i * n + j]! /= norm;
  }
  return Q;
}

test('--pair vocab: the ridge map between a table and its rotation recovers the rotation; compare pairs feature f with the record along row f', () => {
  // B = stories260K's blocks redrawn, its embedding table replaced by E_A R (R orthogonal, stored float32).
  const base = path.join(dir, 'rot-base');
  assert.equal(cli(['random-model', '--like', BIN, '--out', base, '--keep-embeddings', '--seed', '2']).code, 0);
  const A = loadModel(BIN);
  const EA = embeddingTable(A);
  const D = EA.dim;
  const R = randomOrthogonal(D, 7);
  const rotated = new Float32Array(EA.vocab * D);
  for (let v = 0; v < EA.vocab; v++) {
    for (let j = 0; j < D; j++) {
      let x = 0;
      for (let i = 0; i < D; i++) x += EA.data[v * D + i]! * R[i * D + j]!;
      rotated[v * D + j] = x;
    }
  }
  const rot = path.join(dir, 'rot');
  rmSync(rot, { recursive: true, force: true });
  // The folder as random-model wrote it, tensor by tensor under its Hugging Face names, the table swapped.
  const stored = readSafetensors(path.join(base, 'model.safetensors'));
  assert.ok(stored.some((t) => t.name === 'model.embed_tokens.weight'));
  const tensors = stored.map((t) => {
    const data = t.name === 'model.embed_tokens.weight' ? rotated : toFloat32(t);
    return { name: t.name, dtype: 'F32' as const, shape: t.shape, chunks: () => [new Uint8Array(data.buffer, data.byteOffset, data.byteLength)] };
  });
  mkdirSync(rot);
  for (const f of readdirSync(base)) if (!f.endsWith('.safetensors')) copyFileSync(path.join(base, f), path.join(rot, f));
  writeSafetensors(path.join(rot, 'model.safetensors'), tensors);
  const B = loadModel(rot);

  // The library fit: W = R to ≤ 1e-6 relative (Frobenius), R² ≈ 1, and each mapped direction is row f of R.
  const map = fitDirectionMap(EA, embeddingTable(B));
  let err = 0;
  let ref = 0;
  for (let k = 0; k < D * D; k++) {
    err += (map.W[k]! - R[k]!) ** 2;
    ref += R[k]! ** 2;
  }
  assert.ok(Math.sqrt(err / ref) <= 1e-6, `‖W − R‖/‖R‖ = ${Math.sqrt(err / ref)}`);
  assert.ok(map.r2 > 1 - 1e-9, `R² ${map.r2}`);
  const d3 = mappedDirection(map, 3);
  for (let j = 0; j < D; j++) close(d3[j], R[3 * D + j]!, 1e-5);

  // End to end through the CLI: A's records (objective sum, like the direction's dot product), B's mapped records.
  const db = path.join(dir, 'rot.db');
  const feats = ['--blocks', '1', '--features', '0-3', ...FAST, '--objective', 'sum'];
  assert.equal(cli(['atlas', 'build', '--model', BIN, '--db', db, ...feats]).code, 0);
  const built = cli(['atlas', 'build', '--model', rot, '--map-from', BIN, '--db', db, ...feats, '--json']);
  assert.equal(built.code, 0, built.stderr);
  const summary = JSON.parse(built.stdout);
  assert.equal(summary.directions, 4);
  assert.equal(summary.inserted, 4);
  assert.ok(summary.map.r2 > 1 - 1e-9);
  const cmp = JSON.parse(cli(['atlas', 'compare', '--db', db, '--a', 'model=stories260K.bin', '--b', 'model=rot', '--pair', 'vocab', '--json']).stdout);
  assert.equal(cmp.pairing, 'vocab');
  assert.equal(cmp.pairs, 4);
  assert.deepEqual(cmp.warnings, []);
  assert.ok(cmp.chance, 'chance level over the other mapped features');
  const atlas = Atlas.open(db, { readonly: true });
  const byId = new Map([...atlas.records({ model: 'rot' })].map((r) => [r.id, r]));
  for (const p of cmp.features) {
    // The B record paired with A's feature f was optimised along row f of R (as float32, via the map's fit).
    const direction = byId.get(p.b.id)!.direction!;
    for (let j = 0; j < D; j++) close(direction[j], R[p.feature * D + j]!, 1e-5);
    assert.equal(byId.get(p.b.id)!.settings.direction, vectorHash(mappedDirection(map, p.feature)));
  }
  atlas.close();
  // atlas ls shows each model's table hash and the map.
  const ls = cli(['atlas', 'ls', '--db', db]).stdout;
  assert.match(ls, /model [0-9a-f]{12}  rot  llama, 5 blocks, dim 64, vocab 512, embedding table [0-9a-f]{12}/);
  assert.match(ls, /map stories260K\.bin → rot: ridge R² 1\.0000 over 512 shared tokens, 4 features mapped/);
  // The text header names the map and its fit.
  const text = cli(['atlas', 'compare', '--db', db, '--a', 'model=stories260K.bin', '--b', 'model=rot', '--pair', 'vocab']).stdout;
  assert.match(text, /pairing: A's feature f ↔ B's record along f's image under the ridge map stories260K\.bin → rot \(R² 1\.000 over 512 shared tokens/);

  // Build refusals: a hook outside the residual stream; a model with another vocabulary.
  const mlp = cli(['atlas', 'build', '--model', rot, '--map-from', BIN, '--db', db, '--blocks', '1', '--hook', 'mlp', '--features', '0', ...FAST]);
  assert.equal(mlp.code, 2);
  assert.match(mlp.stderr, /--hook: --map-from maps residual-stream coordinates/);
  const fresh = path.join(dir, 'never.db');
  const gpt2 = cli(['atlas', 'build', '--model', rot, '--map-from', fixturePath('hf/gpt2-f16'), '--db', fresh, '--blocks', '1', '--features', '0', ...FAST]);
  assert.equal(gpt2.code, 2);
  assert.match(gpt2.stderr, /^llm-features: --map-from: gpt2-f16 has 96 tokens, rot 512: a vocabulary map needs one tokenizer\n$/);
  const missing = cli(['atlas', 'build', '--model', rot, '--map-from', path.join(dir, 'nope.bin'), '--db', fresh, '--blocks', '1', '--features', '0', ...FAST]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^llm-features: --map-from: .*nope\.bin: no such file/);
  const wide = cli(['atlas', 'build', '--model', rot, '--map-from', BIN, '--db', fresh, '--blocks', '1', '--features', '64', ...FAST]);
  assert.equal(wide.code, 2);
  assert.match(wide.stderr, /--features: feature 64 is outside the hook's features 0-63/);
  assert.equal(readdirSync(dir).includes('never.db'), false, 'a refused map writes no atlas');
});

test('the ridge map between two real tables satisfies its normal equations: E_Aᵀ(E_A W − E_B) + λW = 0', () => {
  const EA = embeddingTable(loadModel(BIN));
  const EB = embeddingTable(loadModel(modelPath('stories-d128-L4.bin')));
  const map = fitDirectionMap(EA, EB);
  const [V, dA, dB] = [EA.vocab, EA.dim, EB.dim];
  assert.equal(map.W.length, dA * dB);
  // Residual E_A W − E_B, then the gradient of the ridge objective (halved), element by element in float64.
  const res = new Float64Array(V * dB);
  let sse = 0;
  let sst = 0;
  for (let v = 0; v < V; v++) {
    for (let j = 0; j < dB; j++) {
      let x = -EB.data[v * dB + j]!;
      for (let i = 0; i < dA; i++) x += EA.data[v * dA + i]! * map.W[i * dB + j]!;
      res[v * dB + j] = x;
      sse += x * x;
    }
  }
  for (let j = 0; j < dB; j++) {
    let m = 0;
    for (let v = 0; v < V; v++) m += EB.data[v * dB + j]!;
    m /= V;
    for (let v = 0; v < V; v++) sst += (EB.data[v * dB + j]! - m) ** 2;
  }
  let grad = 0;
  let scale = 0;
  for (let i = 0; i < dA; i++) {
    for (let j = 0; j < dB; j++) {
      let g = map.lambda * map.W[i * dB + j]!;
      let h = 0;
      for (let v = 0; v < V; v++) {
        g += EA.data[v * dA + i]! * res[v * dB + j]!;
        h += EA.data[v * dA + i]! * EB.data[v * dB + j]!;
      }
      grad += g * g;
      scale += h * h;
    }
  }
  assert.ok(Math.sqrt(grad / scale) < 1e-9, `relative gradient ${Math.sqrt(grad / scale)}`);
  close(map.r2, 1 - sse / sst, 1e-9);
  assert.ok(map.r2 > 0.5 && map.r2 < 1, `R² ${map.r2}: the two trained tables are related, not equal`);
});
