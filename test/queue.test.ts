/**
 * Distributed atlas builds and scans on a real redis-server (Debian's package) started on a free loopback port in a
 * temporary folder, with real `llm-features worker` processes: equality with a local build (single features, a
 * direction, percentiles from --corpus and from --scan-db) and a local scan, a worker killed with SIGKILL, a poison job,
 * workers that must refuse a job (another version, model, tokenizer or corpus), a Redis restart mid-sweep, and
 * enqueueing a sweep twice.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { buildAtlas } from '../src/atlas/build.js';
import { enqueueJobs, longestFirst, queuedBuild, queuedScan, sweepJobs, type QueuedBuildRequest } from '../src/atlas/queue/collector.js';
import { buildScan, type ScanRequest } from '../src/atlas/scan-build.js';
import { scanReference } from '../src/atlas/scan-reference.js';
import { listScans, scanCalibration } from '../src/atlas/scans.js';
import { corpusReference } from '../src/features/calibrate.js';
import { parseQueueUrl, redisClient } from '../src/atlas/queue/connection.js';
import { QUEUE_NAME, type JobData, type JobResult } from '../src/atlas/queue/jobs.js';
import { Atlas, type AtlasRecord } from '../src/atlas/store.js';
import { ModelRunner } from '../src/engine/runner.js';
import { UserError } from '../src/errors.js';
import { DEFAULT_SETTINGS, type VisualizeSettings } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { cli } from './cli-helpers.js';
import { modelPath, projectRoot } from './helpers.js';

const MODEL = modelPath('stories260K.bin');
const dir = mkdtempSync(path.join(tmpdir(), 'llmf-queue-'));
const SETTINGS: Omit<VisualizeSettings, 'blocks' | 'hook'> = { ...DEFAULT_SETTINGS, steps: 20, batch: 4, randomDraws: 2, tokens: 4 };
const SETTINGS_FLAGS = ['--steps', '20', '--batch', '4', '--random-draws', '2', '--tokens', '4'];

let port = 0;
let redis: ChildProcess | null = null;
let QURL = '';
const children = new Set<ChildProcess>();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** redis-server with an append-only file fsynced on every write, so a killed server restarts with every job. */
async function startRedis(): Promise<void> {
  const data = path.join(dir, 'redis');
  mkdirSync(data, { recursive: true });
  redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', data, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return;
    await sleep(50);
  }
  throw new Error('redis-server did not start');
}

async function killRedis(): Promise<void> {
  const r = redis!;
  redis = null;
  const gone = new Promise((res) => r.once('exit', res));
  r.kill('SIGKILL');
  await gone;
}

/** A worker process; resolves once it is taking jobs. Its stderr is kept for assertions. */
async function startWorker(extra: string[] = []): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), 'worker', '--queue', QURL, '--threads', '1', '--lock-ms', '1500', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let text = '';
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  for (let i = 0; i < 200 && !text.includes('taking jobs'); i++) {
    if (child.exitCode !== null) throw new Error(`worker exited: ${text}`);
    await sleep(50);
  }
  assert.match(text, /taking jobs/);
  return { child, log: () => text };
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  // A child killed by a signal has exitCode null and signalCode set: it is gone, and 'exit' will not fire again.
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const done = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  child.kill(signal);
  return done;
}

async function withQueue<T>(fn: (q: Queue<JobData, JobResult>) => Promise<T>): Promise<T> {
  const connection = redisClient(parseQueueUrl(QURL));
  const q = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  try {
    return await fn(q);
  } finally {
    await q.close();
    connection.disconnect();
  }
}

const runner = new ModelRunner(loadModel(MODEL), { threads: 1 });

/** A queued build from this process (the collector), with short retry delays. */
async function collect(db: string, over: Partial<QueuedBuildRequest> & { settings?: typeof SETTINGS } = {}) {
  const atlas = Atlas.open(db);
  try {
    return await queuedBuild({ atlas, runner, blocks: [[1, 1]], hook: 'resid', features: [0, 1, 2, 3, 4, 5, 6, 7], settings: SETTINGS, queue: parseQueueUrl(QURL), backoffMs: 100, pollMs: 100, ...over });
  } finally {
    atlas.close();
  }
}

function records(db: string): AtlasRecord[] {
  const atlas = Atlas.open(db, { readonly: true });
  try {
    return [...atlas.records()];
  } finally {
    atlas.close();
  }
}

const key = (r: AtlasRecord) => `${r.model.hash} ${r.blocks.join('-')} ${r.hook} ${r.select} ${r.settings_hash}`;

/**
 * The queued atlas holds the local one's records, record for record: same keys, ids, top-k and status, activations
 * within 1e-4, and the same calibration (corpus, windows) with every percentile within 1e-4.
 */
function assertSameRecords(localDb: string, queuedDb: string, n: number): AtlasRecord[] {
  const a = new Map(records(localDb).map((x) => [key(x), x]));
  const b = records(queuedDb);
  assert.equal(a.size, n);
  assert.equal(b.length, n);
  assert.equal(new Set(b.map(key)).size, n);
  for (const q of b) {
    const l = a.get(key(q));
    assert.ok(l, `no local record for ${key(q)}`);
    assert.deepEqual(q.ids, l.ids);
    assert.deepEqual(q.topk, l.topk);
    assert.equal(q.status, l.status);
    for (const k of ['continuous', 'decoded', 'random'] as const) assert.ok(Math.abs((q.activation[k] ?? 0) - (l.activation[k] ?? 0)) <= 1e-4, `${key(q)} ${k}`);
    assert.deepEqual(q.calibration ? [q.calibration.source, q.calibration.corpus, q.calibration.corpus_hash, q.calibration.windows] : null, l.calibration ? [l.calibration.source, l.calibration.corpus, l.calibration.corpus_hash, l.calibration.windows] : null);
    for (const k of ['continuous', 'decoded', 'random', 'skip_baseline'] as const) {
      const [x, y] = [q.percentile?.[k] ?? null, l.percentile?.[k] ?? null];
      assert.ok(x === y || (x !== null && y !== null && Math.abs(x - y) <= 1e-4), `${key(q)} percentile ${k}: ${x} vs ${y}`);
    }
    assert.deepEqual(q.verdict?.map((f) => f.code), l.verdict?.map((f) => f.code));
  }
  return b;
}

const STORIES = [
  'Once upon a time there was a little girl named Lily. She loved to play outside in the sun.',
  'Tom had a red ball. He threw it high and the dog ran after it.',
  'The cat sat on the mat and looked at the bird in the tree.',
  'One day, a boy found a big box in the park. Inside was a small puppy.',
  'Mom baked a cake for the party. Everyone was happy and sang a song.',
  'The sun was hot, so Ben and Sue went to the lake to swim.',
];

/** A small corpus file of plain stories. */
function smallCorpus(file: string, stories = STORIES): string {
  writeFileSync(file, stories.map((t) => `${t}\n<|endoftext|>\n`).join(''));
  return file;
}

before(async () => {
  port = await freePort();
  QURL = `redis://127.0.0.1:${port}`;
  await startRedis();
});

after(async () => {
  for (const c of children) await stop(c, 'SIGKILL');
  if (redis) await killRedis();
  await runner.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a sweep by 2 workers equals a local build record for record; the same command again adds nothing', async () => {
  const local = path.join(dir, 'local.db');
  const atlas = Atlas.open(local);
  await buildAtlas({ atlas, runner, blocks: [[1, 1], [2, 3]], hook: 'resid', features: Array.from({ length: 16 }, (_, i) => i), settings: SETTINGS });
  atlas.close();

  const w1 = await startWorker();
  const w2 = await startWorker();
  const db = path.join(dir, 'queued.db');
  const args = ['atlas', 'build', '--model', MODEL, '--db', db, '--blocks', '1,2-3', '--features', '0-15', ...SETTINGS_FLAGS, '--queue', QURL, '--json'];
  const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    // Asynchronously, so this process keeps serving nothing but the child's pipes while the workers run.
    const child = spawn(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout: out }));
  });
  assert.equal(r.code, 0);
  const summary = JSON.parse(r.stdout) as { inserted: number; jobs: number; failed_jobs: unknown[]; refused_jobs: unknown[] };
  assert.equal(summary.jobs, 8);
  assert.equal(summary.inserted, 32);
  assert.deepEqual([summary.failed_jobs, summary.refused_jobs], [[], []]);

  for (const q of assertSameRecords(local, db, 32)) {
    // Provenance, as a local build stamps it: the worker's run options, the device and the version.
    const p = (q as { provenance?: Record<string, unknown> }).provenance;
    assert.equal(p?.version, (records(local)[0] as { provenance?: Record<string, unknown> }).provenance?.version);
    assert.equal(p?.device, 'cpu');
    assert.equal(typeof p?.worker, 'string');
  }
  // Both workers took part, and between them ran each job once.
  const done = (log: string) => (log.match(/ done in /g) ?? []).length;
  assert.equal(done(w1.log()) + done(w2.log()), 8);

  const again = cli(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((JSON.parse(again.stdout) as { inserted: number; skipped: number }).skipped, 32);

  const status = cli(['queue', 'status', '--queue', QURL, '--json']);
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { completed: number; waiting: number; workers: string[] };
  assert.equal(s.completed, 8);
  assert.equal(s.waiting, 0);
  assert.equal(s.workers.length, 2);
  assert.equal(await stop(w1.child), 0);
  assert.equal(await stop(w2.child), 0);
});

test('enqueueing the same sweep twice adds each job once; queue drain removes what no worker started, queue cancel everything', async () => {
  const settings = { ...SETTINGS, seed: 11 };
  const ref = { hash: 'f'.repeat(64), name: 'x', path: MODEL, tokenizer_hash: null };
  const plan = [{ blocks: [1, 1] as [number, number], pending: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }];
  const jobs = sweepJobs(ref, 'a'.repeat(64), 'resid', settings, plan);
  assert.equal(jobs.length, 3);
  // Enqueued costliest first (deepest block range, then most selections), otherwise in plan order.
  const mixed = sweepJobs(ref, 'a'.repeat(64), 'resid', settings, [{ blocks: [1, 1], pending: [0, 1, 2, 3, 4, 5] }, { blocks: [2, 3], pending: [0, 1, 2, 3, 4, 5] }]);
  const order = longestFirst(mixed).map((j) => `${j.data.blocks.join('-')}:${j.data.features.join(',')}`);
  assert.deepEqual(order, ['2-3:0,1,2,3', '2-3:4,5', '1-1:0,1,2,3', '1-1:4,5']);
  assert.ok(jobs.every((j) => /^b[0-9a-f]{40}$/.test(j.id)));
  await withQueue(async (q) => {
    await enqueueJobs(q, jobs);
    await enqueueJobs(q, sweepJobs(ref, 'a'.repeat(64), 'resid', settings, plan));
    assert.equal(await q.getWaitingCount(), 3);
  });
  const drained = cli(['queue', 'drain', '--queue', QURL]);
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, /removed 3 waiting job/);
  await withQueue(async (q) => assert.equal(await q.getWaitingCount(), 0));
  await withQueue((q) => enqueueJobs(q, jobs));
  const cancelled = cli(['queue', 'cancel', '--queue', QURL]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, /removed (\d+) job/);
  await withQueue(async (q) => assert.deepEqual(Object.values(await q.getJobCounts()).reduce((a, b) => a + b, 0), 0));
});

test('a worker killed with SIGKILL mid-job: another retries it after the lock expires; complete atlas, no duplicates', async () => {
  const db = path.join(dir, 'killed.db');
  const a = await startWorker();
  const settings = { ...SETTINGS, steps: 600, seed: 3 };
  const sweep = collect(db, { settings });
  for (let i = 0; i < 400 && !a.log().includes('started'); i++) await sleep(25);
  const killedJob = /job (\w+) started/.exec(a.log())?.[1];
  assert.ok(killedJob);
  await stop(a.child, 'SIGKILL');
  assert.doesNotMatch(a.log(), new RegExp(`job ${killedJob} done`));
  const b = await startWorker();
  const summary = await sweep;
  assert.equal(summary.inserted, 8);
  const rs = records(db);
  assert.equal(rs.length, 8);
  assert.equal(new Set(rs.map(key)).size, 8);
  assert.ok(rs.every((r) => r.status === 'ok'));
  // The job the killed worker held was run again, by the other worker.
  assert.match(b.log(), new RegExp(`job ${killedJob} done`));
  assert.equal(await stop(b.child), 0);
});

test('a poison job ends as failed records without retries; a job no worker can serve is refused after 3 attempts, and a rerun retries it', async () => {
  const w = await startWorker();
  // 600 positions exceed stories260K's context of 512: every worker fails it the same way.
  const poison = path.join(dir, 'poison.db');
  const p = await collect(poison, { features: [0, 1], settings: { ...SETTINGS, tokens: 600 } });
  assert.equal(p.failed_jobs.length, 1);
  assert.equal(p.failed_jobs[0]!.attempts, 1);
  assert.match(p.failed_jobs[0]!.reason, /tokens: 600 positions exceed/);
  const failed = records(poison);
  assert.equal(failed.length, 2);
  assert.ok(failed.every((r) => r.status === 'failed' && /exceed the model's context/.test(r.error ?? '')));

  // A job written by another llm-features version is refused (bounded: 3 attempts), never run.
  const [other] = sweepJobs({ hash: 'e'.repeat(64), name: 'x', path: MODEL, tokenizer_hash: null }, 'c'.repeat(64), 'resid', SETTINGS, [{ blocks: [1, 1], pending: [0] }]);
  other!.data.version = '0.0.0-other';
  await withQueue(async (q) => {
    await enqueueJobs(q, [other!], 3, 100);
    let state = '';
    for (let i = 0; i < 200 && state !== 'failed'; i++, await sleep(25)) state = await q.getJobState(other!.id);
    const job = await q.getJob(other!.id);
    assert.equal(state, 'failed');
    assert.equal(job!.attemptsMade, 3);
    assert.match(job!.failedReason, /^refused: the job was written by llm-features 0\.0\.0-other, this worker is /);
  });
  assert.doesNotMatch(w.log(), new RegExp(`job ${other!.id.slice(0, 13)} started`));
  await stop(w.child);

  // A worker whose model folder holds another file under the same name refuses the job; nothing is stored.
  const wrong = path.join(dir, 'wrong-models');
  mkdirSync(wrong, { recursive: true });
  copyFileSync(modelPath('stories-d128-L4.bin'), path.join(wrong, 'stories260K.bin'));
  const bad = await startWorker(['--models', wrong]);
  const db = path.join(dir, 'refused.db');
  const settings = { ...SETTINGS, seed: 5 };
  const r = await collect(db, { features: [0, 1, 2, 3], settings });
  assert.equal(r.refused_jobs.length, 1);
  assert.equal(r.refused_jobs[0]!.attempts, 3);
  assert.match(r.refused_jobs[0]!.reason, /^refused: .*stories260K\.bin/);
  assert.equal(records(db).length, 0);
  await stop(bad.child);
  const good = await startWorker();
  const r2 = await collect(db, { features: [0, 1, 2, 3], settings });
  assert.equal(r2.inserted, 4);
  assert.deepEqual(r2.refused_jobs, []);
  await stop(good.child);
});

test('SIGTERM lets a worker finish its job first; a collector killed mid-sweep is rerun and finishes', async () => {
  const a = await startWorker();
  const db = path.join(dir, 'graceful.db');
  const sweep = collect(db, { settings: { ...SETTINGS, steps: 600, seed: 21 } });
  for (let i = 0; i < 400 && !a.log().includes('started'); i++) await sleep(25);
  const job = /job (\w+) started/.exec(a.log())?.[1];
  assert.ok(job);
  assert.equal(await stop(a.child, 'SIGTERM'), 0);
  assert.match(a.log(), new RegExp(`job ${job} done[^]*stopped`));
  const b = await startWorker();
  assert.equal((await sweep).inserted, 8);
  assert.equal(records(db).length, 8);

  // The collector as a CLI process, SIGKILLed once its first job is stored; the same command again completes it.
  const killedDb = path.join(dir, 'collector.db');
  const args = ['atlas', 'build', '--model', MODEL, '--db', killedDb, '--blocks', '1', '--features', '0-23', '--batch', '4', '--random-draws', '2', '--tokens', '4', '--steps', '150', '--seed', '4', '--queue', QURL, '--json'];
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), ...args], { stdio: 'ignore' });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const count = () => {
    try {
      return records(killedDb).length;
    } catch {
      return 0;
    }
  };
  for (let i = 0; i < 600 && count() === 0 && child.exitCode === null; i++) await sleep(25);
  assert.equal(child.exitCode, null, 'the collector ended before it could be killed');
  const before = count();
  assert.ok(before > 0 && before < 24, `${before} records before the kill`);
  await stop(child, 'SIGKILL');
  const rerun = cli(args);
  assert.equal(rerun.code, 0, rerun.stderr);
  const s = JSON.parse(rerun.stdout) as { inserted: number; skipped: number; total: number };
  assert.equal(s.total, 24);
  assert.equal(s.inserted + s.skipped, 24);
  const rs = records(killedDb);
  assert.equal(rs.length, 24);
  assert.equal(new Set(rs.map(key)).size, 24);
  assert.equal(await stop(b.child), 0);
});

test('Redis killed and restarted mid-sweep (AOF): the sweep finishes with every record', async () => {
  const w = await startWorker();
  const db = path.join(dir, 'restart.db');
  let collected = 0;
  const sweep = collect(db, { features: Array.from({ length: 24 }, (_, i) => i), settings: { ...SETTINGS, steps: 150, seed: 9 }, onProgress: (p) => (collected = p.inserted) });
  for (let i = 0; i < 400 && collected === 0; i++) await sleep(25);
  assert.ok(collected > 0 && collected < 24, `collected ${collected} before the restart`);
  await killRedis();
  await sleep(500);
  await startRedis();
  const summary = await sweep;
  assert.equal(summary.inserted, 24 - 0);
  const rs = records(db);
  assert.equal(rs.length, 24);
  assert.equal(new Set(rs.map(key)).size, 24);
  assert.equal(await stop(w.child), 0);
});

/** Two JSON values equal, numbers within `tol` (scan statistics and examples computed by another process). */
function assertClose(a: unknown, b: unknown, tol: number, where = ''): void {
  if (typeof a === 'number' && typeof b === 'number') {
    assert.ok(a === b || Math.abs(a - b) <= tol, `${where}: ${a} vs ${b}`);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    assert.equal(a.length, b.length, `${where}: length`);
    a.forEach((x, i) => assertClose(x, b[i], tol, `${where}[${i}]`));
    return;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${where}: keys`);
    for (const k of Object.keys(a)) assertClose((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], tol, `${where}.${k}`);
    return;
  }
  assert.deepEqual(a, b, where);
}

test('through the queue, a --direction sweep, percentiles from --corpus (computed by the workers) and from --scan-db (applied by the collector) equal local builds', async () => {
  const w = await startWorker();
  const corpus = smallCorpus(path.join(dir, 'stories.txt'));
  const open = (db: string) => Atlas.open(db);
  const local = async (db: string, req: { blocks?: [number, number][]; features: number[]; settings: typeof SETTINGS; reference?: ReturnType<typeof corpusReference> }) => {
    const atlas = open(db);
    try {
      await buildAtlas({ atlas, runner, blocks: req.blocks ?? [[1, 1]], hook: 'resid', features: req.features, settings: req.settings, ...(req.reference ? { reference: req.reference } : {}) });
    } finally {
      atlas.close();
    }
  };

  // A direction: the vector travels in the job with its hash; one record per block range.
  const direction = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1) / 4);
  const dSettings = { ...SETTINGS, seed: 31, objective: { ...SETTINGS.objective, direction } };
  await local(path.join(dir, 'dir-local.db'), { blocks: [[1, 1], [2, 2]], features: [], settings: dSettings });
  const d = await collect(path.join(dir, 'dir-queued.db'), { blocks: [[1, 1], [2, 2]], features: [], settings: dSettings });
  assert.deepEqual([d.jobs, d.inserted, d.failed_jobs, d.refused_jobs], [2, 2, [], []]);
  const dr = assertSameRecords(path.join(dir, 'dir-local.db'), path.join(dir, 'dir-queued.db'), 2);
  assert.deepEqual(dr.map((r) => r.select), ['[:, :, :]', '[:, :, :]']);

  // --corpus: each worker computes the reference distributions from the corpus the job names by hash.
  const cSettings = { ...SETTINGS, seed: 32 };
  await local(path.join(dir, 'corpus-local.db'), { features: [0, 1, 2, 3], settings: cSettings, reference: corpusReference(runner, runner.model.tokenizer, { file: corpus }) });
  const c = await collect(path.join(dir, 'corpus-queued.db'), { features: [0, 1, 2, 3], settings: cSettings, corpus });
  assert.deepEqual([c.jobs, c.inserted], [1, 4]);
  const cr = assertSameRecords(path.join(dir, 'corpus-local.db'), path.join(dir, 'corpus-queued.db'), 4);
  assert.ok(cr.every((r) => r.calibration?.source === 'corpus' && r.calibration.corpus === corpus && typeof r.percentile?.decoded === 'number'));

  // --scan-db: the collector applies the stored grids to each job's results as it stores them.
  const scanDb = path.join(dir, 'calib-scan.db');
  const scanAtlas = open(scanDb);
  await buildScan({ atlas: scanAtlas, runner, blocks: [1, 1], hook: 'resid', features: [0, 1, 2, 3], corpus, window: 8, maxTokens: null, bos: false, calibrateTokens: 4, calibrateBos: false });
  scanAtlas.close();
  const fromScan = () => scanReference(() => Atlas.open(scanDb, { readonly: true }), runner);
  const sSettings = { ...SETTINGS, seed: 33 };
  await local(path.join(dir, 'scan-local.db'), { features: [0, 1, 2, 3], settings: sSettings, reference: fromScan() });
  const s = await collect(path.join(dir, 'scan-queued.db'), { features: [0, 1, 2, 3], settings: sSettings, reference: fromScan() });
  assert.equal(s.inserted, 4);
  const sr = assertSameRecords(path.join(dir, 'scan-local.db'), path.join(dir, 'scan-queued.db'), 4);
  assert.ok(sr.every((r) => r.calibration?.source === 'scan' && typeof r.percentile?.decoded === 'number'));
  // A --scan-db that cannot serve the sweep (no scan for 5 tokens) is refused before anything is enqueued.
  await assert.rejects(collect(path.join(dir, 'scan-none.db'), { features: [0], settings: { ...sSettings, tokens: 5 }, reference: fromScan() }), (e: Error) => e instanceof UserError && /--scan-db: .*holds no scan of this model with blocks 1-1, hook resid, --calibrate-tokens 5/.test(e.message));

  // The CLI passes both through (no refusal any more).
  const cliDb = path.join(dir, 'cli-corpus.db');
  const r = cli(['atlas', 'build', '--model', MODEL, '--db', cliDb, '--blocks', '1', '--features', '0-1', ...SETTINGS_FLAGS, '--seed', '34', '--corpus', corpus, '--queue', QURL, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { inserted: number }).inserted, 2);
  assert.ok(records(cliDb).every((x) => x.calibration?.source === 'corpus'));
  assert.equal(await stop(w.child), 0);
});

test('atlas scan through the queue: feature groups over the whole corpus by 2 workers equal a local scan (statistics, examples, calibration grids)', async () => {
  const corpus = smallCorpus(path.join(dir, 'scan-stories.txt'));
  const req: Omit<ScanRequest, 'atlas'> = { runner, blocks: [1, 2], hook: 'resid', features: [0, 1, 2, 3, 4, 5], corpus, window: 8, maxTokens: null, bos: true, batch: 4, topk: 3, binExamples: 1, calibrateTokens: 3, calibrateBos: false };
  const localDb = path.join(dir, 'scan-local-all.db');
  const la = Atlas.open(localDb);
  await buildScan({ atlas: la, ...req });
  la.close();
  const w1 = await startWorker();
  const w2 = await startWorker();
  const queuedDb = path.join(dir, 'scan-queued-all.db');
  const run = async () => {
    const atlas = Atlas.open(queuedDb);
    try {
      return await queuedScan({ atlas, ...req, queue: parseQueueUrl(QURL), groupSize: 2, backoffMs: 100, pollMs: 100 });
    } finally {
      atlas.close();
    }
  };
  const q = await run();
  assert.deepEqual([q.jobs, q.inserted, q.skipped, q.failed_jobs, q.refused_jobs], [3, 6, 0, [], []]);
  const done = (log: string) => (log.match(/ done in /g) ?? []).length;
  assert.equal(done(w1.log()) + done(w2.log()), 3);

  const a = Atlas.open(localDb, { readonly: true });
  const b = Atlas.open(queuedDb, { readonly: true });
  try {
    const [sa] = listScans(a);
    const [sb] = listScans(b);
    assert.ok(sa && sb);
    assert.deepEqual([sb.model_hash, sb.blocks, sb.hook, sb.corpus_hash, sb.settings_hash, sb.windows, sb.tokens, sb.features], [sa.model_hash, sa.blocks, sa.hook, sa.corpus_hash, sa.settings_hash, sa.windows, sa.tokens, 6]);
    const rows = (x: Atlas, id: number) => x.db.prepare('SELECT feature, stats_json, examples_json FROM scan_features WHERE scan_id = ? ORDER BY feature').all(id) as { feature: number; stats_json: string; examples_json: string }[];
    const ra = rows(a, sa.id);
    const rb = rows(b, sb.id);
    assert.deepEqual(rb.map((r) => r.feature), [0, 1, 2, 3, 4, 5]);
    ra.forEach((r, i) => {
      assertClose(JSON.parse(rb[i]!.stats_json), JSON.parse(r.stats_json), 1e-4, `feature ${r.feature} stats`);
      assertClose(JSON.parse(rb[i]!.examples_json), JSON.parse(r.examples_json), 1e-4, `feature ${r.feature} examples`);
      const ga = scanCalibration(a, sa.id, r.feature)!;
      const gb = scanCalibration(b, sb.id, r.feature)!;
      assert.equal(gb.windows, ga.windows);
      assert.equal(gb.grid.length, ga.grid.length);
      let worst = 0;
      ga.grid.forEach((x, k) => (worst = Math.max(worst, Math.abs(x - gb.grid[k]!))));
      assert.ok(worst <= 1e-4, `feature ${r.feature}: calibration grids differ by ${worst}`);
    });
  } finally {
    a.close();
    b.close();
  }
  // The same scan again: nothing pending, nothing enqueued.
  const again = await run();
  assert.deepEqual([again.jobs, again.skipped, again.inserted], [0, 6, 0]);
  // The CLI: atlas scan --queue stores what atlas scan does.
  const cliDb = path.join(dir, 'scan-cli.db');
  const r = cli(['atlas', 'scan', '--model', MODEL, '--db', cliDb, '--blocks', '1', '--features', '0-2', '--corpus', corpus, '--window', '8', '--queue', QURL, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const sum = JSON.parse(r.stdout) as { inserted: number; jobs: number };
  assert.deepEqual([sum.jobs, sum.inserted], [1, 3]);
  assert.equal(await stop(w1.child), 0);
  assert.equal(await stop(w2.child), 0);
});

test('a worker whose tokenizer or corpus differs from the job\'s (by content hash) refuses it in one line; nothing is stored, a good worker then serves it', async () => {
  const corpus = smallCorpus(path.join(dir, 'refuse-stories.txt'));
  const folder = path.join(dir, 'other-files');
  mkdirSync(folder, { recursive: true });
  copyFileSync(MODEL, path.join(folder, 'stories260K.bin'));
  // The same vocabulary with one score changed: it loads and fits, but it is not the job's tokenizer.
  const tok = readFileSync(modelPath('tok512.bin'));
  tok.writeFloatLE(tok.readFloatLE(4) + 1, 4);
  writeFileSync(path.join(folder, 'tok512.bin'), tok);
  const bad = await startWorker(['--models', folder]);
  const db = path.join(dir, 'refused-tokenizer.db');
  const r = await collect(db, { features: [0, 1], settings: { ...SETTINGS, seed: 41 } });
  assert.equal(r.refused_jobs.length, 1);
  assert.equal(r.refused_jobs[0]!.attempts, 3);
  const reason = r.refused_jobs[0]!.reason;
  assert.match(reason, /^refused: .*other-files\/stories260K\.bin opened with tokenizer .*tok512\.bin with hash [0-9a-f]{12}, the job wants tokenizer [0-9a-f]{12} \(stories260K\.bin\)$/);
  assert.ok(!reason.includes('\n'));
  assert.equal(records(db).length, 0);
  await stop(bad.child);

  // The right tokenizer now, but another corpus under the scan's corpus name.
  copyFileSync(modelPath('tok512.bin'), path.join(folder, 'tok512.bin'));
  smallCorpus(path.join(folder, 'refuse-stories.txt'), STORIES.slice(1));
  const bad2 = await startWorker(['--models', folder]);
  const scanDb = path.join(dir, 'refused-corpus.db');
  const scan = async () => {
    const atlas = Atlas.open(scanDb);
    try {
      return await queuedScan({ atlas, runner, blocks: [1, 1], hook: 'resid', features: [0, 1], corpus, window: 8, maxTokens: null, bos: true, queue: parseQueueUrl(QURL), backoffMs: 100, pollMs: 100 });
    } finally {
      atlas.close();
    }
  };
  const s = await scan();
  assert.equal(s.refused_jobs.length, 1);
  assert.match(s.refused_jobs[0]!.reason, /^refused: corpus .*other-files\/refuse-stories\.txt has hash [0-9a-f]{12}, the job wants [0-9a-f]{12} \(.*refuse-stories\.txt\)$/);
  assert.equal(s.inserted, 0);
  // The tokenizer check passed this time: the same worker serves the build it refused before.
  const r2 = await collect(db, { features: [0, 1], settings: { ...SETTINGS, seed: 41 } });
  assert.deepEqual([r2.inserted, r2.refused_jobs], [2, []]);
  await stop(bad2.child);
  const good = await startWorker();
  const s2 = await scan();
  assert.deepEqual([s2.inserted, s2.refused_jobs], [2, []]);
  await stop(good.child);
});

test('bad --queue values are one-line errors with exit code 2; a password in the URL reaches Redis', async () => {
  assert.throws(() => parseQueueUrl('http://x:1'), UserError);
  assert.throws(() => parseQueueUrl('redis://h:1/abc'), /database "abc" is not a number/);
  assert.match(parseQueueUrl('redis://:secret@h:1/2').display, /\*\*\*/);
  const r = cli(['queue', 'status', '--queue', 'redis://127.0.0.1:1']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^llm-features: --queue: cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  // Authentication passes through the URL to the client.
  const authPort = await freePort();
  const secured = spawn('redis-server', ['--port', String(authPort), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--requirepass', 's3cret'], { stdio: 'ignore' });
  children.add(secured);
  secured.once('exit', () => children.delete(secured));
  for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(authPort), '-a', 's3cret', '--no-auth-warning', 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG'; i++) spawnSync('sleep', ['0.05']);
  const ok = cli(['queue', 'status', '--queue', `redis://:s3cret@127.0.0.1:${authPort}`, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { queue: string }).queue, `redis://:***@127.0.0.1:${authPort}`);
  const denied = cli(['queue', 'status', '--queue', `redis://:wrong@127.0.0.1:${authPort}`]);
  assert.equal(denied.code, 2);
  assert.match(denied.stderr, /^llm-features: --queue: cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/?: .*(WRONGPASS|invalid)/);
  assert.doesNotMatch(denied.stderr, /wrong/);
  const w = cli(['worker', '--queue', 'nope']);
  assert.equal(w.code, 2);
  assert.match(w.stderr, /--queue: "nope" is not a URL/);
});
