/**
 * Shared pieces of the benchmark: workloads, analytic FLOP and weight-byte counts, /proc readings, child processes.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RandomLlamaSpec } from './random-llama2c.js';

/** dist/bench (compiled) → the repository root is two levels up. */
export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(BENCH_DIR, '../..');
export const SOURCE_BENCH_DIR = path.join(ROOT, 'bench');
export const MODELS_DIR = process.env.LLMF_TEST_MODELS ?? path.resolve(ROOT, '../shared/models');

/** The random-weight configurations the issue names (llama2.c legacy format, tied embeddings). */
export const CONFIG_A: RandomLlamaSpec = { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 256 };
export const CONFIG_B: RandomLlamaSpec = { dim: 2048, hiddenDim: 5632, nLayers: 4, nHeads: 16, nKvHeads: 16, vocabSize: 32000, seqLen: 256 };

/** Shape facts the analytic counts need (a subset of ModelConfig, so a llama2.c header also fits). */
export interface Shape {
  dim: number;
  ffn: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
}

export function shapeOf(s: RandomLlamaSpec): Shape {
  return { dim: s.dim, ffn: s.hiddenDim, nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads };
}

/** Matrix parameters of one block: q, k, v, o and the three SwiGLU matrices. */
export function blockMatrixParams(s: Shape): number {
  const kv = (s.dim * s.nKvHeads) / s.nHeads;
  return 2 * s.dim * s.dim + 2 * s.dim * kv + 3 * s.dim * s.ffn;
}

/** f32 bytes of `blocks` blocks (matrices and the two norm vectors). */
export function blockWeightBytes(s: Shape, blocks: number): number {
  return 4 * blocks * (blockMatrixParams(s) + 2 * s.dim);
}

/**
 * FLOPs of one step (forward through `blocks` blocks + backward to the input embeddings, no weight gradients) for
 * B problems of T positions. Per block: every weight matrix costs 2·N·P forward and 2·N·P for the input gradient
 * (N = B·T tokens); attention costs 2 products forward (QKᵀ, PV) and 4 backward, each 2·B·H·T²·hd. Elementwise work,
 * norms, softmax and the RoPE rotation are not counted (they are O(N·D), not O(N·D²)).
 */
export function stepFlops(s: Shape, blocks: number, B: number, T: number): number {
  const N = B * T;
  const hd = s.dim / s.nHeads;
  const perBlock = 4 * N * blockMatrixParams(s) + 12 * B * s.nHeads * T * T * hd;
  return blocks * perBlock;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** Memory counters of this process from /proc/self/status, in bytes. */
export interface ProcMemory {
  rss: number;
  hwm: number;
  rssAnon: number;
  rssFile: number;
}

export function procMemory(): ProcMemory {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile') };
}

/** Reset this process's peak-RSS counter (VmHWM) to the current RSS (Linux ≥ 4.0); false where not allowed. */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** CPU time this process has used (all threads), ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Busy and total CPU time of the whole machine so far, ms (from /proc/stat; USER_HZ = 100). */
export function machineCpu(): { busyMs: number; totalMs: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    const busy = user + nice + system + irq + softirq + (steal ?? 0);
    return { busyMs: busy * 10, totalMs: (busy + idle + iowait) * 10 };
  } catch {
    return { busyMs: NaN, totalMs: NaN };
  }
}

/**
 * Wait (idle) until other processes use at most `threshold` of the machine's CPUs over a 1-s window, for at most
 * `maxMs`. Returns the time waited. The caller must be idle meanwhile: all busy time then belongs to others.
 */
export async function waitForQuiet(maxMs: number, threshold = 0.1): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const a = machineCpu();
    await new Promise((r) => setTimeout(r, 1000));
    const b = machineCpu();
    if ((b.busyMs - a.busyMs) / (b.totalMs - a.totalMs) <= threshold) break;
  }
  return performance.now() - t0;
}

/** Other processes above this share of the CPUs during a measurement: wait for quiet and measure again. */
export const CONTENDED = 0.15;

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Wall-clock time (ms since the epoch, sub-ms) just before the child was spawned. */
  spawnedAt: number;
}

/** Run a command to completion, collecting its output; stderr is also echoed (indented) when `echo` is set. */
export function runChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; echo?: boolean; timeoutMs?: number } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const spawnedAt = performance.timeOrigin + performance.now();
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      const s = d.toString();
      stderr += s;
      if (opts.echo) process.stderr.write(s.replace(/^(?=.)/gm, '    '));
    });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : null;
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0, spawnedAt });
    });
  });
}

/** The last line of a child's stdout that parses as JSON (children print their result last). */
export function lastJson<T>(stdout: string): T | null {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      return JSON.parse(line) as T;
    } catch {
      // not JSON
    }
  }
  return null;
}

/** Run a compiled bench child (dist/bench/NAME.js) under node and return its JSON result. */
export async function nodeChild<T>(name: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<T & { wallMs: number; spawnedAt: number }> {
  const r = await runChild(process.execPath, [path.join(BENCH_DIR, `${name}.js`), ...args], { ...opts, echo: true });
  const out = lastJson<T>(r.stdout);
  if (r.code !== 0 || !out) throw new Error(`bench child ${name} ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr.slice(-2000)}`);
  return { ...out, wallMs: r.ms, spawnedAt: r.spawnedAt };
}

export function parseArgs(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) m.set(a.slice(2), 'true');
    else {
      m.set(a.slice(2), next);
      i++;
    }
  }
  return m;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/**
 * One HF fixture per architecture the project has (test/fixtures/hf), for the node counts of issue 18: node counts
 * depend on the block structure, not on widths, so the tiny fixtures count what a real model of the family runs.
 */
export const NODE_FIXTURES: { key: string; fixture: string }[] = [
  { key: 'llama', fixture: 'llama-gqa-bf16' },
  { key: 'qwen2', fixture: 'qwen2-tied' },
  { key: 'gemma', fixture: 'gemma-bf16' },
  { key: 'gemma2', fixture: 'gemma2-window-bf16' },
  { key: 'qwen3', fixture: 'qwen3-bf16' },
  { key: 'olmo2', fixture: 'olmo2-bf16-sharded' },
  { key: 'gpt2', fixture: 'gpt2-f16' },
  { key: 'gpt-neox', fixture: 'pythia-parallel-f16' },
  { key: 'phi', fixture: 'phi-f16' },
  { key: 'phi3', fixture: 'phi3-gqa-bf16' },
];

/** bench/nodes.ts's result (one model). */
export interface NodesOut {
  model: string;
  arch: string;
  layers: number;
  T: number;
  B: number;
  emitted: { full: number; forward: number; backward: number; dead: number };
  kernels: { full: number; forward: number; backward: number; byOp: { full: Record<string, number>; forward: Record<string, number>; backward: Record<string, number> } };
  cpuMs: number;
}

/** The committed node counts the issue-18 rewrite is compared with (bench/results/nodes-baseline.json). */
export interface NodesBaseline {
  measuredAt: string;
  /** HEAD when measured, and the last commit that touched src/ (what the counts are of). */
  commit: string;
  srcCommit: string;
  T: number;
  B: number;
  note: string;
  architectures: { key: string; model: string; arch: string; layers: number; emitted: { full: number; forward: number; backward: number }; kernels: { full: number; forward: number; backward: number }; kernelsByOp: Record<string, number> }[];
}

/** The count today ÷ the baseline's, per architecture key; null where the baseline lacks it. */
export function nodeRatios(today: { key: string; kernels: { full: number }; emitted: { full: number } }[], base: NodesBaseline | null): { key: string; kernels: number | null; emitted: number | null; baseKernels: number | null; baseEmitted: number | null }[] {
  return today.map((t) => {
    const b = base?.architectures.find((a) => a.key === t.key) ?? null;
    return { key: t.key, kernels: b ? t.kernels.full / b.kernels.full : null, emitted: b ? t.emitted.full / b.emitted.full : null, baseKernels: b?.kernels.full ?? null, baseEmitted: b?.emitted.full ?? null };
  });
}

/**
 * Activations a Llama-style block's backward needs if every forward intermediate is kept, in bytes (f32), for B
 * problems of T positions: per token the block input, both normed inputs, q, the attention output, the projected
 * output and the mid-block residual (~7·D, plus the rotated q: 8·D), k, v and rotated k (3·kvD), the FFN's gate, up,
 * activated gate and product (4·F), and per head the scores and probabilities (2·H·T). An estimate to read the
 * measured working set against (it excludes the backward's own transient buffers and the arena's rounding).
 */
export function keptActivationBytes(s: Shape, B: number, T: number): number {
  const kv = (s.dim * s.nKvHeads) / s.nHeads;
  return 4 * s.nLayers * B * T * (8 * s.dim + 3 * kv + 4 * s.ffn + 2 * s.nHeads * T);
}
