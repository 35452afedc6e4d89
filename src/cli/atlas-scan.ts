import { formatDuration } from '../atlas/progress.js';
import { buildScan, expectsBos } from '../atlas/scan-build.js';
import { parseFeatures } from '../atlas/settings.js';
import { Atlas } from '../atlas/store.js';
import { UserError } from '../errors.js';
import { DEFAULT_SCAN } from '../features/scan.js';
import { optNumber, optString, parseBlockRange, requireString } from './args.js';
import { MODEL_FLAGS, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { parseHook, readDirection } from './settings.js';

export const scanCommand: Command = {
  name: 'scan',
  summary: 'scan a corpus: per-token activation distributions and top / quantile-bin examples per feature (resumable)',
  usage:
    'llm-features atlas scan --model PATH --db FILE --blocks A-B --features SPEC --corpus FILE [--hook resid|mlp|attn]\n' +
    '  [--direction FILE] [--window N] [--max-tokens N] [--no-bos] [--batch N] [--topk K] [--bin-examples N]\n' +
    '  [--calibrate-tokens N [--calibrate-bos]] [--json]\n' +
    '  --corpus: plain text with stories separated by <|endoftext|> lines, or .jsonl with a "text" field per line.\n' +
    '  --calibrate-tokens N: also store each feature\'s reference distribution for visualize runs [:, :, f] of N tokens\n' +
    '  (with --bos when --calibrate-bos), read by visualize --scan-db.\n' +
    '  Run the same command again to resume: features already stored are skipped.',
  flags: {
    ...MODEL_FLAGS,
    db: 'string',
    blocks: 'string',
    hook: 'string',
    features: 'string',
    corpus: 'string',
    direction: 'string',
    window: 'int',
    'max-tokens': 'int',
    'no-bos': 'bool',
    batch: 'int',
    topk: 'int',
    'bin-examples': 'int',
    'calibrate-tokens': 'int',
    'calibrate-bos': 'bool',
    json: 'bool',
  },
  async run(flags) {
    const dbPath = requireString(flags, 'db');
    const blocks = parseBlockRange(requireString(flags, 'blocks'));
    const hook = parseHook(flags);
    const corpus = requireString(flags, 'corpus');
    const directionFile = optString(flags, 'direction');
    const featureSpec = optString(flags, 'features') ?? (directionFile ? '0' : undefined);
    if (featureSpec === undefined) throw new UserError('--features: required');
    const features = parseFeatures(featureSpec);
    const window = optNumber(flags, 'window', 64, { min: 2, max: 1 << 20 });
    const maxTokens = flags['max-tokens'] === undefined ? null : optNumber(flags, 'max-tokens', 0, { min: 1 });
    const batch = optNumber(flags, 'batch', DEFAULT_SCAN.batch, { min: 1, max: 4096 });
    const topk = optNumber(flags, 'topk', DEFAULT_SCAN.topk, { min: 0, max: 1000 });
    const binExamples = optNumber(flags, 'bin-examples', DEFAULT_SCAN.binExamples, { min: 0, max: 1000 });
    const direction = directionFile ? readDirection(directionFile) : null;
    const calibrateTokens = flags['calibrate-tokens'] === undefined ? null : optNumber(flags, 'calibrate-tokens', 0, { min: 1, max: 4096 });
    if (flags['calibrate-bos'] && calibrateTokens === null) throw new UserError('--calibrate-bos: only with --calibrate-tokens N');
    const runner = openRunner(flags);
    try {
      const atlas = Atlas.open(dbPath);
      const tty = process.stderr.isTTY === true;
      let last = 0;
      try {
        const summary = await buildScan({
          atlas,
          runner,
          blocks,
          hook,
          features,
          corpus,
          window,
          maxTokens,
          bos: flags['no-bos'] !== true && expectsBos(runner),
          direction,
          batch,
          topk,
          binExamples,
          calibrateTokens,
          calibrateBos: flags['calibrate-bos'] === true,
          onProgress: (p) => {
            const line = `scan: chunk ${p.chunk}/${p.chunks}, ${p.windows}/${p.totalWindows} windows`;
            if (tty) process.stderr.write(`\r${line}\x1b[K${p.windows === p.totalWindows && p.chunk === p.chunks ? '\n' : ''}`);
            else if (Date.now() - last >= 10_000 || (p.windows === p.totalWindows && p.chunk === p.chunks)) {
              process.stderr.write(line + '\n');
              last = Date.now();
            }
          },
          onHash: (file, bytes) => process.stderr.write(`hashing ${file} (${(bytes / 2 ** 20).toFixed(1)} MiB)…\n`),
        });
        if (flags.json) printJson({ db: dbPath, ...summary });
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
