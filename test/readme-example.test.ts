// The README's "Use it from TypeScript" example, as a consumer of the package would use it: extracted from the README,
// type-checked against the published declarations with skipLibCheck: false, compiled and run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { modelsDir, projectRoot } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-consumer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function example(): string {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const section = readme.indexOf('## Use it from TypeScript');
  assert.ok(section >= 0, 'README has the section');
  const start = readme.indexOf('```ts\n', section);
  const end = readme.indexOf('```', start + 6);
  return readme.slice(start + 6, end);
}

test('README example: type-checks in a consumer with skipLibCheck false, runs, and prints a result', () => {
  const code = example().replaceAll('../shared/models', modelsDir());
  // A consumer project: the package installed under node_modules (a link to this checkout, whose package.json
  // "exports" and "types" point into dist/), ESM, strict, no skipLibCheck.
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(projectRoot, path.join(dir, 'node_modules', 'llm-features'), 'dir');
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: false,
        outDir: 'out',
        types: ['node'],
        typeRoots: [path.join(projectRoot, 'node_modules', '@types')],
      },
      files: ['example.ts'],
    }),
  );
  writeFileSync(path.join(dir, 'example.ts'), code);
  const tsc = spawnSync(process.execPath, [path.join(projectRoot, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `tsc:\n${tsc.stdout}${tsc.stderr}`);
  const run = spawnSync(process.execPath, [path.join(dir, 'out', 'example.js')], { encoding: 'utf8', cwd: dir });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.match(lines[0]!, /^ok \S.* \{/, 'status, top-1 text, activations');
  assert.match(run.stdout, /decoded: -?\d/);
  assert.match(lines[lines.length - 1]!, /^\[ 1, 5, 172 \] -?\d/, 'the MLP hook of 5 tokens (BOS + 4)');
});
