/**
 * The original's claims on stories260K and stories-d128-L4, measured WITH the controls that decide them: the full and
 * the kept-embedding untrained controls, seed spread, chance levels and real-data percentiles (TinyStories).
 *
 *   node dist/experiments/controls.js            # runs every command, writes experiments/results/controls.json
 *   node dist/experiments/controls.js --render   # only re-renders EXPERIMENTS.md's generated section from that file
 *   node dist/experiments/controls.js --resume   # keeps $W: builds resume (finished records are skipped), summaries and
 *                                                # comparisons are redone, selections and input recovery are taken
 *                                                # from the existing results file
 *
 * Every number comes from the llm-features CLI (`--json` outputs), and each is stored beside the command that produced
 * it; EXPERIMENTS.md's section between the `controls:begin` / `controls:end` markers is rendered from the JSON file
 * (experiments/controls-report.ts), so the document cannot drift from what was measured. Scratch files (controls,
 * atlases) go to $LLMF_EXP_DIR (default /tmp/llmf-experiments), shown as `$W` in the commands.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cli, cliJson as json, corpora, fillSection, log, median, models, root, sampledPrompts, shown, W } from './cli.js';
import { renderControls, type ControlsResults, type Measured } from './controls-report.js';

const resultsFile = path.join(root, 'experiments/results/controls.json');
const docFile = path.join(root, 'EXPERIMENTS.md');
const SEEDS = 4;
/** Prompts for input recovery (each is one `invert` process per recipe, model and block range). */
const PROMPTS = 10;
const FEATURES = '0-63';
const CORPUS = path.join(corpora, 'tinystories-valid-head.txt');

// ---- what the CLI returns (the fields this script reads) -------------------------------------------------------
interface Run {
  select: string;
  status: string;
  ids: number[];
  free: number[];
  optimized?: number[];
  topk: number[][];
  cosine: number[];
  cosine_scale: number;
  cosine_random?: { median: number };
  activation: { continuous: number | null; decoded: number | null; random: number | null };
  percentile?: { decoded: number | null; random: number | null; continuous: number | null } | null;
  baseline?: { tokens: number[]; agreement: number } | null;
  skip?: { share: number | null };
  stability?: { agreement: number; decoded: { std: number; mean: number }; percentile: { min: number; max: number } | null } | null;
  verdict?: { code: string }[];
}
/** An exported atlas record: the run's fields, with its model and settings. */
type Record_ = Run & { model: { name: string }; blocks: [number, number]; hook: string; settings: Record<string, unknown> };
interface Comparison {
  top1_agreement: number | null;
  chance: { top1_agreement: number } | null;
  compared: number;
  map: { r2: number } | null;
  warnings: string[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const share = <T>(xs: T[], f: (x: T) => boolean) => (xs.length ? xs.filter(f).length / xs.length : null);
const positions = (r: Run) => r.optimized ?? r.free;
const top1 = (r: Run) => positions(r).map((t) => r.topk[0]![t]!);

/** Per sweep: the numbers every claim below draws from. */
function summarise(runs: Run[]): Measured {
  const ok = runs.filter((r) => r.status === 'ok');
  return {
    runs: ok.length,
    repeated: share(ok, (r) => new Set(top1(r)).size === 1),
    model_free_all: share(ok.filter((r) => r.baseline), (r) => r.baseline!.agreement === 1),
    model_free_mean: mean(ok.filter((r) => r.baseline).map((r) => r.baseline!.agreement)),
    skip_share: median(ok.map((r) => r.skip?.share ?? NaN)),
    skip_verdict: share(ok, (r) => (r.verdict ?? []).some((f) => f.code === 'skip-path')),
    seed_agreement: mean(ok.filter((r) => r.stability).map((r) => r.stability!.agreement)),
    unstable: share(ok, (r) => (r.verdict ?? []).some((f) => f.code === 'unstable')),
    decoded: median(ok.map((r) => r.activation.decoded ?? NaN)),
    random: median(ok.map((r) => r.activation.random ?? NaN)),
    decoded_pct: median(ok.map((r) => r.percentile?.decoded ?? NaN)),
    random_pct: median(ok.map((r) => r.percentile?.random ?? NaN)),
    high: share(ok, (r) => (r.verdict ?? []).some((f) => f.code === 'decoded-high')),
    typical: share(ok, (r) => (r.verdict ?? []).some((f) => f.code === 'decoded-typical')),
    below_random: share(ok, (r) => (r.verdict ?? []).some((f) => f.code === 'decoded-below-random')),
    cosine: median(ok.flatMap((r) => positions(r).map((t) => r.cosine[t]!))),
    cosine_nn: ok[0]?.cosine_scale ?? null,
    cosine_random: ok[0]?.cosine_random?.median ?? null,
  };
}

async function main() {
  if (process.argv.includes('--render')) {
    render(JSON.parse(readFileSync(resultsFile, 'utf8')) as ControlsResults);
    return;
  }
  const resume = process.argv.includes('--resume');
  const previous = resume ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as ControlsResults) : null;
  if (!resume) rmSync(W, { recursive: true, force: true });
  mkdirSync(W, { recursive: true });
  const out: ControlsResults = { settings: { seeds: SEEDS, features: FEATURES, corpus: 'tinystories-valid-head.txt' }, commands: {}, sweeps: {}, compare: {}, selections: {}, invert: {} };
  const note = (key: string, args: string[]) => {
    (out.commands[key] ??= []).push(shown(args));
  };

  // ---- the models and their two untrained controls -------------------------------------------------------------
  const M: Record<string, string> = {
    'stories260K': path.join(models, 'stories260K.bin'),
    'stories-d128-L4': path.join(models, 'stories-d128-L4.bin'),
  };
  for (const [name, file] of Object.entries({ ...M })) {
    for (const [suffix, extra] of [['untrained', []], ['kept-embeddings', ['--keep-embeddings']]] as const) {
      const dir = path.join(W, `${name}-${suffix}`);
      const args = ['random-model', '--like', file, '--out', dir, '--seed', '0', ...extra];
      if (!(resume && existsSync(dir))) cli(args);
      note('controls', args);
      M[`${name}-${suffix}`] = dir;
    }
  }

  // ---- sweeps into one atlas: 64 single features per block range, K seeds each, percentiles from the corpus -----
  const db = path.join(W, 'atlas.db');
  const plan: [string, string, string][] = [
    ['stories260K', '1,2,3,4,5,1-2,1-3,1-4,1-5', 'resid'],
    ['stories260K', '1,1-5', 'mlp'],
    ['stories260K-untrained', '1,2,3,4,5,1-5', 'resid'],
    ['stories260K-untrained', '1,1-5', 'mlp'],
    ['stories260K-kept-embeddings', '1,2,3,4,5,1-5', 'resid'],
    ['stories260K-kept-embeddings', '1,1-5', 'mlp'],
    ['stories-d128-L4', '1,2,3,4,1-4', 'resid'],
    ['stories-d128-L4', '1,1-4', 'mlp'],
    ['stories-d128-L4-untrained', '1,4,1-4', 'resid'],
    ['stories-d128-L4-kept-embeddings', '1,4,1-4', 'resid'],
  ];
  for (const [model, blocks, hook] of plan) {
    const args = ['atlas', 'build', '--db', db, '--model', M[model]!, '--blocks', blocks, '--hook', hook, '--features', FEATURES, '--seeds', String(SEEDS), '--corpus', CORPUS];
    cli(args);
    note('sweeps', args);
  }
  const exportArgs = ['atlas', 'export', '--db', db, '--format', 'json'];
  const records = (JSON.parse(cli(exportArgs)) as { records: Record_[] }).records;
  note('sweeps', exportArgs);
  const groups = new Map<string, Run[]>();
  // The sweeps only (the K-seed records); the `sum` and mapped-direction records below are for --pair vocab.
  for (const r of records.filter((x) => x.settings.seeds === SEEDS)) {
    const key = `${r.model.name.replace(/\.bin$/, '')}|${r.blocks[0] === r.blocks[1] ? r.blocks[0] : r.blocks.join('-')}|${r.hook}`;
    (groups.get(key) ?? groups.set(key, []).get(key)!).push(r);
  }
  for (const [key, runs] of groups) out.sweeps[key] = summarise(runs);

  // ---- comparisons, each with its measured chance level ------------------------------------------------------
  const compare = (key: string, a: string, b: string, extra: string[] = []) => {
    const args = ['atlas', 'compare', '--db', db, '--a', a, '--b', b, ...extra];
    const c = json<Comparison>(args);
    out.compare[key] = { agreement: c.top1_agreement ?? NaN, chance: c.chance?.top1_agreement ?? null, pairs: c.compared, r2: c.map?.r2 ?? null, warnings: c.warnings, command: shown([...args, '--json']) };
  };
  const base = (m: string) => path.basename(M[m]!);
  for (const m of ['stories260K', 'stories260K-untrained', 'stories260K-kept-embeddings']) {
    for (const k of [2, 3, 4, 5]) compare(`${m}|1 vs ${k}`, `model=${base(m)},blocks=1,hook=resid`, `model=${base(m)},blocks=${k},hook=resid`);
    compare(`${m}|1 vs 1-5`, `model=${base(m)},blocks=1,hook=resid`, `model=${base(m)},blocks=1-5,hook=resid`);
  }
  for (const m of ['stories-d128-L4', 'stories-d128-L4-untrained', 'stories-d128-L4-kept-embeddings']) {
    compare(`${m}|1 vs 4`, `model=${base(m)},blocks=1,hook=resid`, `model=${base(m)},blocks=4,hook=resid`);
    compare(`${m}|1 vs 1-4`, `model=${base(m)},blocks=1,hook=resid`, `model=${base(m)},blocks=1-4,hook=resid`);
  }
  for (const [b1, b2] of [['1', '1'], ['1-5', '1-4']]) {
    compare(`sizes|index|${b1} vs ${b2}`, `model=${base('stories260K')},blocks=${b1},hook=resid`, `model=${base('stories-d128-L4')},blocks=${b2},hook=resid`, ['--pair', 'index']);
  }
  compare('trained vs untrained|1', `model=${base('stories260K')},blocks=1,hook=resid`, `model=${base('stories260K-untrained')},blocks=1,hook=resid`, ['--pair', 'index']);
  compare('trained vs kept-embeddings|1', `model=${base('stories260K')},blocks=1,hook=resid`, `model=${base('stories260K-kept-embeddings')},blocks=1,hook=resid`);
  compare('trained vs kept-embeddings|1-5', `model=${base('stories260K')},blocks=1-5,hook=resid`, `model=${base('stories260K-kept-embeddings')},blocks=1-5,hook=resid`);

  // Across sizes through the shared vocabulary: stories260K's features mapped into stories-d128-L4's embedding space
  // (a ridge map between the tables) and optimised along the mapped directions. A direction objective has no ceiling,
  // so stories260K's side is built with the unbounded `sum` objective as well; one seed, no corpus (each mapped
  // direction would need its own real-data reference).
  {
    for (const args of [
      ['atlas', 'build', '--db', db, '--model', M['stories260K']!, '--blocks', '1', '--features', FEATURES, '--objective', 'sum'],
      ['atlas', 'build', '--db', db, '--model', M['stories-d128-L4']!, '--blocks', '1', '--map-from', M['stories260K']!, '--features', FEATURES, '--objective', 'sum'],
    ]) {
      cli(args);
      note('vocab', args);
    }
    compare('sizes|vocab|1 vs 1', `model=${base('stories260K')},blocks=1,hook=resid`, `model=${base('stories-d128-L4')},blocks=1,hook=resid`, ['--pair', 'vocab']);
  }

  // ---- selections the atlas does not sweep: one position, combined features ----------------------------------
  const selection = (key: string, model: string, blocks: string, select: string) => {
    if (previous?.selections[key]) return void (out.selections[key] = previous.selections[key]!);
    const args = ['visualize', '--model', M[model]!, '--blocks', blocks, '--select', select, '--seeds', String(SEEDS), '--corpus', CORPUS];
    const list = json<{ runs: Run[] }>(args).runs;
    out.selections[key] = { ...summarise(list), ...placement(list), command: shown([...args, '--json']) };
  };
  // One position: [:, t, f] for the last position (every position before it is optimised too, causally).
  for (const m of ['stories260K', 'stories260K-untrained', 'stories260K-kept-embeddings']) {
    selection(`one-position|${m}|1`, m, '1', `[:, 4, ${FEATURES}]`);
    selection(`combined|${m}|1`, m, '1', `[:, :, ${Array.from({ length: 16 }, (_, i) => `${4 * i}:${4 * i + 4}`).join(', ')}]`);
    selection(`combined|${m}|1-5`, m, '1-5', `[:, :, ${Array.from({ length: 16 }, (_, i) => `${4 * i}:${4 * i + 4}`).join(', ')}]`);
  }

  // ---- input recovery: the original's recipe and the tuned defaults ------------------------------------------
  if (previous && Object.keys(previous.invert).length > 0) {
    out.invert = previous.invert;
    out.commands.invert = previous.commands.invert ?? [];
  } else inversion(out, M, note);

  mkdirSync(path.dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, JSON.stringify(out, null, 1) + '\n');
  render(out);
}

function inversion(out: ControlsResults, M: Record<string, string>, note: (key: string, args: string[]) => void): void {
  const { prompts, command } = sampledPrompts(M['stories260K']!, PROMPTS, path.join(W, 'prompts.txt'));
  note('invert', command);
  const recipes: Record<string, string[]> = {
    defaults: [],
    original: ['--optimizer', 'sgd', '--lr', '2', '--lr-end', '0.2', '--steps', '500', '--init-std', '1'],
  };
  for (const model of ['stories260K', 'stories260K-untrained']) {
    for (const blocks of ['1', '1-5']) {
      for (const [recipe, extra] of Object.entries(recipes)) {
        let tokens = 0;
        let exact = 0;
        let first = '';
        for (const ids of prompts) {
          const args = ['invert', '--model', M[model]!, '--blocks', blocks, '--ids', ids.join(','), ...extra];
          const r = json<{ exact: number; exact_match: boolean }>(args);
          first ||= shown([...args, '--json']);
          tokens += r.exact;
          exact += r.exact_match ? 1 : 0;
        }
        out.invert[`${model}|${blocks}|${recipe}`] = { exact_tokens: tokens / prompts.length, exact_prompts: exact / prompts.length, prompts: prompts.length, command: first };
      }
    }
  }
}

/** One-position selections: is the selected position's token the model-free decode, and what do the others do? */
function placement(runs: Run[]) {
  const ok = runs.filter((r) => r.status === 'ok' && r.baseline);
  const at = (r: Run, t: number) => r.topk[0]![t]!;
  return {
    selected_is_model_free: share(ok, (r) => at(r, Math.max(...positions(r))) === r.baseline!.tokens[0]),
    others_model_free: mean(ok.map((r) => {
      const rest = positions(r).slice(0, -1);
      return rest.length ? rest.filter((t) => at(r, t) === r.baseline!.tokens[0]).length / rest.length : 0;
    })),
  };
}

function render(results: ControlsResults) {
  writeFileSync(docFile, fillSection(readFileSync(docFile, 'utf8'), 'controls', renderControls(results), docFile));
  log(`${docFile}: controls section rendered`);
}

await main();
