/**
 * End to end in a real browser: `atlas build` (the CLI) makes an atlas from stories260K over two block ranges,
 * `serve` (a child process) serves it, and headless Chromium driven by playwright-core walks overview → grid →
 * feature → compare, checking what each page shows against the API, that token text cannot inject markup, and that
 * the feature page's command reproduces the record. Screenshots go to $LLMF_E2E_SCREENSHOTS or
 * <tmpdir>/llm-features-e2e/.
 *
 * Needs Chromium: /usr/bin/chromium or $CHROME_PATH. Without one the test fails (it never skips silently).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Atlas } from '../src/atlas/store.js';
import type { RunResult } from '../src/features/visualize.js';
import { cli } from './cli-helpers.js';
import { modelPath, projectRoot } from './helpers.js';

const CHROME = process.env.CHROME_PATH || '/usr/bin/chromium';
const CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const SHOTS = process.env.LLMF_E2E_SCREENSHOTS || path.join(tmpdir(), 'llm-features-e2e');
const FEATURES = 12;
const XSS = '<img src=x onerror="window.__xss=1">  two  spaces\ttab';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-e2e-'));
const DB = path.join(dir, 'atlas.db');
let browser: Browser | null = null;
let child: ChildProcess | null = null;

after(async () => {
  await browser?.close();
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Start `serve` on a free port: through the CLI when `serve` is registered there, else its command in a child. */
async function startServe(db: string): Promise<{ url: string; proc: ChildProcess }> {
  const args = ['--db', db, '--port', '0', '--host', '127.0.0.1', '--quiet'];
  const registered = cli(['serve', '--help']).code === 0;
  let proc: ChildProcess;
  if (registered) proc = spawn(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  else {
    const url = (p: string) => JSON.stringify(pathToFileURL(path.join(projectRoot, p)).href);
    const script =
      `import { serveCommand } from ${url('dist/src/cli/serve.js')}; import { parseFlags } from ${url('dist/src/cli/args.js')};\n` +
      `await serveCommand.run(parseFlags('serve', process.argv.slice(1), serveCommand.flags));`;
    proc = spawn(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not print its URL within 10 s: ${out} ${err}`)), 10_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
  return { url, proc };
}

/** Navigate (or click) and wait until the page for that fragment has rendered. */
async function rendered(page: Page, action: () => Promise<unknown>): Promise<void> {
  await action();
  await page.waitForFunction(() => {
    const main = document.querySelector('main');
    const route = location.hash.replace(/^#/, '') || '/';
    return main !== null && main.dataset.route === route && !main.hasAttribute('aria-busy');
  });
}

/** What the page draws for a token's text: spaces as ·, tabs as →, newlines as ↵. */
const drawn = (s: string) => s.replace(/ /g, '·').replace(/\t/g, '→').replace(/\n/g, '↵');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function apiJson(url: string): Promise<any> {
  const r = await fetch(url);
  assert.equal(r.status, 200, url);
  return r.json();
}

test('browser: overview → grid → feature → compare on an atlas built from stories260K', async (t) => {
  if (!existsSync(CHROME)) assert.fail(`Chromium not found at ${CHROME}: install it (Debian: apt-get install chromium) or set CHROME_PATH to a Chrome/Chromium binary`);

  // 1. The atlas, through the CLI: two block ranges so compare has something to compare.
  const build = cli(['atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', DB, '--blocks', '1,1-2', '--features', `0-${FEATURES - 1}`, '--steps', '30', '--tokens', '4', '--random-draws', '2', '--json']);
  assert.equal(build.code, 0, build.stderr);
  // A crafted record whose text tries markup injection, whitespace and a tab, in its own group (hook mlp).
  const atlas = Atlas.open(DB);
  const model = atlas.models()[0]!;
  const settings = atlas.groups()[0]!.settings_hash;
  const hostile: RunResult = {
    select: '[:, :, 0]',
    blocks: [1, 1],
    hook: 'mlp',
    settings: {},
    ids: [1, 2, 3, 4],
    free: [0, 1, 2, 3],
    topk: [[300, 301, 302, 303]],
    topk_text: [XSS],
    cosine: [0.5, 0.5, 0.5, 0.5],
    cosine_scale: 0.5,
    activation: { continuous: 1, decoded: 0.5, random: 0 },
    objective: { initial: 2, final: 1 },
    baseline: null,
    loss: [
      [0, 2],
      [1, 1],
    ],
    status: 'ok',
    timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 },
  };
  atlas.insertResults(model.hash, settings, [hostile]);
  atlas.close();

  // 2. serve, 3. the browser.
  const served = await startServe(DB);
  child = served.proc;
  const base = served.url;
  browser = await chromium.launch({ executablePath: CHROME, args: CHROME_ARGS, headless: true });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  mkdirSync(SHOTS, { recursive: true });

  // Overview.
  await rendered(page, () => page.goto(`${base}/`));
  assert.equal(await page.locator('[data-test=summary] .card-value').first().textContent(), String(2 * FEATURES + 1));
  assert.equal(await page.locator('tr[data-test=group]').count(), 3);
  assert.match((await page.locator('[data-test=models]').textContent()) ?? '', /stories260K\.bin.*llama2c-tokenizer\.bin/);
  assert.equal(await page.locator('#db').textContent(), DB);
  await page.screenshot({ path: path.join(SHOTS, '1-overview.png'), fullPage: true });

  // Grid of blocks 1: every feature with its top-1 decode, as the API has it.
  const firstGroup = page.locator('tr[data-test=group]').filter({ hasText: 'resid' }).first();
  assert.match((await firstGroup.textContent()) ?? '', /stories260K\.bin\s*1\s*resid/);
  await rendered(page, () => firstGroup.locator('a[data-test=open-grid]').click());
  const g = await apiJson(`${base}/api/grid?model=${model.hash}&blocks=1&hook=resid`);
  assert.equal(g.cells.length, FEATURES);
  const cells = page.locator('a[data-test=cell]');
  assert.equal(await cells.count(), FEATURES);
  for (let i = 0; i < FEATURES; i++) {
    const c = g.cells[i];
    assert.equal(await cells.nth(i).getAttribute('data-feature'), String(c.feature));
    assert.equal(await cells.nth(i).locator('.top1').textContent(), drawn(c.top1_text), `cell ${i}`);
  }
  await page.screenshot({ path: path.join(SHOTS, '2-grid.png'), fullPage: true });

  // Search narrows the grid to cells whose top-1 text contains the query.
  const probe = g.cells.map((c: { top1_text: string }) => c.top1_text.trim()).find((s: string) => s.length >= 2)!.slice(0, 2);
  await rendered(page, async () => {
    await page.fill('[data-test=search]', probe);
    await page.click('form.controls button[type=submit]');
  });
  const expected = g.cells.filter((c: { top1_text: string }) => c.top1_text.toLowerCase().includes(probe.toLowerCase())).length;
  assert.ok(expected >= 1);
  assert.equal(await cells.count(), expected, `search "${probe}"`);
  await rendered(page, async () => {
    await page.fill('[data-test=search]', 'no such text anywhere');
    await page.click('form.controls button[type=submit]');
  });
  assert.equal(await page.locator('[data-test=no-match]').count(), 1);
  await rendered(page, () => page.goBack());
  await rendered(page, () => page.goBack());

  // Feature page of feature 3.
  const cell = page.locator('a[data-test=cell][data-feature="3"]');
  await rendered(page, () => cell.click());
  const id = g.cells[3].id;
  assert.match(page.url(), new RegExp(`#/feature/${id}$`));
  const rec = await apiJson(`${base}/api/record/${id}`);
  const r = rec.record;
  assert.equal(await page.locator('[data-test=status]').textContent(), 'ok');
  const rows = page.locator('table[data-test=topk] tbody tr');
  assert.equal(await rows.count(), r.topk.length + 1, 'k rank rows and the cosine row');
  for (let k = 0; k < r.topk.length; k++) {
    const toks = rows.nth(k).locator('td .tok');
    for (let tpos = 0; tpos < r.topk[k].length; tpos++) {
      const tid = r.topk[k][tpos];
      assert.equal(await toks.nth(tpos).textContent(), drawn(rec.pieces[String(tid)]), `rank ${k + 1} position ${tpos}`);
      assert.equal(await toks.nth(tpos).getAttribute('title'), `token ${tid} ${JSON.stringify(rec.pieces[String(tid)])}`);
    }
  }
  const cosText = (await page.locator('[data-test=cosines] .cos-value').allTextContents()).map(Number);
  assert.deepEqual(cosText, r.cosine.map((c: number) => Number(c.toFixed(2))));
  const acts = await page.locator('table[data-test=activations] tr').allTextContents();
  assert.ok(acts.includes(`continuous${r.activation.continuous.toFixed(4)}`), acts.join(' | '));
  assert.ok(acts.includes(`decoded${r.activation.decoded.toFixed(4)}`), acts.join(' | '));
  assert.ok(acts.includes(`random tokens${r.activation.random.toFixed(4)}`), acts.join(' | '));
  assert.ok(acts.some((a) => a.startsWith('baseline (skip-connection)')), 'the skip-connection baseline');
  const d = (await page.locator('[data-test=loss-curve]').getAttribute('d')) ?? '';
  assert.equal(d.split(/[ML]/).filter(Boolean).length, r.loss.length, 'one path point per loss sample');
  assert.equal(await page.locator('table[data-test=settings] tr').count(), Object.keys(r.settings).length);
  const command = (await page.locator('[data-test=reproduce]').textContent()) ?? '';
  assert.equal(command, rec.reproduce.visualize);
  assert.match(command, /^llm-features visualize --model \S+stories260K\.bin --blocks 1 --hook resid --select '\[:, :, 3\]' /);
  await page.screenshot({ path: path.join(SHOTS, '3-feature.png'), fullPage: true });

  // The command on the page reproduces the record.
  const rerun = spawnSync('sh', ['-c', `${command.replace(/^llm-features /, `"${process.execPath}" "${path.join(projectRoot, 'dist/src/cli/main.js')}" `)} --json`], { encoding: 'utf8' });
  assert.equal(rerun.status, 0, rerun.stderr);
  const again = JSON.parse(rerun.stdout).runs[0];
  assert.deepEqual(again.ids, r.ids);
  assert.deepEqual(again.topk, r.topk);

  // Compare: feature 3 across blocks 1 and 1-2, agreement highlighted where the top-1 tokens match.
  await rendered(page, () => page.locator('a[data-test=open-compare]').click());
  const c = await apiJson(`${base}/api/compare?feature=3&hook=resid&settings=${r.settings_hash}`);
  assert.equal(c.columns.length, 2);
  const heads = await page.locator('th[data-test=compare-col]').allTextContents();
  assert.equal(heads.length, 2);
  assert.match(heads[0]!, /stories260K\.bin.*blocks 1 · resid/);
  assert.match(heads[1]!, /stories260K\.bin.*blocks 1-2 · resid/);
  const posRows = page.locator('table[data-test=compare] tr.pos-row');
  assert.equal(await posRows.count(), 4);
  for (let tpos = 0; tpos < 4; tpos++) {
    const tds = posRows.nth(tpos).locator('td');
    const [a, b] = [c.columns[0].positions[tpos], c.columns[1].positions[tpos]];
    const agree = a.key === b.key ? 'yes' : 'no';
    assert.equal(await tds.nth(0).getAttribute('data-agree'), agree, `position ${tpos}`);
    assert.equal(await tds.nth(1).getAttribute('data-agree'), agree, `position ${tpos}`);
    assert.equal(await tds.nth(0).locator('.tok').textContent(), drawn(a.text));
  }
  const pair = c.pairs[0];
  const matrix = (await page.locator('table[data-test=pairs] tbody tr').first().textContent()) ?? '';
  assert.ok(matrix.includes(`${Math.round(pair.top1_agreement * 100)}% / ${pair.jaccard.toFixed(2)}`), matrix);
  await page.screenshot({ path: path.join(SHOTS, '4-compare.png'), fullPage: true });

  // Token text is shown as text: no markup injected, whitespace visible.
  await rendered(page, () => page.goto(`${base}/#/grid?model=${model.hash}&blocks=1&hook=mlp`));
  assert.equal(await page.locator('a[data-test=cell] .top1').textContent(), drawn(XSS));
  assert.equal(await page.locator('main img').count(), 0);
  assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
  await page.screenshot({ path: path.join(SHOTS, '5-escaped.png'), fullPage: true });

  // An unknown record and a bad parameter render as errors, not as broken pages.
  await rendered(page, () => page.goto(`${base}/#/feature/999999`));
  assert.equal(await page.locator('h1').textContent(), 'Not found');
  await rendered(page, () => page.goto(`${base}/#/grid?model=${model.hash}&blocks=0&hook=resid`));
  assert.equal(await page.locator('h1').textContent(), 'Bad request');
  assert.match((await page.locator('[data-test=error]').textContent()) ?? '', /blocks are numbered from 1/);

  assert.deepEqual(
    problems.filter((p) => !/status of (400|404)/.test(p)),
    [],
    'no script errors',
  );

  // serve stops cleanly on SIGTERM.
  const exited = new Promise<number | null>((resolve) => child!.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  t.diagnostic(`screenshots in ${SHOTS}`);
});

test('browser: an SAE atlas — its records are latents, labelled as such on the feature page', async () => {
  if (!existsSync(CHROME)) assert.fail(`Chromium not found at ${CHROME}: install it (Debian: apt-get install chromium) or set CHROME_PATH to a Chrome/Chromium binary`);
  const db = path.join(dir, 'sae-atlas.db');
  const sae = path.join(projectRoot, 'test/fixtures/sae-stories260K');
  const build = cli(['atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', db, '--sae', sae, '--features', '5-6', '--steps', '10', '--tokens', '4', '--random-draws', '1', '--json']);
  assert.equal(build.code, 0, build.stderr);
  const served = await startServe(db);
  try {
    browser ??= await chromium.launch({ executablePath: CHROME, args: CHROME_ARGS, headless: true });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const rec = (await apiJson(`${served.url}/api/record/1`)).record;
    assert.equal(rec.sae.d_sae, 512);
    await rendered(page, () => page.goto(`${served.url}/#/feature/1`));
    const title = (await page.locator('h1').textContent()) ?? '';
    assert.match(title, new RegExp(`^SAE latent ${rec.feature} `));
    const where = (await page.locator('main p.muted').first().textContent()) ?? '';
    assert.ok(where.includes(`SAE topk 512 latents (${String(rec.sae.hash).slice(0, 12)})`), where);
    await page.screenshot({ path: path.join(SHOTS, '6-sae-latent.png'), fullPage: true });
    await page.close();
  } finally {
    served.proc.kill('SIGKILL');
  }
});
