/**
 * How the experiment scripts run llm-features: through the built CLI, exactly as a user would, so that every number
 * in EXPERIMENTS.md is a CLI output. Each command is shown with the paths a user beside the checkout would type
 * (`../shared/models/…`, `../shared/corpora/…`, `$W` for the scratch folder).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const models = process.env.LLMF_TEST_MODELS ?? path.resolve(root, '../shared/models');
export const corpora = path.resolve(root, '../shared/corpora');
/** Scratch folder for controls and atlases. */
export const W = process.env.LLMF_EXP_DIR ?? '/tmp/llmf-experiments';
const entry = path.join(root, 'dist/src/cli/entry.js');

/** Paths in a command or its output as a user beside the checkout sees them. */
export function relative(text: string): string {
  return text.replaceAll(`${root}/`, '').replaceAll(models, '../shared/models').replaceAll(corpora, '../shared/corpora').replaceAll(W, '$W');
}

export function shown(args: string[]): string {
  const q = (a: string) => (/^[\w@%+=:,./$-]+$/.test(a) ? a : `"${a.replace(/(["\\$`])/g, '\\$1')}"`);
  return ['llm-features', ...args.map((a) => q(relative(a)))].join(' ');
}

export const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

/** Runs the CLI and returns its stdout; a failing command stops the experiment (its stderr is passed through). */
export function cli(args: string[]): string {
  if (!existsSync(entry)) throw new Error(`${entry}: build first (npm run build)`);
  log(shown(args));
  return execFileSync(process.execPath, [entry, ...args], { maxBuffer: 1 << 30, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

export const cliJson = <T>(args: string[]): T => JSON.parse(cli([...args, '--json'])) as T;

/** Replaces the text between `<!-- NAME:begin … -->` and `<!-- NAME:end -->` in a document. */
export function fillSection(doc: string, name: string, body: string, file: string): string {
  const begin = doc.indexOf(`<!-- ${name}:begin`);
  const beginEnd = begin < 0 ? -1 : doc.indexOf('-->', begin) + 3;
  const end = doc.indexOf(`<!-- ${name}:end -->`);
  if (begin < 0 || end < beginEnd) throw new Error(`${file}: no <!-- ${name}:begin --> … <!-- ${name}:end --> section to fill`);
  return doc.slice(0, beginEnd) + '\n' + body + doc.slice(end);
}

/** Median of the finite values; null when there are none. */
export function median(xs: number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** A real-data percentile as the tables print it: p100 only for a value above every real window, two decimals near it. */
export function formatPercentile(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : `p${x >= 99.995 ? '100' : x.toFixed(x >= 99.95 ? 2 : 1)}`;
}

/**
 * Prompts for input recovery: `count` distinct 8-token windows of 48-token stories the model samples itself
 * (`generate --samples`, temperature 1, seeds 1, 2, …), each at an offset drawn from the sample's index so that not
 * every prompt opens a story. Returns the prompts and the generate command (for the document).
 */
export function sampledPrompts(model: string, count: number, out: string): { prompts: number[][]; command: string[] } {
  const command = ['generate', '--model', model, '--samples', '40', '--temperature', '1', '--max-tokens', '48', '--seed', '1', '--out', out];
  cli(command);
  const prompts: number[][] = [];
  const seen = new Set<string>();
  for (const [i, story] of readFileSync(out, 'utf8').split('<|endoftext|>\n').slice(0, -1).entries()) {
    const ids = (JSON.parse(cli(['tokenize', '--model', model, '--text', story])) as { ids: number[] }).ids;
    if (ids.length < 48) continue;
    const at = (i * 7919) % 40;
    const window = ids.slice(at, at + 8);
    if (!seen.has(window.join(','))) prompts.push(window);
    seen.add(window.join(','));
    if (prompts.length === count) break;
  }
  return { prompts, command };
}
