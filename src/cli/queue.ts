import { cancelQueue, drainQueue, queueStatus, type QueueStatus } from '../atlas/queue/admin.js';
import type { QueueSummary } from '../atlas/queue/collector.js';
import { parseQueueUrl } from '../atlas/queue/connection.js';
import { formatDuration } from '../atlas/progress.js';
import { printJson, type Command } from './command.js';

export function formatStatus(s: QueueStatus): string {
  const rate = s.jobs_per_s === null ? '--' : s.jobs_per_s >= 10 ? s.jobs_per_s.toFixed(0) : s.jobs_per_s.toFixed(3);
  return (
    [
      `${s.queue}: ${s.waiting} waiting, ${s.active} active, ${s.delayed} delayed (retry backoff), ${s.completed} done, ${s.failed} failed`,
      `workers: ${s.workers.length}${s.workers.length ? ` (${s.workers.join(', ')})` : ''}`,
      `rate: ${rate} jobs/s, job time ${s.job_ms === null ? '--' : s.job_ms < 10_000 ? `${Math.round(s.job_ms)} ms` : formatDuration(s.job_ms / 1000)}, ETA ${s.eta_s === null ? '--' : s.eta_s === 0 ? 'done' : formatDuration(s.eta_s)}`,
    ].join('\n') + '\n'
  );
}

/** The lines `atlas build --queue` and `atlas scan --queue` add to their summaries: jobs that ended without results. */
export function formatQueuedFailures(s: QueueSummary, kind: 'build' | 'scan' = 'build'): string {
  const lines: string[] = [];
  const kept = kind === 'build' ? 'stored as failed records' : 'nothing stored (rerun to retry)';
  for (const j of s.failed_jobs) lines.push(`job ${j.id.slice(0, 13)} (blocks ${j.blocks.join('-')}, ${j.features.length} features) failed after ${j.attempts} attempt(s), ${kept}: ${j.reason}`);
  for (const j of s.refused_jobs) lines.push(`job ${j.id.slice(0, 13)} (blocks ${j.blocks.join('-')}, ${j.features.length} features) refused by the workers after ${j.attempts} attempt(s), nothing stored (rerun to retry): ${j.reason}`);
  if (s.cancelled) lines.push(`${s.cancelled} job(s) were removed from the queue (drain/cancel) before finishing: nothing stored for them`);
  return lines.map((l) => l + '\n').join('');
}

const statusCommand: Command = {
  name: 'queue status',
  summary: 'waiting / active / done / failed jobs, workers, rate, ETA',
  async run(v) {
    const s = await queueStatus(parseQueueUrl(v.need('queue')));
    if (v.bool('json')) printJson(s);
    else process.stdout.write(formatStatus(s));
  },
};

const drainCommand: Command = {
  name: 'queue drain',
  summary: 'remove the jobs no worker has started; running ones finish and are collected',
  async run(v) {
    const n = await drainQueue(parseQueueUrl(v.need('queue')));
    process.stdout.write(`removed ${n} waiting job(s)\n`);
  },
};

const cancelCommand: Command = {
  name: 'queue cancel',
  summary: 'remove every job, running and finished-but-uncollected ones included',
  async run(v) {
    const n = await cancelQueue(parseQueueUrl(v.need('queue')));
    process.stdout.write(`removed ${n} job(s)\n`);
  },
};

export const queueCommand: Command = {
  name: 'queue',
  summary: 'status of the Redis job queue of distributed atlas builds; drain or cancel it',
  async run() {
    throw new Error('queue: dispatched to a subcommand by main');
  },
  subcommands: [statusCommand, drainCommand, cancelCommand],
};
