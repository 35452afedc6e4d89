/**
 * `atlas build --queue URL`: plan the sweep exactly as a local build does (same model hash, settings hash, pending
 * features, batches), enqueue one job per batch, and collect finished jobs into the atlas, one transaction per job.
 *
 * Nothing here holds state that Redis and the atlas do not: killed and rerun, the collector plans the same pending
 * features, derives the same job ids (enqueueing them again adds nothing) and collects whatever finished meanwhile.
 * Inserts are idempotent by record key, so collecting a job twice (or a job another collector also collected) never
 * duplicates a record. Completion events only speed collection up; a periodic poll of every pending job's state is
 * what guarantees it, so a Redis restart (or a missed event) loses nothing.
 */
import { VERSION } from '../../version.js';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import type { RunResult, VisualizeSettings } from '../../features/visualize.js';
import { batchesOf, planBuild, type BuildRequest, type BuildSummary } from '../build.js';
import { featureSelect } from '../settings.js';
import { checkReachable, redisClient, type QueueUrl } from './connection.js';
import { buildJobId, QUEUE_NAME, toWire, type BuildJobData, type JobData, type JobResult, type ModelRef } from './jobs.js';
import { REFUSED } from './worker.js';

export interface QueuedBuildRequest extends BuildRequest {
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

export interface FailedJob {
  id: string;
  blocks: [number, number];
  features: number[];
  reason: string;
  attempts: number;
}

export interface QueuedBuildSummary extends BuildSummary {
  jobs: number;
  /** Jobs that failed in the computation: their selections are stored as failed records. */
  failed_jobs: FailedJob[];
  /** Jobs no worker could serve (model file missing or different, another version): nothing stored; a rerun retries. */
  refused_jobs: FailedJob[];
  /** Jobs removed from the queue (queue drain / cancel) before they finished: nothing stored. */
  cancelled: number;
}

interface Pending {
  id: string;
  data: BuildJobData;
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

/** The sweep's jobs, one per batch of pending features, in the order a local build runs them. */
export function sweepJobs(
  model: ModelRef,
  settingsHash: string,
  hook: BuildJobData['hook'],
  settings: Omit<VisualizeSettings, 'blocks' | 'hook'>,
  plan: { blocks: [number, number]; pending: number[] }[],
): Pending[] {
  const wire = toWire(settings);
  const out: Pending[] = [];
  for (const { blocks, pending } of plan) {
    for (const features of batchesOf(pending, settings.batch)) {
      const data: BuildJobData = { kind: 'build', version: VERSION, model, blocks, hook, features, settings: wire, settings_hash: settingsHash };
      out.push({ id: buildJobId(data), data });
    }
  }
  return out;
}

/** A failed record for each selection of a job that failed in the computation (what a local build stores for a NaN). */
function failedResults(d: BuildJobData, reason: string): RunResult[] {
  return d.features.map((f) => {
    const r: Omit<RunResult, 'cosine_scale'> = {
      select: featureSelect(f),
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
    if (r.select !== featureSelect(d.features[k]!) || r.blocks[0] !== d.blocks[0] || r.blocks[1] !== d.blocks[1] || r.hook !== d.hook) {
      throw new Error(`queue: job ${id} run ${k} is ${r.select} of blocks ${r.blocks.join('-')} ${r.hook}, expected ${featureSelect(d.features[k]!)}`);
    }
  });
  return value.results;
}

export async function queuedBuild(req: QueuedBuildRequest): Promise<QueuedBuildSummary> {
  await checkReachable(req.queue);
  const { model: id, settingsHash, plan, total, skipped } = planBuild(req);
  const model = req.runner.model;
  const ref: ModelRef = { hash: id.hash, name: id.name, path: path.resolve(model.path), ...(req.tokenizerPath ? { tokenizer: path.resolve(req.tokenizerPath) } : {}) };
  // Direction sweeps (a `null` pending entry) are refused by the CLI before this; the queue carries feature batches.
  const features = plan.map((p) => ({ blocks: p.blocks, pending: p.pending.filter((f): f is number => f !== null) }));
  const jobs = sweepJobs(ref, settingsHash, req.hook, req.settings, features);
  const attempts = req.attempts ?? 3;
  const backoffMs = req.backoffMs ?? 1000;
  const pollMs = req.pollMs ?? 2000;

  const connection = redisClient(req.queue);
  const queue = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  queue.on('error', () => {});
  const eventsConnection = redisClient(req.queue);
  const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection });
  events.on('error', () => {});
  const t0 = performance.now();
  let inserted = 0;
  let failed = 0;
  let cancelled = 0;
  const failedJobs: FailedJob[] = [];
  const refusedJobs: FailedJob[] = [];
  const report = (blocks: [number, number]) =>
    req.onProgress?.({ done: skipped + inserted, total, skipped, inserted, elapsedMs: performance.now() - t0, blocks });
  try {
    await enqueueJobs(queue, jobs, attempts, backoffMs);
    req.onEnqueued?.(jobs.length);
    if (plan.length) report(plan[0]!.blocks);

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
          const results = checkResult(jid, p.data, job.returnvalue);
          inserted += req.atlas.insertResults(id.hash, settingsHash, results);
          failed += results.filter((r) => r.status === 'failed').length;
          pending.delete(jid);
          report(p.data.blocks);
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
            const n = req.atlas.insertResults(id.hash, settingsHash, failedResults(p.data, `queue: ${reason}`));
            inserted += n;
            failed += n;
          }
          pending.delete(jid);
          report(p.data.blocks);
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
  return {
    model: id,
    settings_hash: settingsHash,
    total,
    skipped,
    inserted,
    failed,
    elapsed_ms: Math.round(performance.now() - t0),
    jobs: jobs.length,
    failed_jobs: failedJobs,
    refused_jobs: refusedJobs,
    cancelled,
  };
}
