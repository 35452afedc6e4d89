/**
 * Child process: does a long optimisation grow the process? (issue 18: no growth over 10,000 steps of stories260K at
 * batch 32.)
 *
 *   node dist/bench/growth.js --model FILE [--B 32] [--T 5] [--steps 10000] [--every 1000]
 *
 * Runs `steps` objective steps through ModelRunner.objective's graph (features/objective.ts objectiveStep, one cached
 * session, as the Visualizer does) with ours.ts's SGD update on the embeddings (its 500-step learning-rate schedule,
 * repeated), and samples the process's memory every `every` steps: RSS, anonymous RSS, V8 heap and external
 * (ArrayBuffer) bytes, after a full garbage collection — the per-step outputs are garbage, and without the collection
 * RSS would show when V8 last collected, not what the process holds. The first sample (after `every` steps) is the
 * warm-up's end: onnxruntime's arena and V8's heaps have grown to their working size by then. Growth = last − first
 * sample; slope = least-squares fit over the samples, KiB per 1,000 steps. Prints one JSON line.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ModelRunner } from '../src/engine/runner.js';
import { objectiveStep } from '../src/features/objective.js';
import { loadModel } from '../src/models/load.js';
import { normalStream } from '../src/util/random.js';
import { cpuMs, parseArgs, procMemory } from './common.js';

// The collector is reachable without --expose-gc on the command line (bench/run.ts spawns plain `node FILE`).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const args = parseArgs(process.argv.slice(2));
const model = loadModel(args.get('model')!);
const B = Number(args.get('B') ?? 32);
const T = Number(args.get('T') ?? 5);
const steps = Number(args.get('steps') ?? 10000);
const every = Number(args.get('every') ?? 1000);
const SCHEDULE = 500;
const cfg = model.config;
const D = cfg.dim;
const range: [number, number] = [1, cfg.nLayers];

const normal = normalStream(7);
const x = Float32Array.from({ length: B * T * D }, () => normal());
const l1 = new Float32Array(B * T * D);
for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) l1[(b * T + t) * D + (b % D)] = 1;
const feeds = { x, l1, lin: new Float32Array(B * T * D), C: new Float32Array(B).fill(100), report: l1.slice() };

const runner = new ModelRunner(model, { threads: 2 });
interface Sample {
  step: number;
  rss: number;
  rssAnon: number;
  heapUsed: number;
  external: number;
  ms: number;
}
const samples: Sample[] = [];
const t0 = performance.now();
let loss = NaN;
for (let i = 1; i <= steps; i++) {
  const res = await objectiveStep(runner, range, 'resid', feeds, { B, T });
  const k = (i - 1) % SCHEDULE;
  const lr = 2 + ((0.2 - 2) * k) / (SCHEDULE - 1);
  for (let j = 0; j < x.length; j++) x[j]! -= lr * res.grad[j]!;
  loss = res.loss[0]!;
  if (i % every === 0) {
    gc();
    const m = procMemory();
    const u = process.memoryUsage();
    samples.push({ step: i, rss: m.rss, rssAnon: m.rssAnon, heapUsed: u.heapUsed, external: u.external + u.arrayBuffers, ms: performance.now() - t0 });
  }
}
await runner.close();

/** Least-squares slope of y over step, per 1,000 steps. */
function slope(ys: number[], xs: number[]): number {
  const n = ys.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return (num / den) * 1000;
}
const xs = samples.map((s) => s.step);
const first = samples[0]!;
const last = samples[samples.length - 1]!;
console.log(
  JSON.stringify({
    model: model.path,
    B,
    T,
    steps,
    every,
    msPerStep: (last.ms) / steps,
    samples,
    growth: { rss: last.rss - first.rss, rssAnon: last.rssAnon - first.rssAnon, heapUsed: last.heapUsed - first.heapUsed, external: last.external - first.external },
    slopeKiBPer1000: {
      rss: slope(samples.map((s) => s.rss), xs) / 1024,
      rssAnon: slope(samples.map((s) => s.rssAnon), xs) / 1024,
      heapUsed: slope(samples.map((s) => s.heapUsed), xs) / 1024,
    },
    lossEnd: loss,
    cpuMs: cpuMs(),
  }),
);
