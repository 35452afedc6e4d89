/**
 * `npm run fuzz -- [--cases N] [--cli-cases M] [--seed S] [--format NAME] [--from I]`: the soak run of the fuzz suite.
 * N in-process cases per format (default 1000) and M subprocess cases per format (default N / 10), from seed S
 * (default 1). Prints one line per format and tier, then every failure with what reproduces it; exits 1 on any failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allFormats, formatTally, prepareBases, runInProcess, runSubprocess, type Tally } from './harness.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const cases = Number(arg('cases') ?? 1000);
const cliCases = Number(arg('cli-cases') ?? Math.max(1, Math.round(cases / 10)));
const seed = Number(arg('seed') ?? 1);
const from = Number(arg('from') ?? 0);
const only = arg('format');
for (const [k, v] of [['cases', cases], ['cli-cases', cliCases], ['seed', seed], ['from', from]] as const) {
  if (!Number.isSafeInteger(v) || v < 0) {
    process.stderr.write(`fuzz: --${k} must be a non-negative integer\n`);
    process.exit(2);
  }
}

const work = mkdtempSync(path.join(os.tmpdir(), 'llmf-fuzz-'));
const t0 = Date.now();
const tallies: Tally[] = [];
try {
  const bases = prepareBases(work);
  const fmts = allFormats(bases).filter((f) => !only || f.name === only);
  if (fmts.length === 0) throw new Error(`no format named ${only}`);
  console.log(`fuzz: seed ${seed}, ${cases} in-process and ${cliCases} subprocess cases per format, from index ${from}`);
  for (const f of fmts) {
    if (f.name !== 'cli-flags' && cases > 0) {
      const t = runInProcess(f, { cases, seed, from, work });
      tallies.push(t);
      console.log(`in-process  ${formatTally(t)}`);
    }
    if (cliCases > 0) {
      const t = await runSubprocess(f, { cases: cliCases, seed, from, work });
      tallies.push(t);
      console.log(`subprocess  ${formatTally(t)}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const failures = tallies.flatMap((t) => t.failures);
for (const x of failures) console.log(`FAIL ${x.format} #${x.index} (seed ${x.seed}): ${x.problem}  [${x.label.slice(0, 200)}]`);
const total = tallies.reduce((n, t) => n + t.cases, 0);
console.log(`fuzz: ${total} cases, ${failures.length} failures, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
process.exitCode = failures.length ? 1 : 0;
