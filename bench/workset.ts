/**
 * Child process: the step's own peak memory — activations, gradients, onnxruntime's arena — besides the weights and
 * their prepacked copies (issue 18: peak working set as a function of B and T).
 *
 *   node dist/bench/workset.js --model FILE --T 5 --B 1 [--steps 2]
 *
 * One (T, B) per process, so nothing a previous session freed (and glibc kept) can be reused and hide memory. The
 * graph is bench/profile.ts's (ModelRunner.objective's objective graph), run in a plain onnxruntime session with the
 * project's session options. Method (Linux /proc/self/status):
 *   1. create the session (onnxruntime prepacks the weight matrices here, so the prepacked copies are in this
 *      baseline) with the feeds already allocated; read RSS, RssFile, RssAnon;
 *   2. reset the peak-RSS counter (VmHWM, via /proc/self/clear_refs) and run `steps` steps;
 *   3. read VmHWM, RssFile, RssAnon.
 * Working set = (VmHWM − RSS after creation) − (RssFile growth during the steps). The subtracted part is file-backed
 * pages the steps touched for the first time — checkpoint pages read in place (norm vectors, anything not prepacked)
 * and onnxruntime's own code pages of kernels first run (~1 MiB): weights and code, not the step's memory. What remains is anonymous memory the steps
 * needed at their peak — onnxruntime's arena (which rounds its growth up to its chunk sizes), the outputs, Node's
 * copies. `retained` = RssAnon growth: what is still held after the steps (the arena does not shrink).
 * Prints one JSON line; `hwmReset: false` means the counter could not be reset and the peak is not this step's.
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildObjective } from '../src/features/objective.js';
import { sessionOptions } from '../src/engine/session.js';
import { WeightCache } from '../src/engine/weight-cache.js';
import { commonAncestor, WeightBinder } from '../src/engine/weights.js';
import { Graph } from '../src/graph/graph.js';
import { loadModel } from '../src/models/load.js';
import { normalStream } from '../src/util/random.js';
import { cpuMs, parseArgs, procMemory, resetPeakRss } from './common.js';

const args = parseArgs(process.argv.slice(2));
const model = loadModel(args.get('model')!);
const T = Number(args.get('T') ?? 5);
const B = Number(args.get('B') ?? 1);
const steps = Number(args.get('steps') ?? 2);
const cfg = model.config;
const D = cfg.dim;
if ([...model.tensors.values()].some((t) => t.dtype !== 'F32')) {
  process.stderr.write('workset: F32 checkpoints only (a converted checkpoint would mix the cache\'s pages into the count)\n');
  process.exit(2);
}
const folder = commonAncestor([path.dirname(realpathSync(model.path))]);
const g = new Graph({ float: 'float32' });
// F32 is bound in place; the cache only records its one-time finiteness check, in a private folder removed below.
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'llmf-workset-'));
const cache = new WeightCache(cacheDir);
const w = new WeightBinder(g, model.tensors, (t) => cache.locate(t), folder);
buildObjective(g, cfg, w, [1, cfg.nLayers], 'resid', { B, T });
w.materialize();
const bytes = g.serialize();

const normal = normalStream(1);
const l1 = new Float32Array(B * T * D);
for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) l1[(b * T + t) * D + (b % D)] = 1;
const feeds: Record<string, ort.Tensor> = {
  x: new ort.Tensor('float32', Float32Array.from({ length: B * T * D }, () => normal()), [B, T, D]),
  l1: new ort.Tensor('float32', l1, [B, T, D]),
  lin: new ort.Tensor('float32', new Float32Array(B * T * D), [B, T, D]),
  C: new ort.Tensor('float32', new Float32Array(B).fill(100), [B, 1, 1]),
  report: new ort.Tensor('float32', l1.slice(), [B, T, D]),
};
const session = await ort.InferenceSession.create(bytes, sessionOptions({ threads: 2, externalFolder: folder }));
const created = procMemory();
const hwmReset = resetPeakRss();
let loss = NaN;
for (let i = 0; i < steps; i++) {
  const out = await session.run(feeds);
  loss = (out.loss!.data as Float32Array)[0]!;
}
const after = procMemory();
await session.release();
rmSync(cacheDir, { recursive: true, force: true });
const fileTouched = Math.max(0, after.rssFile - created.rssFile);
console.log(
  JSON.stringify({
    model: model.path,
    T,
    B,
    steps,
    hwmReset,
    created,
    after,
    peakDelta: after.hwm - created.rss,
    fileTouched,
    workingSet: after.hwm - created.rss - fileTouched,
    retained: after.rssAnon - created.rssAnon,
    loss,
    cpuMs: cpuMs(),
  }),
);
