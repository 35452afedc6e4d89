import { UserError } from '../errors.js';
import { exhaustiveScores, summarizeExhaustive, type ExhaustiveResult } from '../features/exhaustive.js';
import { DEFAULT_SETTINGS, layout, normalTokenIds } from '../features/visualize.js';
import { expandSelection } from '../features/selection.js';
import { HOOKS, hookWidth, type Hook } from '../models/config.js';
import { optNumber, optString, parseBlockRange, parseIds, requireString } from './args.js';
import { MODEL_FLAGS, openRunner, requireTokenizer } from './common.js';
import { printJson, type Command } from './command.js';
import { oneOf, readDirection } from './settings.js';
import { resolveAtFile } from './at-file.js';

export const baselineCommand: Command = {
  name: 'baseline',
  summary: 'exhaustive single-token baseline: the activation of every vocabulary token, repeated and in context',
  usage:
    'llm-features baseline --model PATH --blocks A-B --select "[:, :, F]" [--hook resid|mlp|attn] [--tokens N] [--bos]\n' +
    '  [--prefix TEXT] [--suffix TEXT] [--direction FILE] [--topk K] [--seed S] [--batch N] [--rank-ids 1,2,3 | --rank-text TEXT] [--json]',
  flags: {
    ...MODEL_FLAGS,
    blocks: 'string',
    select: 'string',
    hook: 'string',
    tokens: 'int',
    bos: 'bool',
    prefix: 'string',
    suffix: 'string',
    direction: 'string',
    topk: 'int',
    seed: 'int',
    batch: 'int',
    'rank-ids': 'string',
    'rank-text': 'string',
    json: 'bool',
  },
  async run(flags) {
    const blocks = parseBlockRange(requireString(flags, 'blocks'));
    const select = resolveAtFile(requireString(flags, 'select'), '--select');
    const hook = oneOf<Hook>(flags, 'hook', HOOKS, 'resid');
    const runner = openRunner(flags);
    runner.checkRange(blocks);
    const tokenizer = runner.model.tokenizer;
    const encode = (name: string) => {
      const text = optString(flags, name);
      return text === undefined ? [] : requireTokenizer(runner.model).encode(text);
    };
    const bos = flags.bos === true;
    if (bos && (tokenizer?.bosId ?? null) === null) throw new UserError('--bos: the model has no BOS token');
    const tokens = optNumber(flags, 'tokens', DEFAULT_SETTINGS.tokens, { min: 1, max: 4096 });
    const lay = layout({ ...DEFAULT_SETTINGS, blocks, hook, tokens, bos, prefix: encode('prefix'), suffix: encode('suffix') }, tokenizer?.bosId ?? null);
    if (lay.T > runner.config.maxSeqLen) throw new UserError(`--tokens: ${lay.T} positions exceed the model's context of ${runner.config.maxSeqLen}`);
    const rankIds = optString(flags, 'rank-ids');
    const rankText = optString(flags, 'rank-text');
    if (rankIds !== undefined && rankText !== undefined) throw new UserError('--rank-ids/--rank-text: give at most one of them');
    const rank = rankIds !== undefined ? parseIds(rankIds, '--rank-ids') : rankText !== undefined ? requireTokenizer(runner.model).encode(rankText) : [];
    runner.checkIds([rank], rankIds !== undefined ? '--rank-ids' : '--rank-text');
    const direction = optString(flags, 'direction');
    const seed = optNumber(flags, 'seed', 0);
    const topk = optNumber(flags, 'topk', 10, { min: 1, max: 1000 });
    const runs = expandSelection(select, lay.T, hookWidth(runner.config, hook));
    const scores = await exhaustiveScores(runner, runs, {
      blocks,
      hook,
      layout: lay,
      objective: { ...DEFAULT_SETTINGS.objective, ...(direction ? { direction: readDirection(direction) } : {}) },
      seed,
      batch: optNumber(flags, 'batch', 64, { min: 1, max: 4096 }),
      contextIds: normalTokenIds(tokenizer, runner.config.vocabSize),
    });
    await runner.close();
    const results = scores.map((s) => summarizeExhaustive(s, topk, tokenizer, rank));
    if (flags.json) {
      printJson({
        model: { path: runner.model.path, format: runner.model.format, architecture: runner.config.arch },
        blocks: [blocks[0], blocks[1]],
        hook,
        ids_layout: { T: lay.T, free: lay.free, fixed: Object.fromEntries(lay.fixed) },
        seed,
        runs: results,
      });
      return;
    }
    for (const r of results) process.stdout.write(formatBaseline(r, blocks, hook));
  },
};

export function formatBaseline(r: ExhaustiveResult, blocks: readonly [number, number], hook: Hook): string {
  const lines = [`${r.select}  blocks ${blocks[0]}-${blocks[1]}  hook ${hook}  (${r.vocab} tokens)`];
  const list = (xs: { id: number; text: string; activation: number }[]) =>
    xs.map((b, i) => `    ${String(i + 1).padStart(3)}. ${JSON.stringify(b.text).padEnd(16)} id ${String(b.id).padEnd(6)} ${b.activation.toFixed(4)}`);
  lines.push('  token repeated at every position:', ...list(r.repeated.best));
  if (r.context) {
    lines.push(`  token at position ${r.context.position} in the context ${JSON.stringify(r.context.context_text)}:`, ...list(r.context.best));
  }
  for (const x of r.ranked) {
    const ctx = x.context_rank === null ? '' : `, in context rank ${x.context_rank} (${x.context_activation!.toFixed(4)})`;
    lines.push(`  ${JSON.stringify(x.text)} (id ${x.id}): repeated rank ${x.repeated_rank} (${x.repeated_activation.toFixed(4)})${ctx}`);
  }
  return lines.join('\n') + '\n\n';
}
