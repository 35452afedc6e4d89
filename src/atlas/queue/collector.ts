/**
 * `atlas build --queue URL` and `atlas scan --queue URL`: plan the sweep exactly as a local build or scan does (same
 * model hash, settings hash, pending features), enqueue one job per batch (build) or feature group (scan), and collect
 * finished jobs into the atlas, one transaction per job.
 *
 * Nothing here holds state that Redis and the atlas do not: killed and rerun, the collector plans the same pending
 * features, derives the same job ids (enqueueing them again adds nothing) and collects whatever finished meanwhile.
 * Inserts are idempotent by record key, so collecting a job twice (or a job another collector also collected) never
 * duplicates a record. Completion events only speed collection up; a periodic poll of every pending job's state is
 * what guarantees it, so a Redis restart (or a missed event) loses nothing.
 *
 * References for percentiles: with `--corpus` every worker computes its runs' reference distributions from the corpus
 * the job names by hash (that is a pass of the model over the corpus, work for the workers); with `--scan-db` the
 * collector reads the stored grids itself and calibrates each job's results as it stores them (a grid per feature is
 * 80 KB, more than a job's whole result, and only the machine holding the scan atlas has it).
 */
import { VERSION } from '../../version.js';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { readCorpus } from '../../features/corpus.js';
import { DEFAULT_SCAN } from '../../features/scan.js';
import { calibrateResults, runsOfSelects, type RunResult, type VisualizeSettings } from '../../features/visualize.js';
import type { LoadedModel } from '../../models/load.js';
import { batchesOf, planBuild, recordSelect, type BuildRequest, type BuildSummary } from '../build.js';
import { tokenizerHash } from '../hash.js';
import { directionHash, planScan, type ScanRequest, type ScanSummary } from '../scan-build.js';
import { insertScanFeatures, type StoredCalibration } from '../scans.js';
import type { Atlas } from '../store.js';
import { checkReachable, redisClient, type QueueUrl } from './connection.js';
import {
  buildJobId,
  gridFromWire,
  QUEUE_NAME,
  scanJobId,
  toWire,
  type BuildJobData,
  type CorpusRef,
  type JobData,
  type JobResult,
  type ModelRef,
  type ScanJobData,
} from './jobs.js';
import { REFUSED } from './worker.js';

/** How a sweep uses the queue (both commands). */
export interface QueueOptions {
  queue: QueueUrl;
  /** The tokenizer file the model was opened with, when one was given explicitly (workers open the same). */
  tokenizerPath?: string;
  /** Tries per job before it counts as failed (default 3). */
  attempts?: number;
  /** First retry delay; doubles with each retry (default 1000 ms). */
  backoffMs?: number;
  /** How often every pending job's state is checked, besides the completion events (default 2000 ms). */
  pollMs?: number;
  onEnqueued?: (jobs: number) => void;
}

export interface QueuedBuildRequest extends BuildRequest, QueueOptions {
  /**
   * `--corpus FILE`: the workers compute the reference from this corpus (named in each job by content hash). Any
   * `reference` (a `--scan-db` one) is instead applied here, to each job's results as they are stored.
   */
  corpus?: string;
}

export interface FailedJob {
  id: string;
  blocks: [number, number];
  /** Features of the job; `null` is a direction record. */
  features: (number | null)[];
  reason: string;
  attempts: number;
}

/** What a queued sweep adds to the local summary. */
export interface QueueSummary {
  jobs: number;
  /** Jobs that failed in the computation: a build stores their selections as failed records, a scan nothing. */
  failed_jobs: FailedJob[];
  /** Jobs no worker could serve (a file missing or different, another version): nothing stored; a rerun retries. */
  refused_jobs: FailedJob[];
  /** Jobs removed from the queue (queue drain / cancel) before they finished: nothing stored. */
  cancelled: number;
}

export type QueuedBuildSummary = BuildSummary & QueueSummary;
export type QueuedScanSummary = ScanSummary & QueueSummary;

export interface Pending<D extends JobData = JobData> {
  id: string;
  data: D;
}

export function jobOptions(id: string, attempts: number, backoffMs: number) {
  const week = 7 * 86400;
  // Finished jobs stay a week, so a collector that was down meanwhile still finds their results.
  return { jobId: id, attempts, backoff: { type: 'exponential', delay: backoffMs }, removeOnComplete: { age: week }, removeOnFail: { age: week } };
}

/** Add jobs (in chunks, one round trip each); ids that exist are left alone by BullMQ. */
export async function enqueueJobs(queue: Queue<JobData, JobResult>, jobs: Pending[], attempts = 3, backoffMs = 1000): Promise<void> {
  for (let i = 0; i < jobs.length; i += 500) {
    await queue.addBulk(jobs.slice(i, i + 500).map((j) => ({ name: j.data.kind, data: j.data, opts: jobOptions(j.id, attempts, backoffMs) })));
  }
}

/** The model (and tokenizer) as jobs name them: by content hash, with the paths opened here as hints. */
export function modelRef(model: LoadedModel, id: { hash: string; name: string }, atlas: Atlas, tokenizerPath?: string): ModelRef {
  return {
    hash: id.hash,
    name: id.name,
    path: path.resolve(model.path),
    ...(tokenizerPath ? { tokenizer: path.resolve(tokenizerPath) } : {}),
    tokenizer_hash: tokenizerHash(model, atlas),
  };
}

/** A corpus as jobs name it; reading it here also checks it (a bad file is refused before anything is enqueued). */
export function corpusRef(file: string): CorpusRef {
  const c = readCorpus(file);
  return { hash: c.hash, name: c.file, path: path.resolve(file) };
}

/** The sweep's jobs, one per batch of pending features, in the order a local build runs them. */
export function sweepJobs(
  model: ModelRef,
  settingsHash: string,
  hook: BuildJobData['hook'],
  settings: Omit<VisualizeSettings, 'blocks' | 'hook'>,
  plan: { blocks: [number, number]; pending: (number | null)[] }[],
  corpus?: CorpusRef,
): Pending<BuildJobData>[] {
  const wire = toWire(settings);
  const direction = settings.objective.direction;
  const extra = { ...(direction ? { direction_hash: directionHash(direction) } : {}), ...(corpus ? { corpus } : {}) };
  const out: Pending<BuildJobData>[] = [];
  for (const { blocks, pending } of plan) {
    for (const features of batchesOf(pending, settings.batch)) {
      const data: BuildJobData = { kind: 'build', version: VERSION, model, blocks, hook, features, settings: wire, settings_hash: settingsHash, ...extra };
      out.push({ id: buildJobId(data), data });
    }
  }
  return out;
}

/**
 * The order jobs are enqueued in (BullMQ hands them out first in, first out): the costliest first. A job's cost grows
 * with the depth of its block range (a run of blocks A-B goes forward and back through blocks 1..B) and its number of
 * selections, so a sweep over blocks 1..32 in plan order would leave the 32-block jobs for last, and every worker but
 * the one holding the last deep job idle at the end. Longest first, the short jobs fill in at the end instead.
 * Stable, so jobs of equal cost keep the plan's order. Enqueue order changes nothing else: each job is stored by key.
 */
export function longestFirst<D extends JobData>(jobs: Pending<D>[]): Pending<D>[] {
  const cost = (d: JobData) => d.blocks[1] * d.features.length;
  return jobs.map((j, i) => ({ j, i })).sort((a, b) => cost(b.j.data) - cost(a.j.data) || a.i - b.i).map(({ j }) => j);
}

/** A failed record for each selection of a job that failed in the computation (what a local build stores for a NaN). */
function failedResults(d: BuildJobData, reason: string): RunResult[] {
  return d.features.map((f) => {
    const r: Omit<RunResult, 'cosine_scale'> = {
      select: recordSelect(f),
      blocks: d.blocks,
      hook: d.hook,
      settings: {},
      ids: [],
      free: [],
      topk: [],
      topk_text: [],
      cosine: [],
      activation: { continuous: null, decoded: null, random: null },
      objective: { initial: null, final: null },
      baseline: null,
      loss: [],
      status: 'failed',
      error: reason,
      timings: { optimize_ms: 0, decode_ms: 0, verify_ms: 0 },
    };
    return r as RunResult;
  });
}

/** Check a returned batch against its job before it goes into the atlas. */
function checkResult(id: string, d: BuildJobData, value: JobResult | undefined): RunResult[] {
  if (!value || value.kind !== 'build' || !Array.isArray(value.results) || value.results.length !== d.features.length) {
    throw new Error(`queue: job ${id} returned no or a malformed result`);
  }
  value.results.forEach((r, k) => {
    const want = recordSelect(d.features[k]!);
    if (r.select !== want || r.blocks[0] !== d.blocks[0] || r.blocks[1] !== d.blocks[1] || r.hook !== d.hook) {
      throw new Error(`queue: job ${id} run ${k} is ${r.select} of blocks ${r.blocks.join('-')} ${r.hook}, expected ${want}`);
    }
  });
  return value.results;
}

interface SweepHandlers<D extends JobData> {
  /** Store a finished job's result (one transaction). */
  completed: (p: Pending<D>, value: JobResult | undefined) => Promise<void> | void;
  /** A job that failed in the computation, after its attempts (refusals are only reported). */
  failed: (p: Pending<D>, reason: string) => void;
}

/**
 * Enqueue a sweep's jobs and wait for each to finish, storing it through the handlers: the loop both commands share.
 * Returns the jobs that failed, those refused, and how many were removed from the queue unfinished.
 */
async function runSweep<D extends JobData>(opts: QueueOptions, jobs: Pending<D>[], handlers: SweepHandlers<D>): Promise<QueueSummary> {
  const attempts = opts.attempts ?? 3;
  const backoffMs = opts.backoffMs ?? 1000;
  const pollMs = opts.pollMs ?? 2000;
  const connection = redisClient(opts.queue);
  const queue = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  queue.on('error', () => {});
  const eventsConnection = redisClient(opts.queue);
  const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection });
  events.on('error', () => {});
  let cancelled = 0;
  const failedJobs: FailedJob[] = [];
  const refusedJobs: FailedJob[] = [];
  try {
    await enqueueJobs(queue, longestFirst(jobs), attempts, backoffMs);
    opts.onEnqueued?.(jobs.length);

    const pending = new Map(jobs.map((j) => [j.id, j]));
    // Finished jobs announce themselves (QueueEvents) and are collected at once; the full poll catches whatever an
    // event missed (a Redis restart, jobs removed by drain/cancel) and is the only thing relied on for correctness.
    const hinted = new Set<string>();
    let wake: (() => void) | null = null;
    const hint = ({ jobId }: { jobId: string }) => {
      if (!pending.has(jobId)) return;
      hinted.add(jobId);
      wake?.();
    };
    events.on('completed', hint);
    events.on('failed', hint);
    let firstPass = true;
    let lastFull = -Infinity;
    while (pending.size) {
      // A large sweep is fully polled less often: about one state check per millisecond at most.
      const fullEvery = Math.max(pollMs, pending.size);
      const full = performance.now() - lastFull >= fullEvery;
      const ids = full ? [...pending.keys()] : [...hinted].filter((j) => pending.has(j));
      hinted.clear();
      if (full) lastFull = performance.now();
      const states = await Promise.all(ids.map((jid) => queue.getJobState(jid)));
      for (let i = 0; i < ids.length; i++) {
        const jid = ids[i]!;
        const p = pending.get(jid)!;
        const state = states[i]!;
        if (state === 'completed') {
          const job = (await queue.getJob(jid)) as Job<JobData, JobResult> | undefined;
          if (!job) continue; // removed between the two calls: seen as unknown next round
          await handlers.completed(p, job.returnvalue);
          pending.delete(jid);
        } else if (state === 'failed') {
          const job = (await queue.getJob(jid)) as Job<JobData, JobResult> | undefined;
          if (!job) continue;
          // A job that had already failed before this collector attached (a refusal, or a failure whose records a
          // killed collector never wrote) gets one more round of attempts.
          if (firstPass) {
            await job.retry('failed');
            continue;
          }
          const reason = job.failedReason ?? 'failed (no reason given)';
          const entry: FailedJob = { id: jid, blocks: p.data.blocks, features: p.data.features, reason, attempts: job.attemptsMade };
          if (reason.startsWith(REFUSED)) refusedJobs.push(entry);
          else {
            failedJobs.push(entry);
            handlers.failed(p, reason);
          }
          pending.delete(jid);
        } else if (state === 'unknown' && full) {
          cancelled++;
          pending.delete(jid);
        }
      }
      firstPass = false;
      if (pending.size && hinted.size === 0) {
        const wait = Math.max(0, lastFull + fullEvery - performance.now());
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    }
  } finally {
    await events.close();
    await queue.close();
    connection.disconnect();
    eventsConnection.disconnect();
  }
  return { jobs: jobs.length, failed_jobs: failedJobs, refused_jobs: refusedJobs, cancelled };
}

export async function queuedBuild(req: QueuedBuildRequest): Promise<QueuedBuildSummary> {
  await checkReachable(req.queue);
  const corpus = req.corpus === undefined ? undefined : corpusRef(req.corpus);
  const { model: id, settingsHash, plan, total, skipped } = planBuild(req);
  const model = req.runner.model;
  const bosId = model.tokenizer?.bosId ?? null;
  const ref = modelRef(model, id, req.atlas, req.tokenizerPath);
  const settingsOf = (blocks: [number, number]): VisualizeSettings => ({ ...req.settings, blocks, hook: req.hook });
  const reference = corpus ? undefined : req.reference;
  // A reference this collector applies is tried on every pending selection first: one that cannot serve them (no
  // matching scan, another shape) is refused before anything is enqueued, as a local build would stop at its first batch.
  if (reference) {
    for (const { blocks, pending } of plan) {
      if (!pending.length) continue;
      const s = settingsOf(blocks);
      const { runs, lay } = runsOfSelects(pending.map(recordSelect), s, bosId, model.config);
      await reference(runs, s, lay);
    }
  }
  const jobs = sweepJobs(ref, settingsHash, req.hook, req.settings, plan, corpus);
  const t0 = performance.now();
  let inserted = 0;
  let failed = 0;
  const report = (blocks: [number, number]) =>
    req.onProgress?.({ done: skipped + inserted, total, skipped, inserted, elapsedMs: performance.now() - t0, blocks });
  if (plan.length) report(plan[0]!.blocks);
  const q = await runSweep(req, jobs, {
    async completed(p, value) {
      const results = checkResult(p.id, p.data, value);
      if (reference) await calibrateResults(results, settingsOf(p.data.blocks), bosId, model.config, reference);
      inserted += req.atlas.insertResults(id.hash, settingsHash, results);
      failed += results.filter((r) => r.status === 'failed').length;
      report(p.data.blocks);
    },
    failed(p, reason) {
      const n = req.atlas.insertResults(id.hash, settingsHash, failedResults(p.data, `queue: ${reason}`));
      inserted += n;
      failed += n;
      report(p.data.blocks);
    },
  });
  return { model: id, settings_hash: settingsHash, total, skipped, inserted, failed, elapsed_ms: Math.round(performance.now() - t0), ...q };
}

/**
 * Features per scan job. Every job runs the model over the whole corpus once (its features' quantiles need every
 * window), so more, smaller jobs cost more forward passes in all; a group this size keeps that repeat small next to
 * the per-feature work (sorting, examples) for the hooks of real models (768–11,008 features: 12–172 jobs per block
 * range) and is what a local scan keeps in memory at once for a corpus of up to ~2 M tokens.
 */
export const SCAN_JOB_FEATURES = 64;

export interface QueuedScanRequest extends ScanRequest, QueueOptions {
  /** Features per job (default SCAN_JOB_FEATURES). */
  groupSize?: number;
}

export async function queuedScan(req: QueuedScanRequest): Promise<QueuedScanSummary> {
  await checkReachable(req.queue);
  const t0 = performance.now();
  const plan = planScan(req);
  const model = req.runner.model;
  const ref = modelRef(model, plan.model, req.atlas, req.tokenizerPath);
  const corpus: CorpusRef = { hash: plan.corpus.hash, name: req.corpus, path: path.resolve(req.corpus) };
  const direction = req.direction ?? null;
  const jobs: Pending<ScanJobData>[] = batchesOf(plan.pending, req.groupSize ?? SCAN_JOB_FEATURES).map((features) => {
    const data: ScanJobData = {
      kind: 'scan',
      version: VERSION,
      model: ref,
      blocks: req.blocks,
      hook: req.hook,
      features,
      corpus,
      window: req.window,
      max_tokens: req.maxTokens,
      bos: req.bos,
      ...(direction ? { direction: Array.from(direction), direction_hash: directionHash(direction) } : {}),
      batch: req.batch ?? DEFAULT_SCAN.batch,
      topk: plan.topk,
      bin_examples: plan.binExamples,
      calibrate_tokens: req.calibrateTokens ?? null,
      calibrate_bos: req.calibrateBos === true,
      settings_hash: plan.settingsHash,
    };
    return { id: scanJobId(data), data };
  });
  let inserted = 0;
  let done = 0;
  const W = plan.windows.length;
  const q = await runSweep(req, jobs, {
    completed(p, value) {
      if (!value || value.kind !== 'scan' || !Array.isArray(value.features) || value.features.map((f) => f.feature).join() !== p.data.features.join()) {
        throw new Error(`queue: job ${p.id} returned no or a malformed scan result`);
      }
      const calibration = value.calibration ? new Map<number, StoredCalibration>(value.calibration.map((c) => [c.feature, { grid: gridFromWire(c.grid), windows: c.windows }])) : undefined;
      if (req.calibrateTokens && value.features.some((f) => !calibration?.has(f.feature))) throw new Error(`queue: job ${p.id} returned no calibration grids`);
      inserted += insertScanFeatures(req.atlas, plan.scanId, value.features, calibration);
      req.onProgress?.({ windows: W, totalWindows: W, chunk: ++done, chunks: jobs.length });
    },
    // A scan has no failed-feature rows: the features of a failed job stay pending, and a rerun tries them again.
    failed() {
      req.onProgress?.({ windows: W, totalWindows: W, chunk: ++done, chunks: jobs.length });
    },
  });
  return {
    scan_id: plan.scanId,
    model: plan.model,
    corpus: plan.corpus,
    settings_hash: plan.settingsHash,
    windows: W,
    tokens: plan.tokens,
    features: req.features.length,
    skipped: req.features.length - plan.pending.length,
    inserted,
    elapsed_ms: Math.round(performance.now() - t0),
    ...q,
  };
}
