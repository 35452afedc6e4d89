// The fuzz suite's subprocess tier (test/fuzz/): 10 seeded cases per format through the CLI. Each run must exit 0, or
// exit 2 with one stderr line (a --select syntax error adds its documented caret lines); never a signal, exit 1, a
// timeout or more than 1 GiB peak RSS. A failure names its seed; `npm run fuzz` runs more.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { allFormats, formatTally, prepareBases, runSubprocess } from './fuzz/harness.js';

const CASES = 10;
const SEED = 15;
const work = mkdtempSync(path.join(os.tmpdir(), 'llmf-fuzz-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));
const formats = allFormats(prepareBases(work));

for (const f of formats) {
  test(`fuzz CLI: ${f.name}, ${CASES} cases`, async () => {
    const t = await runSubprocess(f, { cases: CASES, seed: SEED, work });
    assert.equal(t.cases, CASES);
    assert.deepEqual(t.failures.map((x) => `#${x.index} seed ${x.seed}: ${x.problem} [${x.label}]`), [], formatTally(t));
  });
}
