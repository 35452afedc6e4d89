// stories260K against the PyTorch float64 reference (scripts/make_reference.py → test/fixtures).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import type { Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { fixturePath, modelPath } from './helpers.js';
import { maxRelError } from './numeric.js';

interface ForwardFixture {
  ids: number[];
  cases: { blocks: [number, number] | null; hook: Hook | 'logits'; shape: [number, number]; values: number[][] }[];
}

const fixture = JSON.parse(readFileSync(fixturePath('stories260K-forward.json'), 'utf8')) as ForwardFixture;
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

for (const file of ['stories260K.gguf', 'stories260K.bin']) {
  const runner = new ModelRunner(loadModel(modelPath(file)));
  runners.push(runner);
  for (const c of fixture.cases) {
    const name = c.blocks ? `blocks ${c.blocks.join('-')} ${c.hook}` : 'logits';
    test(`${file}: ${name} matches the float64 reference`, async () => {
      const out = c.blocks ? await runner.hidden([fixture.ids], c.blocks, c.hook as Hook) : await runner.logits([fixture.ids]);
      assert.deepEqual(out.shape.slice(1), c.shape);
      const err = maxRelError(out.data, c.values.flat());
      assert.ok(err <= 1e-4, `relative error ${err.toExponential(2)}`);
    });
  }
}
