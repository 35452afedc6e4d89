/**
 * The demonstrations in EXPERIMENTS.md: each command run with the built CLI and its output kept unedited in
 * experiments/results/demos.json, then rendered between the document's `demos:begin` / `demos:end` markers.
 *
 *   node dist/experiments/demos.js            # runs them (about a minute), writes the JSON, renders the section
 *   node dist/experiments/demos.js --render   # only re-renders the section from the JSON
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cli, corpora, fillSection, log, models, relative, root, shown, W } from './cli.js';

export interface Demo { note: string; command: string; output: string }

const resultsFile = path.join(root, 'experiments/results/demos.json');
const docFile = path.join(root, 'EXPERIMENTS.md');
const small = path.join(models, 'stories260K.bin');
const corpus = path.join(corpora, 'tinystories-valid-head.txt');
const kept = path.join(W, 'stories260K-kept-embeddings');

/** What each demonstration shows, and the command that shows it. */
const DEMOS: [string, string[]][] = [
  ['Block 1, features 0-4, against real text: the decodes repeat one token, the skip path carries the optimum, and the decoded tokens are high for real text.',
    ['visualize', '--model', small, '--blocks', '1', '--select', '[:, :, 0-4]', '--corpus', corpus]],
  ['The same features on the kept-embeddings control (trained embedding table, random blocks): the same tokens, with no trained block.',
    ['visualize', '--model', kept, '--blocks', '1', '--select', '[:, :, 0-4]', '--corpus', corpus]],
  ['Through all five blocks, four seeds per feature: how far the starts agree.',
    ['visualize', '--model', small, '--blocks', '1-5', '--select', '[:, :, 20-22]', '--seeds', '4', '--corpus', corpus]],
  ['One position (the last): the token the model-free decode predicts lands there.',
    ['visualize', '--model', small, '--blocks', '1', '--select', '[:, 4, 7]', '--corpus', corpus]],
  ['Four features combined: the model-free decode of the summed directions.',
    ['visualize', '--model', small, '--blocks', '1', '--select', '[:, :, 0:4]', '--corpus', corpus]],
  ['MLP neurons of block 1: no identity path, so no skip share; logit effects of the neuron\'s output direction.',
    ['visualize', '--model', small, '--blocks', '1', '--hook', 'mlp', '--select', '[:, :, 0-1]', '--corpus', corpus]],
  ["Input recovery with the original's own recipe (SGD 2 → 0.2, 500 steps, N(0, 1) start).",
    ['invert', '--model', small, '--blocks', '1', '--text', 'Once upon a time, there was a little girl', '--optimizer', 'sgd', '--lr', '2', '--lr-end', '0.2', '--steps', '500', '--init-std', '1']],
];

export function renderDemos(demos: Demo[]): string {
  return demos.map((d) => `${d.note}\n\n\`\`\`\n$ ${d.command}\n${d.output.trim() === '' ? '' : `${d.output.trimEnd()}\n`}\`\`\``).join('\n\n') + '\n';
}

function render(demos: Demo[]) {
  writeFileSync(docFile, fillSection(readFileSync(docFile, 'utf8'), 'demos', renderDemos(demos), docFile));
  log(`${docFile}: demos section rendered`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  if (process.argv.includes('--render')) render(JSON.parse(readFileSync(resultsFile, 'utf8')) as Demo[]);
  else {
    mkdirSync(W, { recursive: true });
    rmSync(kept, { recursive: true, force: true });
    cli(['random-model', '--like', small, '--out', kept, '--seed', '0', '--keep-embeddings']);
    const demos = DEMOS.map(([note, args]) => ({ note, command: shown(args), output: relative(cli(args)) }));
    demos.unshift({ note: 'The kept-embeddings control used below.', command: shown(['random-model', '--like', small, '--out', kept, '--seed', '0', '--keep-embeddings']), output: '' });
    mkdirSync(path.dirname(resultsFile), { recursive: true });
    writeFileSync(resultsFile, JSON.stringify(demos, null, 1) + '\n');
    render(demos);
  }
}
