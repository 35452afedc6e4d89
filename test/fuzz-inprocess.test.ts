// The fuzz suite's in-process tier (test/fuzz/): 200 seeded corruptions per format through the readers and parsers.
// Each must give a result that passes the format's invariants or a one-line UserError — never another exception.
// A failure names its seed; `npm run fuzz -- --format F --from I --cases 1` reproduces it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { allFormats, formatTally, prepareBases, runInProcess } from './fuzz/harness.js';

const CASES = 200;
const SEED = 15;
const work = mkdtempSync(path.join(os.tmpdir(), 'llmf-fuzz-in-'));
after(() => rmSync(work, { recursive: true, force: true }));
const formats = allFormats(prepareBases(work)).filter((f) => f.name !== 'cli-flags');

for (const f of formats) {
  test(`fuzz in-process: ${f.name}, ${CASES} cases`, () => {
    const t = runInProcess(f, { cases: CASES, seed: SEED, work });
    assert.equal(t.cases, CASES);
    assert.deepEqual(t.failures.map((x) => `#${x.index} seed ${x.seed}: ${x.problem} [${x.label}]`), [], formatTally(t));
    // A suite whose every case is refused (or accepted) tests nothing of the other outcome.
    assert.ok(t.userErrors > 0 && t.ok > 0, formatTally(t));
  });
}
