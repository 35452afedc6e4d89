// loadHfFolder: single file, sharded index, HF cache snapshot symlinks, config mapping per architecture, bad input.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { loadHfFolder } from '../src/models/hf.js';
import { fixturePath } from './helpers.js';
import { writeSafetensors, type TensorSpec } from './st-writer.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'llmf-hf-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = path.join(root, `m${n++}`);
  mkdirSync(d);
  return d;
};

// A tiny Llama: d 8, 2 heads of 4, 1 KV head, FFN 16, vocab 10, 2 layers.
const LLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 8,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  num_hidden_layers: 2,
  intermediate_size: 16,
  vocab_size: 10,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
};

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
function spec(name: string, shape: number[], dtype = 'BF16'): TensorSpec {
  const count = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: new Uint8Array(count * BYTES[dtype]!).map((_, i) => i % 251) };
}

function llamaTensors(o: { bias?: boolean; lmHead?: boolean; layers?: number } = {}): TensorSpec[] {
  const t: TensorSpec[] = [spec('model.embed_tokens.weight', [10, 8]), spec('model.norm.weight', [8], 'F32')];
  if (o.lmHead ?? true) t.push(spec('lm_head.weight', [10, 8]));
  for (let i = 0; i < (o.layers ?? 2); i++) {
    const p = `model.layers.${i}.`;
    t.push(
      spec(p + 'input_layernorm.weight', [8], 'F32'),
      spec(p + 'self_attn.q_proj.weight', [8, 8]),
      spec(p + 'self_attn.k_proj.weight', [4, 8]),
      spec(p + 'self_attn.v_proj.weight', [4, 8]),
      spec(p + 'self_attn.o_proj.weight', [8, 8]),
      spec(p + 'post_attention_layernorm.weight', [8], 'F32'),
      spec(p + 'mlp.gate_proj.weight', [16, 8]),
      spec(p + 'mlp.up_proj.weight', [16, 8]),
      spec(p + 'mlp.down_proj.weight', [8, 16]),
    );
    if (o.bias) t.push(spec(p + 'self_attn.q_proj.bias', [8]), spec(p + 'self_attn.k_proj.bias', [4]), spec(p + 'self_attn.v_proj.bias', [4]));
  }
  return t;
}

function writeConfig(dir: string, config: object): void {
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
}

/** A folder with config.json and model.safetensors. */
function singleFile(config: object = LLAMA, tensors: TensorSpec[] = llamaTensors()): string {
  const dir = freshDir();
  writeConfig(dir, config);
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

/** Two shards (first half / second half of the tensors) and an index; `weightMap` may be edited before writing. */
function sharded(edit: (weightMap: Record<string, string>) => void = () => {}, tensors = llamaTensors()): string {
  const dir = freshDir();
  writeConfig(dir, LLAMA);
  const half = Math.ceil(tensors.length / 2);
  const parts = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  parts.forEach((part, i) => {
    writeSafetensors(path.join(dir, SHARDS[i]!), part);
    for (const t of part) weightMap[t.name] = SHARDS[i]!;
  });
  edit(weightMap);
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return dir;
}

/** One-line UserError matching `re`. */
function throwsUser(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, re);
    return true;
  });
}

function assertLlamaLayout(m: ReturnType<typeof loadHfFolder>): void {
  assert.equal(m.tensors.get('token_embd.weight')!.name, 'model.embed_tokens.weight');
  assert.equal(m.tensors.get('output.weight')!.name, 'lm_head.weight');
  assert.equal(m.tensors.get('output_norm.weight')!.name, 'model.norm.weight');
  const expect: Record<string, string> = {
    attn_norm: 'input_layernorm',
    attn_q: 'self_attn.q_proj',
    attn_k: 'self_attn.k_proj',
    attn_v: 'self_attn.v_proj',
    attn_output: 'self_attn.o_proj',
    ffn_norm: 'post_attention_layernorm',
    ffn_gate: 'mlp.gate_proj',
    ffn_up: 'mlp.up_proj',
    ffn_down: 'mlp.down_proj',
  };
  for (const i of [0, 1]) {
    for (const [g, h] of Object.entries(expect)) assert.equal(m.tensors.get(`blk.${i}.${g}.weight`)!.name, `model.layers.${i}.${h}.weight`);
  }
  assert.equal(m.tensors.size, 3 + 2 * 9);
}

test('a single-file Llama folder maps config and tensor names', () => {
  const dir = singleFile();
  writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
  const m = loadHfFolder(dir);
  assert.deepEqual(m.config, {
    arch: 'llama',
    dim: 8,
    nLayers: 2,
    nHeads: 2,
    nKvHeads: 1,
    headDim: 4,
    ffnDim: 16,
    vocabSize: 10,
    normEps: 1e-5,
    maxSeqLen: 64,
    tiedHead: false,
    ropeTheta: 500000,
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: false,
  });
  assertLlamaLayout(m);
  assert.equal(m.storedDtype, 'BF16');
  assert.equal(m.hasTokenizerJson, true);
  assert.equal(m.tensors.get('token_embd.weight')!.file, path.resolve(dir, 'model.safetensors'));
});

test('a two-shard index loads, each tensor from its own shard', () => {
  const dir = sharded();
  const m = loadHfFolder(dir);
  assertLlamaLayout(m);
  assert.equal(m.hasTokenizerJson, false);
  assert.equal(path.basename(m.tensors.get('token_embd.weight')!.file), SHARDS[0]);
  assert.equal(path.basename(m.tensors.get('blk.1.ffn_down.weight')!.file), SHARDS[1]);
});

test('a Hugging Face cache snapshot (symlinks into ../../blobs) loads through the links', () => {
  const repo = freshDir();
  const src = sharded();
  const snap = path.join(repo, 'snapshots', '0123abcd');
  mkdirSync(path.join(repo, 'blobs'));
  mkdirSync(snap, { recursive: true });
  for (const [i, name] of ['config.json', 'model.safetensors.index.json', ...SHARDS].entries()) {
    const blob = `blob${i}deadbeef`;
    writeFileSync(path.join(repo, 'blobs', blob), readFileSync(path.join(src, name)));
    symlinkSync(path.join('..', '..', 'blobs', blob), path.join(snap, name));
  }
  const m = loadHfFolder(snap);
  assertLlamaLayout(m);
  const t = m.tensors.get('blk.0.attn_q.weight')!;
  assert.equal(path.dirname(t.file), snap, 'the snapshot path is kept');
  assert.equal(path.dirname(realpathSync(t.file)), realpathSync(path.join(repo, 'blobs')));
});

test('Qwen2: tied head, q/k/v biases', () => {
  const config = { ...LLAMA, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true };
  const m = loadHfFolder(singleFile(config, llamaTensors({ bias: true, lmHead: false })));
  assert.equal(m.config.tiedHead, true);
  assert.equal(m.config.qkvBias, true);
  assert.equal(m.tensors.has('output.weight'), false);
  assert.equal(m.tensors.get('blk.1.attn_k.bias')!.name, 'model.layers.1.self_attn.k_proj.bias');
  assert.deepEqual(m.tensors.get('blk.0.attn_v.bias')!.shape, [4]);
  // Qwen2 without its biases is incomplete.
  throwsUser(() => loadHfFolder(singleFile(config, llamaTensors({ lmHead: false }))), /tensor model\.layers\.0\.self_attn\.q_proj\.bias is missing/);
});

test('Mistral by model_type, with defaults and explicit head_dim; Llama 3 rope scaling', () => {
  const { architectures: _a, num_key_value_heads: _k, rope_theta: _r, rms_norm_eps: _e, ...rest } = LLAMA;
  const mistral = { ...rest, model_type: 'mistral', num_key_value_heads: 2, head_dim: 4 };
  const tensors = llamaTensors().map((t) => (/[kv]_proj/.test(t.name) ? spec(t.name, [8, 8]) : t));
  const m = loadHfFolder(singleFile(mistral, tensors));
  assert.deepEqual([m.config.nKvHeads, m.config.headDim, m.config.ropeTheta, m.config.normEps], [2, 4, 10000, 1e-6]);

  const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  const l3 = loadHfFolder(singleFile({ ...LLAMA, rope_scaling: scaling }));
  assert.deepEqual(l3.config.ropeScaling, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.equal(loadHfFolder(singleFile({ ...LLAMA, rope_scaling: { type: 'default' } })).config.ropeScaling, null);
});

test('GPT-2: own names, optional "transformer." prefix, mask buffers and lm_head ignored', () => {
  const config = { architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 8, n_head: 2, n_layer: 1, n_positions: 16, vocab_size: 10, n_inner: null };
  const gpt2 = (prefix: string): TensorSpec[] => [
    spec(prefix + 'wte.weight', [10, 8], 'F32'),
    spec(prefix + 'wpe.weight', [16, 8], 'F32'),
    spec(prefix + 'h.0.ln_1.weight', [8], 'F32'),
    spec(prefix + 'h.0.ln_1.bias', [8], 'F32'),
    spec(prefix + 'h.0.attn.bias', [1, 1, 16, 16], 'F32'),
    spec(prefix + 'h.0.attn.masked_bias', [], 'F32'),
    spec(prefix + 'h.0.attn.c_attn.weight', [8, 24], 'F32'),
    spec(prefix + 'h.0.attn.c_attn.bias', [24], 'F32'),
    spec(prefix + 'h.0.attn.c_proj.weight', [8, 8], 'F32'),
    spec(prefix + 'h.0.attn.c_proj.bias', [8], 'F32'),
    spec(prefix + 'h.0.ln_2.weight', [8], 'F32'),
    spec(prefix + 'h.0.ln_2.bias', [8], 'F32'),
    spec(prefix + 'h.0.mlp.c_fc.weight', [8, 32], 'F32'),
    spec(prefix + 'h.0.mlp.c_fc.bias', [32], 'F32'),
    spec(prefix + 'h.0.mlp.c_proj.weight', [32, 8], 'F32'),
    spec(prefix + 'h.0.mlp.c_proj.bias', [8], 'F32'),
    spec(prefix + 'ln_f.weight', [8], 'F32'),
    spec(prefix + 'ln_f.bias', [8], 'F32'),
    spec('lm_head.weight', [10, 8], 'F32'),
  ];
  for (const prefix of ['', 'transformer.']) {
    const m = loadHfFolder(singleFile(config, gpt2(prefix)));
    assert.deepEqual(m.config, {
      arch: 'gpt2',
      dim: 8,
      nLayers: 1,
      nHeads: 2,
      nKvHeads: 2,
      headDim: 4,
      ffnDim: 32,
      vocabSize: 10,
      normEps: 1e-5,
      maxSeqLen: 16,
      tiedHead: true,
      ropeTheta: 0,
      ropePairing: 'half',
      ropeScaling: null,
      qkvBias: true,
    });
    assert.equal(m.tensors.size, 16);
    assert.equal(m.tensors.get('h.0.attn.c_attn.weight')!.name, prefix + 'h.0.attn.c_attn.weight');
    assert.ok(!m.tensors.has('h.0.attn.bias') && !m.tensors.has('lm_head.weight'));
    assert.equal(m.storedDtype, 'F32');
  }
  throwsUser(() => loadHfFolder(singleFile({ ...config, n_inner: 16 }, gpt2(''))), /tensor h\.0\.mlp\.c_fc\.weight in model\.safetensors has shape \[8,32\], config\.json implies \[8,16\]/);
});

test('the checked-in transformers-made fixtures load with the configs transformers used', () => {
  const load = (name: string) => loadHfFolder(fixturePath(path.join('hf', name)));
  const gqa = load('llama-gqa-bf16');
  assert.deepEqual([gqa.config.nLayers, gqa.config.nHeads, gqa.config.nKvHeads, gqa.config.tiedHead, gqa.storedDtype], [3, 4, 2, false, 'BF16']);
  const l3 = load('llama3-rope-scaling');
  assert.deepEqual([l3.config.headDim, l3.config.tiedHead, l3.config.ropeScaling?.factor], [16, true, 8]);
  const qwen = load('qwen2-tied');
  assert.deepEqual([qwen.config.qkvBias, qwen.config.tiedHead, qwen.config.ropeTheta], [true, true, 1000000]);
  for (const name of ['gpt2-f16', 'gpt2-prefixed-f32']) {
    const g = load(name);
    assert.deepEqual([g.config.arch, g.config.nLayers, g.config.ffnDim, g.tensors.size], ['gpt2', 2, 128, 28]);
  }
});

// ------------------------------------------------------------------------------------------------------------
// Bad input: each test fails without the check it names.

test('a truncated shard is refused, naming the shard', () => {
  const dir = sharded();
  const shard = path.join(dir, SHARDS[1]!);
  const last = readSafetensors(shard).at(-1)!;
  truncateSync(shard, last.offset + last.nbytes - 2);
  throwsUser(() => loadHfFolder(dir), new RegExp(`^${shard.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor .* past the end of the file`));
});

test('an index naming a missing shard is refused, naming the index', () => {
  const dir = sharded((wm) => (wm['model.norm.weight'] = 'model-00003-of-00002.safetensors'));
  throwsUser(() => loadHfFolder(dir), /model\.safetensors\.index\.json: lists shard model-00003-of-00002\.safetensors, which does not exist/);
});

test('a tensor listed in the index but missing from its shard is refused', () => {
  const dir = sharded((wm) => (wm['model.norm.weight'] = SHARDS[1]!));
  throwsUser(() => loadHfFolder(dir), /index\.json: lists tensor model\.norm\.weight in model-00002-of-00002\.safetensors, but model-00002-of-00002\.safetensors does not contain it/);
  const gone = sharded((wm) => (wm['model.layers.9.mlp.up_proj.weight'] = SHARDS[0]!));
  throwsUser(() => loadHfFolder(gone), /lists tensor model\.layers\.9\.mlp\.up_proj\.weight in model-00001-of-00002\.safetensors, but .* does not contain it/);
});

test('a tensor stored in two shards is refused', () => {
  const tensors = llamaTensors();
  const dir = sharded(() => {}, [...tensors, tensors[0]!]);
  throwsUser(() => loadHfFolder(dir), /tensor model\.embed_tokens\.weight is stored twice, in model-00001-of-00002\.safetensors and model-00002-of-00002\.safetensors/);
});

test('shard names that leave the folder are refused', () => {
  const dir = sharded((wm) => (wm['model.norm.weight'] = '../elsewhere.safetensors'));
  throwsUser(() => loadHfFolder(dir), /tensor model\.norm\.weight maps to "\.\.\/elsewhere\.safetensors", not a file name inside the folder/);
});

test('config/weights mismatches name the tensor and both shapes', () => {
  throwsUser(
    () => loadHfFolder(singleFile({ ...LLAMA, intermediate_size: 12 })),
    /tensor model\.layers\.0\.mlp\.gate_proj\.weight in model\.safetensors has shape \[16,8\], config\.json implies \[12,8\]/,
  );
  throwsUser(() => loadHfFolder(singleFile({ ...LLAMA, num_key_value_heads: 2 })), /self_attn\.k_proj\.weight .* has shape \[4,8\], config\.json implies \[8,8\]/);
  throwsUser(() => loadHfFolder(singleFile({ ...LLAMA, num_hidden_layers: 3 })), /tensor model\.layers\.2\.input_layernorm\.weight is missing/);
  throwsUser(() => loadHfFolder(singleFile(LLAMA, llamaTensors({ layers: 3 }))), /tensor model\.layers\.2\.\S+ in model\.safetensors is not part of the architecture/);
  throwsUser(
    () => loadHfFolder(singleFile(LLAMA, [...llamaTensors(), spec('model.layers.0.self_attn.o_proj.bias', [8])])),
    /tensor model\.layers\.0\.self_attn\.o_proj\.bias in model\.safetensors is not part of the architecture/,
  );
});

test('an untied model without lm_head is refused', () => {
  throwsUser(() => loadHfFolder(singleFile(LLAMA, llamaTensors({ lmHead: false }))), /config\.json: tie_word_embeddings is false but the checkpoint has no lm_head\.weight/);
});

test('unknown architectures name the supported ones', () => {
  throwsUser(
    () => loadHfFolder(singleFile({ ...LLAMA, architectures: ['FalconForCausalLM'], model_type: 'falcon' })),
    /config\.json: architecture FalconForCausalLM is not supported \(supported: llama, mistral, qwen2, gpt2, gpt_neox, phi, phi3\)/,
  );
});

test('rope_scaling types other than llama3 are refused', () => {
  throwsUser(
    () => loadHfFolder(singleFile({ ...LLAMA, rope_scaling: { type: 'linear', factor: 2 } })),
    /config\.json: rope_scaling type "linear" is not supported \(only llama3 is\)/,
  );
  throwsUser(
    () => loadHfFolder(singleFile({ ...LLAMA, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } })),
    /rope_scaling\.original_max_position_embeddings is missing/,
  );
});

test('missing config.json, missing weights and bad config values are UserErrors', () => {
  const empty = freshDir();
  throwsUser(() => loadHfFolder(empty), /config\.json: no such file; a Hugging Face model folder needs config\.json/);
  writeConfig(empty, LLAMA);
  throwsUser(() => loadHfFolder(empty), /no model\.safetensors or model\.safetensors\.index\.json/);
  throwsUser(() => loadHfFolder(singleFile({ ...LLAMA, hidden_size: 8.5 })), /config\.json: hidden_size must be a positive integer, got 8\.5/);
  throwsUser(() => loadHfFolder(singleFile({ ...LLAMA, hidden_act: 'gelu' })), /hidden_act gelu is not supported for llama/);
});
