import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { buildAtlas } from '../src/atlas/build.js';
import { canonicalJson, sha256Hex } from '../src/atlas/canonical.js';
import { compareAtlas, meanJaccard, parseQuery, ranks, spearman, top1Agreement } from '../src/atlas/compare.js';
import { CSV_COLUMNS, exportCsv, exportJson } from '../src/atlas/export.js';
import { hashFile } from '../src/atlas/hash.js';
import { formatProgress } from '../src/atlas/progress.js';
import { SCHEMA_VERSION } from '../src/atlas/schema.js';
import { parseFeatures } from '../src/atlas/settings.js';
import { parseBlockList } from '../src/models/block-range.js';
import { Atlas } from '../src/atlas/store.js';
import { parseArgs } from '../src/cli/args.js';
import { atlasCommand } from '../src/cli/atlas.js';
import { ModelRunner } from '../src/engine/runner.js';
import { UserError } from '../src/errors.js';
import { DEFAULT_SETTINGS, type RunResult } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { fixturePath, modelPath, projectRoot } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-atlas-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MODEL = modelPath('stories260K.bin');
/** Small, fast settings: the same in the library builds and the child's flags below. */
const SETTINGS = { ...DEFAULT_SETTINGS, steps: 20, batch: 4, randomDraws: 2, tokens: 4 };
const SETTINGS_FLAGS = ['--steps', '20', '--batch', '4', '--random-draws', '2', '--tokens', '4'];

function sub(name: string) {
  const c = atlasCommand.subcommands!.find((s) => s.name === `atlas ${name}`);
  assert.ok(c, name);
  return c;
}

/** Run a subcommand in-process, capturing stdout. */
async function runSub(name: string, args: string[]): Promise<string> {
  const c = sub(name);
  const flags = parseArgs(c.name as 'atlas export', args);
  const chunks: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string | Uint8Array) => {
    chunks.push(typeof s === 'string' ? s : Buffer.from(s).toString());
    return true;
  }) as typeof process.stdout.write;
  try {
    await c.run(flags);
  } finally {
    process.stdout.write = write;
  }
  return chunks.join('');
}

// ---------------------------------------------------------------------------------------------------------------
// Pieces

test('canonical JSON sorts keys at every level; feature, block and query specs parse', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 0, y: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}');
  assert.equal(sha256Hex(canonicalJson({ x: 1, y: 2 })), sha256Hex(canonicalJson({ y: 2, x: 1 })));
  assert.deepEqual(parseFeatures('0,5,9-12,5'), [0, 5, 9, 10, 11, 12]);
  assert.throws(() => parseFeatures('0-64', 64), /feature 64 is outside the hook's features 0-63/);
  assert.throws(() => parseFeatures('3-1'), UserError);
  assert.throws(() => parseFeatures('a'), UserError);
  assert.deepEqual(parseBlockList('1,1-4,5,1'), [[1, 1], [1, 4], [5, 5]]);
  assert.throws(() => parseBlockList('1,,2'), UserError);
  assert.deepEqual(parseQuery('model=abc123,blocks=1-4, hook=mlp'), { model: 'abc123', blocks: [1, 4], hook: 'mlp' });
  assert.deepEqual(parseQuery(''), {});
  assert.throws(() => parseQuery('layer=3', '--a'), /--a: unknown key "layer"/);
  assert.throws(() => parseQuery('blocks=1,blocks=2'), /given twice/);
  assert.throws(() => parseQuery('hook=foo'), UserError);
  assert.deepEqual(ranks([3, 1, 2, 2]), [4, 1, 2.5, 2.5]);
  assert.equal(spearman([1, 2, 3, 4], [10, 20, 30, 1000]), 1);
  assert.equal(spearman([1, 2, 3], [3, 2, 1]), -1);
  assert.equal(spearman([1], [2]), null);
  assert.equal(spearman([1, 1, 1], [1, 2, 3]), null);
  assert.equal(top1Agreement([[1, 2, 3]], [[1, 0, 3]], [0, 1, 2]), 2 / 3);
  assert.equal(meanJaccard([[1], [2]], [[2], [3]], [0]), 1 / 3);
  const line = formatProgress({ done: 30, total: 60, skipped: 10, inserted: 20, elapsedMs: 10_000, blocks: [1, 4] });
  assert.match(line, /30\/60 records {2}blocks 1-4 {2}2\.00 rec\/s {2}ETA 15s/);
});

test('opening something that is not an atlas, or a missing atlas, is a one-line user error', () => {
  const junk = path.join(dir, 'junk.db');
  writeFileSync(junk, 'not a database '.repeat(100));
  assert.throws(() => Atlas.open(junk, { readonly: true }), /not an SQLite database/);
  assert.throws(() => Atlas.open(path.join(dir, 'missing.db'), { readonly: true }), /no such atlas/);
  const foreign = path.join(dir, 'foreign.db');
  const db = new Database(foreign);
  db.exec('CREATE TABLE t (x)');
  db.close();
  assert.throws(() => Atlas.open(foreign), /not an llm-features atlas/);
  const newer = path.join(dir, 'newer.db');
  Atlas.open(newer).close();
  const raw = new Database(newer);
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();
  assert.throws(() => Atlas.open(newer, { readonly: true }), /newer than this llm-features supports/);
});

// ---------------------------------------------------------------------------------------------------------------
// Compare on hand-made records

function handMade(select: string, top1: number[], top2: number[], continuous: number, status: 'ok' | 'failed' = 'ok'): RunResult {
  const ok = status === 'ok';
  return {
    select,
    blocks: [1, 1],
    hook: 'resid',
    settings: {},
    ids: ok ? top1 : [],
    free: [0, 1, 2],
    topk: ok ? [top1, top2] : [],
    topk_text: ok ? [top1.join(' '), top2.join(' ')] : [],
    cosine: ok ? [1, 1, 1] : [],
    cosine_scale: 0.5,
    activation: { continuous: ok ? continuous : null, decoded: ok ? continuous : null, random: 0 },
    objective: { initial: 10, final: ok ? 1 : null },
    baseline: null,
    loss: [[0, 10]],
    status,
    ...(ok ? {} : { error: 'loss became NaN at step 1' }),
    timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 },
  };
}

test('compare: top-1 agreement, top-k Jaccard and Spearman on hand-made records', async () => {
  const file = path.join(dir, 'hand.db');
  const atlas = Atlas.open(file);
  const A = 'aa'.repeat(32);
  const B = 'bb'.repeat(32);
  // One embedding table (hash) for both, so index pairing across the two models is sound (atlas-compare.test.ts tests the refusals).
  const base = { format: null, architecture: null, n_layers: null, dim: null, vocab: null, embedding_hash: 'ee'.repeat(32) };
  atlas.upsertModel({ hash: A, name: 'model-a.bin', ...base });
  atlas.upsertModel({ hash: B, name: 'model-b.bin', ...base });
  const S = atlas.upsertSettings({ tokens: 3, topk: 2 });
  const S2 = atlas.upsertSettings({ tokens: 3, topk: 2, seed: 1 });
  const at = (blocks: [number, number], r: RunResult) => ({ ...r, blocks });
  atlas.insertResults(A, S, [
    handMade('[:, :, 0]', [1, 2, 3], [4, 5, 6], 1.0), // vs B: top-1 2/3; Jaccard (1 + 1/3 + 0)/3 = 4/9
    handMade('[:, :, 1]', [7, 7, 7], [8, 8, 8], 2.0), // vs B: top-1 0; Jaccard 1
    handMade('[:, :, 2]', [1, 2, 3], [4, 5, 6], 3.0), // vs B: top-1 1; Jaccard 1
    handMade('[:, :, 3]', [1, 2, 3], [4, 5, 6], 4.0), // B failed: left out
    handMade('[:, :, 4]', [1, 2, 3], [4, 5, 6], 5.0), // only in A
  ]);
  atlas.insertResults(A, S2, [handMade('[:, :, 0]', [1, 2, 3], [4, 5, 6], 9.0)]); // other settings: only in A
  // A B record for feature 2 at blocks 2: B then holds two block ranges, so records pair only within one range and
  // this one (A has no blocks 2) is left out instead of standing in for block 1's (compare.ts).
  atlas.insertResults(B, S, [at([2, 2], handMade('[:, :, 2]', [9, 9, 9], [9, 9, 9], 99))]);
  atlas.insertResults(B, S, [
    handMade('[:, :, 0]', [1, 2, 9], [4, 6, 5], 30),
    handMade('[:, :, 1]', [8, 8, 8], [7, 7, 7], 10),
    handMade('[:, :, 2]', [1, 2, 3], [4, 5, 6], 20),
    handMade('[:, :, 3]', [], [], 0, 'failed'),
    handMade('[:, :, 5]', [1, 2, 3], [4, 5, 6], 6.0), // only in B
  ]);
  atlas.close();

  const ro = Atlas.open(file, { readonly: true });
  const r = compareAtlas(ro, { model: 'model-a.bin' }, { model: 'bbbb' });
  ro.close();
  assert.equal(r.a.records, 6);
  assert.equal(r.b.records, 6);
  assert.equal(r.pairs, 4);
  assert.equal(r.compared, 3);
  assert.equal(r.failed, 1);
  assert.equal(r.only_a, 2);
  assert.equal(r.only_b, 2);
  const close = (x: number | null, y: number) => assert.ok(x !== null && Math.abs(x - y) < 1e-12, `${x} vs ${y}`);
  close(r.top1_agreement, (2 / 3 + 0 + 1) / 3);
  close(r.jaccard, (4 / 9 + 1 + 1) / 3);
  // Decoded A (1, 2, 3) vs B (30, 10, 20): ranks (1, 2, 3) vs (3, 1, 2) → −0.5.
  close(r.spearman, -0.5);
  assert.deepEqual(r.features.map((p) => p.feature), [0, 1, 2, 3]);
  close(r.features[0]!.jaccard, 4 / 9);
  assert.equal(r.features[2]!.b.blocks[0], 1, 'block 1 pairs with block 1; B\'s blocks-2 record is left out');
  assert.equal(r.features[3]!.top1_agreement, null);
  assert.equal(r.features[3]!.b.status, 'failed');

  // The CLI: text and --json, read-only.
  const text = await runSub('compare', ['--db', file, '--a', 'model=model-a.bin', '--b', 'model=model-b.bin']);
  assert.match(text, /top-1 agreement: +0\.556 +chance /);
  assert.match(text, /mean top-k Jaccard: +0\.815 +chance /);
  assert.match(text, /Spearman of decoded activations: -0\.500/);
  const json = JSON.parse(await runSub('compare', ['--db', file, '--a', 'model=model-a.bin', '--b', 'model=model-b.bin', '--json']));
  assert.equal(json.pairs, 4);
  assert.equal(json.features.length, 4);
  await assert.rejects(runSub('compare', ['--db', file, '--a', 'model=nope', '--b', 'blocks=1']), /model=nope: no model in the atlas/);
  await assert.rejects(runSub('compare', ['--db', file, '--a', 'blocks=3', '--b', 'blocks=1']), /: a blocks=3: no records/);
  await assert.rejects(runSub('compare', ['--db', file, '--a', 'model=model-a.bin,settings=' + S2.slice(0, 8), '--b', 'model=model-b.bin']), /no record of --a .* pairs/);
});

test('compare: a side holding two hooks pairs only within one hook (block 1 mlp neuron 3 never stands in for resid feature 3)', () => {
  const file = path.join(dir, 'hooks.db');
  const atlas = Atlas.open(file);
  const M = 'cc'.repeat(32);
  atlas.upsertModel({ hash: M, name: 'm.bin', format: null, architecture: null, n_layers: null, dim: null, vocab: null, embedding_hash: 'dd'.repeat(32) });
  const S = atlas.upsertSettings({ tokens: 3, topk: 2 });
  const hooked = (hook: 'resid' | 'mlp', blocks: [number, number], r: RunResult): RunResult => ({ ...r, hook, blocks });
  atlas.insertResults(M, S, [hooked('resid', [1, 1], handMade('[:, :, 3]', [1, 2, 3], [4, 5, 6], 1))]);
  // Inserted later (newer) with the same selection and settings: it must not replace the resid record in the pairing.
  atlas.insertResults(M, S, [hooked('mlp', [1, 1], handMade('[:, :, 3]', [7, 7, 7], [8, 8, 8], 1))]);
  atlas.insertResults(M, S, [hooked('resid', [5, 5], handMade('[:, :, 3]', [1, 2, 3], [4, 5, 6], 1))]);
  atlas.close();
  const ro = Atlas.open(file, { readonly: true });
  const r = compareAtlas(ro, { blocks: [1, 1] }, { blocks: [5, 5] });
  assert.equal(r.pairs, 1);
  assert.equal(r.features[0]!.a.hook, 'resid');
  assert.equal(r.top1_agreement, 1);
  assert.equal(r.only_a, 1);
  // One hook on each side: compared across it, as asked.
  const across = compareAtlas(ro, { blocks: [1, 1], hook: 'mlp' }, { blocks: [5, 5] });
  assert.equal(across.pairs, 1);
  assert.equal(across.top1_agreement, 0);
  ro.close();
});

// ---------------------------------------------------------------------------------------------------------------
// Migration from the committed version-1 fixture

test('a version-1 atlas is migrated on open: every record kept, settings folded canonically, queries work', async () => {
  const fixture = fixturePath('atlas-v1.sqlite');
  const before = hashFile(fixture);
  const file = path.join(dir, 'v1.db');
  copyFileSync(fixture, file);
  const raw = new Database(file, { readonly: true });
  assert.equal(raw.pragma('user_version', { simple: true }), 1);
  const v1Rows = raw.prepare('SELECT id, select_text, status, result_json FROM records ORDER BY id').all() as { id: number; select_text: string; status: string; result_json: string }[];
  raw.close();
  assert.equal(v1Rows.length, 13);

  // A read-only open migrates (briefly writable), then reads.
  const atlas = Atlas.open(file, { readonly: true });
  assert.equal(atlas.schemaVersion, SCHEMA_VERSION);
  assert.equal(atlas.count(), 13);
  const records = [...atlas.records()];
  assert.deepEqual(records.map((r) => r.id), v1Rows.map((r) => r.id));
  for (const [i, r] of records.entries()) {
    const old = JSON.parse(v1Rows[i]!.result_json);
    assert.equal(r.select, v1Rows[i]!.select_text);
    assert.equal(r.status, v1Rows[i]!.status);
    assert.deepEqual(r.topk, old.topk);
    assert.deepEqual(r.activation, old.activation);
    assert.equal(r.timings, null);
    assert.equal(r.settings.steps, 20);
  }
  // The record written with reordered settings keys shares the one settings row.
  assert.equal(new Set(records.map((r) => r.settings_hash)).size, 1);
  assert.equal(records[0]!.settings_hash, sha256Hex(canonicalJson(records[0]!.settings)));
  assert.deepEqual(records.map((r) => r.feature).slice(-1), [null]);
  assert.equal(records.filter((r) => r.feature === 1).length, 4);
  assert.deepEqual(atlas.models().map((m) => m.name).sort(), ['stories260K-untrained.bin', 'stories260K.bin']);
  const groups = atlas.groups();
  assert.equal(groups.length, 4);
  assert.equal(groups.find((g) => g.model_name === 'stories260K-untrained.bin' && g.blocks[1] === 2)!.failed, 1);
  const report = compareAtlas(atlas, { model: 'stories260K.bin', blocks: [1, 1] }, { model: 'stories260K.bin', blocks: [1, 2] });
  assert.equal(report.pairs, 3);
  atlas.close();

  // Opening again is a no-op; the committed fixture itself is untouched.
  const again = Atlas.open(file);
  assert.equal(again.count(), 13);
  again.close();
  assert.equal(hashFile(fixture), before);
  const listing = await runSub('ls', ['--db', file]);
  assert.match(listing, new RegExp(`schema v${SCHEMA_VERSION}, 13 records, 2 models`));
});

// ---------------------------------------------------------------------------------------------------------------
// Building with a real model

const model = loadModel(MODEL);
const runner = new ModelRunner(model);
after(() => runner.close());

test('build: one complete record per (blocks, feature); a re-run adds nothing; an extended sweep adds only what is new', async () => {
  const file = path.join(dir, 'idem.db');
  const hashed: string[] = [];
  const req = { runner, hook: 'resid' as const, blocks: [[1, 1], [1, 2]] as [number, number][], settings: SETTINGS, onHash: (f: string) => hashed.push(f) };
  let atlas = Atlas.open(file);
  const first = await buildAtlas({ ...req, atlas, features: [0, 1, 2, 3, 4, 5] });
  assert.deepEqual([first.total, first.skipped, first.inserted, first.failed], [12, 0, 12, 0]);
  assert.equal(first.model.hash, hashFile(MODEL), 'a single-file model is identified by its sha256');
  assert.equal(hashed.length, 1);
  atlas.close();

  atlas = Atlas.open(file);
  const progress: number[] = [];
  const second = await buildAtlas({ ...req, atlas, features: [0, 1, 2, 3, 4, 5], onProgress: (p) => progress.push(p.done) });
  assert.deepEqual([second.total, second.skipped, second.inserted], [12, 12, 0]);
  assert.equal(hashed.length, 1, 'the checkpoint hash is remembered by path, size and mtime');
  assert.deepEqual(progress, [12]);
  const third = await buildAtlas({ ...req, atlas, features: [4, 5, 6, 7] });
  assert.deepEqual([third.total, third.skipped, third.inserted], [8, 4, 4]);
  assert.equal(atlas.count(), 16);
  const recs = [...atlas.records()];
  const keys = recs.map((r) => `${r.blocks.join('-')}|${r.select}`);
  assert.equal(new Set(keys).size, 16);
  for (const r of recs) {
    assert.equal(r.status, 'ok');
    assert.equal(r.topk.length, SETTINGS.topk);
    assert.equal(r.topk[0]!.length, SETTINGS.tokens);
    assert.equal(r.feature, Number(/\d+/.exec(r.select)![0]));
    assert.equal(r.settings.steps, 20);
    assert.ok(r.timings && r.timings.optimize_ms > 0);
    assert.ok(r.loss.length > 0);
  }
  // Paging a group by feature uses the paging index.
  const g = { model_hash: first.model.hash, blocks: [1, 2] as [number, number], hook: 'resid', settings_hash: first.settings_hash };
  assert.deepEqual(atlas.page(g, 2, 3).map((r) => r.feature), [3, 4, 5]);
  const plan = atlas.db
    .prepare('EXPLAIN QUERY PLAN SELECT id FROM records WHERE model_hash = ? AND block_a = ? AND block_b = ? AND hook = ? AND settings_hash = ? AND feature > ? ORDER BY feature LIMIT 10')
    .all(g.model_hash, 1, 2, 'resid', g.settings_hash, 0) as { detail: string }[];
  assert.match(plan.map((p) => p.detail).join('\n'), /records_page/);
  atlas.close();

  // Export: JSON holds every record with its model, blocks, hook, select and result; CSV one row each.
  const ro = Atlas.open(file, { readonly: true });
  let out = '';
  assert.equal(exportJson(ro, {}, (s) => (out += s)), 16);
  const doc = JSON.parse(out);
  assert.equal(doc.records.length, 16);
  const r0 = doc.records[0];
  for (const key of ['model', 'blocks', 'hook', 'select', 'settings', 'topk', 'topk_text', 'cosine', 'activation', 'baseline', 'loss', 'status', 'timings']) {
    assert.ok(key in r0, key);
  }
  assert.equal(r0.model.name, 'stories260K.bin');
  let csv = '';
  assert.equal(exportCsv(ro, { blocks: [1, 1] }, (s) => (csv += s)), 8);
  const lines = csv.trimEnd().split('\n');
  assert.equal(lines.length, 9);
  assert.equal(lines[0], CSV_COLUMNS.join(','));
  ro.close();
  const viaCli = JSON.parse(await runSub('export', ['--db', file, '--format', 'json', '--where', 'blocks=1-2']));
  assert.equal(viaCli.records.length, 8);
  const ls = JSON.parse(await runSub('ls', ['--db', file, '--json']));
  assert.equal(ls.records, 16);
  assert.deepEqual(ls.groups.map((x: { features: number[] }) => x.features), [[0, 7], [0, 7]]);
});

test('build: bad flags are user errors before any work', async () => {
  const file = path.join(dir, 'bad.db');
  const build = (extra: string[]) => runSub('build', ['--model', MODEL, '--db', file, ...extra]);
  await assert.rejects(build(['--blocks', '1-9', '--features', '0']), /block range 1-9 is outside the model's blocks 1-5/);
  await assert.rejects(build(['--blocks', '1', '--features', '0-64']), /feature 64 is outside/);
  await assert.rejects(build(['--blocks', '1', '--features', '0', '--hook', 'mlp', '--features-x', '1']), /unknown flag/);
  await assert.rejects(build(['--blocks', '1', '--features', 'x']), UserError);
  await assert.rejects(build(['--blocks', '1', '--features', '0', '--optimizer', 'lbfgs']), /--optimizer/);
  assert.equal(existsSync(file), false, 'no atlas is created for a command that fails its checks');
});

// ---------------------------------------------------------------------------------------------------------------
// Resume after SIGKILL

/** A child that runs `atlas build` as the CLI would (main.ts registers the command; this stands in for it). */
function childScript(): string {
  const file = path.join(dir, 'atlas-child.mjs');
  const url = (p: string) => pathToFileURL(path.join(projectRoot, 'dist', p)).href;
  writeFileSync(
    file,
    `import { atlasCommand } from ${JSON.stringify(url('src/cli/atlas.js'))};\n` +
      `import { parseArgs } from ${JSON.stringify(url('src/cli/args.js'))};\n` +
      `const build = atlasCommand.subcommands.find((c) => c.name === 'atlas build');\n` +
      `await build.run(parseArgs('atlas build', process.argv.slice(2)));\n`,
  );
  return file;
}

function runChild(script: string, args: string[]): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> } {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stdout += d));
  const done = new Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr, stdout })),
  );
  return { child, done };
}

/** Records committed so far, read the way a server would (a fresh read-only connection); -1 before the schema exists. */
function committed(file: string): number {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT count(*) FROM records').pluck().get() as number;
    } finally {
      db.close();
    }
  } catch {
    return -1;
  }
}

test('build killed with SIGKILL mid-sweep: only whole batches committed; the same command finishes the rest, no duplicates', async () => {
  const file = path.join(dir, 'killed.db');
  const script = childScript();
  const features = 64;
  const args = ['--model', MODEL, '--db', file, '--blocks', '1,1-2', '--features', `0-${features - 1}`, ...SETTINGS_FLAGS];
  const total = 2 * features;

  const { child, done } = runChild(script, args);
  let seen = -1;
  const t0 = Date.now();
  while (Date.now() - t0 < 30_000) {
    seen = committed(file);
    if (seen >= SETTINGS.batch) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(seen >= SETTINGS.batch, `no batch committed within 30 s (${seen})`);
  child.kill('SIGKILL');
  const killed = await done;
  assert.equal(killed.signal, 'SIGKILL', `the child finished before it was killed: ${killed.stderr}`);

  // What survived: whole batches of complete records, an intact database.
  const db = new Database(file, { readonly: true });
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  const survived = db.prepare('SELECT id, block_a, block_b, select_text, result_json FROM records ORDER BY id').all() as { id: number; block_a: number; block_b: number; select_text: string; result_json: string }[];
  db.close();
  assert.ok(survived.length >= SETTINGS.batch && survived.length < total, `${survived.length} of ${total}`);
  assert.equal(survived.length % SETTINGS.batch, 0, 'a partial batch was committed');
  for (const row of survived) {
    const r = JSON.parse(row.result_json);
    assert.equal(r.status, 'ok');
    assert.equal(r.topk.length, SETTINGS.topk);
  }

  // Kill it twice more at arbitrary moments (any phase: start-up, optimising, committing): still only whole batches.
  let before = survived.length;
  for (const delay of [150 + Math.random() * 600, 150 + Math.random() * 600]) {
    const again = runChild(script, args);
    await new Promise((r) => setTimeout(r, delay));
    again.child.kill('SIGKILL');
    const k = await again.done;
    const n = committed(file);
    assert.ok(n >= before && n <= total, `${before} → ${n}`);
    assert.equal(n % SETTINGS.batch, 0, 'a partial batch was committed');
    if (k.signal !== 'SIGKILL') assert.equal(n, total);
    before = n;
  }
  const check = new Database(file, { readonly: true });
  assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
  check.close();

  // The same command again: finishes the rest without touching what was there.
  const rerun = runChild(script, args);
  const res = await rerun.done;
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, new RegExp(`${total} records .*: ${total - before} new, ${before} already there, 0 failed`));
  if (process.env.LLMF_ATLAS_DEBUG) process.stderr.write(`killed at ${survived.length}, then ${before} of ${total}\n`);
  assert.match(res.stderr, /records {2}blocks .* rec\/s {2}done/);
  const atlas = Atlas.open(file, { readonly: true });
  const all = [...atlas.records()];
  assert.equal(all.length, total);
  assert.equal(new Set(all.map((r) => `${r.blocks.join('-')}|${r.select}`)).size, total);
  for (const row of survived) {
    const r = all.find((x) => x.id === row.id)!;
    assert.equal(r.select, row.select_text);
  }
  assert.ok(all.every((r) => r.status === 'ok' && r.topk.length === SETTINGS.topk && r.topk[0]!.length === SETTINGS.tokens));

  // Same settings, same model: the records agree with the in-process build's (batch-independent and seeded).
  const idem = Atlas.open(path.join(dir, 'idem.db'), { readonly: true });
  for (const r of idem.records()) {
    const twin = all.find((x) => x.select === r.select && x.blocks.join() === r.blocks.join())!;
    assert.equal(twin.settings_hash, r.settings_hash);
    assert.deepEqual(twin.topk, r.topk, `${r.blocks} ${r.select}`);
  }
  idem.close();
  atlas.close();
  // A third run is a no-op.
  const third = await runChild(script, args).done;
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stdout, new RegExp(`0 new, ${total} already there`));
  assert.equal(committed(file), total);
});

test('the committed v1 fixture is small and holds what its script writes', () => {
  const fixture = fixturePath('atlas-v1.sqlite');
  assert.ok(readFileSync(fixture).length < 100 * 1024);
  const fresh = path.join(dir, 'v1-fresh.sqlite');
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'scripts/make_atlas_v1_fixture.mjs'), fresh], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const dump = (file: string) => {
    const db = new Database(file, { readonly: true });
    try {
      return {
        version: db.pragma('user_version', { simple: true }),
        schema: db.prepare("SELECT sql FROM sqlite_master ORDER BY name").pluck().all(),
        meta: db.prepare('SELECT * FROM meta ORDER BY key').all(),
        models: db.prepare('SELECT * FROM models ORDER BY hash').all(),
        records: db.prepare('SELECT * FROM records ORDER BY id').all(),
      };
    } finally {
      db.close();
    }
  };
  assert.deepEqual(dump(fresh), dump(fixture));
});
