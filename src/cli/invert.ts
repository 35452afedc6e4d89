import { decoderFor } from '../features/embeddings.js';
import { invert, type InvertResult } from '../features/invert.js';
import { inputIds, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { blocksAndHook, invertSettings } from './settings.js';

export const invertCommand: Command = {
  name: 'invert',
  summary: "recover a text from blocks A-B's output: optimise embeddings to match it, decode, compare with the text",
  async run(v) {
    const { blocks, hook } = blocksAndHook(v);
    const runner = openRunner(v);
    const settings = invertSettings(v, runner.model, blocks, hook);
    const ids = inputIds(v, runner.model);
    const result = await invert(runner, decoderFor(runner.model), runner.model.tokenizer, ids, settings);
    await runner.close();
    if (v.bool('json')) {
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
