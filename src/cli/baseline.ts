import { paramError, UserError } from '../errors.js';
import { exhaustiveScores, summarizeExhaustive, type ExhaustiveResult } from '../features/exhaustive.js';
import { DEFAULT_SETTINGS, layout, normalTokenIds } from '../features/visualize.js';
import { expandSelection } from '../features/selection.js';
import { parseIdList } from '../features/settings.js';
import type { Hook } from '../models/config.js';
import { featureMapOf, featureWidth, type SaeFile } from '../features/sae.js';
import { openRunner, requireTokenizer } from './common.js';
import { printJson, type Command } from './command.js';
import { blocksAndHook, commandSettings } from './settings.js';

interface BaselineSettings {
  tokens: number;
  prefix: number[];
  suffix: number[];
  bos: boolean;
  objective: { direction?: Float32Array };
  topk: number;
  seed: number;
  batch: number;
  sae?: SaeFile;
}

export const baselineCommand: Command = {
  name: 'baseline',
  summary: 'exhaustive single-token baseline: the activation of every vocabulary token, repeated and in context',
  async run(v) {
    const { blocks, hook } = blocksAndHook(v);
    const select = v.need('select');
    const rankIds = v.str('rank-ids');
    const rankText = v.str('rank-text');
    if (rankIds !== undefined && rankText !== undefined) throw new UserError('--rank-ids/--rank-text: give at most one of them');
    const runner = openRunner(v);
    runner.checkRange(blocks);
    const tokenizer = runner.model.tokenizer;
    const s = commandSettings(v, runner.model) as unknown as BaselineSettings;
    if (s.bos && (tokenizer?.bosId ?? null) === null) throw paramError('bos', 'the model has no BOS token');
    const lay = layout({ ...DEFAULT_SETTINGS, blocks, hook, tokens: s.tokens, bos: s.bos, prefix: s.prefix, suffix: s.suffix }, tokenizer?.bosId ?? null);
    if (lay.T > runner.config.maxSeqLen) throw paramError('tokens', `${lay.T} positions exceed the model's context of ${runner.config.maxSeqLen}`);
    const rank = rankIds !== undefined ? parseIdList(rankIds, 'rankIds') : rankText !== undefined ? requireTokenizer(runner.model).encode(rankText) : [];
    runner.checkIds([rank], rankIds !== undefined ? 'rankIds' : 'rankText');
    const map = featureMapOf(s);
    const runs = expandSelection(select, lay.T, featureWidth(runner.config, hook, map));
    const scores = await exhaustiveScores(runner, runs, {
      blocks,
      hook,
      map,
      layout: lay,
      objective: { ...DEFAULT_SETTINGS.objective, ...(s.objective.direction ? { direction: s.objective.direction } : {}) },
      seed: s.seed,
      batch: s.batch,
      contextIds: normalTokenIds(tokenizer, runner.config.vocabSize),
    });
    await runner.close();
    const results = scores.map((x) => summarizeExhaustive(x, s.topk, tokenizer, rank));
    if (v.bool('json')) {
      printJson({
        model: { path: runner.model.path, format: runner.model.format, architecture: runner.config.arch },
        blocks: [blocks[0], blocks[1]],
        hook,
        ids_layout: { T: lay.T, free: lay.free, fixed: Object.fromEntries(lay.fixed) },
        seed: s.seed,
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
