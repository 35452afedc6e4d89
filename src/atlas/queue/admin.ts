/**
 * `queue status | drain | cancel`: what the queue holds and how fast it empties, and the two ways to stop a sweep.
 * drain removes the jobs no worker has started (running ones finish and are collected); cancel removes every job of
 * the queue, finished results not yet collected included.
 */
import { Queue } from 'bullmq';
import { checkReachable, redisClient, type QueueUrl } from './connection.js';
import { QUEUE_NAME, type JobData, type JobResult } from './jobs.js';

export interface QueueStatus {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
  /** Workers connected now (BullMQ's client list), by name. */
  workers: string[];
  /** Jobs finished per second over the most recent completed jobs (up to 50, within 10 minutes), null when none. */
  jobs_per_s: number | null;
  /** Median time one of those jobs spent in its worker, ms. */
  job_ms: number | null;
  /** Seconds until waiting + delayed + active jobs are done at that rate. */
  eta_s: number | null;
}

async function withQueue<T>(q: QueueUrl, fn: (queue: Queue<JobData, JobResult>) => Promise<T>): Promise<T> {
  await checkReachable(q);
  const connection = redisClient(q);
  const queue = new Queue<JobData, JobResult>(QUEUE_NAME, { connection });
  queue.on('error', () => {});
  try {
    return await fn(queue);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

export function queueStatus(q: QueueUrl, now = Date.now()): Promise<QueueStatus> {
  return withQueue(q, async (queue) => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
    // BullMQ names a worker's connection bull:QUEUE:w:NAME; NAME is ours (host-pid).
    const workers = (await queue.getWorkers()).map((w) => (w.rawname ?? '').split(':w:')[1] ?? w.addr ?? '?');
    const recent = (await queue.getJobs(['completed'], 0, 49, false)).filter((j) => j.finishedOn !== undefined && now - j.finishedOn! < 600_000);
    const finished = recent.map((j) => j.finishedOn!).sort((a, b) => a - b);
    const span = finished.length >= 2 ? (finished[finished.length - 1]! - finished[0]!) / 1000 : 0;
    const rate = span > 0 ? (finished.length - 1) / span : null;
    const durations = recent.filter((j) => j.processedOn !== undefined).map((j) => j.finishedOn! - j.processedOn!).sort((a, b) => a - b);
    const left = (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.active ?? 0);
    return {
      queue: q.display,
      waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
      active: c.active ?? 0,
      delayed: c.delayed ?? 0,
      completed: c.completed ?? 0,
      failed: c.failed ?? 0,
      workers,
      jobs_per_s: rate,
      job_ms: durations.length ? durations[Math.floor(durations.length / 2)]! : null,
      eta_s: left === 0 ? 0 : rate ? left / rate : null,
    };
  });
}

/** Remove waiting and delayed jobs; returns how many there were. */
export function drainQueue(q: QueueUrl): Promise<number> {
  return withQueue(q, async (queue) => {
    const c = await queue.getJobCounts('waiting', 'delayed', 'prioritized');
    await queue.drain(true);
    return (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
  });
}

/** Remove every job (active ones too: their workers' results are then discarded); returns how many there were. */
export function cancelQueue(q: QueueUrl): Promise<number> {
  return withQueue(q, async (queue) => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
    await queue.obliterate({ force: true });
    return Object.values(c).reduce((a, b) => a + b, 0);
  });
}
