import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cli } from './cli-helpers.js';
import { modelPath } from './helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-vis-'));
const model = modelPath('stories260K.bin');

function visualize(args: string[]) {
  const steps = args.includes('--steps') ? [] : ['--steps', '40'];
  const r = cli(['visualize', '--model', model, '--json', ...steps, '--random-draws', '1', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).runs as {
    ids: number[];
    free: number[];
    topk: number[][];
    activation: { continuous: number; decoded: number; random: number };
    objective: { initial: number; final: number };
    settings: Record<string, unknown>;
  }[];
}

/** A minimal version-1 .npy file holding a little-endian float32 vector. */
function writeNpy(file: string, values: number[]): void {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${values.length},), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(new Float32Array(values).buffer)]));
}

test('--direction from JSON and from .npy: the projection rises; both files give the same run', () => {
  const dir = Array.from({ length: 64 }, (_, i) => Math.cos(i));
  writeFileSync(path.join(tmp, 'dir.json'), JSON.stringify(dir));
  writeNpy(path.join(tmp, 'dir.npy'), dir);
  const a = visualize(['--blocks', '1-2', '--select', '[:, :, :]', '--direction', path.join(tmp, 'dir.json')]);
  const b = visualize(['--blocks', '1-2', '--select', '[:, :, :]', '--direction', path.join(tmp, 'dir.npy')]);
  assert.equal(a[0]!.settings.objective, 'direction');
  assert.ok(a[0]!.objective.final < a[0]!.objective.initial);
  assert.ok(a[0]!.activation.continuous > a[0]!.activation.random);
  assert.deepEqual(a[0]!.topk, b[0]!.topk);
  const bad = cli(['visualize', '--model', model, '--blocks', '1', '--select', '[:, :, :]', '--direction', path.join(tmp, 'dir.json'), '--hook', 'mlp']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--direction: vector has length 64, the hook has 172 features/);
});

test('--bos, --prefix and --suffix stay fixed around the free tokens', () => {
  const [r] = visualize(['--blocks', '1', '--select', '[:, 3, 5]', '--bos', '--prefix', 'Once', '--suffix', 'time', '--tokens', '2']);
  // <s> " Once" free free " time"
  assert.equal(r!.ids.length, 5);
  assert.equal(r!.ids[0], 1);
  assert.equal(r!.ids[1], 403);
  assert.equal(r!.ids[4], 378);
  assert.deepEqual(r!.free, [2, 3]);
  assert.ok(r!.topk.every((row) => row[0] === 1 && row[1] === 403 && row[4] === 378));
});

test('objectives sum and max, Adam, and token initialisation all optimise', () => {
  for (const extra of [['--objective', 'sum'], ['--objective', 'max'], ['--optimizer', 'adam', '--lr', '0.1'], ['--init', 'tokens:Once upon a time there'], ['--init', 'random-tokens']]) {
    const [r] = visualize(['--blocks', '1', '--select', '[:, :, 9]', ...extra]);
    assert.ok(r!.objective.final < r!.objective.initial, `${extra.join(' ')}: ${r!.objective.initial} → ${r!.objective.final}`);
  }
  // sum reports Σ(C − O): its start is about C per selected element.
  const [s] = visualize(['--blocks', '1', '--select', '[:, :, 9]', '--objective', 'sum', '--steps', '1']);
  assert.ok(Math.abs(s!.objective.initial - 500) < 50, String(s!.objective.initial));
});

test('--decode nearest-cosine and nearest-l2 give real tokens', () => {
  for (const mode of ['nearest-cosine', 'nearest-l2']) {
    const [r] = visualize(['--blocks', '1', '--select', '[:, :, 2]', '--decode', mode, '--topk', '2']);
    assert.equal(r!.topk.length, 2);
    assert.ok(r!.topk[0]!.every((id) => id >= 0 && id < 512));
  }
});
