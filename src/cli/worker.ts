import { parseQueueUrl, checkReachable } from '../atlas/queue/connection.js';
import { QueueWorker } from '../atlas/queue/worker.js';
import type { Command } from './command.js';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'take atlas build and scan jobs from a Redis queue (BullMQ) and run them; stop with SIGTERM',
  notes: ['SIGTERM/SIGINT: finish the jobs in flight, then exit; a second signal abandons them (they are retried elsewhere).'],
  async run(v) {
    const queue = parseQueueUrl(v.need('queue'));
    const concurrency = v.num('concurrency');
    const threads = v.num('threads');
    const lockMs = v.num('lock-ms');
    await checkReachable(queue);
    const log = (s: string) => process.stderr.write(`worker ${process.pid}: ${s}\n`);
    const w = new QueueWorker({
      queue,
      concurrency,
      threads,
      lowMemory: v.bool('low-memory'),
      modelsDir: v.str('models'),
      lockMs,
      onEvent: (e) => {
        if (e.type === 'start') log(`job ${e.job.slice(0, 13)} started: ${e.model} blocks ${e.blocks.join('-')}, ${e.features} features`);
        else if (e.type === 'done') log(`job ${e.job.slice(0, 13)} done in ${(e.ms / 1000).toFixed(2)} s`);
        else log(`job ${e.job.slice(0, 13)} failed (attempt ${e.attempt}): ${e.reason}`);
      },
    });
    await w.ready();
    log(`taking jobs from ${queue.display} (concurrency ${concurrency}, ${threads} threads)`);
    await new Promise<void>((resolve, reject) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          log(`${signal} again: abandoning the jobs in flight`);
          w.close(true).then(resolve, reject);
          return;
        }
        stopping = true;
        log(`${signal}: finishing the jobs in flight`);
        w.close().then(resolve, reject);
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
    log('stopped');
  },
};
