/**
 * Child process: llm-features step times on one model, through ModelRunner.objective (the batched forward + backward
 * step the Visualizer runs), plus the Visualizer's SGD update on the free positions.
 *
 *   node dist/bench/ours.js --model FILE [--T 5,8] [--batches 1,8,32,64] [--warmup 3] [--reps 10] [--budget-ms 9000]
 *        [--low-memory] [--check-x FILE --check-T 5 --check-out FILE]
 *
 * For every (T, B) a fresh ModelRunner (so one session and one set of prepacked weights at a time), its first call
 * timed separately (graph build + session creation + first step), then `warmup` steps, then up to `reps` timed steps
 * (fewer, at least 5, once `budget-ms` is spent; warm-up stops after 2 s). Timed steps during which other processes
 * took more than 15 % of the CPUs are repeated after waiting for quiet (at most 3 attempts, `wait-budget-ms` in all);
 * the attempt with the lowest median is kept.. Problem b is the L1-to-C objective (C = 100) on feature b at every
 * position of the last block's residual stream, from a random-normal start, updated by plain SGD (lr 2 → 0.2).
 * Prints one JSON line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ModelRunner } from '../src/engine/runner.js';
import { loadModel } from '../src/models/load.js';
import { normalStream } from '../src/util/random.js';
import { CONTENDED, cpuMs, machineCpu, median, parseArgs, procMemory, resetPeakRss, waitForQuiet } from './common.js';
import os from 'node:os';
import { objectiveStep } from '../src/features/objective.js';

const args = parseArgs(process.argv.slice(2));
const modelPath = args.get('model')!;
const Ts = (args.get('T') ?? '5,8').split(',').map(Number);
const batches = (args.get('batches') ?? '1,8,32,64').split(',').map(Number);
const warmup = Number(args.get('warmup') ?? 3);
const reps = Number(args.get('reps') ?? 10);
const budgetMs = Number(args.get('budget-ms') ?? 9000);
const lowMemory = args.has('low-memory');
/** Total time this child may spend waiting for other processes to quiet down. */
let waitBudgetMs = Number(args.get('wait-budget-ms') ?? 40000);
let waitedMs = 0;
const STEPS = 500;

const t0 = performance.now();
const model = loadModel(modelPath);
const loadMs = performance.now() - t0;
const cfg = model.config;
const range: [number, number] = [1, cfg.nLayers];
const D = cfg.dim;
const F = cfg.dim; // resid

function feedsFor(B: number, T: number, seed: number) {
  const x = new Float32Array(B * T * D);
  const normal = normalStream(seed);
  for (let i = 0; i < x.length; i++) x[i] = normal();
  const l1 = new Float32Array(B * T * F);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) l1[(b * T + t) * F + (b % F)] = 1;
  return { x, l1, lin: new Float32Array(B * T * F), C: new Float32Array(B).fill(100), report: l1.slice() };
}

/** One (T, B) row of this child's output; bench/run.ts reads it back. */
export interface Measurement {
  T: number;
  B: number;
  firstCallMs: number;
  sessionMs: number;
  stepMs: number;
  stepMinMs: number;
  steps: number[];
  peakRss: number;
  rssAfter: number;
  rssAnon: number;
  rssFile: number;
  lossStart: number;
  lossEnd: number;
  /** Share of the machine's CPU time used by other processes while the timed steps ran. */
  foreignCpu: number;
  attempts: number;
}

const results: Measurement[] = [];
for (const T of Ts) {
  for (const B of batches) {
    // Drop the previous runner's memory from the peak counter, so each peak belongs to one (T, B).
    global.gc?.();
    resetPeakRss();
    const runner = new ModelRunner(model, { threads: 2, lowMemory });
    const feeds = feedsFor(B, T, 1000 * T + B);
    const shape = { B, T };
    const step = async (i: number) => {
      const res = await objectiveStep(runner, range, 'resid', feeds, shape);
      const lr = 2 + ((0.2 - 2) * i) / (STEPS - 1);
      const x = feeds.x;
      for (let j = 0; j < x.length; j++) x[j]! -= lr * res.grad[j]!;
      return res;
    };
    let t = performance.now();
    const first = await step(0);
    const firstCallMs = performance.now() - t;
    // Warm-up: `warmup` steps, fewer (at least one) when they are slow.
    const warmStart = performance.now();
    for (let i = 1; i <= warmup; i++) {
      await step(i);
      if (performance.now() - warmStart > 2000) break;
    }
    // Timed steps; when other processes took more than CONTENDED of the CPUs meanwhile, wait for quiet and time
    // them again (bounded by the child's total wait budget).
    // Contention only slows a measurement down, so of several attempts the one with the lowest median is kept.
    let times: number[] = [];
    let foreign = 0;
    let attempts = 0;
    let stepIndex = warmup + 1;
    let last = first;
    for (;;) {
      attempts++;
      const these: number[] = [];
      const started = performance.now();
      const machine0 = machineCpu();
      const own0 = cpuMs();
      for (let i = 0; i < reps; i++) {
        t = performance.now();
        last = await step(stepIndex++);
        these.push(performance.now() - t);
        if (these.length >= 5 && performance.now() - started > budgetMs) break;
      }
      const f = Math.max(0, (machineCpu().busyMs - machine0.busyMs - (cpuMs() - own0)) / ((performance.now() - started) * os.cpus().length));
      if (times.length === 0 || median(these) < median(times)) {
        times = these;
        foreign = f;
      }
      if (f <= CONTENDED || attempts >= 3 || waitBudgetMs <= 0) break;
      process.stderr.write(`ours: other processes took ${(100 * f).toFixed(0)} % of the CPUs during T=${T} B=${B}; waiting for quiet, then again\n`);
      const waited = await waitForQuiet(Math.min(20000, waitBudgetMs));
      waitBudgetMs -= waited;
      waitedMs += waited;
    }
    const mem = procMemory();
    await runner.close();
    const stepMs = median(times);
    const m: Measurement = {
      T,
      B,
      firstCallMs,
      sessionMs: Math.max(0, firstCallMs - stepMs),
      stepMs,
      stepMinMs: Math.min(...times),
      steps: times.map((x) => Math.round(x * 100) / 100),
      peakRss: mem.hwm,
      rssAfter: mem.rss,
      rssAnon: mem.rssAnon,
      rssFile: mem.rssFile,
      lossStart: first.loss[0]!,
      lossEnd: last.loss[0]!,
      foreignCpu: foreign,
      attempts,
    };
    results.push(m);
    process.stderr.write(`ours ${modelPath.split('/').pop()} T=${T} B=${B}: ${stepMs.toFixed(2)} ms/step (${times.length} timed, other processes ${(100 * foreign).toFixed(0)} % CPU, attempt ${attempts}), first call ${firstCallMs.toFixed(0)} ms, peak RSS ${(mem.hwm / 2 ** 20).toFixed(0)} MiB\n`);
  }
}

// The same-init check against PyTorch: one problem, feature 0, L1 to C = 100, from the given embeddings.
let check: { T: number; loss: number; gradFile: string } | null = null;
const checkX = args.get('check-x');
if (checkX) {
  const T = Number(args.get('check-T') ?? 5);
  const buf = readFileSync(checkX);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const feeds = feedsFor(1, T, 0);
  feeds.x.set(x);
  const runner = new ModelRunner(model, { threads: 2, lowMemory });
  const res = await objectiveStep(runner, range, 'resid', feeds, { B: 1, T });
  await runner.close();
  const gradFile = args.get('check-out')!;
  writeFileSync(gradFile, new Uint8Array(res.grad.buffer, res.grad.byteOffset, res.grad.byteLength));
  check = { T, loss: res.loss[0]!, gradFile };
}

console.log(JSON.stringify({ model: modelPath, loadMs, lowMemory, results, check, peakRssProcess: procMemory().hwm, cpuMs: cpuMs(), waitedMs }));
