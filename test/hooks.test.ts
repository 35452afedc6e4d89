// Hooks: TransformerLens names resolve to the native (range, hook) they mean and give the same values; the new
// branch-output hooks attn_out / mlp_out agree with the PyTorch float64 references through the residual identity
// resid = input + attn_out + mlp_out; contradictory --blocks/--hook combinations are refused.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { ModelRunner } from '../src/engine/runner.js';
import { toFloat32 } from '../src/formats/dequant.js';
import type { Hook } from '../src/models/config.js';
import { resolveBlockListAndHook, resolveBlocksAndHook } from '../src/models/hooks.js';
import { loadModel, type LoadedModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { fixturePath } from './helpers.js';
import { maxRelError } from './numeric.js';

interface Reference {
  ids: number[];
  cases: { blocks: [number, number] | null; hook: string; values: number[][] }[];
}

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'llmf-hooks-'));
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

test('TransformerLens names resolve to the native block range and hook', () => {
  const cases: [string, [number, number], Hook][] = [
    ['blocks.0.hook_resid_post', [1, 1], 'resid'],
    ['blocks.2.hook_resid_post', [1, 3], 'resid'],
    ['blocks.1.mlp.hook_post', [1, 2], 'mlp'],
    ['blocks.1.hook_attn_out', [1, 2], 'attn_out'],
    ['blocks.0.hook_mlp_out', [1, 1], 'mlp_out'],
  ];
  for (const [name, blocks, hook] of cases) {
    assert.deepEqual(resolveBlocksAndHook(undefined, name), { blocks, hook }, name);
    // With --blocks A-B naming the same block B, blocks A..B run (the original method's reading).
    assert.deepEqual(resolveBlocksAndHook(`${blocks[1]}-${blocks[1]}`, name), { blocks: [blocks[1], blocks[1]], hook }, name);
  }
  assert.deepEqual(resolveBlocksAndHook('2-3', 'mlp_out'), { blocks: [2, 3], hook: 'mlp_out' });
  assert.deepEqual(resolveBlocksAndHook(undefined, undefined), { blocks: null, hook: 'resid' });
  assert.deepEqual(resolveBlockListAndHook([[1, 2], [2, 2]], 'blocks.1.hook_attn_out'), { blocks: [[1, 2], [2, 2]], hook: 'attn_out' });
  assert.deepEqual(resolveBlockListAndHook(null, 'blocks.3.hook_resid_post'), { blocks: [[1, 4]], hook: 'resid' });
});

test('contradictory and unknown hook names are refused with one line naming the hook parameter', () => {
  const refuse = (blocks: string | undefined, hook: string, re: RegExp) =>
    assert.throws(() => resolveBlocksAndHook(blocks, hook), (e: unknown) => e instanceof UserError && re.test(e.message) && !e.message.includes('\n'));
  refuse('1-3', 'blocks.1.hook_resid_post', /^hook: blocks\.1\.hook_resid_post is an output of block 2, but blocks 1-3 end at block 3/);
  refuse('2', 'blocks.0.mlp.hook_post', /^hook: .*block 1, but blocks 2 end at block 2/);
  refuse(undefined, 'blocks.0.hook_resid_pre', /^hook: TransformerLens hook "hook_resid_pre" is not supported/);
  refuse(undefined, 'blocks.x.hook_resid_post', /^hook: unknown hook/);
  refuse(undefined, 'ffn', /^hook: unknown hook "ffn"/);
  assert.throws(() => resolveBlockListAndHook([[1, 2], [1, 3]], 'blocks.1.hook_mlp_out'), /blocks 1-3 end at block 3/);
});

/** The blocks' input for `ids` from the stored weights: token embeddings, plus learned positions for GPT-2. */
function blockInput(model: LoadedModel, ids: number[]): Float64Array {
  const D = model.config.dim;
  const wte = toFloat32(model.tensors.get(model.config.arch === 'gpt2' ? 'wte.weight' : 'token_embd.weight')!);
  const wpe = model.config.arch === 'gpt2' ? toFloat32(model.tensors.get('wpe.weight')!) : null;
  const out = new Float64Array(ids.length * D);
  ids.forEach((id, t) => {
    for (let d = 0; d < D; d++) out[t * D + d] = wte[id * D + d]! + (wpe ? wpe[t * D + d]! : 0);
  });
  return out;
}

for (const name of ['llama-gqa-bf16', 'gpt2-f16']) {
  const dir = fixturePath(`hf/${name}`);
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
  const model = loadModel(dir);
  const runner = new ModelRunner(model, { cacheDir });
  runners.push(runner);
  const refOf = (blocks: string, hook: string) => ref.cases.find((c) => c.blocks?.join('-') === blocks && c.hook === hook)!.values.flat();

  test(`${name}: attn_out and mlp_out match the reference (resid = input + attn_out + mlp_out)`, async () => {
    const attnOut = await runner.hidden([ref.ids], [2, 2], 'attn_out');
    assert.ok(maxRelError(attnOut.data, refOf('2-2', 'attn')) <= 1e-4, 'attn_out is the attention branch (no branch norm)');
    const input = blockInput(model, ref.ids);
    const resid = refOf('2-2', 'resid');
    const attn = refOf('2-2', 'attn');
    const expected = resid.map((r, i) => r - input[i]! - attn[i]!);
    const mlpOut = await runner.hidden([ref.ids], [2, 2], 'mlp_out');
    const err = maxRelError(mlpOut.data, expected);
    assert.ok(err <= 1e-4, `mlp_out relative error ${err.toExponential(2)}`);
  });

  test(`${name}: every TransformerLens name gives the native hook's values`, async () => {
    for (const [tl, native, blocks] of [
      ['blocks.1.hook_resid_post', 'resid', [1, 2]],
      ['blocks.1.mlp.hook_post', 'mlp', [1, 2]],
      ['blocks.1.hook_attn_out', 'attn_out', [1, 2]],
      ['blocks.1.hook_mlp_out', 'mlp_out', [1, 2]],
    ] as [string, Hook, [number, number]][]) {
      const r = resolveBlocksAndHook(undefined, tl);
      const a = await runner.hidden([ref.ids], r.blocks!, r.hook);
      const b = await runner.hidden([ref.ids], blocks, native);
      assert.deepEqual(a.data, b.data, tl);
    }
    // And against the PyTorch reference: blocks.{B-1}.mlp.hook_post ≡ the reference's blocks 1-B mlp.
    const deep = ref.cases.find((c) => c.blocks?.[0] === 1 && c.blocks[1] > 1 && c.hook === 'mlp')!;
    const r = resolveBlocksAndHook(undefined, `blocks.${deep.blocks![1] - 1}.mlp.hook_post`);
    assert.ok(maxRelError((await runner.hidden([ref.ids], r.blocks!, r.hook)).data, deep.values.flat()) <= 1e-4);
  });
}

test('forward --hook blocks.L.hook_resid_post through the CLI; a contradiction exits 2', () => {
  const dir = fixturePath('hf/llama-gqa-bf16');
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
  const r = cli(['forward', '--model', dir, '--ids', ref.ids.join(','), '--hook', 'blocks.2.hook_resid_post', '--json'], { LLMF_CACHE: cacheDir });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual([out.blocks, out.hook], [[1, 3], 'resid']);
  assert.ok(maxRelError(out.values.flat(), ref.cases.find((c) => c.blocks?.join('-') === '1-3' && c.hook === 'resid')!.values.flat()) <= 1e-4);
  const bad = cli(['forward', '--model', dir, '--ids', '1,2', '--blocks', '2-3', '--hook', 'blocks.1.hook_mlp_out']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr.trim(), /^llm-features: --hook: blocks\.1\.hook_mlp_out is an output of block 2, but blocks 2-3 end at block 3[^\n]*$/);
});
