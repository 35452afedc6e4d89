// The same graphs on onnxruntime's bundled WebGPU provider, on the SwiftShader software Vulkan driver that Debian's
// chromium package ships (no GPU needed; slow, so the cases are few and small). Each is compared with the CPU.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ModelRunner } from '../src/engine/runner.js';
import { objectiveStep } from '../src/features/objective.js';
import { hookWidth } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import { uniformStream } from '../src/util/random.js';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath, projectRoot } from './helpers.js';
import { maxRelError } from './numeric.js';

const SWIFTSHADER = process.env.LLMF_TEST_VK_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-webgpu-'));
// Dawn reads these when the first WebGPU session starts (in this process and in the CLI children, which inherit them).
process.env.VK_ICD_FILENAMES = SWIFTSHADER;
process.env.XDG_RUNTIME_DIR ??= path.join(tmp, 'xdg');
mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
const cacheDir = path.join(tmp, 'cache');
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('SwiftShader is installed (apt-get install -y chromium libvulkan1, or set LLMF_TEST_VK_ICD)', () => {
  assert.ok(existsSync(SWIFTSHADER), `${SWIFTSHADER} is missing: install Debian's chromium package, or point LLMF_TEST_VK_ICD at a Vulkan ICD`);
});

test('devices --device webgpu reports the software adapter and a probe that agrees with the CPU', () => {
  const r = cli(['devices', '--device', 'webgpu']);
  assert.equal(r.code, 0, r.stderr);
  const [d] = JSON.parse(r.stdout).devices;
  assert.equal(d.device, 'webgpu');
  assert.equal(d.available, true);
  assert.equal(d.vulkan[0].file, SWIFTSHADER);
  assert.equal(d.vulkan[0].software, true);
  assert.ok(d.probeMaxAbsDiff < 1e-5, `probe differs from the CPU by ${d.probeMaxAbsDiff}`);
});

test('--device webgpu without a Vulkan driver is a one-line error naming the flag, exit 2', () => {
  const r = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1,2', '--blocks', '1', '--device', 'webgpu'], { VK_ICD_FILENAMES: path.join(tmp, 'none.json') });
  assert.equal(r.code, 2);
  // Dawn's own Vulkan warnings come first (native code writes them); the error is the last line, and alone.
  const last = r.stderr.trim().split('\n').at(-1)!;
  assert.match(last, /^llm-features: --device webgpu: no WebGPU adapter found \(Vulkan drivers tried: .*none\.json\)/);
  assert.equal(r.stdout, '');
  const bad = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1', '--device', 'gpu']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'llm-features: --device: "gpu" is not one of cpu, webgpu\n');
  const env = cli(['forward', '--model', modelPath('stories260K.bin'), '--ids', '1'], { LLMF_DEVICE: 'cuda' });
  assert.equal(env.stderr, 'llm-features: LLMF_DEVICE: unknown device "cuda" (expected cpu, webgpu)\n');
});

// One checkpoint per architecture: llama2.c (Llama), and Hugging Face Llama (GQA, bf16 shards), Qwen2, GPT-2, Gemma,
// Gemma-2 (at 5 tokens, past its window of 3, so the sliding-window mask is placed too), Qwen3, OLMo-2, GPT-NeoX
// (parallel residual, erf GELU), Phi and Phi-3 (fused qkv / gate_up slices).
const MODELS: [string, string][] = [
  ['stories260K', modelPath('stories260K.bin')],
  ['llama-gqa-bf16', fixturePath('hf/llama-gqa-bf16')],
  ['qwen2-tied', fixturePath('hf/qwen2-tied')],
  ['gpt2-prefixed-f32', fixturePath('hf/gpt2-prefixed-f32')],
  ['gemma-bf16', fixturePath('hf/gemma-bf16')],
  ['gemma2-window-bf16', fixturePath('hf/gemma2-window-bf16')],
  ['qwen3-bf16', fixturePath('hf/qwen3-bf16')],
  ['olmo2-bf16-sharded', fixturePath('hf/olmo2-bf16-sharded')],
  ['pythia-parallel-f16', fixturePath('hf/pythia-parallel-f16')],
  ['phi-f16', fixturePath('hf/phi-f16')],
  ['phi3-gqa-bf16', fixturePath('hf/phi3-gqa-bf16')],
];
const LENGTH: Record<string, string> = { 'gemma2-window-bf16': '5' };

for (const [name, file] of MODELS) {
  test(`${name}: every node of the forward+backward, ids → hidden and logits graphs is placed on WebGPU`, () => {
    const r = spawnSync(process.execPath, [path.join(projectRoot, 'dist/test/webgpu-placement-child.js'), file, cacheDir, ...(LENGTH[name] ? [LENGTH[name]!] : [])], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    assert.match(r.stdout, /placement-child: done/);
    // onnxruntime's VerifyEachNodeIsAssignedToAnEp: per session, "All nodes placed on [EP]" or one block per EP.
    const all = [...r.stderr.matchAll(/All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)/g)];
    const cpuBlocks = [...r.stderr.matchAll(/Node\(s\) placed on \[CPUExecutionProvider\]\. Number of nodes: (\d+)/g)];
    const cpuNodes = cpuBlocks.reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(cpuNodes, 0, `nodes on the CPU:\n${r.stderr.split('\n').filter((l) => /VerifyEachNode/.test(l)).slice(0, 40).join('\n')}`);
    assert.equal(all.length, 3, 'expected the placement report of all three sessions');
    for (const m of all) {
      assert.equal(m[1], 'WebGpuExecutionProvider');
      assert.ok(Number(m[2]) > 50);
    }
  });

  test(`${name}: hidden states, loss, activation and gradient on WebGPU equal the CPU's (≤ 1e-5 relative)`, async () => {
    const model = loadModel(file);
    const cpu = new ModelRunner(model, { cacheDir });
    const gpu = new ModelRunner(model, { cacheDir, device: 'webgpu' });
    runners.push(cpu, gpu);
    const { nLayers, dim, vocabSize } = model.config;
    const range: [number, number] = [1, nLayers];
    const ids = [[1, 5, 9, vocabSize - 1]];
    const hc = await cpu.hidden(ids, range, 'resid');
    const hg = await gpu.hidden(ids, range, 'resid');
    assert.ok(maxRelError(hg.data, hc.data) <= 1e-5, `hidden: ${maxRelError(hg.data, hc.data)}`);

    // Two problems: an L1 objective on an MLP neuron and a linear one on another, from random embeddings.
    const [B, T] = [2, 4];
    const F = hookWidth(model.config, 'mlp');
    const r = uniformStream(3);
    const x = Float32Array.from({ length: B * T * dim }, () => 2 * r() - 1);
    const l1 = new Float32Array(B * T * F);
    const lin = new Float32Array(B * T * F);
    const report = new Float32Array(B * T * F);
    for (let t = 0; t < T; t++) {
      l1[t * F + 3] = report[t * F + 3] = 1;
      lin[(T + t) * F + 7] = report[(T + t) * F + 7] = 1;
    }
    const feeds = { x, l1, lin, C: Float32Array.of(100, 0), report };
    const oc = await objectiveStep(cpu, range, 'mlp', feeds, { B, T });
    const og = await objectiveStep(gpu, range, 'mlp', feeds, { B, T });
    for (const k of ['loss', 'act', 'grad'] as const) {
      const err = maxRelError(og[k], oc[k]);
      assert.ok(err <= 1e-5, `${k}: relative error ${err.toExponential(2)}`);
    }
    assert.ok(oc.grad.some((v) => v !== 0));
  });
}

test('visualize --device webgpu: same decoded ids and losses as the CPU (10 steps)', () => {
  const args = ['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1-5', '--select', '[:, :, 0-1]', '--steps', '10', '--json'];
  const c = cli(args);
  const g = cli([...args, '--device', 'webgpu']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(g.code, 0, g.stderr);
  const [rc, rg] = [JSON.parse(c.stdout).runs, JSON.parse(g.stdout).runs];
  assert.equal(rg.length, 2);
  const curve = (loss: [number, number][]) => loss.map((p) => p[1]);
  rc.forEach((run: { topk: number[][]; loss: [number, number][]; activation: { continuous: number } }, i: number) => {
    assert.deepEqual(rg[i].topk, run.topk);
    assert.equal(rg[i].loss.length, run.loss.length);
    const err = maxRelError(curve(rg[i].loss), curve(run.loss));
    assert.ok(err <= 1e-5, `loss curve of run ${i}: relative error ${err.toExponential(2)}`);
    assert.ok(Math.abs(rg[i].activation.continuous - run.activation.continuous) <= 1e-5 * Math.abs(run.activation.continuous));
  });
});

test('atlas build --device webgpu (LLMF_DEVICE): records the device as provenance, outside the settings hash', () => {
  const db = path.join(tmp, 'atlas.db');
  const args = ['atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', db, '--blocks', '2', '--features', '0-1', '--steps', '5', '--json'];
  const g = cli(args, { LLMF_DEVICE: 'webgpu' });
  assert.equal(g.code, 0, g.stderr);
  const built = JSON.parse(g.stdout.trim().split('\n').at(-1)!);
  assert.equal(built.inserted, 2);
  // The same sweep on the CPU finds the same settings hash and skips both records.
  const c = cli(args);
  assert.equal(c.code, 0, c.stderr);
  const again = JSON.parse(c.stdout.trim().split('\n').at(-1)!);
  assert.equal(again.settings_hash, built.settings_hash);
  assert.equal(again.skipped, 2);
  const exported = cli(['atlas', 'export', '--db', db, '--format', 'json']);
  assert.equal(exported.code, 0, exported.stderr);
  const records = JSON.parse(exported.stdout).records ?? JSON.parse(exported.stdout);
  assert.equal(records.length, 2);
  // Provenance: the device and the other run options, and the version that computed the record.
  for (const rec of records) assert.deepEqual(rec.provenance, { device: 'webgpu', threads: 2, lowMemory: false, batch: 32, version: JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')).version });
});
