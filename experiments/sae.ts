/**
 * SAE latents vs raw residual features on stories260K (issue 21, item 4): 64 latents of the fixture SAE
 * (test/fixtures/sae-stories260K, TopK, on blocks.2.hook_resid_post) and the 64 raw `resid` features of the same hook,
 * each optimised from 3 seeds, decoded, refined (GCG) and compared with the exhaustive single-token baseline, every
 * activation as a percentile of real TinyStories windows of the run's shape. Runs the CLI; writes
 * experiments/results/sae.json and renders EXPERIMENTS.md's `sae` section.
 *
 *   node dist/experiments/sae.js            # ~10 minutes on this machine
 *   node dist/experiments/sae.js --render   # only re-renders the section from the JSON
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cliJson, corpora, fillSection, formatPercentile, log, median, models, root, shown } from './cli.js';

const resultsFile = path.join(root, 'experiments/results/sae.json');
const docFile = path.join(root, 'EXPERIMENTS.md');
const SEEDS = 3;

interface Run {
  status: string;
  activation: { decoded: number | null };
  refined?: { activation: number } | null;
  exhaustive?: { repeated: { best: { activation: number }[] } } | null;
  percentile?: { continuous: number | null; decoded: number | null; random: number | null; refined: number | null; exhaustive_repeated: number[] | null } | null;
  stability?: { agreement: number; percentile: { min: number; max: number } | null } | null;
  skip?: { share: number | null } | null;
  verdict?: { code: string }[];
  logit_effects?: { promoted: { text: string; value: number }[] } | null;
  select: string;
}

export interface SaeSummary {
  command: string;
  runs: number;
  median_percentile: Record<'continuous' | 'decoded' | 'random' | 'refined' | 'exhaustive', number | null>;
  /** Percentile 100: above every real window of the run's shape (the best corpus example; EPO's claim). */
  above_every_real_window: Record<'decoded' | 'refined' | 'exhaustive', number>;
  refined_beats_exhaustive: number;
  seed_agreement: number | null;
  median_percentile_range: number | null;
  median_skip_share: number | null;
  verdicts: Record<string, number>;
  example: { select: string; promoted: string } | null;
}
export interface SaeResults { sae: SaeSummary; resid: SaeSummary }

const share = <T>(xs: T[], f: (x: T) => boolean) => (xs.length ? xs.filter(f).length / xs.length : NaN);

function measure(extra: string[]): SaeSummary {
  const args = ['visualize', '--model', path.join(models, 'stories260K.bin'), ...extra, '--select', '[:, :, 0-63]', '--seeds', String(SEEDS), '--refine', 'gcg', '--refine-steps', '30', '--baseline', 'exhaustive', '--corpus', path.join(corpora, 'tinystories-valid-head.txt')];
  const runs = cliJson<{ runs: Run[] }>(args).runs.filter((r) => r.status === 'ok');
  const p = (f: (r: Run) => number | null | undefined) => median(runs.map((r) => f(r) ?? NaN));
  const codes = [...new Set(runs.flatMap((r) => (r.verdict ?? []).map((v) => v.code)))].sort();
  const first = runs.find((r) => r.logit_effects);
  return {
    command: shown([...args, '--json']),
    runs: runs.length,
    median_percentile: {
      continuous: p((r) => r.percentile?.continuous),
      decoded: p((r) => r.percentile?.decoded),
      random: p((r) => r.percentile?.random),
      refined: p((r) => r.percentile?.refined),
      exhaustive: p((r) => r.percentile?.exhaustive_repeated?.[0]),
    },
    above_every_real_window: {
      decoded: share(runs, (r) => r.percentile?.decoded === 100),
      refined: share(runs, (r) => r.percentile?.refined === 100),
      exhaustive: share(runs, (r) => r.percentile?.exhaustive_repeated?.[0] === 100),
    },
    refined_beats_exhaustive: share(runs, (r) => (r.refined?.activation ?? -Infinity) > (r.exhaustive?.repeated.best[0]?.activation ?? Infinity)),
    seed_agreement: median(runs.map((r) => r.stability?.agreement ?? NaN)),
    median_percentile_range: p((r) => (r.stability?.percentile ? r.stability.percentile.max - r.stability.percentile.min : null)),
    median_skip_share: p((r) => r.skip?.share),
    verdicts: Object.fromEntries(codes.map((c) => [c, share(runs, (r) => (r.verdict ?? []).some((v) => v.code === c))])),
    example: first ? { select: first.select, promoted: first.logit_effects!.promoted.slice(0, 5).map((t) => `${JSON.stringify(t.text)} ${t.value >= 0 ? '+' : ''}${t.value.toFixed(2)}`).join(', ') } : null,
  };
}

const f = (x: number | null, d = 2) => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const pc = formatPercentile;
const per = (x: number) => (Number.isFinite(x) ? `${Math.round(100 * x)} %` : '–');

export function renderSae(r: SaeResults): string {
  const row = (label: string, g: (s: SaeSummary) => string) => `| ${label} | ${g(r.sae)} | ${g(r.resid)} |`;
  const codes = [...new Set([...Object.keys(r.sae.verdicts), ...Object.keys(r.resid.verdicts)])].sort();
  return `stories260K, blocks 1-3, \`resid\` (TransformerLens \`blocks.2.hook_resid_post\`), the committed SAE
\`test/fixtures/sae-stories260K\` (512 TopK latents, k = 8, trained by \`scripts/train_sae.py\` on text the model
sampled itself; TinyStories held out: fraction of variance explained 0.890, L0 8). Latents 0–63 against the 64 raw
\`resid\` features of the same hook, with the same settings: the original recipe (on the latent's **pre**-activation),
${SEEDS} seeds per feature (the record keeps the best start), \`--refine gcg\` for 30 steps,
\`--baseline exhaustive\`, and every activation (latents: **post**-activations) as a percentile of the same statistic
on every real 5-token window (100 = above every real window: beyond the best corpus example of that shape).

\`\`\`sh
${r.sae.command}
${r.resid.command}
\`\`\`

| 64 features | SAE latents | raw \`resid\` features |
| --- | --- | --- |
${[
  row('median percentile: continuous optimum', (s) => pc(s.median_percentile.continuous)),
  row('median percentile: decoded tokens', (s) => pc(s.median_percentile.decoded)),
  row('median percentile: random tokens', (s) => pc(s.median_percentile.random)),
  row('median percentile: refined (GCG)', (s) => pc(s.median_percentile.refined)),
  row('median percentile: exhaustive best single token', (s) => pc(s.median_percentile.exhaustive)),
  row('above every real window: decoded', (s) => per(s.above_every_real_window.decoded)),
  row('above every real window: refined (EPO\'s claim)', (s) => `**${per(s.above_every_real_window.refined)}**`),
  row('above every real window: exhaustive best token', (s) => per(s.above_every_real_window.exhaustive)),
  row('refined beats the exhaustive best token', (s) => per(s.refined_beats_exhaustive)),
  row(`seed stability: median top-1 agreement of the ${SEEDS} starts`, (s) => f(s.seed_agreement)),
  row('seed stability: median range of the decoded percentile', (s) => f(s.median_percentile_range, 1)),
  row('median skip share', (s) => (s.median_skip_share === null ? 'n/a (no identity path)' : f(s.median_skip_share))),
  ...codes.map((c) => row(`verdict \`${c}\``, (s) => per(s.verdicts[c] ?? 0))),
].join('\n')}

Logit effects of ${r.sae.example?.select ?? '–'} (its decoder row through the final norm and the head): ${r.sae.example?.promoted ?? '–'}.
`;
}

function render(r: SaeResults) {
  writeFileSync(docFile, fillSection(readFileSync(docFile, 'utf8'), 'sae', renderSae(r), docFile));
  log(`${docFile}: sae section rendered`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  if (process.argv.includes('--render')) render(JSON.parse(readFileSync(resultsFile, 'utf8')) as SaeResults);
  else {
    const results: SaeResults = {
      sae: measure(['--sae', path.join(root, 'test/fixtures/sae-stories260K')]),
      resid: measure(['--blocks', '1-3', '--hook', 'resid']),
    };
    mkdirSync(path.dirname(resultsFile), { recursive: true });
    writeFileSync(resultsFile, JSON.stringify(results, null, 1) + '\n');
    render(results);
  }
}
