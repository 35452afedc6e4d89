/**
 * Child process: how many nodes one objective step is, forward and backward (issue 18's first goal).
 *
 *   node dist/bench/nodes.js --model PATH [--T 5] [--B 1] [--device webgpu] [--low-memory]
 *
 * PATH is anything loadModel opens (a llama2.c .bin, a GGUF, an HF folder). The graph is the one bench/profile.ts and
 * ModelRunner.objective build: blocks 1..L, resid hook, L1/linear objective, gradient to the embeddings
 * (features/objective.ts buildObjective — called, not copied). Two counts, each split into forward and backward:
 *
 * - emitted: ONNX nodes our builder wrote. The full graph is buildObjective's; the forward graph is the same graph
 *   with the `grad` output dropped and every node no remaining output (loss, act) depends on pruned away. So the
 *   forward is exactly the code the step runs, minus the backward; backward = full − forward. The full count is
 *   also given after the same pruning (`live`), so dead nodes of the builder (if any) show as emitted − live.
 * - kernels: kernel events onnxruntime's profiler records in one run of each graph, after its graph optimisations
 *   (fusions, constant folding, eliminated casts/reshapes), with the project's session options — what a step
 *   dispatches, one kernel per event. Counted by op type too.
 *
 * Prints one JSON line.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
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
import { cpuMs, parseArgs } from './common.js';

const args = parseArgs(process.argv.slice(2));
const modelPath = args.get('model');
if (!modelPath) {
  process.stderr.write('nodes: --model PATH is required\n');
  process.exit(2);
}
// --device webgpu counts the graph built for, and run on, onnxruntime's WebGPU provider (a software adapter does).
const deviceArg = args.get('device') ?? 'cpu';
if (deviceArg !== 'cpu' && deviceArg !== 'webgpu') {
  process.stderr.write(`nodes: --device must be cpu or webgpu, got ${JSON.stringify(deviceArg)}\n`);
  process.exit(2);
}
const device: 'cpu' | 'webgpu' = deviceArg;
// --low-memory: the graph the runner builds in that mode (weights left unfolded, no prepacking).
const lowMemory = args.has('low-memory');
const T = Number(args.get('T') ?? 5);
const B = Number(args.get('B') ?? 1);
const model = loadModel(modelPath);
const cfg = model.config;
const D = cfg.dim;
const F = cfg.dim; // resid hook
const range: [number, number] = [1, cfg.nLayers];

// Non-F32 checkpoints (the bf16/f16 HF fixtures) are converted into a weight cache; a private temporary one, so the
// count neither depends on nor writes to the user's cache. The external-data folder must hold both, as in ModelRunner.
const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-nodes-'));
const cacheDir = path.join(tmp, 'cache');
mkdirSync(cacheDir);
const cache = new WeightCache(cacheDir);
const tensors = [...model.tensors.values()];
const dirs = new Set(tensors.filter((t) => t.dtype === 'F32').map((t) => path.dirname(realpathSync(t.file))));
if (tensors.some((t) => t.dtype !== 'F32')) dirs.add(realpathSync(cacheDir));
const folder = commonAncestor([...dirs]);

const g = new Graph({ float: 'float32', target: device, foldWeights: !lowMemory });
const w = new WeightBinder(g, model.tensors, (t) => cache.locate(t), folder);
buildObjective(g, cfg, w, range, 'resid', { B, T });
w.materialize();
const emittedFull = g.nodes.length;

/** Keep only the nodes the named outputs depend on (and the initializers those nodes read); returns the node count. */
function pruneTo(graph: Graph, keep: string[]): number {
  const kept = graph.outputs.filter((o) => keep.includes(o.name));
  graph.outputs.splice(0, graph.outputs.length, ...kept);
  const needed = new Set<string>(kept.map((o) => o.value.name));
  const live: boolean[] = new Array(graph.nodes.length).fill(false);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i]!;
    if ((n.output ?? []).some((o) => needed.has(o))) {
      live[i] = true;
      for (const x of n.input ?? []) if (x) needed.add(x);
    }
  }
  const nodes = graph.nodes.filter((_, i) => live[i]);
  graph.nodes.splice(0, graph.nodes.length, ...nodes);
  const inits = graph.initializers.filter((t) => needed.has(t.name ?? ''));
  graph.initializers.splice(0, graph.initializers.length, ...inits);
  return nodes.length;
}

interface KernelCount {
  kernels: number;
  byOp: Record<string, number>;
}

/** Kernel events of the second run of a session over `bytes` (the first run may differ: arena growth, caches). */
async function kernels(bytes: Uint8Array, feeds: Record<string, ort.Tensor>, name: string): Promise<KernelCount> {
  const dir = path.join(tmp, name);
  mkdirSync(dir);
  const opts = { ...sessionOptions({ threads: 2, externalFolder: folder, device, lowMemory }), enableProfiling: true, profileFilePrefix: path.join(dir, 'prof') };
  const session = await ort.InferenceSession.create(bytes, opts);
  const mine = Object.fromEntries(session.inputNames.map((n) => [n, feeds[n]!]));
  await session.run(mine);
  await session.run(mine);
  session.endProfiling();
  await session.release();
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  const events: { cat: string; name: string; args?: { op_name?: string } }[] = file ? JSON.parse(readFileSync(path.join(dir, file), 'utf8')) : [];
  // model_run session events close each run; the nodes before the second one belong to run 2.
  const runs: (typeof events)[] = [];
  let current: typeof events = [];
  for (const e of events) {
    if (e.cat === 'Session' && e.name === 'model_run') {
      runs.push(current);
      current = [];
    } else if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) current.push(e);
  }
  const run = runs[1] ?? [];
  const byOp: Record<string, number> = {};
  for (const e of run) {
    const op = e.args?.op_name ?? '?';
    byOp[op] = (byOp[op] ?? 0) + 1;
  }
  return { kernels: run.length, byOp: Object.fromEntries(Object.entries(byOp).sort((a, b) => b[1] - a[1])) };
}

const feeds = objectiveFeeds(B, T, D, F);

try {
  const liveFull = pruneTo(g, ['loss', 'act', 'grad']);
  const full = await kernels(g.serialize(), feeds, 'full');
  const liveForward = pruneTo(g, ['loss', 'act']);
  const forward = await kernels(g.serialize(), feeds, 'forward');
  const backwardByOp: Record<string, number> = {};
  for (const op of new Set([...Object.keys(full.byOp), ...Object.keys(forward.byOp)])) {
    const d = (full.byOp[op] ?? 0) - (forward.byOp[op] ?? 0);
    if (d !== 0) backwardByOp[op] = d;
  }
  const L = cfg.nLayers;
  const split = (f: number, fw: number) => ({ full: f, forward: fw, backward: f - fw, perLayer: { full: f / L, forward: fw / L, backward: (f - fw) / L } });
  console.log(
    JSON.stringify({
      model: modelPath,
      device,
      lowMemory,
      arch: cfg.arch,
      layers: L,
      dim: D,
      heads: cfg.nHeads,
      kvHeads: cfg.nKvHeads,
      T,
      B,
      emitted: { ...split(liveFull, liveForward), dead: emittedFull - liveFull },
      kernels: { ...split(full.kernels, forward.kernels), byOp: { full: full.byOp, forward: forward.byOp, backward: Object.fromEntries(Object.entries(backwardByOp).sort((a, b) => b[1] - a[1])) } },
      cpuMs: cpuMs(),
    }),
  );
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
