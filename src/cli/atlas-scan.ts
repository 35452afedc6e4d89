import { formatDuration } from '../atlas/progress.js';
import { buildScan, expectsBos, type ScanRequest } from '../atlas/scan-build.js';
import { queuedScan, SCAN_JOB_FEATURES } from '../atlas/queue/collector.js';
import { checkReachable, parseQueueUrl } from '../atlas/queue/connection.js';
import { formatQueuedFailures } from './queue.js';
import { parseFeatures } from '../atlas/settings.js';
import { Atlas } from '../atlas/store.js';
import { UserError } from '../errors.js';
import { loadSae } from '../features/sae.js';
import { openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { blocksAndHook } from './settings.js';
import { readDirectionFile } from '../formats/npy.js';

export const scanCommand: Command = {
  name: 'atlas scan',
  summary: 'scan a corpus: per-token activation distributions and top / quantile-bin examples per feature (resumable)',
  notes: [
    '--corpus: plain text with stories separated by <|endoftext|> lines, or .jsonl with a "text" field per line.',
    "--calibrate-tokens N: also store each feature's reference distribution for visualize runs [:, :, f] of N tokens (with --bos when --calibrate-bos), read by visualize --scan-db.",
    'Run the same command again to resume: features already stored are skipped.',
    `--queue: enqueue groups of ${SCAN_JOB_FEATURES} features as jobs for \`llm-features worker\` processes (each scans the whole corpus) and collect them here.`,
  ],
  async run(v) {
    const dbPath = v.need('db');
    const { blocks, hook } = blocksAndHook(v);
    const corpus = v.need('corpus');
    const directionFile = v.str('direction');
    const featureSpec = v.str('features') ?? (directionFile ? '0' : undefined);
    if (featureSpec === undefined) throw new UserError('--features: required');
    const features = parseFeatures(featureSpec);
    const window = v.num('window');
    const maxTokens = v.has('max-tokens') ? v.num('max-tokens') : null;
    const direction = directionFile ? readDirectionFile(directionFile) : null;
    const calibrateTokens = v.has('calibrate-tokens') ? v.num('calibrate-tokens') : null;
    if (v.bool('calibrate-bos') && calibrateTokens === null) throw new UserError('--calibrate-bos: only with --calibrate-tokens N');
    const queueSpec = v.str('queue');
    const queue = queueSpec === undefined ? undefined : parseQueueUrl(queueSpec);
    if (queue && v.has('sae')) throw new UserError('--sae: not through --queue yet (scan SAE latents locally)');
    // Before the atlas is opened: an unreachable queue leaves nothing written.
    if (queue) await checkReachable(queue);
    const runner = openRunner(v);
    try {
      const atlas = Atlas.open(dbPath);
      const tty = process.stderr.isTTY === true;
      let last = 0;
      try {
        const request: ScanRequest = {
          atlas,
          runner,
          blocks,
          hook,
          features,
          corpus,
          window,
          maxTokens,
          bos: !v.bool('no-bos') && expectsBos(runner),
          direction,
          sae: v.has('sae') ? loadSae(v.need('sae')) : null,
          batch: v.num('batch'),
          topk: v.num('topk'),
          binExamples: v.num('bin-examples'),
          calibrateTokens,
          calibrateBos: v.bool('calibrate-bos'),
          onProgress: (p) => {
            const line = queue ? `scan: job ${p.chunk}/${p.chunks} collected` : `scan: chunk ${p.chunk}/${p.chunks}, ${p.windows}/${p.totalWindows} windows`;
            if (tty) process.stderr.write(`\r${line}\x1b[K${p.windows === p.totalWindows && p.chunk === p.chunks ? '\n' : ''}`);
            else if (Date.now() - last >= 10_000 || (p.windows === p.totalWindows && p.chunk === p.chunks)) {
              process.stderr.write(line + '\n');
              last = Date.now();
            }
          },
          onHash: (file, bytes) => process.stderr.write(`hashing ${file} (${(bytes / 2 ** 20).toFixed(1)} MiB)…\n`),
        };
        const queued = queue ? await queuedScan({ ...request, queue, tokenizerPath: v.str('tokenizer') }) : null;
        const summary = queued ?? (await buildScan(request));
        if (queued) process.stderr.write(formatQueuedFailures(queued, 'scan'));
        if (v.bool('json')) printJson({ db: dbPath, ...summary });
        else {
          process.stdout.write(
            `${dbPath}: scan ${summary.scan_id} of ${summary.corpus.name} (${summary.corpus.stories} stories, ${summary.windows} windows, ${summary.tokens} tokens) ` +
              `for ${summary.model.name} blocks ${blocks[0]}-${blocks[1]} ${hook}: ${summary.features} features, ${summary.inserted} new, ${summary.skipped} already there, ` +
              `${formatDuration(summary.elapsed_ms / 1000)}\n`,
          );
        }
      } finally {
        atlas.close();
      }
    } finally {
      await runner.close();
    }
  },
};
