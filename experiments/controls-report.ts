/**
 * Renders EXPERIMENTS.md's controls section from experiments/results/controls.json (written by controls.ts). Kept
 * apart from the runner so that a test can re-render the committed JSON and compare it with the document: every
 * number and every "holds / does not hold" in that section is derived here, by the rules stated in the text.
 */
import { formatPercentile } from './cli.js';

/** Per sweep (one model, block range, hook; 64 single features, K seeds each). Shares are 0..1; null = not measured. */
export interface Measured {
  runs: number;
  repeated: number | null;
  model_free_all: number | null;
  model_free_mean: number | null;
  skip_share: number | null;
  skip_verdict: number | null;
  seed_agreement: number | null;
  unstable: number | null;
  decoded: number | null;
  random: number | null;
  decoded_pct: number | null;
  random_pct: number | null;
  high: number | null;
  typical: number | null;
  below_random: number | null;
  cosine: number | null;
  cosine_nn: number | null;
  cosine_random: number | null;
}

export interface ControlsResults {
  settings: { seeds: number; features: string; corpus: string };
  commands: Record<string, string[]>;
  sweeps: Record<string, Measured>;
  compare: Record<string, { agreement: number; chance: number | null; pairs: number; r2: number | null; warnings: string[]; command: string }>;
  selections: Record<string, Measured & { selected_is_model_free: number | null; others_model_free: number | null; command: string }>;
  invert: Record<string, { exact_tokens: number; exact_prompts: number; prompts: number; command: string }>;
}

const f = (x: number | null | undefined, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const pct = formatPercentile;
const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
const table = (head: string[], rows: (string | number)[][]) => [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');
const code = (s: string) => '`' + s.replace(/`/g, "'") + '`';

/** A claim holds against a control only if it beats the control by this margin (shares and agreements, 0..1). */
export const MARGIN = 0.1;

export function renderControls(r: ControlsResults): string {
  const C = (k: string) => r.compare[k];
  const out: string[] = [];
  const models = ['stories260K', 'stories260K-untrained', 'stories260K-kept-embeddings', 'stories-d128-L4', 'stories-d128-L4-untrained', 'stories-d128-L4-kept-embeddings'];

  out.push(`Everything in this section is produced by \`node dist/experiments/controls.js\` (about 35 minutes on this
machine) from the CLI's \`--json\` outputs, stored with the commands in \`experiments/results/controls.json\` and
rendered into this document by \`experiments/controls-report.ts\` (a test checks that the two agree). \`$W\` is a scratch
folder. Sweeps: features ${r.settings.features} of the hook, one run \`[:, :, f]\` each, the original recipe (defaults),
${r.settings.seeds} seeds per feature (\`--seeds ${r.settings.seeds}\`: the record keeps the best start and the starts'
agreement), percentiles against every window of \`${r.settings.corpus}\` (\`--corpus\`).

**Controls.** *untrained*: \`random-model\` — same architecture and tokenizer, every weight redrawn, its own random
embedding table. *kept-embeddings*: \`random-model --keep-embeddings\` — the trained embedding table, final norm and
head kept bit for bit, only the blocks redrawn. Whatever the kept-embeddings control reproduces needs no trained
block: the embedding table and the residual (skip) path carry it.

\`\`\`sh
${(r.commands.controls ?? []).join('\n')}
${(r.commands.sweeps ?? []).join('\n')}
\`\`\``);

  // ---- per-sweep numbers -----------------------------------------------------------------------------------------
  const sweepRows: (string | number)[][] = [];
  for (const m of models) {
    for (const key of Object.keys(r.sweeps).filter((k) => k.startsWith(`${m}|`))) {
      const [, blocks, hook] = key.split('|');
      const s = r.sweeps[key]!;
      sweepRows.push([m, blocks!, hook!, f(s.repeated), f(s.model_free_all), f(s.skip_share), f(s.skip_verdict), f(s.seed_agreement), pct(s.decoded_pct), pct(s.random_pct), f(s.high), f(s.below_random), `${f(s.cosine)} / ${f(s.cosine_random)} / ${f(s.cosine_nn)}`]);
    }
  }
  out.push(`### Per sweep

Columns: share of features whose top-1 decode is **one token repeated**; share where the **model-free decode** (the
pseudoinverse of the feature's unit vector, no block run) equals the decode at every optimised position; median
**skip share** (the part of the optimum's objective the identity path carries; \`resid\` only) and the share with the
\`skip-path\` verdict; mean **seed agreement** (top-1 agreement between the ${r.settings.seeds} starts); median **decoded** and
**random** activation as real-data percentiles; share of features whose decode reaches ≥ p99 of real text, and share
decoding *below* random tokens; median **cosine** between an optimised embedding and its decoded token / the same for a
random vector and its own decode (the yardstick: what no optimisation at all gives) / the model's typical
nearest-neighbour cosine between real tokens.

${table(['model', 'blocks', 'hook', 'repeated', 'model-free = decode', 'skip share', 'skip-path', 'seed agreement', 'decoded', 'random', '≥ p99', '< random', 'cosine / random vector / NN'], sweepRows)}`);

  // ---- alignment across layers ---------------------------------------------------------------------------------
  const alignRows: (string | number)[][] = [];
  for (const k of ['2', '3', '4', '5', '1-5']) {
    const t = C(`stories260K|1 vs ${k}`);
    const u = C(`stories260K-untrained|1 vs ${k}`);
    const e = C(`stories260K-kept-embeddings|1 vs ${k}`);
    alignRows.push([`stories260K block 1 vs ${k.includes('-') ? `blocks ${k}` : `block ${k} alone`}`, f(t?.agreement), f(u?.agreement), f(e?.agreement), `${f(t?.chance, 3)} / ${f(u?.chance, 3)} / ${f(e?.chance, 3)}`]);
  }
  for (const k of ['4', '1-4']) {
    const t = C(`stories-d128-L4|1 vs ${k}`);
    const u = C(`stories-d128-L4-untrained|1 vs ${k}`);
    const e = C(`stories-d128-L4-kept-embeddings|1 vs ${k}`);
    alignRows.push([`stories-d128-L4 block 1 vs ${k.includes('-') ? `blocks ${k}` : `block ${k} alone`}`, f(t?.agreement), f(u?.agreement), f(e?.agreement), `${f(t?.chance, 3)} / ${f(u?.chance, 3)} / ${f(e?.chance, 3)}`]);
  }
  out.push(`### Aligned across layers, against both controls

Top-1 agreement of the paired features (the same feature index, same settings), from \`atlas compare\`; the chance
level beside it is \`atlas compare\`'s own: each feature paired with the *other* features of the other side.

\`\`\`sh
${C('stories260K|1 vs 5')?.command ?? ''}
\`\`\`

${table(['comparison', 'trained', 'untrained', 'kept-embeddings', 'chance (trained / untrained / kept)'], alignRows)}`);

  // ---- across model sizes --------------------------------------------------------------------------------------
  const idx = C('sizes|index|1 vs 1');
  const idx5 = C('sizes|index|1-5 vs 1-4');
  const voc = C('sizes|vocab|1 vs 1');
  const tu = C('trained vs untrained|1');
  const te = C('trained vs kept-embeddings|1');
  const te5 = C('trained vs kept-embeddings|1-5');
  out.push(`### Identical across model sizes; trained against untrained

stories260K (d 64) and stories-d128-L4 (d 128) share the tokenizer. Paired by feature index (\`--pair index\`, which
\`atlas compare\` refuses unless asked: the two indices name unrelated directions) and through the shared vocabulary
(\`--pair vocab\`: a ridge map from stories260K's embedding space to stories-d128-L4's, fitted on the shared tokens; each
stories260K feature against a stories-d128-L4 record optimised along its mapped direction, built by \`atlas build
--map-from\`; the map's fit over the 512 shared tokens: R² ${f(voc?.r2, 3)}).

\`\`\`sh
${(r.commands.vocab ?? []).join('\n')}
${voc?.command ?? ''}
\`\`\`

${table(['comparison', 'agreement', 'chance', 'pairs'], [
    ['stories260K vs stories-d128-L4, block 1, by index', f(idx?.agreement, 3), f(idx?.chance, 3), idx?.pairs ?? '–'],
    ['stories260K blocks 1-5 vs stories-d128-L4 blocks 1-4, by index', f(idx5?.agreement, 3), f(idx5?.chance, 3), idx5?.pairs ?? '–'],
    ['stories260K vs stories-d128-L4, block 1, through the vocabulary', f(voc?.agreement, 3), f(voc?.chance, 3), voc?.pairs ?? '–'],
    ['stories260K vs its untrained control, block 1, by index', f(tu?.agreement, 3), f(tu?.chance, 3), tu?.pairs ?? '–'],
    ['stories260K vs its kept-embeddings control, block 1', f(te?.agreement, 3), f(te?.chance, 3), te?.pairs ?? '–'],
    ['stories260K vs its kept-embeddings control, blocks 1-5', f(te5?.agreement, 3), f(te5?.chance, 3), te5?.pairs ?? '–'],
  ])}`);

  // ---- selections ----------------------------------------------------------------------------------------------
  const selRows: (string | number)[][] = [];
  for (const kind of ['one-position', 'combined']) {
    for (const key of Object.keys(r.selections).filter((k) => k.startsWith(`${kind}|`))) {
      const [, m, blocks] = key.split('|');
      const s = r.selections[key]!;
      selRows.push([kind, m!, blocks!, s.runs, kind === 'one-position' ? f(s.selected_is_model_free) : '–', kind === 'one-position' ? f(s.others_model_free) : f(s.model_free_mean), f(s.skip_share), f(s.seed_agreement), pct(s.decoded_pct)]);
    }
  }
  out.push(`### One-position placement and combined features

One position: \`[:, 4, f]\` (the last free position; causally, the positions before it are optimised too, those after
it would get no gradient). Combined: \`[:, :, a:a+4]\` for a = 0, 4, …, 60, one objective over four features, whose
model-free decode is the pseudoinverse of the *sum* of the four unit vectors.

\`\`\`sh
${r.selections['one-position|stories260K|1']?.command ?? ''}
${r.selections['combined|stories260K|1']?.command ?? ''}
\`\`\`

${table(['selection', 'model', 'blocks', 'runs', 'selected position = model-free', 'other positions = model-free (combined: all positions)', 'skip share', 'seed agreement', 'decoded'], selRows)}`);

  // ---- input recovery ------------------------------------------------------------------------------------------
  const invRows: (string | number)[][] = [];
  for (const [key, v] of Object.entries(r.invert)) {
    const [m, blocks, recipe] = key.split('|');
    invRows.push([m!, blocks!, recipe === 'original' ? 'original (SGD 2 → 0.2, 500 steps, N(0, 1))' : 'defaults (Adam 0.05 → 0.005, 2000 steps)', `${(100 * v.exact_tokens).toFixed(1)} %`, `${Math.round(v.exact_prompts * v.prompts)}/${v.prompts}`]);
  }
  out.push(`### Input recovery, with the original's recipe and with the defaults

${r.invert['stories260K|1|original']?.prompts ?? '–'} 8-token windows of stories sampled from stories260K (\`generate --samples\`, temperature 1), recovered
from the \`resid\` output of the blocks by \`invert\` (pseudoinverse decode, no refinement).

\`\`\`sh
${(r.commands.invert ?? []).join('\n')}
${r.invert['stories260K|1|original']?.command ?? ''}
\`\`\`

${table(['model', 'blocks', 'recipe', 'exact tokens', 'exact prompts'], invRows)}`);

  out.push(claims(r));
  return out.join('\n\n') + '\n';
}

type Verdict = 'holds' | 'does not hold' | 'holds only as a skip-path effect';

/** The closing table: each claim judged by the stated rule from the numbers above. */
function claims(r: ControlsResults): string {
  const S = (m: string, b: string, h = 'resid') => r.sweeps[`${m}|${b}|${h}`];
  const C = (k: string) => r.compare[k];
  const rows: string[][] = [];
  const add = (claim: string, original: string, measured: string, controls: string, verdict: Verdict, rule: string) =>
    rows.push([claim, original, measured, controls, `**${verdict}** (${rule})`]);
  const n = (x: number | null | undefined) => x ?? NaN;

  {
    const t = S('stories260K', '1');
    const k = S('stories260K-kept-embeddings', '1');
    const u = S('stories260K-untrained', '1');
    const v: Verdict = n(t?.repeated) < 0.5 ? 'does not hold' : n(k?.repeated) >= n(t?.repeated) - MARGIN ? 'holds only as a skip-path effect' : 'holds';
    add('Repeated tokens at block 1', 'block-1 features decode to one token repeated', `${f(t?.repeated)} of features; skip share ${f(t?.skip_share)}; model-free = decode ${f(t?.model_free_all)}`,
      `kept-embeddings ${f(k?.repeated)}, untrained ${f(u?.repeated)}`, v, `holds if ≥ 0.5 and above the kept-embeddings control by ${MARGIN}`);
  }
  {
    const sel = (m: string) => r.selections[`one-position|${m}|1`];
    const t = sel('stories260K');
    const k = sel('stories260K-kept-embeddings');
    const v: Verdict = n(t?.selected_is_model_free) < 0.5 ? 'does not hold' : n(k?.selected_is_model_free) >= n(t?.selected_is_model_free) - MARGIN ? 'holds only as a skip-path effect' : 'holds';
    add('One-position placement', "a one-position objective puts the feature's token at that position", `selected position = model-free token ${f(t?.selected_is_model_free)}; other positions ${f(t?.others_model_free)}`,
      `kept-embeddings ${f(k?.selected_is_model_free)}, untrained ${f(sel('stories260K-untrained')?.selected_is_model_free)}`, v, `holds if ≥ 0.5 and above the kept-embeddings control by ${MARGIN}`);
  }
  {
    const t = r.selections['combined|stories260K|1'];
    const t5 = r.selections['combined|stories260K|1-5'];
    const k = r.selections['combined|stories260K-kept-embeddings|1'];
    const v: Verdict = n(t?.model_free_mean) >= 0.5 ? 'does not hold' : 'holds';
    add('Combined features', 'combining features gives unpredictable tokens', `${f(t?.model_free_mean)} of positions (block 1), ${f(t5?.model_free_mean)} (blocks 1-5) equal the model-free decode of the summed directions`,
      `kept-embeddings ${f(k?.model_free_mean)}`, v, 'does not hold if the model-free decode predicts ≥ 0.5 of positions');
  }
  {
    const i = C('sizes|index|1 vs 1');
    const v = C('sizes|vocab|1 vs 1');
    const verdict: Verdict = n(v?.agreement) >= 0.9 ? 'holds' : 'does not hold';
    const shared = n(v?.agreement) > 3 * n(v?.chance) ? `partly shared: ${f(v?.agreement, 3)} through the vocabulary vs chance ${f(v?.chance, 3)}` : 'at chance through the vocabulary too';
    add('Identical across model sizes', 'features are nearly identical between 7b, 13b and 30b', `by index ${f(i?.agreement, 3)} (chance ${f(i?.chance, 3)}); ${shared}`, 'index pairing across embedding spaces is arbitrary (refused by default)', verdict, 'holds if ≥ 0.9 through the vocabulary');
  }
  {
    const t = C('stories260K|1 vs 5');
    const u = C('stories260K-untrained|1 vs 5');
    const k = C('stories260K-kept-embeddings|1 vs 5');
    const ctrl = Math.max(n(u?.agreement), n(k?.agreement));
    const v: Verdict = n(t?.agreement) <= 3 * n(t?.chance) ? 'does not hold' : ctrl >= n(t?.agreement) - MARGIN ? 'holds only as a skip-path effect' : 'holds';
    add('Aligned across layers', 'block 1 and a deeper block alone find the same tokens', `block 1 vs block 5 alone ${f(t?.agreement)} (chance ${f(t?.chance, 3)})`, `untrained ${f(u?.agreement)}, kept-embeddings ${f(k?.agreement)}`, v, `holds if above chance and above both controls by ${MARGIN}`);
  }
  {
    const t1 = S('stories260K', '1');
    const t5 = S('stories260K', '1-5');
    const k1 = S('stories260K-kept-embeddings', '1');
    const k5 = S('stories260K-kept-embeddings', '1-5');
    const drop = n(t1?.repeated) - n(t5?.repeated);
    const dropK = n(k1?.repeated) - n(k5?.repeated);
    const v: Verdict = drop < MARGIN ? 'does not hold' : dropK >= drop - MARGIN ? 'holds only as a skip-path effect' : 'holds';
    add('Heterogeneous deep stacks', 'through many blocks the decodes stop repeating one token', `repeated ${f(t1?.repeated)} (block 1) → ${f(t5?.repeated)} (blocks 1-5); skip share ${f(t1?.skip_share)} → ${f(t5?.skip_share)}`,
      `kept-embeddings ${f(k1?.repeated)} → ${f(k5?.repeated)}`, v, `holds if the drop is ≥ ${MARGIN} and larger than the control's by ${MARGIN}`);
  }
  {
    const o = r.invert['stories260K|1|original'];
    const d = r.invert['stories260K|1|defaults'];
    const o5 = r.invert['stories260K|1-5|original'];
    const u = r.invert['stories260K-untrained|1|original'];
    const v: Verdict = n(o?.exact_tokens) >= 0.9 ? 'holds' : 'does not hold';
    add('Input recovery', "the input is recovered from an early block's output", `original recipe: ${f(o?.exact_tokens)} of tokens at block 1, ${f(o5?.exact_tokens)} at blocks 1-5; tuned defaults: ${f(d?.exact_tokens)} at block 1`,
      `untrained, original recipe: ${f(u?.exact_tokens)} at block 1`, v, "with the original's own recipe; holds if ≥ 0.9 of tokens");
  }
  {
    const t = S('stories260K', '1');
    const t5 = S('stories260K', '1-5');
    const v: Verdict = n(t?.cosine) > n(t?.cosine_random) + MARGIN ? 'holds' : 'does not hold';
    add('Cosine to real tokens', 'the optimised embeddings lie near real tokens', `median cosine ${f(t?.cosine)} (block 1), ${f(t5?.cosine)} (blocks 1-5)`,
      `a random vector to its own decode ${f(t?.cosine_random)}; real tokens' nearest neighbour ${f(t?.cosine_nn)}`, v, `holds if above the random vector's by ${MARGIN}`);
  }
  return `### Where the original's findings hold

The original's statements are paraphrased. Each verdict follows the rule in brackets, applied to the numbers above.

${table(['claim', 'the original', 'measured (stories260K)', 'controls', 'verdict'], rows)}`;
}
