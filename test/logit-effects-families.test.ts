/**
 * Logit effects for every family the registry holds, against a float64 computation from the raw weights written from
 * each family's published definition: the final norm's direction-dependent part (RMSNorm: gain; Gemma: 1 + gain;
 * LayerNorm: centring and gain), the head, and — for `mlp` and `attn` — what the branch adds to the residual stream
 * (the down-projection column; Gemma-2 and OLMo-2 also norm the branch outputs, so their gains apply).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { toFloat32 } from '../src/formats/dequant.js';
import { logitEffects, LOGIT_K } from '../src/features/logit-effects.js';
import type { Hook } from '../src/models/config.js';
import { loadModel, type LoadedModel } from '../src/models/load.js';
import { fixturePath } from './helpers.js';

const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
});

interface Family {
  /** Final norm: weight name, whether the gain is (1 + w), whether it centres (LayerNorm). */
  norm: string;
  plusOne?: boolean;
  centre?: boolean;
  head: (tied: boolean) => string;
  /** The MLP's down projection of 0-based layer l, stored [D, F]. */
  down: (l: number) => string;
  /** Branch-output norms' weights (Gemma-2, OLMo-2). */
  postAttn?: (l: number) => string;
  postMlp?: (l: number) => string;
}

const gguf = (l: number) => `blk.${l}.ffn_down.weight`;
const llamaHead = (tied: boolean) => (tied ? 'token_embd.weight' : 'output.weight');
const FIXTURES: Record<string, Family> = {
  'llama-gqa-bf16': { norm: 'output_norm.weight', head: llamaHead, down: gguf },
  'gemma-bf16': { norm: 'output_norm.weight', plusOne: true, head: () => 'token_embd.weight', down: gguf },
  'gemma2-window-bf16': { norm: 'output_norm.weight', plusOne: true, head: () => 'token_embd.weight', down: gguf, postAttn: (l) => `blk.${l}.post_attention_norm.weight`, postMlp: (l) => `blk.${l}.post_ffw_norm.weight` },
  'qwen3-bf16': { norm: 'output_norm.weight', head: llamaHead, down: gguf },
  'olmo2-bf16-sharded': { norm: 'output_norm.weight', head: llamaHead, down: gguf, postAttn: (l) => `blk.${l}.post_attention_norm.weight`, postMlp: (l) => `blk.${l}.post_ffw_norm.weight` },
  'pythia-parallel-f16': { norm: 'gpt_neox.final_layer_norm.weight', centre: true, head: (t) => (t ? 'gpt_neox.embed_in.weight' : 'embed_out.weight'), down: (l) => `gpt_neox.layers.${l}.mlp.dense_4h_to_h.weight` },
  'phi-f16': { norm: 'model.final_layernorm.weight', centre: true, head: (t) => (t ? 'model.embed_tokens.weight' : 'lm_head.weight'), down: (l) => `model.layers.${l}.mlp.fc2.weight` },
  'phi3-gqa-bf16': { norm: 'model.norm.weight', head: (t) => (t ? 'model.embed_tokens.weight' : 'lm_head.weight'), down: (l) => `model.layers.${l}.mlp.down_proj.weight` },
};

function direct(model: LoadedModel, fam: Family, r: Float64Array): Float64Array {
  const cfg = model.config;
  const D = cfg.dim;
  const get = (n: string) => {
    const t = model.tensors.get(n);
    assert.ok(t, `${n} in ${[...model.tensors.keys()].slice(0, 8).join(', ')} …`);
    return toFloat32(t);
  };
  const g = get(fam.norm);
  const mean = fam.centre ? r.reduce((a, b) => a + b, 0) / D : 0;
  const v = Float64Array.from(r, (x, i) => (x - mean) * (fam.plusOne ? 1 + g[i]! : g[i]!));
  const head = get(fam.head(cfg.tiedHead));
  return Float64Array.from({ length: cfg.vocabSize }, (_, t) => {
    let s = 0;
    for (let i = 0; i < D; i++) s += head[t * D + i]! * v[i]!;
    return s;
  });
}

function gained(model: LoadedModel, fam: Family, name: string | undefined, r: Float64Array): Float64Array {
  if (!name) return r;
  const g = toFloat32(model.tensors.get(name)!);
  return Float64Array.from(r, (x, i) => x * (fam.plusOne ? 1 + g[i]! : g[i]!));
}

function check(got: { promoted: { id: number; value: number }[]; suppressed: { id: number; value: number }[] } | null, expected: Float64Array, what: string): void {
  assert.ok(got, what);
  const order = Array.from(expected.keys()).sort((a, b) => expected[b]! - expected[a]!);
  const tol = 1e-5 * Math.max(...expected.map(Math.abs));
  assert.equal(got.promoted.length, Math.min(LOGIT_K, expected.length));
  got.promoted.forEach((x, i) => {
    assert.ok(Math.abs(x.value - expected[x.id]!) <= tol, `${what}: promoted ${x.id} ${x.value} vs ${expected[x.id]}`);
    assert.ok(Math.abs(x.value - expected[order[i]!]!) <= tol, `${what}: promoted rank ${i}`);
  });
  const low = order.slice().reverse();
  got.suppressed.forEach((x, i) => assert.ok(Math.abs(x.value - expected[low[i]!]!) <= tol, `${what}: suppressed rank ${i}`));
}

for (const [name, fam] of Object.entries(FIXTURES)) {
  test(`logit effects of ${name}: resid, attn and mlp directions equal a float64 computation from the raw weights`, async () => {
    const model = loadModel(fixturePath(`hf/${name}`));
    const runner = new ModelRunner(model);
    runners.push(runner);
    const { dim: D, ffnDim: F, nLayers } = model.config;
    const layer = nLayers - 1;
    const unit = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => (i === f ? 1 : 0));
    const direction = Float32Array.from({ length: D }, (_, i) => Math.sin(1 + 2 * i));
    const effects = async (hook: Hook, v: Float32Array) => (await logitEffects(runner, model.tokenizer, hook, layer + 1, [v]))[0]!;

    check(await effects('resid', unit(D, 1)), direct(model, fam, Float64Array.from(unit(D, 1))), 'resid');
    check(await effects('resid', direction), direct(model, fam, Float64Array.from(direction)), 'direction');
    check(await effects('attn', direction), direct(model, fam, gained(model, fam, fam.postAttn?.(layer), Float64Array.from(direction))), 'attn');
    const down = toFloat32(model.tensors.get(fam.down(layer))!);
    const column = Float64Array.from({ length: D }, (_, i) => down[i * F + 2]!);
    check(await effects('mlp', unit(F, 2)), direct(model, fam, gained(model, fam, fam.postMlp?.(layer), column)), 'mlp');
  });
}

test('logit effects of an SAE latent: its decoder row through the final norm and the head (stories260K, the fixture SAE)', async () => {
  const { loadSae, decoderRow } = await import('../src/features/sae.js');
  const { DEFAULT_SETTINGS, Visualizer } = await import('../src/features/visualize.js');
  const { decoderFor } = await import('../src/features/embeddings.js');
  const { modelPath } = await import('./helpers.js');
  const model = loadModel(modelPath('stories260K.bin'));
  const runner = new ModelRunner(model);
  runners.push(runner);
  const sae = loadSae(fixturePath('sae-stories260K'));
  const vis = new Visualizer(runner, model.tokenizer, decoderFor(model));
  const fam = FIXTURES['llama-gqa-bf16']!;
  const [one, two] = await vis.visualize({ select: '[:, :, 3, 5:7]', settings: { ...DEFAULT_SETTINGS, blocks: [1, 3], hook: 'resid', steps: 2, randomDraws: 1, sae } });
  check(one!.logit_effects!, direct(model, fam, Float64Array.from(decoderRow(sae, 3))), 'latent 3');
  const sum = Float64Array.from(decoderRow(sae, 5), (x, i) => x + decoderRow(sae, 6)[i]!);
  check(two!.logit_effects!, direct(model, fam, sum), 'latents 5:7');
  assert.match(one!.skip!.not_applicable!, /SAE latent/);
});
