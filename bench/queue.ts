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
 * and reports the throughput ratio 2 × 1 / 1 × 1 (meaningful on a quiet machine only) and, for each queued run, where
 * its time went as shares within that run (see `shares`): these hold on a loaded machine, because each compares two
 * quantities measured over the same seconds.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { parseQueueUrl, redisClient } from '../src/atlas/queue/connection.js';
import { QUEUE_NAME, type BuildJobData, type BuildJobResult, type JobData, type JobResult } from '../src/atlas/queue/jobs.js';
import { Atlas } from '../src/atlas/store.js';
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

/** A CLI run, with the CPU seconds it used (read from /proc every 100 ms while it runs: the last ≤ 100 ms are missed). */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; cpu_s: number }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let cpu = 0;
    const poll = setInterval(() => {
      try {
        cpu = cpuSeconds(c.pid!);
      } catch {
        // gone between the check and the read
      }
    }, 100);
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.once('exit', (code) => {
      clearInterval(poll);
      resolve({ code, stdout, stderr, cpu_s: cpu });
    });
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

interface JobTimes {
  worker: string;
  /** Taken and finished (Redis timestamps, ms). */
  taken: number;
  finished: number;
  run_ms: number;
  cpu_ms: number;
  open_ms: number;
  sessions: number;
  session_ms: number;
}

interface Timed {
  wall_ms: number;
  /** Median JSON size of a job's result and of its data. */
  result_bytes: number;
  data_bytes: number;
  /** CPU seconds during the sweep: each worker's, the collector's (the `atlas build --queue` process), redis-server's. */
  worker_cpu_s: number[];
  collector_cpu_s: number;
  /** The collector's CPU for the same command with nothing left to do (start-up, open, plan, connect). */
  collector_fixed_cpu_s: number;
  /** Collecting one job (fetch + parse + one insert transaction), wall and CPU, timed in this process. */
  collect_job_ms: number;
  collect_job_cpu_ms: number;
  redis_cpu_s: number;
  jobs: JobTimes[];
  /** When the sweep started and ended (ms since the epoch, this machine's clock, as Redis's timestamps are). */
  t0: number;
  t1: number;
}

async function build(url: string | null, db: string, features = FEATURES): Promise<{ elapsed_ms: number; jobs?: number; cpu_s: number }> {
  const args = ['atlas', 'build', '--model', MODEL, '--db', db, '--blocks', BLOCKS, '--features', features, '--threads', '1', '--json', ...(url ? ['--queue', url] : [])];
  const r = await run(args);
  if (r.code !== 0) throw new Error(`atlas build failed: ${r.stderr}`);
  return { ...(JSON.parse(r.stdout) as { elapsed_ms: number; jobs?: number }), cpu_s: r.cpu_s };
}

async function queued(url: string, workers: number, db: string, redisPid: number): Promise<Timed> {
  const connection = redisClient(parseQueueUrl(url));
  const queue = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  await queue.obliterate({ force: true });
  const ws = [];
  for (let i = 0; i < workers; i++) ws.push(await startWorker(url));
  const cpu0 = ws.map((w) => cpuSeconds(w.pid!));
  const redis0 = cpuSeconds(redisPid);
  const t0 = Date.now();
  const s = await build(url, db);
  const t1 = Date.now();
  const cpu = ws.map((w, i) => cpuSeconds(w.pid!) - cpu0[i]!);
  const redisCpu = cpuSeconds(redisPid) - redis0;
  const jobs = await queue.getJobs(['completed'], 0, -1, true);
  for (const w of ws) await stopWorker(w);
  // The same command again with every record stored: the collector's fixed cost (start-up, model open and hash, plan,
  // connect), which `collector_cpu_s` also holds; the rest of it is per job.
  const fixed = await build(url, db);
  // What collecting one job costs the collector, timed here on the jobs just run: fetch and parse the job (its
  // returnvalue), then one insert transaction into a copy of the atlas emptied of its records.
  const copy = db.replace(/\.db$/, '-collect.db');
  copyFileSync(db, copy);
  const atlas = Atlas.open(copy);
  atlas.db.exec('DELETE FROM records');
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  for (const j of jobs) {
    const job = (await queue.getJob(j.id!))!;
    const d = job.data as BuildJobData;
    atlas.insertResults(d.model.hash, d.settings_hash, (job.returnvalue as BuildJobResult).results);
  }
  const collectWall = (performance.now() - w0) / jobs.length;
  const cc = process.cpuUsage(c0);
  atlas.close();
  await queue.close();
  connection.disconnect();
  const resultBytes = jobs.map((j) => Buffer.byteLength(JSON.stringify(j.returnvalue)));
  const dataBytes = jobs.map((j) => Buffer.byteLength(JSON.stringify(j.data)));
  const times = jobs.map((j): JobTimes => {
    const v = j.returnvalue;
    return { worker: v.worker, taken: j.processedOn!, finished: j.finishedOn!, run_ms: v.run_ms, cpu_ms: v.cpu_ms, open_ms: v.open_ms, sessions: v.sessions, session_ms: v.session_ms };
  });
  return { wall_ms: s.elapsed_ms, worker_cpu_s: cpu, collector_cpu_s: s.cpu_s, collector_fixed_cpu_s: fixed.cpu_s, collect_job_ms: collectWall, collect_job_cpu_ms: (cc.user + cc.system) / 1000 / jobs.length, redis_cpu_s: redisCpu, result_bytes: median(resultBytes), data_bytes: median(dataBytes), jobs: times, t0, t1 };
}

/**
 * Where a queued sweep's time went, as shares that hold on a loaded machine (ratios within the one run):
 *   cores_while_computing  Σ job CPU / Σ job wall: the cores each worker actually got while running a batch (1.0 =
 *                          a whole core for its one thread); below 1 the machine, not the queue, held it back
 *   cpu_per_job_ms         worker CPU per job: the same in 1 × 1 and 2 × 1 means the queue added no work per job
 *   held_minus_run_share   Σ (held − run) / Σ held: time a job is taken but not computing (fetch, parse, result
 *                          serialisation, completion)
 *   session_share          Σ session creation / Σ run: graph sessions built inside jobs (each worker builds its own
 *                          per block range)
 *   open_share             Σ model open + hash / Σ run: a worker's first job
 *   start_share            (first job taken − sweep start) / wall: the collector planning, hashing and enqueueing
 *   tail_share             Σ over workers (last finish − that worker's last finish) / (workers × wall): a worker
 *                          idle at the end because no job was left (job granularity)
 *   worker_idle_cpu_share  worker CPU outside jobs / worker CPU: BullMQ's lock renewal, stalled checks, polling
 *   collector_cpu_share    collector CPU / all workers' CPU; redis_cpu_share likewise
 *   collect_job_cpu_share  collecting one job (fetch, parse, insert transaction) in CPU / a job's worker CPU
 */
function shares(t: Timed, workers: number) {
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const j = t.jobs;
  const run = sum(j.map((x) => x.run_ms));
  const held = sum(j.map((x) => x.finished - x.taken));
  const cpuJobs = sum(j.map((x) => x.cpu_ms)) / 1000;
  const workerCpu = sum(t.worker_cpu_s);
  const byWorker = new Map<string, number>();
  for (const x of j) byWorker.set(x.worker, Math.max(byWorker.get(x.worker) ?? 0, x.finished));
  const lastAll = Math.max(...j.map((x) => x.finished));
  const firstTaken = Math.min(...j.map((x) => x.taken));
  const tail = sum([...byWorker.values()].map((f) => lastAll - f)) + (workers - byWorker.size) * (lastAll - t.t0);
  return {
    jobs: j.length,
    jobs_per_worker: [...new Set(j.map((x) => x.worker))].map((w) => j.filter((x) => x.worker === w).length),
    median_job_run_ms: median(j.map((x) => x.run_ms)),
    cores_while_computing: cpuJobs / (run / 1000),
    cpu_per_job_ms: (cpuJobs * 1000) / j.length,
    held_minus_run_share: (held - run) / held,
    median_held_minus_run_ms: median(j.map((x) => x.finished - x.taken - x.run_ms)),
    sessions_built: sum(j.map((x) => x.sessions)),
    session_share: sum(j.map((x) => x.session_ms)) / run,
    open_share: sum(j.map((x) => x.open_ms)) / run,
    start_share: (firstTaken - t.t0) / (t.t1 - t.t0),
    tail_share: tail / (workers * (t.t1 - t.t0)),
    worker_idle_cpu_share: (workerCpu - cpuJobs) / workerCpu,
    collector_cpu_share: t.collector_cpu_s / workerCpu,
    collector_fixed_cpu_s: t.collector_fixed_cpu_s,
    collect_job_ms: t.collect_job_ms,
    collect_job_cpu_share: t.collect_job_cpu_ms / ((cpuJobs * 1000) / j.length),
    redis_cpu_share: t.redis_cpu_s / workerCpu,
    cores_used: (workerCpu + t.collector_cpu_s + t.redis_cpu_s) / ((t.t1 - t.t0) / 1000),
  };
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
    const one = await queued(url, 1, path.join(dir, 'one.db'), redis.pid!);
    const two = await queued(url, 2, path.join(dir, 'two.db'), redis.pid!);
    // The machine's own ceiling for two processes: two local builds of half the features each, side by side, no queue.
    const m = /^(\d+)-(\d+)$/.exec(FEATURES);
    let pairMs: number | null = null;
    let pairCpu: number | null = null;
    if (m) {
      const [a, b] = [Number(m[1]), Number(m[2])];
      const mid = Math.floor((a + b + 1) / 2);
      const halves = await Promise.all([build(null, path.join(dir, 'half1.db'), `${a}-${mid - 1}`), build(null, path.join(dir, 'half2.db'), `${mid}-${b}`)]);
      pairMs = Math.max(...halves.map((h) => h.elapsed_ms));
      pairCpu = halves.reduce((n, h) => n + h.cpu_s, 0);
    }
    const noop = await noopJobsPerSecond(url, 2000, one.result_bytes);
    const load1 = (await import('node:os')).loadavg()[0]!;
    const s1 = shares(one, 1);
    const s2 = shares(two, 2);
    const report = {
      model: path.basename(MODEL),
      blocks: BLOCKS,
      features: FEATURES,
      load_average_1min: [load0, load1],
      local_ms: local.elapsed_ms,
      local_cores: local.cpu_s / (local.elapsed_ms / 1000),
      one_worker_ms: one.wall_ms,
      two_workers_ms: two.wall_ms,
      throughput_ratio_2x1_vs_1x1: one.wall_ms / two.wall_ms,
      two_local_halves_in_parallel_ms: pairMs,
      machine_ratio_2_processes: pairMs === null ? null : local.elapsed_ms / pairMs,
      two_local_halves_cores: pairMs === null || pairCpu === null ? null : pairCpu / (pairMs / 1000),
      job_data_bytes: one.data_bytes,
      job_result_bytes: one.result_bytes,
      noop_jobs_per_s_one_redis: noop,
      ...Object.fromEntries(Object.entries(s1).map(([k, v]) => [`1x1_${k}`, v])),
      ...Object.fromEntries(Object.entries(s2).map(([k, v]) => [`2x1_${k}`, v])),
    };
    if (flag('json') !== undefined) process.stdout.write(JSON.stringify(report) + '\n');
    else for (const [k, v] of Object.entries(report)) process.stdout.write(`${k.padEnd(30)} ${Array.isArray(v) ? v.map((x) => (Number.isInteger(x) ? x : x.toFixed(2))).join(' , ') : typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(4)) : String(v)}\n`);
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
