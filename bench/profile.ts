/**
 * Child process: where a step's time goes. Builds the same objective graph ModelRunner.objective builds (blocks 1..L,
 * resid hook, L1/linear objective, gradient to the embeddings), runs it in an onnxruntime session with the project's
 * session options plus profiling, and sums the per-node kernel times by kind.
 *
 *   node dist/bench/profile.js --model FILE --T 5 --B 1 [--steps 5] [--low-memory]
 *
 * Prints one JSON line: per op type total µs per step, and the weight-matrix products separated from the rest, with their share of the step and their achieved GFLOP/s.
 */
import { mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildObjective } from '../src/features/objective.js';
import { sessionOptions } from '../src/engine/session.js';
import { WeightCache } from '../src/engine/weight-cache.js';
import { commonAncestor, WeightBinder } from '../src/engine/weights.js';
import { Graph } from '../src/graph/graph.js';
import { loadModel } from '../src/models/load.js';
import { objectiveFeeds } from './objective-feeds.js';
import { cpuMs, median, parseArgs } from './common.js';

const args = parseArgs(process.argv.slice(2));
const model = loadModel(args.get('model')!);
const T = Number(args.get('T') ?? 5);
const B = Number(args.get('B') ?? 1);
const steps = Number(args.get('steps') ?? 5);
const lowMemory = args.has('low-memory');
const cfg = model.config;
const D = cfg.dim;
const F = cfg.dim;
const range: [number, number] = [1, cfg.nLayers];

// The graph, exactly as ModelRunner.objective builds it (F32 checkpoints: weights bound in place from the file).
const folder = commonAncestor([path.dirname(realpathSync(model.path))]);
const cache = new WeightCache(undefined);
const g = new Graph({ float: 'float32', foldWeights: !lowMemory }); // as ModelRunner builds it
const w = new WeightBinder(g, model.tensors, (t) => cache.locate(t), folder);
buildObjective(g, cfg, w, range, 'resid', { B, T });
w.materialize();

const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-profile-'));
const opts = { ...sessionOptions({ threads: 2, lowMemory, externalFolder: folder }), enableProfiling: true, profileFilePrefix: path.join(dir, 'prof') };
const session = await ort.InferenceSession.create(g.serialize(), opts);
const feeds = objectiveFeeds(B, T, D, F);
const wall: number[] = [];
for (let i = 0; i < steps + 2; i++) {
  const t = performance.now();
  await session.run(feeds);
  if (i >= 2) wall.push(performance.now() - t);
}
session.endProfiling();
await session.release();

interface Event {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}
const file = readdirSync(dir).find((f) => f.endsWith('.json'));
const events: Event[] = file ? JSON.parse(readFileSync(path.join(dir, file), 'utf8')) : [];
rmSync(dir, { recursive: true, force: true });

// Kernel events of the timed runs only (the first two runs are warm-up): split the node events into runs by the
// "model_run" session events.
const runs: Event[][] = [];
let current: Event[] = [];
for (const e of events) {
  if (e.cat === 'Session' && e.name === 'model_run') {
    runs.push(current);
    current = [];
  } else if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) current.push(e);
}
// model_run events are emitted when a run ends, so runs[i] holds run i's nodes.
const timed = runs.slice(2);
const byOp = new Map<string, number>();
/** Kernel time per step by kind: weight products, attention products, the RoPE rotation, element-wise, layout, reductions. */
const byKind = new Map<string, number>();
let weightUs = 0;
let weightFlops = 0;
let otherUs = 0;
let nodes = 0;
const ELEMENTWISE = new Set(['Mul', 'Add', 'Sub', 'Div', 'Neg', 'Sqrt', 'Sigmoid', 'Abs', 'Sign', 'Pow', 'Where', 'Cast', 'Exp', 'Tanh']);
const LAYOUT = new Set(['Transpose', 'Reshape', 'Expand', 'Slice', 'Concat', 'Gather', 'Pad', 'Identity', 'Unsqueeze', 'Squeeze']);
for (const run of timed) {
  for (const e of run) {
    const op = e.args?.op_name ?? '?';
    const us = e.dur / timed.length;
    byOp.set(op, (byOp.get(op) ?? 0) + us);
    // Initializers (the weights, the RoPE rotation) are not listed among a node's input shapes: a weight product is
    // a matrix product with one listed input, of rank 3 ([B, T, in]); its FLOPs are 2 · B·T·in · out. One listed
    // input of rank 4 is the RoPE rotation ([B, H, T, hd] · [hd, hd]); two listed inputs are attention products.
    const shapes = (e.args?.input_type_shape ?? []).map((s) => Object.values(s)[0] ?? []);
    const outShape = Object.values(e.args?.output_type_shape?.[0] ?? {})[0] ?? [];
    const isMatmul = /MatMul|Gemm/.test(op);
    const isWeight = isMatmul && shapes.length === 1 && shapes[0]!.length === 3;
    const kind = isWeight
      ? 'weight products'
      : isMatmul && shapes.length === 1
        ? 'RoPE rotation products'
        : isMatmul
          ? 'attention products'
          : ELEMENTWISE.has(op)
            ? 'element-wise'
            : LAYOUT.has(op)
              ? 'layout (transpose, reshape, expand)'
              : 'reductions, softmax, other';
    byKind.set(kind, (byKind.get(kind) ?? 0) + us);
    if (isWeight) {
      weightUs += us;
      weightFlops += (2 * shapes[0]!.reduce((a, b) => a * b, 1) * outShape[outShape.length - 1]!) / timed.length;
    } else otherUs += us;
  }
  nodes = run.length;
}
const kinds = [...byKind.entries()].sort((a, b) => b[1] - a[1]).map(([kind, us]) => ({ kind, usPerStep: Math.round(us) }));
const ops = [...byOp.entries()].sort((a, b) => b[1] - a[1]).map(([op, us]) => ({ op, usPerStep: Math.round(us) }));
console.log(
  JSON.stringify({
    model: model.path,
    T,
    B,
    lowMemory,
    wallMs: median(wall),
    nodesPerRun: nodes,
    kernelMs: (weightUs + otherUs) / 1000,
    weightMatmulMs: weightUs / 1000,
    weightMatmulGflops: weightFlops / weightUs / 1000,
    otherKernelMs: otherUs / 1000,
    kinds,
    ops,
    cpuMs: cpuMs(),
  }),
);
