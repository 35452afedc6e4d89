import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import Ajv from 'ajv';
import { cli } from './cli-helpers.js';
import { modelPath, projectRoot } from './helpers.js';

const model = modelPath('stories260K.bin');

test('visualize --refine gcg --json: each run gains a refined entry next to the decoded activation', () => {
  const args = ['visualize', '--model', model, '--blocks', '1-2', '--select', '[:, :, 4-6]', '--steps', '40', '--random-draws', '1', '--refine', 'gcg', '--refine-steps', '6', '--candidates', '32', '--swap-topk', '8', '--refine-starts', '2', '--json'];
  const r = cli(args);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.runs.length, 3);
  for (const run of doc.runs) {
    const f = run.refined;
    assert.equal(f.method, 'gcg');
    assert.equal(f.ids.length, run.ids.length);
    assert.deepEqual(f.start_ids, run.ids, 'GCG starts from the decoded tokens');
    assert.ok(f.activation >= f.start_activation);
    assert.ok(Math.abs(f.start_activation - run.activation.decoded) < 1e-4 * Math.max(1, Math.abs(run.activation.decoded)));
    // Two climbs (the decode, then its second row unless that is the same prompt), up to 6 steps each.
    assert.ok(f.starts === 1 || f.starts === 2);
    assert.ok(f.start_row < f.starts);
    assert.ok(f.steps >= 1 && f.steps <= 6 * f.starts);
    assert.equal(typeof f.text, 'string');
    assert.equal(typeof f.retokenizes, 'boolean');
    assert.equal(run.exhaustive, null);
    assert.equal(typeof run.timings.refine_ms, 'number');
  }
  assert.deepEqual(doc.runs[0].settings.refine, { method: 'gcg', steps: 6, candidates: 32, swap_topk: 8, starts: 2, ban: [], printable: false, ascii: false, retokenize: false });
  // Text mode names the climbs and which start won.
  const text = cli(args.filter((a) => a !== '--json'));
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.split('\n').filter((l) => l.startsWith('  refined (gcg'));
  assert.equal(lines.length, 3);
  doc.runs.forEach((run: { refined: { steps: number; starts: number; start_row: number } }, i: number) => {
    const f = run.refined;
    const climbs = f.starts > 1 ? `, 2 starts, best from ${f.start_row === 0 ? 'the decode' : 'decode row 2'}` : '';
    assert.ok(lines[i]!.startsWith(`  refined (gcg, ${f.steps} steps${climbs}): `), lines[i]);
  });
  const strip = (d: { runs: { timings: unknown }[] }) => d.runs.map((x) => ({ ...x, timings: null }));
  assert.deepEqual(strip(JSON.parse(cli(args).stdout)), strip(doc), 'same output for the same seed');
  const schema = JSON.parse(readFileSync(`${projectRoot}/schemas/visualize.schema.json`, 'utf8'));
  const validate = new Ajv.default({ allErrors: true }).compile(schema);
  assert.ok(validate(doc), JSON.stringify(validate.errors));
});

test('visualize --refine epo: text mode shows the refined prompt and the frontier; filters and retokenisation hold', () => {
  const r = cli(['visualize', '--model', model, '--blocks', '1', '--select', '[:, :, 8]', '--steps', '30', '--refine', 'epo', '--refine-steps', '3', '--population', '4', '--candidates', '32', '--fluency', '0.1,10', '--ascii', '--retokenize', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const [run] = JSON.parse(r.stdout).runs;
  const f = run.refined;
  assert.equal(f.method, 'epo');
  assert.equal(f.members.length, 4);
  assert.ok(f.frontier.length >= 1);
  assert.equal(f.activation, f.frontier[0].activation);
  assert.equal(typeof f.cross_entropy, 'number');
  assert.deepEqual(run.settings.refine.fluency, [0.1, 10]);
  for (const p of f.frontier) for (const id of p.ids) assert.ok(id > 2 && (id < 3 || id > 258), `token ${id} is not an ASCII text piece`);
  const text = cli(['visualize', '--model', model, '--blocks', '1', '--select', '[:, :, 8]', '--steps', '20', '--refine', 'epo', '--refine-steps', '2', '--population', '2', '--candidates', '16']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /\n  refined \(epo, 2 steps\): ".*"  activation -?[\d.]+ → -?[\d.]+, cross-entropy [\d.]+\n    frontier: activation /);
});

test('visualize refinement flags: refused without --refine or with the wrong method', () => {
  const base = ['visualize', '--model', model, '--blocks', '1', '--select', '[:, :, 1]', '--steps', '5'];
  const stray = cli([...base, '--candidates', '8']);
  assert.equal(stray.code, 2);
  assert.equal(stray.stderr, 'llm-features: --candidates: only with --refine\n');
  const epoOnly = cli([...base, '--refine', 'gcg', '--population', '4']);
  assert.equal(epoOnly.code, 2);
  assert.match(epoOnly.stderr, /--population: only with --refine epo/);
  const method = cli([...base, '--refine', 'beam']);
  assert.equal(method.code, 2);
  assert.match(method.stderr, /--refine: "beam" is not one of gcg, epo/);
  const fluency = cli([...base, '--refine', 'epo', '--fluency', '1,x']);
  assert.equal(fluency.code, 2);
  assert.match(fluency.stderr, /--fluency: expected non-negative numbers/);
  const starts = cli([...base, '--refine', 'epo', '--refine-starts', '2']);
  assert.equal(starts.code, 2);
  assert.equal(starts.stderr, 'llm-features: --refine-starts: only with --refine gcg\n');
  const zero = cli([...base, '--refine', 'gcg', '--refine-starts', '0']);
  assert.equal(zero.code, 2);
  assert.equal(zero.stderr, 'llm-features: --refine-starts: must be ≥ 1, got 0\n');
  const inv = cli(['invert', '--model', model, '--blocks', '1', '--text', 'Once', '--refine', 'gcg', '--refine-starts', '2']);
  assert.equal(inv.code, 2);
  assert.match(inv.stderr, /^llm-features: --refine-starts: unknown flag for 'invert'/);
  const ban = cli([...base, '--refine', 'gcg', '--ban', '5,600']);
  assert.equal(ban.code, 2);
  assert.match(ban.stderr, /--ban: token id 600 is outside the vocabulary 0-511/);
});
