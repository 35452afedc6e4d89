import { decoderFor } from '../features/embeddings.js';
import { Visualizer, type RunResult } from '../features/visualize.js';
import { parseBlockRange, requireString } from './args.js';
import { MODEL_FLAGS, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { parseHook, REFINE_USAGE, SETTINGS_FLAGS, settingsFromFlags } from './settings.js';
import { resolveAtFile } from './at-file.js';

export const visualizeCommand: Command = {
  name: 'visualize',
  summary: 'optimise input embeddings to drive a feature; decode them to tokens and verify',
  usage:
    'llm-features visualize --model PATH --blocks A-B --select "[:, :, F]" [--hook resid|mlp|attn] [--tokens N] [--steps N]\n' +
    '  [--lr X] [--lr-end X] [--optimizer sgd|adam] [--objective l1|sum|max] [--C X] [--direction FILE] [--topk K]\n' +
    '  [--decode pinv|nearest-cosine|nearest-l2] [--init randn|random-tokens|tokens:TEXT] [--prefix TEXT] [--suffix TEXT]\n' +
    '  [--bos] [--seed S] [--batch N] [--random-draws N] [--baseline skip-connection|exhaustive] [--json]\n' +
    REFINE_USAGE,
  flags: { ...MODEL_FLAGS, blocks: 'string', select: 'string', hook: 'string', direction: 'string', ...SETTINGS_FLAGS, json: 'bool' },
  async run(flags) {
    const blocks = parseBlockRange(requireString(flags, 'blocks'));
    const select = resolveAtFile(requireString(flags, 'select'), '--select');
    const hook = parseHook(flags);
    const runner = openRunner(flags);
    const tokenizer = runner.model.tokenizer;
    const settings = settingsFromFlags(flags, runner.model, blocks, hook);
    const visualizer = new Visualizer(runner, tokenizer, decoderFor(runner.model));
    const progress = process.stderr.isTTY
      ? (done: number, total: number) => process.stderr.write(`\r${bar(done, total)} ${done}/${total} runs${done === total ? '\n' : ''}`)
      : undefined;
    const runs = await visualizer.visualize({ select, settings, onProgress: progress });
    await runner.close();
    if (flags.json) {
      printJson({ model: { path: runner.model.path, format: runner.model.format, architecture: runner.config.arch }, runs });
      return;
    }
    for (const r of runs) process.stdout.write(formatRun(r));
  },
};

function bar(done: number, total: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

const fmt = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));

/** Text mode: the selection, the top-k rows as the tokenizer decodes them, and the activations. */
export function formatRun(r: RunResult): string {
  const lines = [`${r.select}  blocks ${r.blocks[0]}-${r.blocks[1]}  hook ${r.hook}  ${r.status}${r.error ? `: ${r.error}` : ''}`];
  r.topk_text.forEach((text, i) => lines.push(`  top${i + 1}: ${JSON.stringify(text)}`));
  if (r.status === 'ok') {
    lines.push(`  cosine to decoded tokens: ${r.cosine.map((c) => c.toFixed(2)).join(' ')}  (typical nearest-neighbour cosine ${r.cosine_scale.toFixed(2)})`);
    lines.push(`  activation: continuous ${fmt(r.activation.continuous)}  decoded ${fmt(r.activation.decoded)}  random ${fmt(r.activation.random)}`);
    lines.push(`  objective: ${fmt(r.objective.initial)} → ${fmt(r.objective.final)}`);
  }
  if (r.baseline) {
    lines.push(`  skip-connection baseline: ${JSON.stringify(r.baseline.tokens_text[0])} (agrees at ${(r.baseline.agreement * 100).toFixed(0)}% of positions, activation ${fmt(r.baseline.activation)})`);
  }
  if (r.refined) {
    const f = r.refined;
    const ce = (x: number | null) => (x === null ? '' : `, cross-entropy ${x.toFixed(2)}`);
    const climbs = f.starts && f.starts > 1 ? `, ${f.starts} starts, best from ${f.start_row === 0 ? 'the decode' : `decode row ${f.start_row! + 1}`}` : '';
    lines.push(`  refined (${f.method}, ${f.steps} steps${climbs}): ${JSON.stringify(f.text)}  activation ${fmt(f.start_activation)} → ${fmt(f.activation)}${ce(f.cross_entropy)}`);
    for (const p of f.frontier ?? []) lines.push(`    frontier: activation ${fmt(p.activation)}${ce(p.cross_entropy)}  ${JSON.stringify(p.text)}`);
  }
  if (r.exhaustive) {
    const e = r.exhaustive;
    const best = (xs: { text: string; activation: number }[]) => xs.slice(0, 3).map((b) => `${JSON.stringify(b.text)} ${fmt(b.activation)}`).join(', ');
    lines.push(`  exhaustive, token repeated: ${best(e.repeated.best)}; decoded tokens rank ${e.ranked.map((x) => x.repeated_rank).join(' ')} of ${e.vocab}`);
    if (e.context) lines.push(`  exhaustive, token at ${e.context.position} in context: ${best(e.context.best)}; decoded token ranks ${e.ranked.map((x) => x.context_rank).join(' ')}`);
  }
  return lines.join('\n') + '\n\n';
}
