/**
 * Beyond the original: on stories260K, how far discrete refinement (GCG, EPO) and the exhaustive single-token
 * baseline go past the pseudoinverse decode, and how well `invert` recovers text. Writes
 * experiments/results/refine.json and experiments/results/epo-frontier.svg; EXPERIMENTS.md quotes them.
 *
 *   node dist/experiments/refine.js
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { DEFAULT_INVERT, invert } from '../src/features/invert.js';
import { DEFAULT_REFINE } from '../src/features/refine/index.js';
import { DEFAULT_SETTINGS, Visualizer, type RunResult } from '../src/features/visualize.js';
import type { Hook } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';
import type { BlockRange } from '../src/models/transformer.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const models = process.env.LLMF_TEST_MODELS ?? path.resolve(root, '../shared/models');
const model = loadModel(path.join(models, 'stories260K.bin'));
const runner = new ModelRunner(model);
const decoder = decoderFor(model);
const vis = new Visualizer(runner, model.tokenizer, decoder);
const log = (s: string) => process.stderr.write(s + '\n');

const quantiles = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
  return { min: s[0]!, q25: q(0.25), median: q(0.5), q75: q(0.75), max: s[s.length - 1]! };
};

async function refinedSweep(blocks: BlockRange, hook: Hook, starts: number) {
  const t0 = performance.now();
  const runs: RunResult[] = await vis.visualize({
    select: '[:, :, 0-63]',
    settings: { ...DEFAULT_SETTINGS, blocks, hook, batch: 16, refine: { ...DEFAULT_REFINE, starts }, exhaustive: true },
  });
  const seconds = Math.round((performance.now() - t0) / 1000);
  const ok = runs.filter((r) => r.status === 'ok' && r.refined && r.exhaustive);
  const best = (r: RunResult) => r.exhaustive!.repeated.best[0]!.activation;
  const rows = ok.map((r) => ({
    select: r.select,
    continuous: r.activation.continuous!,
    decoded: r.activation.decoded!,
    refined: r.refined!.activation,
    exhaustive_best: best(r),
    random: r.activation.random!,
  }));
  log(`${blocks.join('-')} ${hook}, ${starts} GCG starts: ${rows.length} runs, ${seconds} s`);
  return {
    blocks,
    hook,
    starts,
    seconds,
    runs: rows.length,
    distribution: Object.fromEntries((['continuous', 'decoded', 'refined', 'exhaustive_best', 'random'] as const).map((k) => [k, quantiles(rows.map((r) => r[k]))])),
    refined_beats_exhaustive: rows.filter((r) => r.refined > r.exhaustive_best).length / rows.length,
    refined_at_least_exhaustive: rows.filter((r) => r.refined >= r.exhaustive_best).length / rows.length,
    median_gain_refined_over_decoded: quantiles(rows.map((r) => r.refined - r.decoded)).median,
    rows,
  };
}

async function epoFrontier(blocks: BlockRange, hook: Hook, feature: number) {
  const [r] = await vis.visualize({
    select: `[:, :, ${feature}]`,
    settings: { ...DEFAULT_SETTINGS, blocks, hook, batch: 1, refine: { ...DEFAULT_REFINE, method: 'epo', steps: 40, population: 8 } },
  });
  return { select: r!.select, blocks, hook, decoded: r!.activation.decoded, frontier: r!.refined!.frontier ?? [], members: r!.refined!.members ?? [] };
}

/** A small SVG scatter of the frontier: activation (x) against cross-entropy (y). */
function frontierSvg(points: { activation: number; cross_entropy: number | null; text: string }[], title: string): string {
  const pts = points.filter((p) => p.cross_entropy !== null) as { activation: number; cross_entropy: number; text: string }[];
  const [W, H, P] = [560, 360, 50];
  const xs = pts.map((p) => p.activation);
  const ys = pts.map((p) => p.cross_entropy);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => P + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * P);
  const sy = (y: number) => H - P - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * P);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const sorted = [...pts].sort((a, b) => a.activation - b.activation);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>
<line x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}" stroke="black"/><line x1="${P}" y1="${P}" x2="${P}" y2="${H - P}" stroke="black"/>
<text x="${W / 2}" y="${H - 12}" text-anchor="middle">activation (higher is better) — ${x0.toFixed(2)} … ${x1.toFixed(2)}</text>
<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">cross-entropy, nats (lower = more fluent) — ${y0.toFixed(2)} … ${y1.toFixed(2)}</text>
<polyline fill="none" stroke="#888" points="${sorted.map((p) => `${sx(p.activation).toFixed(1)},${sy(p.cross_entropy).toFixed(1)}`).join(' ')}"/>
${pts.map((p) => `<circle cx="${sx(p.activation).toFixed(1)}" cy="${sy(p.cross_entropy).toFixed(1)}" r="4" fill="#c33"><title>${esc(JSON.stringify(p.text))}: ${p.activation.toFixed(3)}, ${p.cross_entropy.toFixed(2)} nats</title></circle>`).join('\n')}
</svg>
`;
}

async function inversion() {
  // 20 distinct prompts sampled from the model itself: for seeds 1, 2, …, a 48-token story at temperature 1, and from
  // it the 8 tokens at an offset drawn from the seed (1-40), so that not every prompt is the stories' usual opening.
  const prompts: number[][] = [];
  const seen = new Set<string>();
  for (let seed = 1; prompts.length < 20; seed++) {
    const g = await generate(runner, model.tokenizer!, { maxTokens: 48, temperature: 1, seed });
    if (g.ids.length < 49) continue;
    const at = 1 + ((seed * 7919) % 40);
    const ids = g.ids.slice(at, at + 8);
    if (seen.has(ids.join(','))) continue;
    seen.add(ids.join(','));
    prompts.push(ids);
  }
  const out: Record<string, { exact_tokens: number; exact_prompts: number; refined_exact_tokens: number; refined_exact_prompts: number }> = {};
  for (const blocks of [[1, 1], [1, 2], [1, 5]] as BlockRange[]) {
    let tok = 0;
    let exact = 0;
    let rtok = 0;
    let rexact = 0;
    for (const ids of prompts) {
      const r = await invert(runner, decoder, model.tokenizer, ids, { ...DEFAULT_INVERT, blocks, refine: { ...DEFAULT_REFINE } });
      const free = r.free.length;
      const decodedHits = r.free.filter((t) => r.decoded_ids[t] === ids[t]).length;
      tok += decodedHits / free;
      exact += decodedHits === free ? 1 : 0;
      rtok += r.exact;
      rexact += r.exact_match ? 1 : 0;
    }
    const n = prompts.length;
    out[blocks.join('-')] = { exact_tokens: tok / n, exact_prompts: exact / n, refined_exact_tokens: rtok / n, refined_exact_prompts: rexact / n };
    log(`invert ${blocks.join('-')}: ${JSON.stringify(out[blocks.join('-')])}`);
  }
  return { prompts: prompts.map((ids) => model.tokenizer!.decode(ids)), settings: { ...DEFAULT_INVERT, refine: 'gcg (defaults, one start)' }, results: out };
}

const results = {
  model: 'stories260K',
  settings: { visualize: DEFAULT_SETTINGS, refine: DEFAULT_REFINE },
  // The default (3 GCG starts: the decode's first three rows), then 5 starts.
  sweeps: [
    await refinedSweep([1, 5], 'resid', DEFAULT_REFINE.starts),
    await refinedSweep([1, 5], 'mlp', DEFAULT_REFINE.starts),
    await refinedSweep([1, 5], 'resid', 5),
    await refinedSweep([1, 5], 'mlp', 5),
  ],
  epo: await epoFrontier([1, 5], 'resid', 3),
  invert: await inversion(),
};
await runner.close();
mkdirSync(path.join(root, 'experiments/results'), { recursive: true });
writeFileSync(path.join(root, 'experiments/results/refine.json'), JSON.stringify(results, null, 1) + '\n');
writeFileSync(
  path.join(root, 'experiments/results/epo-frontier.svg'),
  frontierSvg(results.epo.frontier, `EPO Pareto frontier, stories260K blocks 1-5 resid ${results.epo.select}`),
);
const { sweeps } = results;
process.stdout.write(
  JSON.stringify({ sweeps: sweeps.map(({ rows: _r, ...s }) => s), invert: results.invert.results, frontier_points: results.epo.frontier.length }, null, 1) + '\n',
);
