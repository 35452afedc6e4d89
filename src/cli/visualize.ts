import { formatPercentile } from '../features/calibrate.js';
import { decoderFor } from '../features/embeddings.js';
import { Visualizer, type RunResult } from '../features/visualize.js';
import { openRunner, referenceFromFlags } from './common.js';
import { printJson, type Command } from './command.js';
import { blocksAndHook, visualizeSettings } from './settings.js';

export const visualizeCommand: Command = {
  name: 'visualize',
  summary: 'optimise input embeddings to drive a feature; decode them to tokens and verify',
  notes: ['Example: llm-features visualize --model ../shared/models/stories260K.bin --blocks 1-5 --select "[:, :, 0-4]"'],
  async run(v) {
    const { blocks, hook } = blocksAndHook(v);
    const select = v.need('select');
    const runner = openRunner(v);
    const tokenizer = runner.model.tokenizer;
    const settings = visualizeSettings(v, runner.model, blocks, hook);
    const visualizer = new Visualizer(runner, tokenizer, decoderFor(runner.model));
    const progress = process.stderr.isTTY
      ? (done: number, total: number) => process.stderr.write(`\r${bar(done, total)} ${done}/${total} runs${done === total ? '\n' : ''}`)
      : undefined;
    const reference = referenceFromFlags(v, runner);
    const runs = await visualizer.visualize({ select, settings, onProgress: progress, ...(reference ? { reference } : {}) });
    await runner.close();
    if (v.bool('json')) {
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
/** A percentile as text: p99.9, p100 (above every real window); empty without calibration. */
const pct = (x: number | null | undefined) => (x === null || x === undefined ? '' : formatPercentile(x));
/** "p99.9 (0.912)" with a percentile, else the plain value. */
const act = (x: number | null, p: number | null | undefined) => (p === null || p === undefined ? fmt(x) : `${pct(p)} (${fmt(x)})`);

/**
 * Text mode: the selection and verdict, the top-k rows token by token (non-optimised positions in brackets), the
 * activations as percentiles of real text when calibrated, and the rest.
 */
export function formatRun(r: RunResult): string {
  const verdict = r.verdict?.length ? `  — ${r.verdict.map((f) => f.message).join('; ')}` : '';
  const lines = [`${r.select}  blocks ${r.blocks[0]}-${r.blocks[1]}  hook ${r.hook}  ${r.status}${r.error ? `: ${r.error}` : ''}${verdict}`];
  const p = r.percentile ?? null;
  if (r.status === 'ok') {
    const c = r.calibration;
    const ref = c ? `  (percentiles of ${c.windows} real windows of ${c.corpus}; real p50 ${fmt(c.p50)}, p99 ${fmt(c.p99)}, max ${fmt(c.max)})` : '';
    lines.push(`  activation: decoded ${act(r.activation.decoded, p?.decoded)}  random ${act(r.activation.random, p?.random)}  continuous ${act(r.activation.continuous, p?.continuous)}${ref}`);
  }
  (r.topk_cells ?? r.topk_text).forEach((text, i) => lines.push(`  top${i + 1}: ${r.topk_cells ? text : JSON.stringify(text)}`));
  if (r.topk_cells?.some((row) => row.includes('['))) lines.push('  ([x]: fixed context or no gradient — not part of the result; ⟨…⟩: byte-fallback or special token)');
  if (r.status === 'ok') {
    lines.push(`  cosine to decoded tokens: ${r.cosine.map((c) => c.toFixed(2)).join(' ')}  (typical nearest-neighbour cosine ${r.cosine_scale.toFixed(2)}${r.cosine_random ? `; a random vector to its own decode ${r.cosine_random.median.toFixed(2)}` : ''})`);
    lines.push(`  objective: ${fmt(r.objective.initial)} → ${fmt(r.objective.final)}`);
  }
  if (r.skip && r.hook === 'resid') {
    lines.push(r.skip.share === null
      ? `  skip path: share n/a (${r.skip.not_applicable ?? 'unknown'})`
      : `  skip path: ${(r.skip.share * 100).toFixed(0)}% of the optimum's activation is the input embeddings themselves (identity path; the blocks added the rest)`);
  }
  if (r.baseline) {
    const n = r.optimized?.length ?? r.free.length;
    lines.push(`  skip-connection baseline (model-free decode of the selection's direction): ${JSON.stringify(r.baseline.tokens_text[0])} (agrees at ${(r.baseline.agreement * 100).toFixed(0)}% of ${n} optimised positions, activation ${act(r.baseline.activation, p?.skip_baseline)})`);
  }
  if (r.stability) {
    const st = r.stability;
    const n = r.optimized?.length ?? r.free.length;
    const spread = st.percentile ? ` (${pct(st.percentile.min)}–${pct(st.percentile.max)})` : '';
    lines.push(`  seeds: ${st.seeds} starts agree on ${(st.agreement * 100).toFixed(0)}% of top-1 tokens (mean over pairs, ${n} optimised positions); decoded ${fmt(st.decoded.min)}–${fmt(st.decoded.max)}${spread}, mean ${fmt(st.decoded.mean)} ± ${fmt(st.decoded.std)}; shown: start ${st.best} (highest decoded)`);
  }
  if (r.logit_effects) {
    const list = (xs: { text: string; value: number }[]) => xs.slice(0, 5).map((x) => `${JSON.stringify(x.text)} ${x.value >= 0 ? '+' : ''}${x.value.toFixed(2)}`).join(', ');
    lines.push(`  logit effects, promoted (direction through the final norm's gain and the head, no forward pass): ${list(r.logit_effects.promoted)}`);
    lines.push(`  logit effects, suppressed: ${list(r.logit_effects.suppressed)}`);
  }
  if (r.refined) {
    const f = r.refined;
    const ce = (x: number | null) => (x === null ? '' : `, cross-entropy ${x.toFixed(2)}`);
    const climbs = f.starts && f.starts > 1 ? `, ${f.starts} starts, best from ${f.start_row === 0 ? 'the decode' : `decode row ${f.start_row! + 1}`}` : '';
    lines.push(`  refined (${f.method}, ${f.steps} steps${climbs}): ${JSON.stringify(f.text)}  activation ${fmt(f.start_activation)} → ${act(f.activation, p?.refined)}${ce(f.cross_entropy)}`);
    for (const p of f.frontier ?? []) lines.push(`    frontier: activation ${fmt(p.activation)}${ce(p.cross_entropy)}  ${JSON.stringify(p.text)}`);
  }
  if (r.exhaustive) {
    const e = r.exhaustive;
    const best = (xs: { text: string; activation: number }[], ps: number[] | null | undefined) =>
      xs.slice(0, 3).map((b, i) => `${JSON.stringify(b.text)} ${act(b.activation, ps?.[i])}`).join(', ');
    lines.push(`  exhaustive, token repeated: ${best(e.repeated.best, p?.exhaustive_repeated)}; decoded tokens rank ${e.ranked.map((x) => x.repeated_rank).join(' ')} of ${e.vocab}`);
    if (e.context) lines.push(`  exhaustive, token at ${e.context.position} in context: ${best(e.context.best, p?.exhaustive_context)}; decoded token ranks ${e.ranked.map((x) => x.context_rank).join(' ')}`);
  }
  if (r.timings.batch_runs && r.timings.batch_runs > 1) lines.push(`  time: ${(r.timings.optimize_ms / 1000).toFixed(1)} s to optimise the batch of ${r.timings.batch_runs} runs this one was in`);
  return lines.join('\n') + '\n\n';
}
