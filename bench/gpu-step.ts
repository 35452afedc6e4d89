/**
 * llm-features' side of bench/gpu.sh: one fwd+bwd optimiser step (the graph ModelRunner.objective runs) through all
 * blocks of a checkpoint on a device, at batch 1 and batched; the share of a step spent moving inputs and outputs
 * across the bus; and a fixed-input step written out for PyTorch to check against. Prints one JSON line.
 *
 *   node dist/bench/gpu-step.js --model DIR --device webgpu [--T 5] [--batches 1,8,32] [--reps 10] [--check-out FILE]
 *
 * The transfer share is measured with a graph of the same inputs and outputs (x, l1, lin, C, report in; loss, act,
 * grad out) that does almost no arithmetic: the Node binding has no device tensors or IO binding, so each step copies
 * its feeds to the device and its outputs back, and this graph costs exactly that plus a launch or two.
 */
import { writeFileSync } from 'node:fs';
import { resolveDevice } from '../src/engine/device.js';
import { ModelRunner } from '../src/engine/runner.js';
import { objectiveStep, type ObjectiveFeeds } from '../src/features/objective.js';
import { GraphSession } from '../src/engine/session.js';
import { Graph } from '../src/graph/graph.js';
import { add, neg, reduceSum } from '../src/graph/ops.js';
import { loadModel } from '../src/models/load.js';
import { normalStream } from '../src/util/random.js';

const arg = (name: string, fallback?: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1]!;
  if (fallback === undefined) throw new Error(`gpu-step: --${name} is required`);
  return fallback;
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const STEPS = 500;

/** The original recipe's objective for problem b: L1 to C = 100 on residual feature b at every position. */
function feeds(B: number, T: number, D: number, seed: number): ObjectiveFeeds {
  const r = normalStream(seed);
  const x = Float32Array.from({ length: B * T * D }, () => r());
  const l1 = new Float32Array(B * T * D);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) l1[(b * T + t) * D + b] = 1;
  return { x, l1, lin: new Float32Array(B * T * D), C: new Float32Array(B).fill(100), report: l1 };
}

async function main(): Promise<void> {
  const device = resolveDevice(arg('device', 'webgpu'));
  const T = Number(arg('T', '5'));
  const batches = arg('batches', '1,8,32').split(',').map(Number);
  const reps = Number(arg('reps', '10'));
  const model = loadModel(arg('model'), { tokenizer: process.argv.includes('--tokenizer') ? arg('tokenizer') : undefined });
  const { dim: D, nLayers } = model.config;
  const range: [number, number] = [1, nLayers];
  const runner = new ModelRunner(model, { device });
  const results: Record<string, unknown>[] = [];
  for (const B of batches) {
    const f = feeds(B, T, D, 1000 + B);
    let t0 = performance.now();
    await objectiveStep(runner, range, 'resid', f, { B, T });
    const firstMs = performance.now() - t0; // graph build, session creation, weight upload, shader compilation
    await objectiveStep(runner, range, 'resid', f, { B, T });
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      t0 = performance.now();
      await objectiveStep(runner, range, 'resid', f, { B, T });
      times.push(performance.now() - t0);
    }
    const io = await ioOnly(device, B, T, D, f, reps);
    const step = median(times);
    results.push({
      B,
      T,
      first_ms: firstMs,
      step_ms: step,
      per_feature_ms: step / B,
      features_per_s: B / ((STEPS * step) / 1000),
      io_ms: io,
      io_share: io / step,
    });
  }
  const checkOut = process.argv.includes('--check-out') ? arg('check-out') : undefined;
  if (checkOut) {
    const f = feeds(1, T, D, 7);
    const out = await objectiveStep(runner, range, 'resid', f, { B: 1, T });
    writeFileSync(checkOut, JSON.stringify({ T, feature: 0, C: 100, x: [...f.x], loss: out.loss[0], grad: [...out.grad] }));
  }
  await runner.close();
  process.stdout.write(JSON.stringify({ tool: 'llm-features', device, model: model.path, layers: nLayers, dim: D, results }) + '\n');
}

async function ioOnly(device: ReturnType<typeof resolveDevice>, B: number, T: number, D: number, f: ObjectiveFeeds, reps: number): Promise<number> {
  const g = new Graph({ float: 'float32', target: device });
  const x = g.input('x', [B, T, D]);
  const l1 = g.input('l1', [B, T, D]);
  const lin = g.input('lin', [B, T, D]);
  const C = g.input('C', [B, 1, 1]);
  const report = g.input('report', [B, T, D]);
  g.output(add(add(reduceSum(add(l1, lin), [1, 2]), reduceSum(C, [1, 2])), reduceSum(x, [1, 2])), 'loss');
  g.output(reduceSum(report, [1, 2]), 'act');
  g.output(neg(x), 'grad');
  const s = await GraphSession.create(g, { device });
  const feedsIn = { ...f };
  await s.run(feedsIn);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await s.run(feedsIn);
    times.push(performance.now() - t0);
  }
  await s.release();
  return median(times);
}

await main();
