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
const CORPUS = path.join(projectRoot, '..', 'shared', 'corpora', 'tinystories-valid-head.txt');
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

  // 1. The atlas, through the CLI: two block ranges so compare has something to compare, calibrated against the
  // TinyStories corpus (percentiles and verdicts), a corpus scan of blocks 1 (histogram and examples), and the same
  // build on an untrained control with the trained embedding table (random-model --keep-embeddings).
  const flags = ['--features', `0-${FEATURES - 1}`, '--steps', '30', '--tokens', '4', '--random-draws', '2', '--corpus', CORPUS];
  const build = cli(['atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', DB, '--blocks', '1,1-2', ...flags, '--json']);
  assert.equal(build.code, 0, build.stderr);
  const scan = cli(['atlas', 'scan', '--model', modelPath('stories260K.bin'), '--db', DB, '--blocks', '1', '--features', `0-${FEATURES - 1}`, '--corpus', CORPUS, '--max-tokens', '8000']);
  assert.equal(scan.code, 0, scan.stderr);
  const control = path.join(dir, 'stories260K-random');
  const made = cli(['random-model', '--like', modelPath('stories260K.bin'), '--out', control, '--keep-embeddings']);
  assert.equal(made.code, 0, made.stderr);
  const controlBuild = cli(['atlas', 'build', '--model', control, '--db', DB, '--blocks', '1', ...flags]);
  assert.equal(controlBuild.code, 0, controlBuild.stderr);
  const atlas = Atlas.open(DB);
  const model = atlas.models().find((m) => m.name === 'stories260K.bin')!;
  const settings = atlas.groups().find((g) => g.model_hash === model.hash)!.settings_hash;
  // The build produces skip shares, logit effects and skip-path findings itself; two real records of blocks 1 get
  // hand-set values (and a stability, which needs --seeds) so that the page's rendering of known values is tested.
  const contract = (feature: number, share: number, agreement: number) => {
    const row = atlas.db.prepare('SELECT id, result_json FROM records WHERE model_hash = ? AND block_a = 1 AND block_b = 1 AND feature = ?').get(model.hash, feature) as { id: number; result_json: string };
    const res = JSON.parse(row.result_json);
    res.skip = { share };
    res.stability = { seeds: 3, agreement, decoded: { min: 0.1, max: 0.4, mean: 0.25, std: 0.1 }, percentile: res.percentile ? { min: 97.5, max: 99.95 } : null, best: 2 };
    res.logit_effects = {
      promoted: [
        { id: 300, text: ' named', value: 2.5 },
        { id: 301, text: ' Tim', value: 1.25 },
      ],
      suppressed: [{ id: 302, text: ' the', value: -1.5 }],
    };
    // The finding follows the hand-set share against the documented 0.9 threshold, as verdict.ts would.
    const skip = share >= 0.9 ? [{ code: 'skip-path', message: `explained by the skip path (${Math.round(share * 100)} % of the objective)` }] : [];
    res.verdict = [...res.verdict.filter((f: { code: string }) => f.code !== 'skip-path'), ...skip, { code: 'unstable', message: 'unstable across seeds' }];
    if (feature === 3) {
      // A refined prompt and an exhaustive best (built without --refine / --baseline exhaustive, to keep this short),
      // so that their markers are drawn too.
      res.refined = { method: 'gcg', ids: [300, 301, 302, 303], text: 'hand made', activation: res.activation.decoded * 1.5, cross_entropy: 5, start_ids: res.ids, start_activation: res.activation.decoded, start_cross_entropy: 6, steps: 5, evaluations: 50, improvements: 2, converged: false, retokenizes: true };
      res.exhaustive = { vocab: 512, repeated: { best: [{ id: 300, text: ' named', activation: res.activation.decoded * 0.8 }] }, context: null, ranked: [] };
      res.percentile = { ...res.percentile, refined: 99.93, exhaustive_repeated: [99.2] };
    }
    atlas.db.prepare('UPDATE records SET result_json = ? WHERE id = ?').run(JSON.stringify(res), row.id);
  };
  contract(3, 0.9, 0.25);
  contract(5, 0.4, 0.75);
  // A crafted record whose text tries markup injection, whitespace and a tab, in its own group (hook mlp).
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
  assert.equal(await page.locator('[data-test=summary] .card-value').first().textContent(), String(3 * FEATURES + 1));
  assert.equal(await page.locator('tr[data-test=group]').count(), 4);
  assert.ok((await page.locator('tr[data-test=group] a[data-test=open-compare]').count()) >= 3, 'the overview links to compare');
  assert.match((await page.locator('[data-test=models]').textContent()) ?? '', /stories260K\.bin.*llama2c-tokenizer\.bin/);
  assert.equal(await page.locator('#db').textContent(), DB);
  await page.screenshot({ path: path.join(SHOTS, '1-overview.png'), fullPage: true });

  // Grid of blocks 1: every feature with its top-1 decode, as the API has it.
  const firstGroup = page.locator('tr[data-test=group]').filter({ hasText: 'stories260K.bin' }).filter({ hasText: 'resid' }).first();
  assert.match((await firstGroup.textContent()) ?? '', /stories260K\.bin\s*1\s*resid/);
  await rendered(page, () => firstGroup.locator('a[data-test=open-grid]').click());
  const g = await apiJson(`${base}/api/grid?model=${model.hash}&blocks=1&hook=resid`);
  assert.equal(g.cells.length, FEATURES);
  const cells = page.locator('a[data-test=cell]');
  assert.equal(await cells.count(), FEATURES);
  // Each cell is coloured by its decoded percentile's band (the scan's quantile bins); the legend names them.
  const band = (p: number | null) => (p === null ? 'uncal' : p >= 99.9 ? 'p999' : p >= 99 ? 'p99' : p >= 90 ? 'p90' : p >= 50 ? 'p50' : 'p0');
  for (let i = 0; i < FEATURES; i++) {
    const c = g.cells[i];
    assert.equal(await cells.nth(i).getAttribute('data-feature'), String(c.feature));
    assert.equal(await cells.nth(i).locator('.top1').textContent(), drawn(c.top1_text), `cell ${i}`);
    assert.equal(typeof c.pct_decoded, 'number', 'built with --corpus: every record is calibrated');
    assert.equal(await cells.nth(i).getAttribute('data-band'), band(c.pct_decoded), `cell ${i} colour`);
    assert.ok(((await cells.nth(i).textContent()) ?? '').includes(c.pct_text), `cell ${i} shows ${c.pct_text}`);
  }
  assert.match((await page.locator('[data-test=legend]').textContent()) ?? '', /≥ p99\.9.*p99–p99\.9.*p90–p99.*p50–p90.*< p50.*uncalibrated/);
  await page.screenshot({ path: path.join(SHOTS, '2-grid.png'), fullPage: true });

  // Sorting (server-side): by decoded percentile, descending, is the unsorted cells ordered by their percentile.
  const byPct = [...g.cells].sort((a: { pct_decoded: number; feature: number }, b: { pct_decoded: number; feature: number }) => b.pct_decoded - a.pct_decoded || a.feature - b.feature).map((c: { feature: number }) => String(c.feature));
  await rendered(page, async () => {
    await page.selectOption('[data-test=sort]', 'percentile');
    await page.click('form.controls button[type=submit]');
  });
  assert.deepEqual(await cells.evaluateAll((els) => els.map((e) => e.getAttribute('data-feature'))), byPct);
  await page.screenshot({ path: path.join(SHOTS, '2b-grid-by-percentile.png'), fullPage: true });
  // By skip share: the two records that have one come first (0.9 then 0.4), the rest after, by feature.
  await rendered(page, async () => {
    await page.selectOption('[data-test=sort]', 'skip');
    await page.click('form.controls button[type=submit]');
  });
  const skipOrder = await cells.evaluateAll((els) => els.map((e) => e.getAttribute('data-feature')));
  type Cell = { feature: number; skip_share: number | null; verdict: string[] | null };
  const bySkip = [...(g.cells as Cell[])]
    .sort((a, b) => (a.skip_share === null ? 1 : 0) - (b.skip_share === null ? 1 : 0) || (b.skip_share ?? 0) - (a.skip_share ?? 0) || a.feature - b.feature)
    .map((c) => String(c.feature));
  assert.deepEqual(skipOrder, bySkip);
  assert.ok(skipOrder.indexOf('5') > skipOrder.indexOf('3'), 'the hand-set 0.4 sorts after 0.9');
  // By stability, ascending: 0.25 (feature 3) before 0.75 (feature 5).
  await rendered(page, async () => {
    await page.selectOption('[data-test=sort]', 'stability');
    await page.selectOption('[data-test=order]', 'asc');
    await page.click('form.controls button[type=submit]');
  });
  assert.deepEqual((await cells.evaluateAll((els) => els.map((e) => e.getAttribute('data-feature')))).slice(0, 2), ['3', '5']);
  // The verdict filter: only the records whose verdict has the finding, with its count in the menu.
  const codes = g.verdict_counts.map((v: { code: string }) => v.code);
  assert.ok(codes.includes('skip-path') && codes.includes('decoded-high'), codes.join(' '));
  const skipPath = (g.cells as Cell[]).filter((c) => c.verdict?.includes('skip-path')).map((c) => String(c.feature));
  assert.ok(skipPath.includes('3') && !skipPath.includes('5'), `hand-set shares 0.9 and 0.4 against the 0.9 threshold: ${skipPath.join(' ')}`);
  assert.match((await page.locator('[data-test=verdict-filter]').textContent()) ?? '', new RegExp(`skip-path \\(${skipPath.length}\\)`));
  await rendered(page, async () => {
    await page.selectOption('[data-test=sort]', 'feature');
    await page.selectOption('[data-test=order]', '');
    await page.selectOption('[data-test=verdict-filter]', 'skip-path');
    await page.click('form.controls button[type=submit]');
  });
  assert.deepEqual(await cells.evaluateAll((els) => els.map((e) => e.getAttribute('data-feature'))), skipPath);
  for (const v of await cells.evaluateAll((els) => els.map((e) => e.getAttribute('data-verdict') ?? ''))) assert.match(v, /(^| )skip-path( |$)/);
  await page.screenshot({ path: path.join(SHOTS, '2c-grid-verdict-skip-path.png'), fullPage: true });
  await rendered(page, () => page.goto(`${base}/#/grid?model=${model.hash}&blocks=1&hook=resid&settings=${settings}`));

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

  // Feature page of feature 3 (it carries the hand-added issue-13 fields).
  const cell = page.locator('a[data-test=cell][data-feature="3"]');
  await rendered(page, () => cell.click());
  const id = g.cells[3].id;
  assert.match(page.url(), new RegExp(`#/feature/${id}$`));
  const rec = await apiJson(`${base}/api/record/${id}`);
  const r = rec.record;
  // The run's status is apart from the verdict: no green "ok"; the findings are listed with their codes.
  assert.equal(await page.locator('[data-test=status]').textContent(), 'run completed');
  assert.deepEqual(
    await page.locator('ul[data-test=verdict] li').evaluateAll((els) => els.map((e) => e.getAttribute('data-code'))),
    r.verdict.map((f: { code: string }) => f.code),
  );
  assert.ok(r.verdict.some((f: { code: string }) => f.code === 'skip-path'));

  // The real-data histogram: one bar per non-empty bin, a marker per activation labelled with its percentile, and
  // an activation beyond the real range drawn as an off-scale arrow.
  const hist = rec.scan.feature.tokens.histogram;
  assert.equal(await page.locator('[data-test=histogram] [data-test=hist-bar]').count(), hist.counts.filter((c: number) => c > 0).length);
  const hmax = hist.edges[hist.edges.length - 1];
  const hmin = hist.edges[0];
  for (const [kind, value, pctText] of [
    ['continuous', r.activation.continuous, rec.percentile_text.continuous],
    ['decoded', r.activation.decoded, rec.percentile_text.decoded],
    ['random', r.activation.random, rec.percentile_text.random],
    ['refined', r.refined.activation, 'p99.93'],
    ['exhaustive', r.exhaustive.repeated.best[0].activation, 'p99.2'],
  ] as [string, number, string][]) {
    const marker = page.locator(`[data-test=histogram] [data-test=marker][data-kind=${kind}]`);
    assert.equal(await marker.count(), 1, kind);
    assert.equal(await marker.getAttribute('data-offscale'), value > hmax ? 'right' : value < hmin ? 'left' : 'no', kind);
    const label = (await marker.locator('text').textContent()) ?? '';
    assert.ok(label.includes(pctText) && label.startsWith(kind) && label.includes(value.toFixed(2)), `${kind}: ${label} (${pctText})`);
  }
  assert.ok(r.activation.continuous > hmax, 'the continuous optimum lies beyond every real token here');
  await page.locator('[data-test=histogram]').screenshot({ path: path.join(SHOTS, '3a-histogram.png') });

  // Top-activating windows with per-token highlighting: the outlined token is the example's position, carries its
  // activation, and is coloured at least as strongly as any other token of its row.
  const top = rec.scan.feature.top;
  const exRows = page.locator('[data-test=examples] [data-test=example]');
  assert.equal(await exRows.count(), top.length);
  assert.ok(top.length >= 5);
  for (let i = 0; i < 3; i++) {
    const toks = await exRows.nth(i).locator('[data-test=etok]').evaluateAll((els) => els.map((e) => ({ act: Number(e.getAttribute('data-act')), peak: e.classList.contains('peak'), bg: (e as HTMLElement).style.backgroundColor })));
    const peak = toks.filter((x) => x.peak);
    assert.equal(peak.length, 1, `example ${i}`);
    assert.ok(Math.abs(peak[0]!.act - top[i].activation) < 1e-6, `example ${i}: ${peak[0]!.act} vs ${top[i].activation}`);
    assert.ok(toks.every((x) => x.bg !== ''), 'every token is coloured');
    // Colour by activation: the larger |activation|, the darker (rgb lightness), warm for positive, cool for negative.
    const rgb = (bg: string) => (bg.match(/\d+/g) ?? []).map(Number) as [number, number, number];
    const light = (bg: string) => (Math.max(...rgb(bg)) + Math.min(...rgb(bg))) / 2;
    const byMagnitude = [...toks].sort((a, b) => Math.abs(a.act) - Math.abs(b.act));
    for (let j = 1; j < byMagnitude.length; j++) assert.ok(light(byMagnitude[j]!.bg) <= light(byMagnitude[j - 1]!.bg) + 3, `example ${i}: colour follows |activation|`);
    for (const x of toks) if (Math.abs(x.act) > 0.05 * Math.abs(top[i].activation)) assert.equal(rgb(x.bg)[0] > rgb(x.bg)[2], x.act > 0, `example ${i}: hue follows the sign of ${x.act}`);
  }
  assert.equal(await page.locator('[data-test=bins] [data-test=bin]').count(), rec.scan.feature.bins.length);
  assert.deepEqual(
    await page.locator('[data-test=bins] [data-test=bin]').evaluateAll((els) => els.map((e) => e.getAttribute('data-label'))),
    rec.scan.feature.bins.map((b: { label: string }) => b.label),
  );

  // Logit effects, skip share, stability, controls.
  assert.deepEqual(await page.locator('[data-test=promoted] li .tok').allTextContents(), ['·named', '·Tim']);
  assert.deepEqual(await page.locator('[data-test=promoted] li .num').allTextContents(), ['2.500', '1.250']);
  assert.deepEqual(await page.locator('[data-test=suppressed] li .num').allTextContents(), ['-1.500']);
  assert.match((await page.locator('[data-test=skip]').textContent()) ?? '', /90% of the optimum's objective/);
  assert.match((await page.locator('[data-test=stability]').textContent()) ?? '', /3 starts: top-1 agreement 25%.*percentile p97\.5 to p99\.95/);
  const ctl = page.locator('table[data-test=controls] tr[data-test=control]');
  assert.equal(await ctl.count(), 1);
  assert.equal(await ctl.getAttribute('data-kind'), 'control');
  assert.match((await ctl.textContent()) ?? '', /stories260K-random/);
  assert.equal(rec.controls[0].model_name, 'stories260K-random');
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
  assert.ok(acts.includes(`continuous${r.activation.continuous.toFixed(4)}${rec.percentile_text.continuous}`), acts.join(' | '));
  assert.ok(acts.includes(`decoded${r.activation.decoded.toFixed(4)}${rec.percentile_text.decoded}`), acts.join(' | '));
  assert.ok(acts.includes(`random tokens${r.activation.random.toFixed(4)}${rec.percentile_text.random}`), acts.join(' | '));
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
  assert.equal(c.columns.length, 3);
  const heads = await page.locator('th[data-test=compare-col]').allTextContents();
  assert.equal(heads.length, 3);
  assert.match(heads[0]!, /stories260K\.bin.*blocks 1 · resid/);
  assert.match(heads[1]!, /stories260K\.bin.*blocks 1-2 · resid/);
  assert.match(heads[2]!, /stories260K-random.*blocks 1 · resid/);
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

  // Search across every group: the top-1 text of a control record is found from the overview.
  const needle = rec.controls[0].top1_text.trim().slice(0, 3);
  await rendered(page, () => page.goto(`${base}/#/`));
  await rendered(page, async () => {
    await page.fill('[data-test=atlas-search]', needle);
    await page.click('[data-test=search-form] button[type=submit]');
  });
  const found = await apiJson(`${base}/api/search?q=${encodeURIComponent(needle)}`);
  assert.ok(found.hits.some((x: { model_name: string }) => x.model_name === 'stories260K-random'));
  assert.equal(await page.locator('tr[data-test=hit]').count(), found.hits.length);
  await page.screenshot({ path: path.join(SHOTS, '6-search.png'), fullPage: true });

  // An unknown record and a bad parameter render as errors, not as broken pages; an unknown page has its own title.
  await rendered(page, () => page.goto(`${base}/#/feature/999999`));
  assert.equal(await page.locator('h1').textContent(), 'Not found');
  assert.equal(await page.title(), 'Not found · llm-features atlas');
  await rendered(page, () => page.goto(`${base}/#/no-such-page`));
  assert.equal(await page.title(), 'Not found · llm-features atlas');
  const notFound = await page.goto(`${base}/no-such-path`);
  assert.equal(notFound?.status(), 404);
  assert.equal(await page.title(), 'Not found · llm-features atlas');
  await page.screenshot({ path: path.join(SHOTS, '7-not-found.png'), fullPage: true });
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
