/**
 * Distributed builds through the Redis queue (a benchmark, not a test).
 *
 *   node dist/bench/queue.js [--model PATH] [--blocks 1,2,3] [--features 0-127] [--json]
 *
 * Starts its own redis-server (Debian's package) on a free loopback port in a temporary folder and times, in one run,
 * the same sweep (default visualize settings, 1 intra-op thread per process) three ways, each into a fresh atlas and
 * an emptied queue (so no run reuses another's finished jobs):
 *   local   `atlas build` without a queue
 *   1 × 1   `atlas build --queue` with one `worker --threads 1`
 *   2 × 1   the same with two workers
 *   pair    two local builds of half the features each, side by side (the machine's own two-process ceiling)
 * and reports the throughput ratio 2 × 1 / 1 × 1 and the queue's overhead per job, two ways: the one worker's idle
 * time (wall − the time its jobs spent inside runFeatureBatch) and the queued run's extra wall time over the local one,
 * each divided by the job count and compared with the median job time.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { parseQueueUrl, redisClient } from '../src/atlas/queue/connection.js';
import { QUEUE_NAME, type JobData, type JobResult } from '../src/atlas/queue/jobs.js';
import { median, MODELS_DIR, ROOT } from './common.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? '' : v;
}

const MODEL = flag('model') ?? path.join(MODELS_DIR, 'stories-d128-L4.bin');
const BLOCKS = flag('blocks') ?? '1,2,3';
const FEATURES = flag('features') ?? '0-127';
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const dir = mkdtempSync(path.join(tmpdir(), 'llmf-bench-queue-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function startWorker(url: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, [CLI, 'worker', '--queue', url, '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let text = '';
  c.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  while (!text.includes('taking jobs')) {
    if (c.exitCode !== null) throw new Error(`worker exited: ${text}`);
    await sleep(50);
  }
  return c;
}

async function stopWorker(c: ChildProcess): Promise<void> {
  const done = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await done;
}

/** user + system CPU seconds of a live process (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Timed {
  wall_ms: number;
  /** Median JSON size of a job's result and of its data. */
  result_bytes: number;
  data_bytes: number;
  /** CPU seconds the workers used (start-up included): over the wall time, the cores they actually got. */
  worker_cpu_s: number;
  jobs: number;
  /** Per job: time inside runFeatureBatch, and worker + queue time from being taken to finished. */
  run_ms: number[];
  held_ms: number[];
  /** One worker: gaps between one job's finish and the next one's start. */
  gaps_ms: number[];
}

async function build(url: string | null, db: string, features = FEATURES): Promise<{ elapsed_ms: number; jobs?: number }> {
  const args = ['atlas', 'build', '--model', MODEL, '--db', db, '--blocks', BLOCKS, '--features', features, '--threads', '1', '--json', ...(url ? ['--queue', url] : [])];
  const r = await run(args);
  if (r.code !== 0) throw new Error(`atlas build failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { elapsed_ms: number; jobs?: number };
}

async function queued(url: string, workers: number, db: string): Promise<Timed> {
  const connection = redisClient(parseQueueUrl(url));
  const queue = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  await queue.obliterate({ force: true });
  const ws = [];
  for (let i = 0; i < workers; i++) ws.push(await startWorker(url));
  const s = await build(url, db);
  const jobs = await queue.getJobs(['completed'], 0, -1, true);
  const cpu = ws.reduce((n, w) => n + cpuSeconds(w.pid!), 0);
  for (const w of ws) await stopWorker(w);
  const sorted = [...jobs].sort((a, b) => a.processedOn! - b.processedOn!);
  const gaps = workers === 1 ? sorted.slice(1).map((j, i) => j.processedOn! - sorted[i]!.finishedOn!) : [];
  await queue.close();
  connection.disconnect();
  const resultBytes = jobs.map((j) => Buffer.byteLength(JSON.stringify(j.returnvalue)));
  const dataBytes = jobs.map((j) => Buffer.byteLength(JSON.stringify(j.data)));
  return { wall_ms: s.elapsed_ms, worker_cpu_s: cpu, result_bytes: median(resultBytes), data_bytes: median(dataBytes), jobs: jobs.length, run_ms: jobs.map((j) => j.returnvalue.run_ms), held_ms: jobs.map((j) => j.finishedOn! - j.processedOn!), gaps_ms: gaps };
}

/**
 * The queue's own ceiling: jobs of the same size (data and a result of \`resultBytes\`) whose processor does nothing,
 * through one in-process worker taking 16 at a time, timed from the first add to the last completion.
 */
async function noopJobsPerSecond(url: string, n: number, resultBytes: number): Promise<number> {
  const connection = redisClient(parseQueueUrl(url));
  const queue = new Queue('llmf-bench-noop', { connection });
  await queue.obliterate({ force: true });
  const payload = 'x'.repeat(resultBytes);
  const wconn = redisClient(parseQueueUrl(url));
  let done = 0;
  let finish: () => void = () => {};
  const all = new Promise<void>((r) => (finish = r));
  const t0 = performance.now();
  const worker = new Worker('llmf-bench-noop', async () => payload, { connection: wconn, concurrency: 16 });
  worker.on('completed', () => {
    if (++done === n) finish();
  });
  for (let i = 0; i < n; i += 500) await queue.addBulk(Array.from({ length: Math.min(500, n - i) }, (_, k) => ({ name: 'noop', data: { i: i + k, features: Array.from({ length: 32 }, (_, f) => f) }, opts: { jobId: `n${i + k}` } })));
  await all;
  const rate = n / ((performance.now() - t0) / 1000);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  wconn.disconnect();
  return rate;
}

async function main(): Promise<void> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  try {
    while (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG') await sleep(50);
    const load0 = (await import('node:os')).loadavg()[0]!;
    const local = await build(null, path.join(dir, 'local.db'));
    const one = await queued(url, 1, path.join(dir, 'one.db'));
    const two = await queued(url, 2, path.join(dir, 'two.db'));
    // The machine's own ceiling for two processes: two local builds of half the features each, side by side, no queue.
    const m = /^(\d+)-(\d+)$/.exec(FEATURES);
    let pairMs: number | null = null;
    if (m) {
      const [a, b] = [Number(m[1]), Number(m[2])];
      const mid = Math.floor((a + b + 1) / 2);
      const halves = await Promise.all([build(null, path.join(dir, 'half1.db'), `${a}-${mid - 1}`), build(null, path.join(dir, 'half2.db'), `${mid}-${b}`)]);
      pairMs = Math.max(...halves.map((h) => h.elapsed_ms));
    }
    const noop = await noopJobsPerSecond(url, 2000, one.result_bytes);
    const load1 = (await import('node:os')).loadavg()[0]!;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const jobMs = median(one.run_ms);
    const idlePerJob = (one.wall_ms - sum(one.run_ms)) / one.jobs;
    const extraPerJob = (one.wall_ms - local.elapsed_ms) / one.jobs;
    const report = {
      model: path.basename(MODEL),
      blocks: BLOCKS,
      features: FEATURES,
      jobs: one.jobs,
      load_average_1min: [load0, load1],
      local_ms: local.elapsed_ms,
      one_worker_ms: one.wall_ms,
      two_workers_ms: two.wall_ms,
      throughput_ratio_2x1_vs_1x1: one.wall_ms / two.wall_ms,
      two_local_halves_in_parallel_ms: pairMs,
      machine_ratio_2_processes: pairMs === null ? null : local.elapsed_ms / pairMs,
      median_job_run_ms_2x1: median(two.run_ms),
      cores_used_1x1: one.worker_cpu_s / (one.wall_ms / 1000),
      cores_used_2x1: two.worker_cpu_s / (two.wall_ms / 1000),
      median_job_run_ms: jobMs,
      job_data_bytes: one.data_bytes,
      job_result_bytes: one.result_bytes,
      noop_jobs_per_s_one_redis: noop,
      median_gap_between_jobs_ms: one.gaps_ms.length ? median(one.gaps_ms) : null,
      median_held_minus_run_ms: median(one.held_ms.map((h, i) => h - one.run_ms[i]!)),
      idle_per_job_ms: idlePerJob,
      idle_per_job_share: idlePerJob / jobMs,
      extra_over_local_per_job_ms: extraPerJob,
      extra_over_local_share: extraPerJob / jobMs,
    };
    if (flag('json') !== undefined) process.stdout.write(JSON.stringify(report) + '\n');
    else for (const [k, v] of Object.entries(report)) process.stdout.write(`${k.padEnd(30)} ${Array.isArray(v) ? v.map((x) => x.toFixed(2)).join(' → ') : typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(4)) : String(v)}\n`);
  } finally {
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
