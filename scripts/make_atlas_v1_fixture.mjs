#!/usr/bin/env node
/**
 * Writes test/fixtures/atlas-v1.sqlite: a small atlas in the version-1 schema (as the first atlas builds wrote it),
 * with hand-made records, for the migration test. The v1 schema is copied here, frozen, so the fixture never depends
 * on the current code.
 *
 *   node scripts/make_atlas_v1_fixture.mjs [OUT]
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? path.join(root, 'test/fixtures/atlas-v1.sqlite');

const SCHEMA_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (hash TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE records (
  id INTEGER PRIMARY KEY,
  model_hash TEXT NOT NULL REFERENCES models(hash),
  block_a INTEGER NOT NULL,
  block_b INTEGER NOT NULL,
  hook TEXT NOT NULL,
  select_text TEXT NOT NULL,
  settings_json TEXT NOT NULL,
  status TEXT NOT NULL,
  result_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (model_hash, block_a, block_b, hook, select_text, settings_json)
);
`;

const TRAINED = 'a1'.repeat(32);
const CONTROL = 'c0'.repeat(32);
// v1 wrote settings in the order settingsRecord produced them; one record below has the same settings in another
// key order (v2 must fold them into one settings row).
const settings = { tokens: 3, steps: 20, lr: 2, lr_end: 0.2, optimizer: 'sgd', objective: 'l1', C: 100, topk: 2, decode: 'pinv', init: 'randn', prefix: [], suffix: [], bos: false, seed: 0, random_draws: 2 };
const settingsJson = JSON.stringify(settings);
const reordered = JSON.stringify(Object.fromEntries(Object.entries(settings).reverse()));

/** A hand-made v1 result: no timings, no select/blocks/hook/settings (those are columns). */
function result(seed, status = 'ok') {
  if (status === 'failed') {
    return {
      ids: [], free: [0, 1, 2], topk: [], topk_text: [], cosine: [],
      activation: { continuous: null, decoded: null, random: 0.25 },
      objective: { initial: 300, final: null }, baseline: null, loss: [[0, 300]], status, error: 'loss became NaN at step 3',
    };
  }
  const top1 = [10 + seed, 20 + seed, 30 + seed];
  const top2 = [40 + seed, 50 + seed, 60 + seed];
  return {
    ids: top1, free: [0, 1, 2], topk: [top1, top2], topk_text: [`t${top1.join('.')}`, `t${top2.join('.')}`],
    cosine: [0.5, 0.25, 0.125],
    activation: { continuous: 10 + seed, decoded: 1 + seed / 10, random: 0.5 },
    objective: { initial: 300, final: 100 - seed }, baseline: null, loss: [[0, 300], [10, 150], [19, 100 - seed]], status,
  };
}

rmSync(out, { force: true });
const db = new Database(out);
db.pragma('journal_mode = DELETE');
db.exec(SCHEMA_V1);
db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('format', 'llm-features-atlas');
db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('created_at', '2025-01-01T00:00:00.000Z');
db.prepare('INSERT INTO models (hash, name) VALUES (?, ?)').run(TRAINED, 'stories260K.bin');
db.prepare('INSERT INTO models (hash, name) VALUES (?, ?)').run(CONTROL, 'stories260K-untrained.bin');
const add = db.prepare(
  'INSERT INTO records (model_hash, block_a, block_b, hook, select_text, settings_json, status, result_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
);
let minute = 0;
const at = () => `2025-01-01T00:${String(minute++).padStart(2, '0')}:00.000Z`;
for (const [model, offset] of [[TRAINED, 0], [CONTROL, 5]]) {
  for (const [a, b] of [[1, 1], [1, 2]]) {
    for (const f of [0, 1, 2]) {
      const status = model === CONTROL && a === 1 && b === 2 && f === 2 ? 'failed' : 'ok';
      const json = f === 1 && model === TRAINED ? reordered : settingsJson;
      add.run(model, a, b, 'resid', `[:, :, ${f}]`, json, status, JSON.stringify(result(f + offset + b, status)), at());
    }
  }
}
// A run that is not a single feature (two positions' features 0..3 in one objective).
add.run(TRAINED, 1, 1, 'resid', '[:, 0, 0:4]', settingsJson, 'ok', JSON.stringify(result(9)), at());
db.pragma('user_version = 1');
db.exec('VACUUM');
db.close();
console.log(`wrote ${out}`);
