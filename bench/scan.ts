/**
 * Corpus-scan benchmark (a benchmark, not a test): `atlas scan` and the calibration of `visualize --corpus` on
 * stories260K over the shared TinyStories corpus, each command once, in a fresh child process, wall clock from spawn
 * to exit (so start-up, hashing, tokenising and the SQLite commit are included).
 *
 *   node dist/bench/scan.js [--corpus FILE] [--json]
 *
 * Writes bench/results/scan-<UTC stamp>.json and prints a markdown table.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const models = process.env.LLMF_TEST_MODELS ?? path.resolve(root, '../shared/models');
const i = process.argv.indexOf('--corpus');
const corpus = i >= 0 ? process.argv[i + 1]! : path.resolve(root, '../shared/corpora/tinystories-valid-head.txt');
const model = path.join(models, 'stories260K.bin');
const cliPath = path.join(root, 'dist/src/cli/main.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-bench-scan-'));

interface Row {
  what: string;
  args: string[];
  seconds: number;
  stdout: string;
}

function time(what: string, args: string[]): Row {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status}: ${r.stderr}`);
  return { what, args, seconds, stdout: r.stdout.length > 2000 ? r.stdout.slice(0, 2000) + '…' : r.stdout };
}

const db = (name: string) => path.join(dir, `${name}.db`);
const scan = (name: string, extra: string[]) => ['atlas', 'scan', '--model', model, '--db', db(name), '--corpus', corpus, '--json', ...extra];
const vis = (extra: string[]) => ['visualize', '--model', model, '--blocks', '1-5', '--select', '[:, :, 0-63]', '--steps', '0', '--random-draws', '0', '--json', ...extra];
const rows: Row[] = [];
try {
  rows.push(time('scan, blocks 1, resid, features 0-63', scan('b1', ['--blocks', '1', '--features', '0-63'])));
  rows.push(time('same command again (resume: all 64 stored, nothing to do)', scan('b1', ['--blocks', '1', '--features', '0-63'])));
  rows.push(time('scan, blocks 1-5, resid, features 0-63', scan('b15', ['--blocks', '1-5', '--features', '0-63'])));
  rows.push(time('scan, blocks 1-5, mlp, all 172 neurons', scan('mlp', ['--blocks', '1-5', '--hook', 'mlp', '--features', '0-171'])));
  rows.push(time('scan, blocks 1-5, resid, 0-63, --calibrate-tokens 5', scan('cal', ['--blocks', '1-5', '--features', '0-63', '--calibrate-tokens', '5'])));
  rows.push(time('visualize blocks 1-5 [:, :, 0-63], 0 steps (no calibration)', vis([])));
  rows.push(time('same with --corpus (every 5-token window, stride 1)', vis(['--corpus', corpus])));
  rows.push(time('same with --scan-db (the --calibrate-tokens 5 scan)', vis(['--scan-db', db('cal')])));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const first = JSON.parse(rows[0]!.stdout) as { windows: number; tokens: number; corpus: { stories: number } };
const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} logical CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end, Node ${process.version}`;
const table = [
  `corpus ${path.basename(corpus)}: ${first.corpus.stories} stories, ${first.windows} windows of ≤ 64 tokens, ${first.tokens} tokens (BOS per story); ${machine}`,
  '',
  '| command | wall s |',
  '| --- | --- |',
  ...rows.map((r) => `| ${r.what} | ${r.seconds.toFixed(2)} |`),
].join('\n');
process.stdout.write(table + '\n');
const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
mkdirSync(path.join(root, 'bench/results'), { recursive: true });
writeFileSync(path.join(root, `bench/results/scan-${stamp}.json`), JSON.stringify({ machine, corpus, model, rows }, null, 1) + '\n');
