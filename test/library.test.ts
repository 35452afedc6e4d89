// The package entry point works the way a TypeScript user imports it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as lib from '../src/index.js';
import { modelPath } from './helpers.js';

test('library entry: load, run a hook, visualize one feature', async () => {
  const model = lib.loadModel(modelPath('stories260K.gguf'));
  const runner = new lib.ModelRunner(model);
  const h = await runner.hidden([[1, 403, 407]], [1, 2], 'mlp');
  assert.deepEqual(h.shape, [1, 3, 172]);
  const vis = new lib.Visualizer(runner, model.tokenizer, lib.decoderFor(model));
  const [run] = await vis.visualize({ select: '[:, :, 1]', settings: { ...lib.DEFAULT_SETTINGS, blocks: [1, 1], hook: 'resid', steps: 20 } });
  assert.equal(run!.status, 'ok');
  assert.equal(typeof lib.atlas.Atlas, 'function');
  assert.equal(typeof lib.server.startServer, 'function');
  // Refinement from the library: never below the decoded tokens' activation.
  const [refined] = await vis.visualize({
    select: '[:, :, 1]',
    settings: { ...lib.DEFAULT_SETTINGS, blocks: [1, 1], hook: 'resid', steps: 20, refine: { ...lib.DEFAULT_REFINE, steps: 4, candidates: 16, starts: 2 } },
  });
  assert.ok(refined!.refined!.activation >= refined!.activation.decoded!);
  const inv = await lib.invert(runner, lib.decoderFor(model), model.tokenizer, [1, 403, 407], { ...lib.DEFAULT_INVERT, blocks: [1, 1], steps: 10 });
  assert.equal(inv.ids.length, 3);
  await runner.close();
});
