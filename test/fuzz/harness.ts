/**
 * The fuzz harness: seeded cases per format through the library in-process, and a sample through the CLI as
 * subprocesses. A case's seed is derived from (base seed, format, index), so any failure is reproduced by
 * `npm run fuzz -- --format F --seed S --from I --cases 1`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { deriveSeed } from '../../src/util/random.js';
import { modelPath, projectRoot } from '../helpers.js';
import { formats, isCleanUserError, smallTokenizerJson, type Bases, type Format } from './formats.js';
import { Rng } from './mutate.js';

export const RSS_LIMIT = 1024 ** 3;
const CLI_TIMEOUT_MS = 60_000;
const ENTRY = path.join(projectRoot, 'dist/src/cli/entry.js');

export interface Failure {
  format: string;
  index: number;
  seed: number;
  label: string;
  problem: string;
}

export interface Tally {
  format: string;
  cases: number;
  ok: number;
  userErrors: number;
  failures: Failure[];
  /** Subprocess tier only: the largest peak RSS seen, bytes. */
  maxRss?: number;
}

/** Base files, and an atlas built by the CLI itself (a real atlas build on stories260K). */
export function prepareBases(work: string): Bases {
  mkdirSync(work, { recursive: true });
  const atlas = path.join(work, 'base-atlas.db');
  if (!existsSync(atlas)) {
    const r = spawnSync(process.execPath, [ENTRY, 'atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', atlas, '--blocks', '1,2', '--features', '0-2', '--steps', '2'], {
      encoding: 'utf8',
      env: { ...process.env, LLMF_CACHE: path.join(work, 'cache') },
    });
    if (r.status !== 0) throw new Error(`building the base atlas failed: ${r.stderr}`);
  }
  return {
    gguf: readFileSync(modelPath('stories260K.gguf')),
    bin: readFileSync(modelPath('stories260K.bin')),
    tok: readFileSync(modelPath('tok512.bin')),
    atlas,
    tokenizerJson: smallTokenizerJson(),
  };
}

export function allFormats(bases: Bases): Format[] {
  return formats(bases);
}

export function caseSeed(base: number, format: string, index: number): number {
  return deriveSeed(base, `${format}#${index}`);
}

/** The in-process tier: every case must give a result that passes the format's invariants, or a one-line UserError. */
export function runInProcess(f: Format, opts: { cases: number; seed: number; from?: number; work: string }): Tally {
  const tally: Tally = { format: f.name, cases: 0, ok: 0, userErrors: 0, failures: [] };
  for (let i = opts.from ?? 0; i < (opts.from ?? 0) + opts.cases; i++) {
    const seed = caseSeed(opts.seed, f.name, i);
    const dir = path.join(opts.work, `${f.name}-${i}`);
    const c = f.make(new Rng(seed), dir);
    tally.cases++;
    try {
      f.read(c);
      tally.ok++;
    } catch (e) {
      if (isCleanUserError(e)) tally.userErrors++;
      else tally.failures.push({ format: f.name, index: i, seed, label: c.label, problem: e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return tally;
}

interface CliOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
  rss: number | null;
}

function runCli(args: string[], env: NodeJS.ProcessEnv, rssFile: string): Promise<CliOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [ENTRY, ...args], { env: { ...env, LLMF_FUZZ_RSS: rssFile }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let timedOut = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, CLI_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let rss: number | null = null;
      try {
        rss = Number(readFileSync(rssFile, 'utf8'));
      } catch {
        // no report: the process died before its exit handler (a signal), which is a failure anyway
      }
      resolve({ code, signal, stderr, timedOut, rss });
    });
  });
}

/**
 * What a CLI run may do: exit 0, or exit 2 with one stderr line "llm-features: …". The one documented exception is a
 * --select syntax error, which adds the selection and a caret under the bad character (two lines indented by two).
 */
export function judgeCli(o: CliOutcome): string | null {
  if (o.timedOut) return `timed out after ${CLI_TIMEOUT_MS / 1000} s`;
  if (o.signal) return `killed by ${o.signal}`;
  if (o.rss !== null && o.rss > RSS_LIMIT) return `peak RSS ${(o.rss / 2 ** 20).toFixed(0)} MiB`;
  if (o.code === 0) return null;
  const lines = o.stderr.split('\n').filter((l) => l !== '');
  if (o.code !== 2) return `exit ${o.code}: ${lines[0] ?? ''}`;
  if (!lines[0]?.startsWith('llm-features: ')) return `exit 2 without the one-line message: ${JSON.stringify(o.stderr.slice(0, 200))}`;
  const caret = lines.length === 3 && lines[0].startsWith('llm-features: --select: ') && lines[1]!.startsWith('  ') && /^ +\^$/.test(lines[2]!);
  if (lines.length !== 1 && !caret) return `exit 2 with ${lines.length} stderr lines: ${JSON.stringify(o.stderr.slice(0, 300))}`;
  return null;
}

/** The subprocess tier, `concurrency` runs at a time. */
export async function runSubprocess(f: Format, opts: { cases: number; seed: number; from?: number; work: string; concurrency?: number }): Promise<Tally> {
  const tally: Tally = { format: f.name, cases: 0, ok: 0, userErrors: 0, failures: [], maxRss: 0 };
  const env: NodeJS.ProcessEnv = { ...process.env, LLMF_CACHE: path.join(opts.work, 'cache'), NODE_OPTIONS: `--import=${path.join(projectRoot, 'dist/test/fuzz/rss-report.js')}` };
  delete env.LLMF_DEBUG;
  const indices = Array.from({ length: opts.cases }, (_, k) => (opts.from ?? 0) + k);
  const worker = async () => {
    for (let i = indices.shift(); i !== undefined; i = indices.shift()) {
      const seed = caseSeed(opts.seed ^ 0x5eed, f.name, i);
      const rng = new Rng(seed);
      const dir = path.join(opts.work, `cli-${f.name}-${i}`);
      const c = f.make(rng, dir);
      mkdirSync(dir, { recursive: true });
      const o = await runCli(f.cli(c, rng), env, path.join(dir, 'rss'));
      tally.cases++;
      tally.maxRss = Math.max(tally.maxRss!, o.rss ?? 0);
      const problem = judgeCli(o);
      if (problem) tally.failures.push({ format: f.name, index: i, seed, label: c.label, problem });
      else if (o.code === 0) tally.ok++;
      else tally.userErrors++;
      rmSync(dir, { recursive: true, force: true });
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 2 }, worker));
  return tally;
}

export function formatTally(t: Tally): string {
  const rss = t.maxRss ? `, peak RSS ${(t.maxRss / 2 ** 20).toFixed(0)} MiB` : '';
  return `${t.format.padEnd(20)} ${String(t.cases).padStart(6)} cases: ${t.ok} ok, ${t.userErrors} user errors, ${t.failures.length} failures${rss}`;
}
