// The architecture registry: every spec round-trips through random-model --like and the HF reader, and a spec's
// tensor list is the single source of what the reader accepts and the graphs bind.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { ModelRunner } from '../src/engine/runner.js';
import { loadHfFolder } from '../src/models/hf.js';
import { loadModel } from '../src/models/load.js';
import { writeRandomModel } from '../src/models/random-model.js';
import { SPECS, specOf } from '../src/models/registry.js';
import type { Family } from '../src/models/config.js';
import { fixturePath, modelPath } from './helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-registry-'));
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

/** Sources per family: every registered spec must have at least one, so a new family without one fails here. */
const SOURCES: Record<Family, string[]> = {
  llama: ['hf/llama-gqa-bf16', 'hf/qwen2-tied', 'hf/llama3-rope-scaling', 'stories260K.gguf'],
  gpt2: ['hf/gpt2-f16', 'hf/gpt2-prefixed-f32'],
  gemma: ['hf/gemma-bf16'],
  gemma2: ['hf/gemma2-window-bf16'],
  qwen3: ['hf/qwen3-bf16'],
  olmo2: ['hf/olmo2-bf16-sharded'],
  gpt_neox: ['hf/pythia-parallel-f16', 'hf/neox-sequential-f16'],
  phi: ['hf/phi-f16'],
  phi3: ['hf/phi3-gqa-bf16', 'hf/phi3-partial-tied-bf16'],
};

test('random-model --like for every spec: the folder reads back to the same config, with exactly the spec\'s tensors', () => {
  for (const spec of SPECS) {
    const sources = SOURCES[spec.family];
    assert.ok(sources && sources.length > 0, `no random-model source for family ${spec.family}`);
    for (const src of sources) {
      const like = loadModel(src.startsWith('hf/') ? fixturePath(src) : modelPath(src));
      assert.equal(like.config.arch, spec.family);
      const out = path.join(tmp, src.replaceAll('/', '-'));
      writeRandomModel(like, out, { seed: 3 });
      const back = loadModel(out);
      // random-model writes rotate-half RoPE and ties a head that was tied (see outputConfig); everything else is kept.
      assert.deepEqual(back.config, { ...like.config, ropePairing: 'half', tiedHead: back.config.tiedHead }, src);
      assert.deepEqual([...back.tensors.keys()].sort(), spec.tensors(back.config).map((t) => t.name).sort(), src);
    }
  }
});

test('the HF reader accepts only what the spec lists: drop a tensor from the list and the checkpoint is refused', () => {
  const dir = fixturePath('hf/llama-gqa-bf16');
  assert.ok(loadHfFolder(dir));
  const spec = specOf('llama');
  const original = spec.tensors;
  try {
    spec.tensors = (c) => original(c).filter((t) => t.hf !== 'model.layers.1.mlp.up_proj.weight');
    assert.throws(
      () => loadHfFolder(dir),
      (e: unknown) => e instanceof UserError && /tensor model\.layers\.1\.mlp\.up_proj\.weight in model-00001-of-00002\.safetensors is not part of the architecture/.test(e.message),
    );
    // And a tensor the list names but the checkpoint lacks is refused too.
    spec.tensors = (c) => [...original(c), { name: 'blk.0.extra.weight', hf: 'model.layers.0.extra.weight', shape: [4], init: 'ones', layer: 0 }];
    assert.throws(() => loadHfFolder(dir), /tensor model\.layers\.0\.extra\.weight is missing/);
  } finally {
    spec.tensors = original;
  }
});

test('a graph that binds a weight its spec does not list is an internal error, not a silent extra', async () => {
  const model = loadModel(fixturePath('hf/gpt2-f16'));
  const runner = new ModelRunner(model, { cacheDir: path.join(tmp, 'w') });
  runners.push(runner);
  const spec = specOf('gpt2');
  const original = spec.tensors;
  try {
    spec.tensors = (c) => original(c).filter((t) => t.name !== 'h.0.ln_1.bias');
    await assert.rejects(runner.hidden([[1, 2]], [1, 1], 'resid'), /graph binds h\.0\.ln_1\.bias, which the gpt2 spec does not list/);
  } finally {
    spec.tensors = original;
  }
  assert.equal((await runner.hidden([[1, 2]], [1, 1], 'resid')).shape[2], model.config.dim);
});

test('a Hugging Face cache repo folder: refs/main picks the snapshot; an empty or config-less one says where to look', () => {
  const repo = path.join(tmp, 'models--org--empty');
  mkdirSync(path.join(repo, 'snapshots'), { recursive: true });
  assert.throws(() => loadModel(repo), /models--org--empty: a Hugging Face cache repo folder with no snapshots/);
  const bare = path.join(tmp, 'models--org--bare');
  mkdirSync(bare);
  writeFileSync(path.join(bare, 'README'), '');
  assert.throws(() => loadModel(bare), /config\.json: no such file; a Hugging Face cache repo folder keeps its files under snapshots\/<commit>\//);
});
