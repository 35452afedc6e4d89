/**
 * Child process: the machine's limits as Node sees them.
 *
 *   node dist/bench/limits.js [--gib 1] [--threads 2] [--reps 5] [--n 3072]
 *
 * - Memory read bandwidth: a SharedArrayBuffer of `gib` GiB (every page written first, so none is the shared zero
 *   page), split into `threads` equal halves, one worker thread each; every worker scans its part with
 *   Buffer.indexOf for a byte that is not there (glibc's vectorised memchr: pure streaming reads). Bandwidth = bytes
 *   scanned ÷ wall time from the start signal until the last worker finishes; best of `reps`.
 * - sgemm: an onnxruntime MatMul of two n × n float32 inputs with 2 intra-op threads (the project's session options),
 *   best of `reps` after one warm-up; GFLOP/s = 2n³ ÷ time. And the product the steps run: x [512, 2048] times a
 *   prepacked weight [5632, 2048] with transB (2·M·K·N FLOPs).
 * Prints one JSON line.
 */
import { Worker } from 'node:worker_threads';
import { GraphSession } from '../src/engine/session.js';
import { Graph } from '../src/graph/graph.js';
import { linear, matmul } from '../src/graph/ops.js';
import { normalStream } from '../src/util/random.js';
import { cpuMs, parseArgs } from './common.js';

const args = parseArgs(process.argv.slice(2));
const gib = Number(args.get('gib') ?? 1);
const threads = Number(args.get('threads') ?? 2);
const reps = Number(args.get('reps') ?? 5);
const n = Number(args.get('n') ?? 3072);

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { sab, offset, length } = workerData;
const view = Buffer.from(sab, offset, length);
parentPort.on('message', () => {
  const found = view.indexOf(1);
  parentPort.postMessage(found);
});
parentPort.postMessage('ready');
`;

async function bandwidth(): Promise<{ bytes: number; threads: number; gbPerS: number[]; best: number }> {
  const bytes = Math.round(gib * 2 ** 30);
  const sab = new SharedArrayBuffer(bytes);
  new Uint8Array(sab).fill(2);
  const part = Math.floor(bytes / threads / 4096) * 4096;
  const workers: Worker[] = [];
  for (let i = 0; i < threads; i++) {
    const w = new Worker(WORKER, { eval: true, workerData: { sab, offset: i * part, length: part } });
    await new Promise((r) => w.once('message', r));
    workers.push(w);
  }
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    const found = await Promise.all(workers.map((w) => new Promise<number>((res) => { w.once('message', res); w.postMessage('go'); })));
    const ms = performance.now() - t;
    if (found.some((f) => f !== -1)) throw new Error('bandwidth buffer was not filled');
    rates.push((part * threads) / ms / 1e6);
  }
  await Promise.all(workers.map((w) => w.terminate()));
  return { bytes: part * threads, threads, gbPerS: rates.map((x) => Math.round(x * 100) / 100), best: Math.max(...rates) };
}

/** Best of `reps` (after one warm-up) for one session and feeds; GFLOP/s for `flops` per run. */
async function rate(s: GraphSession, feeds: Record<string, Float32Array>, flops: number): Promise<number[]> {
  await s.run(feeds);
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    await s.run(feeds);
    rates.push(flops / (performance.now() - t) / 1e6);
  }
  return rates;
}

/** n × n × n, both operands graph inputs (nothing prepacked). */
async function sgemm(): Promise<{ n: number; gflops: number[]; best: number }> {
  const g = new Graph({ float: 'float32' });
  const a = g.input('a', [n, n]);
  const b = g.input('b', [n, n]);
  g.output(matmul(a, b), 'c');
  const s = await GraphSession.create(g, { threads: 2 });
  const normal = normalStream(3);
  const rates = await rate(s, { a: Float32Array.from({ length: n * n }, () => normal()), b: Float32Array.from({ length: n * n }, () => normal()) }, 2 * n ** 3);
  await s.release();
  return { n, gflops: rates.map((x) => Math.round(x * 10) / 10), best: Math.max(...rates) };
}

/**
 * x [M, K] times a weight W [N, K] held as an initializer (so onnxruntime prepacks it) with transB, as the steps'
 * forward products are run: M = 512 (64 problems × 8 positions), K = 2048, N = 5632 (config B's FFN).
 */
async function packedSgemm(): Promise<{ M: number; K: number; N: number; gflops: number[]; best: number }> {
  const [M, K, N] = [512, 2048, 5632];
  const normal = normalStream(4);
  const g = new Graph({ float: 'float32' });
  const x = g.input('x', [M, K]);
  const w = g.weight('w', [N, K], Float32Array.from({ length: N * K }, () => normal()));
  g.output(linear(x, w), 'y');
  const s = await GraphSession.create(g, { threads: 2 });
  const rates = await rate(s, { x: Float32Array.from({ length: M * K }, () => normal()) }, 2 * M * K * N);
  await s.release();
  return { M, K, N, gflops: rates.map((r) => Math.round(r * 10) / 10), best: Math.max(...rates) };
}

const bw = await bandwidth();
process.stderr.write(`memory read bandwidth (${threads} threads, ${(bw.bytes / 2 ** 30).toFixed(2)} GiB, memchr): best ${bw.best.toFixed(1)} GB/s of ${bw.gbPerS.join(', ')}\n`);
const mm = await sgemm();
process.stderr.write(`onnxruntime MatMul ${n}³ (2 threads): best ${mm.best.toFixed(1)} GFLOP/s of ${mm.gflops.join(', ')}\n`);
const packed = await packedSgemm();
process.stderr.write(`onnxruntime prepacked ${packed.M}×${packed.K} · (${packed.N}×${packed.K})ᵀ (2 threads): best ${packed.best.toFixed(1)} GFLOP/s of ${packed.gflops.join(', ')}\n`);
console.log(JSON.stringify({ bandwidth: bw, ortSgemm: mm, ortPacked: packed, cpuMs: cpuMs() }));
