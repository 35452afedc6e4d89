import { UserError } from '../errors.js';
import { DECODE_MODES, type DecodeMode } from '../features/decode.js';
import { decoderFor } from '../features/embeddings.js';
import { DEFAULT_INVERT, invert, type InvertResult, type InvertSettings } from '../features/invert.js';
import { optNumber } from './args.js';
import { inputIds, MODEL_FLAGS, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { oneOf, parseBlocksAndHook, parseRefineFlags, REFINE_FLAGS, REFINE_USAGE } from './settings.js';

export const invertCommand: Command = {
  name: 'invert',
  summary: "recover a text from blocks A-B's output: optimise embeddings to match it, decode, compare with the text",
  usage:
    'llm-features invert --model PATH --blocks A-B (--text TEXT | --ids 1,2,3) [--bos] [--hook H] [--steps N]\n' +
    '  [--lr X] [--lr-end X] [--optimizer adam|sgd] [--l1 W] [--cosine W] [--decode pinv|nearest-cosine|nearest-l2]\n' +
    '  [--init-scale X] [--restarts N] [--seed S] [--json]\n' +
    REFINE_USAGE.replace('gcg|epo', 'gcg'),
  flags: {
    ...MODEL_FLAGS,
    blocks: 'string',
    text: 'string',
    ids: 'string',
    bos: 'bool',
    hook: 'string',
    steps: 'int',
    lr: 'number',
    'lr-end': 'number',
    optimizer: 'string',
    l1: 'number',
    cosine: 'number',
    decode: 'string',
    'init-scale': 'number',
    restarts: 'int',
    seed: 'int',
    ...REFINE_FLAGS,
    json: 'bool',
  },
  async run(flags) {
    const d = DEFAULT_INVERT;
    const { blocks, hook } = parseBlocksAndHook(flags, d.hook);
    const seed = optNumber(flags, 'seed', d.seed);
    const settings: InvertSettings = {
      blocks,
      hook,
      steps: optNumber(flags, 'steps', d.steps, { min: 0, max: 1_000_000 }),
      lr: optNumber(flags, 'lr', d.lr),
      lrEnd: optNumber(flags, 'lr-end', typeof flags.lr === 'number' && flags['lr-end'] === undefined ? (flags.lr as number) / 10 : d.lrEnd),
      optimizer: oneOf(flags, 'optimizer', ['adam', 'sgd'] as const, d.optimizer),
      l1: optNumber(flags, 'l1', d.l1, { min: 0 }),
      cosine: optNumber(flags, 'cosine', d.cosine, { min: 0 }),
      decode: oneOf<DecodeMode>(flags, 'decode', DECODE_MODES, d.decode),
      initScale: optNumber(flags, 'init-scale', d.initScale, { min: 0 }),
      restarts: optNumber(flags, 'restarts', d.restarts, { min: 1, max: 1024 }),
      seed,
      refine: parseRefineFlags(flags, seed, ['gcg']),
    };
    // invert climbs from its one decode: it has no ranked rows to start from.
    if (flags['refine-starts'] !== undefined) throw new UserError('--refine-starts: not used by invert (it refines its top-1 decode)');
    const runner = openRunner(flags);
    const ids = inputIds(flags, runner.model);
    const result = await invert(runner, decoderFor(runner.model), runner.model.tokenizer, ids, settings);
    await runner.close();
    if (flags.json) {
      printJson({ model: { path: runner.model.path, format: runner.model.format, architecture: runner.config.arch }, ...result });
      return;
    }
    process.stdout.write(formatInvert(result));
  },
};

export function formatInvert(r: InvertResult): string {
  const n = r.free.length;
  const show = (text: string | null, ids: number[]) => (text === null ? ids.join(',') : JSON.stringify(text));
  const lines = [
    `blocks ${r.blocks[0]}-${r.blocks[1]}  hook ${r.hook}`,
    `  original:  ${show(r.text, r.ids)}`,
    `  recovered: ${show(r.recovered, r.recovered_ids)}`,
    `  exact ${n - r.hamming}/${n} positions (${(r.exact * 100).toFixed(0)}%), hamming ${r.hamming}`,
    `  loss: ${r.loss.initial.toPrecision(4)} → ${r.loss.final.toPrecision(4)} (continuous); decoded tokens ${r.loss.decoded.toPrecision(4)}` +
      (r.refined ? `; refined ${r.refined.loss.toPrecision(4)} after ${r.refined.steps} GCG steps` : ''),
    `  original token's rank in the decode: ${r.original_rank.map((x) => (x === null ? '-' : x)).join(' ')}`,
  ];
  return lines.join('\n') + '\n';
}
