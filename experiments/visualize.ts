/**
 * Reproduces the original feature-visualization experiments on stories260K (and the larger stories-d128-L4 with the
 * same tokenizer) and measures what the original only eyeballed. Writes experiments/results/visualize.json; the
 * numbers in EXPERIMENTS.md come from that file.
 *
 *   node dist/experiments/visualize.js [--control DIR]
 *
 * --control DIR: an untrained control made with `llm-features random-model --like stories260K.bin --out DIR`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { DEFAULT_SETTINGS, Visualizer, type RunResult } from '../src/features/visualize.js';
import type { Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import type { BlockRange } from '../src/models/transformer.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const models = process.env.LLMF_TEST_MODELS ?? path.resolve(root, '../shared/models');
const controlFlag = process.argv.indexOf('--control');
const control = controlFlag >= 0 ? process.argv[controlFlag + 1] : undefined;

const FEATURES = '[:, :, 0-63]';
const MLP_FEATURES = '[:, :, 0-63]';

interface Sweep {
  model: string;
  blocks: BlockRange;
  hook: Hook;
  runs: RunResult[];
}

async function sweep(modelPath: string, name: string, blocks: BlockRange, hook: Hook, select: string): Promise<Sweep> {
  const model = loadModel(modelPath);
  const runner = new ModelRunner(model);
  const vis = new Visualizer(runner, model.tokenizer, decoderFor(model));
  const runs = await vis.visualize({ select, settings: { ...DEFAULT_SETTINGS, blocks, hook, batch: 16 } });
  await runner.close();
  process.stderr.write(`${name} blocks ${blocks.join('-')} ${hook}: ${runs.length} runs\n`);
  return { model: name, blocks, hook, runs };
}

const top1 = (r: RunResult) => r.topk[0] ?? [];
const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

/** Share of runs whose top-1 decode is one token repeated at every free position. */
function repeatedShare(s: Sweep): number {
  const ok = s.runs.filter((r) => r.status === 'ok');
  return ok.filter((r) => new Set(r.free.map((t) => top1(r)[t])).size === 1).length / ok.length;
}

/** Mean over paired features of the share of positions whose top-1 tokens agree; and of top-1 token-set Jaccard. */
function agreement(a: Sweep, b: Sweep): { positionwise: number; jaccard: number; pairs: number } {
  let pos = 0;
  let jac = 0;
  let n = 0;
  for (const ra of a.runs) {
    const rb = b.runs.find((r) => r.select === ra.select);
    if (!rb || ra.status !== 'ok' || rb.status !== 'ok') continue;
    const ta = ra.free.map((t) => top1(ra)[t]!);
    const tb = rb.free.map((t) => top1(rb)[t]!);
    pos += ta.filter((x, i) => x === tb[i]).length / ta.length;
    const sa = new Set(ta);
    const sb = new Set(tb);
    const inter = [...sa].filter((x) => sb.has(x)).length;
    jac += inter / new Set([...sa, ...sb]).size;
    n++;
  }
  return { positionwise: pos / n, jaccard: jac / n, pairs: n };
}

/** How often the skip-connection baseline (no model) already gives the optimised top-1 tokens. */
function baselineShare(s: Sweep): { all: number; majority: number } {
  const withBaseline = s.runs.filter((r) => r.baseline && r.status === 'ok');
  return {
    all: withBaseline.filter((r) => r.baseline!.agreement === 1).length / withBaseline.length,
    majority: withBaseline.filter((r) => r.baseline!.agreement >= 0.5).length / withBaseline.length,
  };
}

function activations(s: Sweep) {
  const ok = s.runs.filter((r) => r.status === 'ok');
  return {
    continuous_median: median(ok.map((r) => r.activation.continuous!)),
    decoded_median: median(ok.map((r) => r.activation.decoded!)),
    random_median: median(ok.map((r) => r.activation.random!)),
    decoded_over_continuous_median: median(ok.map((r) => r.activation.decoded! / r.activation.continuous!)),
    decoded_beats_random: ok.filter((r) => r.activation.decoded! > r.activation.random!).length / ok.length,
    cosine_median: median(ok.flatMap((r) => r.free.map((t) => r.cosine[t]!))),
    cosine_scale: ok[0]?.cosine_scale ?? NaN,
  };
}

const small = path.join(models, 'stories260K.bin');
const big = path.join(models, 'stories-d128-L4.bin');
const sweeps: Record<string, Sweep> = {};
const key = (m: string, b: BlockRange, h: Hook) => `${m}|${b.join('-')}|${h}`;
async function run(m: string, file: string, b: BlockRange, h: Hook, select = h === 'mlp' ? MLP_FEATURES : FEATURES) {
  sweeps[key(m, b, h)] = await sweep(file, m, b, h, select);
}

for (const b of [[1, 1], [1, 2], [1, 3], [1, 4], [1, 5], [2, 2], [3, 3], [4, 4], [5, 5]] as BlockRange[]) await run('stories260K', small, b, 'resid');
for (const b of [[1, 1], [1, 4], [4, 4]] as BlockRange[]) await run('stories-d128-L4', big, b, 'resid');
for (const b of [[1, 1], [1, 4]] as BlockRange[]) {
  await run('stories260K', small, b, 'mlp');
  await run('stories-d128-L4', big, b, 'mlp');
}
if (control) for (const b of [[1, 1], [1, 4]] as BlockRange[]) await run('control', control, b, 'resid');

const S = (m: string, b: string, h: Hook = 'resid') => sweeps[`${m}|${b}|${h}`]!;
const results = {
  settings: { features: FEATURES, mlp_features: MLP_FEATURES, ...DEFAULT_SETTINGS, batch: 16 },
  repeated_share: Object.fromEntries(Object.entries(sweeps).map(([k, s]) => [k, repeatedShare(s)])),
  baseline_share: Object.fromEntries(Object.entries(sweeps).filter(([k]) => k.endsWith('resid')).map(([k, s]) => [k, baselineShare(s)])),
  activations: Object.fromEntries(Object.entries(sweeps).map(([k, s]) => [k, activations(s)])),
  agreement: {
    'stories260K block 1 vs block k alone': Object.fromEntries([2, 3, 4, 5].map((k) => [k, agreement(S('stories260K', '1-1'), S('stories260K', `${k}-${k}`))])),
    'stories260K blocks 1-k vs block k alone': Object.fromEntries([2, 3, 4, 5].map((k) => [k, agreement(S('stories260K', `1-${k}`), S('stories260K', `${k}-${k}`))])),
    'stories260K block 1 vs blocks 1-k': Object.fromEntries([2, 3, 4, 5].map((k) => [k, agreement(S('stories260K', '1-1'), S('stories260K', `1-${k}`))])),
    'stories260K vs stories-d128-L4 (resid)': {
      '1-1': agreement(S('stories260K', '1-1'), S('stories-d128-L4', '1-1')),
      '1-4': agreement(S('stories260K', '1-4'), S('stories-d128-L4', '1-4')),
      '4-4': agreement(S('stories260K', '4-4'), S('stories-d128-L4', '4-4')),
    },
    'stories260K vs stories-d128-L4 (mlp)': {
      '1-1': agreement(S('stories260K', '1-1', 'mlp'), S('stories-d128-L4', '1-1', 'mlp')),
      '1-4': agreement(S('stories260K', '1-4', 'mlp'), S('stories-d128-L4', '1-4', 'mlp')),
    },
    ...(control
      ? {
          'stories260K vs untrained control': {
            '1-1': agreement(S('stories260K', '1-1'), S('control', '1-1')),
            '1-4': agreement(S('stories260K', '1-4'), S('control', '1-4')),
          },
        }
      : {}),
  },
};
mkdirSync(path.join(root, 'experiments/results'), { recursive: true });
writeFileSync(path.join(root, 'experiments/results/visualize.json'), JSON.stringify(results, null, 1) + '\n');
process.stdout.write(JSON.stringify(results, null, 1) + '\n');
