import { parseQueueUrl, checkReachable } from '../atlas/queue/connection.js';
import { QueueWorker } from '../atlas/queue/worker.js';
import { optNumber, optString, requireString } from './args.js';
import type { Command } from './command.js';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'take atlas build jobs from a Redis queue (BullMQ) and run them; stop with SIGTERM',
  usage:
    'llm-features worker --queue redis://[:PASS@]HOST:PORT[/DB] [--concurrency N] [--threads T] [--models DIR] [--low-memory] [--lock-ms MS]\n' +
    '  --models DIR: open each job\'s model (and tokenizer) by its basename in DIR instead of the path it was enqueued with.\n' +
    '  SIGTERM/SIGINT: finish the jobs in flight, then exit; a second signal abandons them (they are retried elsewhere).',
  flags: { queue: 'string', concurrency: 'int', threads: 'int', models: 'string', 'low-memory': 'bool', 'lock-ms': 'int' },
  async run(flags) {
    const queue = parseQueueUrl(requireString(flags, 'queue'));
    const concurrency = optNumber(flags, 'concurrency', 1, { min: 1, max: 64 });
    const threads = optNumber(flags, 'threads', 2, { min: 1, max: 256 });
    const lockMs = optNumber(flags, 'lock-ms', 30_000, { min: 1000, max: 3_600_000 });
    await checkReachable(queue);
    const log = (s: string) => process.stderr.write(`worker ${process.pid}: ${s}\n`);
    const w = new QueueWorker({
      queue,
      concurrency,
      threads,
      lowMemory: flags['low-memory'] === true,
      modelsDir: optString(flags, 'models'),
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
