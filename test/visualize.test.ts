import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import Ajv from 'ajv';
import { ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { DEFAULT_SETTINGS, Visualizer, type VisualizeSettings } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { modelPath, projectRoot } from './helpers.js';

const model = loadModel(modelPath('stories260K.bin'));
const runner = new ModelRunner(model);
const visualizer = new Visualizer(runner, model.tokenizer, decoderFor(model));
after(() => runner.close());

const settings = (over: Partial<VisualizeSettings> = {}): VisualizeSettings => ({
  ...DEFAULT_SETTINGS,
  blocks: [1, 2],
  hook: 'resid',
  steps: 60,
  batch: 4,
  randomDraws: 2,
  ...over,
});

test('the objective falls far below its start, and the continuous optimum beats random tokens', async () => {
  const [r] = await visualizer.visualize({ select: '[:, :, 7]', settings: settings({ steps: 200 }) });
  assert.equal(r!.status, 'ok');
  assert.ok(r!.objective.final! < 0.05 * r!.objective.initial!, `${r!.objective.initial} → ${r!.objective.final}`);
  assert.ok(r!.activation.continuous! > r!.activation.random!);
  assert.equal(r!.topk.length, 5);
  assert.equal(r!.topk[0]!.length, 5);
  assert.equal(r!.cosine.length, 5);
});

test('changing one problem of a batch leaves the other problems bit-identical', async () => {
  const base = await visualizer.visualize({ select: '[:, :, 0-3]', settings: settings() });
  const T = 5;
  const D = model.config.dim;
  const changed = await visualizer.visualize({
    select: '[:, :, 0-3]',
    settings: settings(),
    initialEmbeddings: (i) => (i === 0 ? Float32Array.from({ length: T * D }, (_, k) => Math.sin(k)) : undefined),
  });
  assert.notDeepEqual(changed[0]!.loss, base[0]!.loss);
  for (let i = 1; i < 4; i++) {
    assert.deepEqual(changed[i]!.loss, base[i]!.loss, `run ${i} loss curve`);
    assert.deepEqual(changed[i]!.topk, base[i]!.topk);
    assert.equal(changed[i]!.activation.continuous, base[i]!.activation.continuous);
  }
});

test('a selection gives the same tokens alone and inside a batch', async () => {
  const batch = await visualizer.visualize({ select: '[:, :, 10-13]', settings: settings() });
  const alone = await visualizer.visualize({ select: '[:, :, 12]', settings: settings() });
  assert.equal(alone[0]!.select, batch[2]!.select);
  assert.deepEqual(alone[0]!.topk, batch[2]!.topk);
});

test('a NaN-injected problem is reported failed while its batch-mates finish', async () => {
  const T = 5;
  const D = model.config.dim;
  const runs = await visualizer.visualize({
    select: '[:, :, 20-22]',
    settings: settings(),
    initialEmbeddings: (i) => (i === 1 ? new Float32Array(T * D).fill(NaN) : undefined),
  });
  assert.equal(runs[1]!.status, 'failed');
  assert.match(runs[1]!.error!, /NaN/);
  assert.equal(runs[0]!.status, 'ok');
  assert.equal(runs[2]!.status, 'ok');
  assert.ok(runs[0]!.objective.final! < runs[0]!.objective.initial!);
});

test('visualize --json: same output for the same seed, valid against the schema', () => {
  const args = ['visualize', '--model', modelPath('stories260K.gguf'), '--blocks', '1', '--select', '[:, :, 0-2]', '--steps', '50', '--json', '--seed', '3'];
  const a = cli(args);
  assert.equal(a.code, 0, a.stderr);
  const doc = JSON.parse(a.stdout);
  const b = JSON.parse(cli(args).stdout);
  const strip = (d: { runs: { timings: unknown }[] }) => d.runs.map((r) => ({ ...r, timings: null }));
  assert.deepEqual(strip(doc), strip(b));
  const other = JSON.parse(cli(args.slice(0, -1).concat('4')).stdout);
  assert.notDeepEqual(strip(doc), strip(other));
  const schema = JSON.parse(readFileSync(`${projectRoot}/schemas/visualize.schema.json`, 'utf8'));
  const validate = new Ajv.default({ allErrors: true }).compile(schema);
  const valid = validate(structuredClone(doc));
  assert.ok(valid, JSON.stringify(validate.errors));
  assert.equal(doc.runs.length, 3);
  assert.equal(doc.runs[0].baseline.kind, 'skip-connection');
});

test('visualize text mode prints the selection and verdict, the activations, then the top-k rows token by token', () => {
  const r = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1-2', '--hook', 'mlp', '--select', '[:, 0:2, 5]', '--steps', '30', '--topk', '3']);
  assert.equal(r.code, 0, r.stderr);
  // Positions 2-4 come after the last selected one: no gradient, so they are shown bracketed, as context.
  const cells = '[^·\\n]*·[^·\\n]*·\\[[^\\n]*\\]·\\[[^\\n]*\\]·\\[[^\\n]*\\]';
  const want = new RegExp(
    '^\\[:, 0:2, 5\\]  blocks 1-2  hook mlp  ok  — [^\\n]*no real-data percentile \\(give --corpus FILE\\)\\n' +
      '  activation: decoded -?[\\d.]+  random -?[\\d.]+  continuous -?[\\d.]+\\n' +
      `  top1: ${cells}\\n  top2: ${cells}\\n  top3: ${cells}\\n  \\(\\[x\\]: fixed context or no gradient[^\\n]*\\n  cosine to decoded tokens: `,
  );
  assert.match(r.stdout, want);
});

test('visualize bad input: selection syntax shows a caret; out-of-range feature; bad objective', () => {
  const syntax = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, :, 3x]']);
  assert.equal(syntax.code, 2);
  assert.equal(syntax.stderr, 'llm-features: --select: expected "]" at character 9\n  [:, :, 3x]\n          ^\n');
  const range = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--hook', 'mlp', '--select', '[:, :, 172]']);
  assert.equal(range.code, 2);
  assert.match(range.stderr, /feature 172 is outside the valid range 0-171/);
  const obj = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, :, 1]', '--objective', 'mean']);
  assert.equal(obj.code, 2);
  assert.match(obj.stderr, /^llm-features: --objective: "mean" is not one of l1, sum, max\n$/);
});
