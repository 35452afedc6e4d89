/**
 * The viewer's server and JSON API: routes, validation (400), unknown records (404), static files and path
 * traversal, host checks, read-only access, and serving while another process writes to the atlas.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { hashFile } from '../src/atlas/hash.js';
import { Atlas } from '../src/atlas/store.js';
import { parseArgs } from '../src/cli/args.js';
import { serveCommand } from '../src/cli/serve.js';
import { UserError } from '../src/errors.js';
import type { RunResult } from '../src/features/visualize.js';
import type { Hook } from '../src/models/config.js';
import { reproduceCommand, shellQuote } from '../src/server/reproduce.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { AtlasStats } from '../src/server/stats.js';
import { defaultStaticDir } from '../src/server/static.js';
import { modelPath, projectRoot } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-server-'));
const DB = path.join(dir, 'atlas.db');
const MODEL = modelPath('stories260K.bin');
const FAKE_HASH = 'b'.repeat(64);
const S1 = { tokens: 4, steps: 10, lr: 2, lr_end: 0.2, optimizer: 'sgd', objective: 'l1', C: 100, topk: 3, decode: 'pinv', init: 'randn', prefix: [], suffix: [], bos: false, seed: 0, random_draws: 2 };
const S2 = { ...S1, seed: 1 };
const TRICKY = '<img src=x onerror=alert(1)> & "quotes"';

let server: RunningServer;
let realHash: string;
let s1: string;
let s2: string;

/** A made-up visualize result: deterministic token ids in range for a 512-token vocabulary. */
function fake(f: number, blocks: [number, number], hook: Hook, opts: { failed?: boolean; text?: string; extra?: Partial<RunResult> } = {}): RunResult {
  const T = 4;
  const topk = Array.from({ length: 3 }, (_, r) => Array.from({ length: T }, (_, t) => (f * 7 + r * 13 + t * 3 + blocks[1]) % 500));
  if (opts.failed) {
    return {
      select: `[:, :, ${f}]`,
      blocks,
      hook,
      settings: {},
      ids: [],
      free: [0, 1, 2, 3],
      topk: [],
      topk_text: [],
      cosine: [],
      cosine_scale: 0.5,
      activation: { continuous: null, decoded: null, random: null },
      objective: { initial: null, final: null },
      baseline: null,
      loss: [],
      status: 'failed',
      error: `boom ${f} <b>not bold</b>`,
      timings: { optimize_ms: 1, decode_ms: 0, verify_ms: 0 },
    };
  }
  return {
    select: `[:, :, ${f}]`,
    blocks,
    hook,
    settings: {},
    ids: topk[0]!,
    free: [0, 1, 2, 3],
    topk,
    topk_text: topk.map((row, r) => (r === 0 && opts.text !== undefined ? opts.text : row.map((id) => `w${id}`).join(' '))),
    cosine: [0.1, 0.2, 0.3, 0.4],
    cosine_scale: 0.5,
    activation: { continuous: f + 0.5, decoded: f / 2, random: 0.125 },
    objective: { initial: 10, final: 1 },
    baseline: null,
    loss: [
      [0, 10],
      [1, 5],
      [2, 2],
    ],
    status: 'ok',
    timings: { optimize_ms: 1.5, decode_ms: 0.5, verify_ms: 0.25 },
    ...opts.extra,
  };
}

function top1Text(f: number): string | undefined {
  if (f === 7) return '100%_done';
  if (f === 8) return '100 done';
  if (f === 9) return TRICKY;
  if (f % 10 === 0) return `The cat ${f}`;
  return undefined;
}

before(async () => {
  const atlas = Atlas.open(DB);
  realHash = hashFile(MODEL);
  const st = statSync(MODEL, { bigint: true });
  atlas.rememberFileHash(realpathSync(MODEL), Number(st.size), st.mtimeNs.toString(), realHash);
  atlas.upsertModel({ hash: realHash, name: 'stories260K.bin', format: 'llama2c', architecture: 'llama', n_layers: 5, dim: 64, vocab: 512 });
  atlas.upsertModel({ hash: FAKE_HASH, name: 'elsewhere.gguf', format: 'gguf', architecture: 'llama', n_layers: 2, dim: 8, vocab: 512 });
  s1 = atlas.upsertSettings(S1);
  s2 = atlas.upsertSettings(S2);
  atlas.insertResults(
    realHash,
    s1,
    Array.from({ length: 250 }, (_, f) => fake(f, [1, 1], 'resid', { failed: f % 50 === 49, text: top1Text(f) })),
  );
  atlas.insertResults(realHash, s1, Array.from({ length: 10 }, (_, f) => fake(f, [1, 2], 'resid')));
  atlas.insertResults(realHash, s2, Array.from({ length: 5 }, (_, f) => fake(f, [1, 2], 'resid')));
  const refined = { method: 'gcg', ids: [1, 2, 3, 4], text: 'abcd', activation: 9, cross_entropy: 3, start_ids: [5, 6, 7, 8], start_activation: 4, start_cross_entropy: 5, steps: 10, evaluations: 100, improvements: 3, rejected: 0, converged: true, retokenizes: true, settings: {} };
  atlas.insertResults(
    FAKE_HASH,
    s1,
    Array.from({ length: 10 }, (_, f) => fake(f, [1, 1], 'resid', { extra: f === 3 ? ({ refined } as unknown as Partial<RunResult>) : {} })),
  );
  atlas.close();
  server = await startServer({ db: DB, port: 0 });
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request with the path sent exactly as given (fetch would normalise `..` and `%2e`). */
function raw(p: string, opts: { method?: string; headers?: Record<string, string>; base?: RunningServer } = {}): Promise<Reply> {
  const s = opts.base ?? server;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.port, path: p, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function json(p: string, status = 200): Promise<any> {
  const r = await raw(p);
  assert.equal(r.status, status, `${p}: ${r.body}`);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  return JSON.parse(r.body);
}

const grid = (extra: string) => `/api/grid?model=stories260K.bin&blocks=1&hook=resid${extra}`;

// ---------------------------------------------------------------------------------------------------------------

test('binds 127.0.0.1 by default, opens the atlas read-only, sends security headers', async () => {
  assert.equal(server.host, '127.0.0.1');
  assert.equal(server.api.atlas.readonly, true);
  const r = await raw('/');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/html/);
  assert.match(r.body, /<script type="module" src="\/static\/app\.js">/);
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.match(String(r.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  for (const [p, type] of [
    ['/static/app.js', /^text\/javascript/],
    ['/static/style.css', /^text\/css/],
    ['/static/favicon.svg', /^image\/svg\+xml/],
  ] as const) {
    const s = await raw(p);
    assert.equal(s.status, 200, p);
    assert.match(String(s.headers['content-type']), type, p);
  }
  const head = await raw('/static/app.js', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.ok(Number(head.headers['content-length']) > 1000);
});

test('overview: models (with tokenizer when the checkpoint is where the atlas saw it), ranges, hooks, counts, failures', async () => {
  const o = await json('/api/overview');
  assert.equal(o.records, 250 + 10 + 5 + 10);
  assert.equal(o.failed, 5);
  assert.equal(o.ok, o.records - 5);
  assert.deepEqual(o.hooks, ['resid']);
  assert.deepEqual(o.block_ranges, [
    [1, 1],
    [1, 2],
  ]);
  const real = o.models.find((m: { hash: string }) => m.hash === realHash);
  const fakeModel = o.models.find((m: { hash: string }) => m.hash === FAKE_HASH);
  assert.equal(real.tokenizer, 'llama2c-tokenizer.bin');
  assert.equal(real.checkpoint, realpathSync(MODEL));
  assert.equal(fakeModel.tokenizer, null);
  assert.equal(o.groups.length, 4);
  assert.equal(o.failures.length, 5);
  assert.equal(o.failures[0].feature, 249);
  assert.equal(o.failures[0].error, 'boom 249 <b>not bold</b>');
  assert.deepEqual(o.failures[0].blocks, [1, 1]);
  const g = await json('/api/groups');
  assert.equal(g.groups.length, 4);
});

test('grid: keyset paging forwards and backwards, search by top-1 text, status filter, group resolution', async () => {
  const p1 = await json(grid('&limit=100'));
  assert.equal(p1.group.model_hash, realHash);
  assert.equal(p1.group.settings_hash, s1);
  assert.equal(p1.group.records, 250);
  assert.deepEqual(p1.group.features, [0, 249]);
  assert.equal(p1.matched, 250);
  assert.equal(p1.cells.length, 100);
  assert.deepEqual(
    p1.cells.map((c: { feature: number }) => c.feature),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.equal(p1.next_after, 99);
  assert.equal(p1.prev_before, null);
  assert.deepEqual(Object.keys(p1.cells[0]).sort(), ['act_continuous', 'act_decoded', 'act_random', 'feature', 'id', 'pct_decoded', 'pct_text', 'skip_share', 'stability', 'status', 'top1_text', 'verdict']);
  // Records without percentile, skip, stability or verdict (written before them) read as null, not as zero.
  assert.deepEqual([p1.cells[0].pct_decoded, p1.cells[0].pct_text, p1.cells[0].skip_share, p1.cells[0].stability, p1.cells[0].verdict], [null, null, null, null, null]);
  assert.equal(p1.paging, 'feature');
  assert.equal(p1.cells[9].top1_text, TRICKY);
  const p3 = await json(grid('&limit=100&after=199'));
  assert.equal(p3.cells.length, 50);
  assert.equal(p3.next_after, null);
  assert.equal(p3.prev_before, 200);
  assert.equal(p3.cells[49].status, 'failed');
  const back = await json(grid('&limit=100&before=200'));
  assert.deepEqual([back.cells[0].feature, back.cells[99].feature, back.prev_before, back.next_after], [100, 199, 100, 199]);
  const last = await json(grid('&after=249'));
  assert.deepEqual([last.cells.length, last.next_after, last.prev_before], [0, null, 250]);

  // Search: a case-insensitive substring; % and _ are literal.
  const cat = await json(grid('&q=the%20CAT'));
  assert.equal(cat.matched, 25);
  assert.ok(cat.cells.every((c: { top1_text: string }) => c.top1_text.startsWith('The cat')));
  const pct = await json(grid(`&q=${encodeURIComponent('0%_')}`));
  assert.deepEqual(
    pct.cells.map((c: { feature: number }) => c.feature),
    [7],
  );
  const under = await json(grid('&q=_'));
  assert.deepEqual(
    under.cells.map((c: { feature: number }) => c.feature),
    [7],
  );
  const none = await json(grid('&q=zzzz'));
  assert.deepEqual([none.matched, none.cells.length], [0, 0]);
  const failed = await json(grid('&status=failed'));
  assert.deepEqual(
    failed.cells.map((c: { feature: number }) => c.feature),
    [49, 99, 149, 199, 249],
  );

  // Groups: by hash prefix; several settings need settings=; other models by name.
  const byHash = await json(`/api/grid?model=${realHash.slice(0, 8)}&blocks=1&hook=resid&limit=1`);
  assert.equal(byHash.group.records, 250);
  const ambiguous = await json('/api/grid?model=stories260K.bin&blocks=1-2&hook=resid', 400);
  assert.match(ambiguous.error, /names 2 groups/);
  const chosen = await json(`/api/grid?model=stories260K.bin&blocks=1-2&hook=resid&settings=${s2.slice(0, 16)}`);
  assert.equal(chosen.group.records, 5);
  const other = await json('/api/grid?model=elsewhere.gguf&blocks=1&hook=resid');
  assert.equal(other.cells.length, 10);
});

test('grid: the in-memory search and the SQL scan (for groups too large to hold) give the same pages', async () => {
  const queries = ['&q=the%20CAT', '&q=the%20cat&limit=7', '&q=the%20cat&limit=7&after=100', '&q=the%20cat&limit=7&before=100', '&q=w1', '&q=w1&after=60&limit=9', '&q=zzzz', '&q=zzzz&before=20', `&q=${encodeURIComponent('0%_')}`, '&status=failed', '&status=failed&before=149&limit=2', '&status=ok&q=w2&limit=5&after=200', '&status=ok&after=245', '&q=w&after=300'];
  const memory = [];
  for (const q of queries) memory.push(await json(grid(q)));
  server.api.stats.maxSearchEntries = 0;
  try {
    for (const [i, q] of queries.entries()) assert.deepEqual(await json(grid(q)), memory[i], q);
  } finally {
    server.api.stats.maxSearchEntries = Infinity;
  }
  const paged = await json(grid('&q=the%20cat&limit=7&after=100'));
  assert.deepEqual(
    paged.cells.map((c: { feature: number }) => c.feature),
    [110, 120, 130, 140, 150, 160, 170],
  );
  assert.deepEqual([paged.prev_before, paged.next_after, paged.matched], [110, 170, 25]);
});

test('record: the full result, token texts from the tokenizer, neighbours, the reproducing command; ids only without a checkpoint', async () => {
  const p = await json(grid('&limit=20'));
  const id = p.cells[9].id;
  const r = await json(`/api/record/${id}`);
  assert.equal(r.record.id, id);
  assert.equal(r.record.feature, 9);
  assert.deepEqual(r.record.settings, S1);
  assert.equal(r.record.topk.length, 3);
  assert.equal(r.tokenizer, 'llama2c-tokenizer.bin');
  for (const row of r.record.topk) for (const tid of row) assert.equal(typeof r.pieces[String(tid)], 'string', `piece of ${tid}`);
  assert.deepEqual([r.prev.feature, r.next.feature], [8, 10]);
  assert.equal(r.same_feature_elsewhere, 2);
  assert.match(r.reproduce.visualize, /^llm-features visualize --model \S+stories260K\.bin --blocks 1 --hook resid --select '\[:, :, 9\]' --tokens 4 --steps 10 /);
  assert.match(r.reproduce.atlas_build, / --features 9 /);
  assert.deepEqual(r.reproduce.notes, []);
  const first = await json(`/api/record/${p.cells[0].id}`);
  assert.equal(first.prev, null);

  const other = await json('/api/grid?model=elsewhere.gguf&blocks=1&hook=resid');
  const o = await json(`/api/record/${other.cells[3].id}`);
  assert.equal(o.tokenizer, null);
  assert.ok(Object.values(o.pieces).every((v) => v === null));
  assert.equal(o.record.refined.method, 'gcg');
  assert.match(o.reproduce.notes.join('\n'), /not found where the atlas saw it/);
  assert.match(o.reproduce.visualize, /^llm-features visualize --model elsewhere\.gguf /);

  const failedId = (await json(grid('&status=failed'))).cells[0].id;
  const failed = await json(`/api/record/${failedId}`);
  assert.equal(failed.record.status, 'failed');
  assert.match(failed.record.error, /^boom 49/);
});

test('compare: one feature across block ranges and models, pairwise agreement, shared tokens per position', async () => {
  const c = await json('/api/compare?feature=3&hook=resid');
  assert.equal(c.columns.length, 4);
  const labels = c.columns.map((x: { model: { name: string }; blocks_label: string }) => `${x.model.name} ${x.blocks_label}`);
  assert.deepEqual(labels, ['stories260K.bin 1', 'stories260K.bin 1-2', 'stories260K.bin 1-2', 'elsewhere.gguf 1']);
  assert.equal(c.pairs.length, 6);
  // Same blocks, same feature → identical fake tokens: full agreement; 1 vs 1-2 differ by construction.
  const byIds = (a: number, b: number) => c.pairs.find((p: { a: number; b: number }) => p.a === c.columns[a].id && p.b === c.columns[b].id);
  assert.equal(byIds(1, 2).top1_agreement, 1);
  assert.equal(byIds(1, 2).jaccard, 1);
  assert.equal(byIds(0, 1).top1_agreement, 0);
  // The fake model has another width: one feature index is not one direction in both, so the pair gets no agreement
  // but the reason (as atlas compare refuses it).
  assert.equal(byIds(0, 3).top1_agreement, null);
  assert.match(byIds(0, 3).not_pairable, /has width 64, elsewhere\.gguf \(b{12}\) 8: feature 3 is not the same direction in both/);
  assert.equal(byIds(0, 1).not_pairable, undefined);
  assert.equal(c.consensus.length, 4);
  assert.equal(c.consensus[0].count, 2);
  assert.equal(c.columns[0].positions[0].text !== null, true);
  const narrowed = await json(`/api/compare?feature=3&model=stories260K.bin&settings=${s1}`);
  assert.equal(narrowed.columns.length, 2);
  await json('/api/compare?feature=999', 404);
  await json('/api/compare?feature=3&hook=mlp', 404);
});

test('bad parameters are 400 with a message naming them; unknown records, models, groups and routes are 404', async () => {
  const bad = [
    grid('&bogus=1'),
    grid('&limit=0'),
    grid('&limit=501'),
    grid('&limit=ten'),
    grid('&limit='),
    grid('&limit=1&limit=2'),
    grid('&after=-2'),
    grid('&after=1.5'),
    grid('&after=1e3'),
    grid('&after=99999999999999999999'),
    grid('&after=1&before=5'),
    grid('&before=-1'),
    grid(`&q=${'x'.repeat(201)}`),
    grid('&q=%00'),
    grid('&status=maybe'),
    grid('&settings=xyz'),
    grid('&settings='),
    '/api/grid?model=stories260K.bin&blocks=0&hook=resid',
    '/api/grid?model=stories260K.bin&blocks=3-1&hook=resid',
    '/api/grid?model=stories260K.bin&blocks=a&hook=resid',
    '/api/grid?model=stories260K.bin&blocks=1&hook=logits',
    '/api/grid?model=stories260K.bin&blocks=1',
    '/api/grid?blocks=1&hook=resid',
    '/api/grid?model=a%01b&blocks=1&hook=resid',
    '/api/record/abc',
    '/api/record/0',
    '/api/record/-1',
    '/api/record/1.0',
    '/api/record/1?x=1',
    '/api/record/%zz',
    '/api/compare',
    '/api/compare?feature=x',
    '/api/compare?feature=1&hook=',
    '/api/overview?x=1',
    '/api/grid?%zz=1',
  ];
  for (const p of bad) {
    const r = await raw(p);
    assert.equal(r.status, 400, `${p} → ${r.status} ${r.body}`);
    const body = JSON.parse(r.body);
    assert.equal(typeof body.error, 'string');
    assert.ok(body.error.length > 5 && body.error.length < 600, body.error);
  }
  const missing = ['/api/record/999999', '/api/grid?model=nosuch.bin&blocks=1&hook=resid', '/api/grid?model=stories260K.bin&blocks=4&hook=resid', '/api/grid?model=stories260K.bin&blocks=1&hook=mlp', `/api/grid?model=stories260K.bin&blocks=1&hook=resid&settings=${'0'.repeat(64)}`, '/api/nosuch', '/api/record/1/2', '/api/record/1%2f2', '/static/nosuch.js'];
  for (const p of missing) {
    const r = await raw(p);
    assert.equal(r.status, 404, `${p} → ${r.status} ${r.body}`);
    assert.equal(typeof JSON.parse(r.body).error, 'string');
  }
  // A page address the viewer lacks is an HTML page with its own title (nothing of the request echoed into it).
  for (const p of ['/nosuch', '/favicon.ico', '/%3Cscript%3Ex']) {
    const r = await raw(p);
    assert.equal(r.status, 404, p);
    assert.match(String(r.headers['content-type']), /^text\/html/, p);
    assert.match(r.body, /<title>Not found · llm-features atlas<\/title>/, p);
    assert.ok(!r.body.includes('script>x') && !r.body.includes('%3Cscript'), p);
  }
  assert.equal((await raw('/nosuch', { method: 'HEAD' })).body, '');
  const post = await raw('/api/overview', { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  for (const m of ['PUT', 'DELETE', 'OPTIONS']) assert.equal((await raw('/', { method: m })).status, 405, m);
});

test('static files: traversal, encoded dots and slashes, absolute paths, dotfiles and symlinks out of the folder are refused', async () => {
  const pkg = readFileSync(path.join(projectRoot, 'package.json'), 'utf8');
  const attempts = [
    '/static/../package.json',
    '/static/../../package.json',
    '/static/./app.js',
    '/static/%2e%2e/package.json',
    '/static/%2E%2E/%2E%2E/package.json',
    '/static/.%2e/package.json',
    '/static/..%2fpackage.json',
    '/static/..%2Fpackage.json',
    '/static/%2e%2e%2fpackage.json',
    '/static/..%5cpackage.json',
    '/static/..\\package.json',
    '/static/%252e%252e/package.json',
    '/static//etc/passwd',
    '/static/%2fetc%2fpasswd',
    '/static//' + path.join(projectRoot, 'package.json'),
    '/static/' + encodeURIComponent(path.join(projectRoot, 'package.json')),
    '/static/C:/Windows/win.ini',
    '/static/C:%5cWindows%5cwin.ini',
    '/static/app.js%00.png',
    '/static/app.js%00',
    '/static/',
    '/static',
    '/static/.git/config',
    '/static/%2egit/config',
    '/../package.json',
    '/%2e%2e/package.json',
    '/api/../package.json',
    '/api/record/..%2f..%2fpackage.json',
    '//etc/passwd',
    '/package.json',
    '/web/app.js',
    '/dist/src/server/server.js',
  ];
  for (const p of attempts) {
    const r = await raw(p);
    assert.ok(r.status === 400 || r.status === 404, `${p} → ${r.status}`);
    assert.ok(!r.body.includes('"devDependencies"') && !r.body.includes('root:') && r.body !== pkg, `${p} leaked a file`);
  }
  // Absolute-form request targets (as sent to proxies) are refused too.
  const absolute = await raw('http://127.0.0.1/static/../package.json');
  assert.equal(absolute.status, 400);

  // A symlink inside a static folder that points outside it is not followed.
  const web = path.join(dir, 'web');
  mkdirSync(web);
  for (const f of readdirSync(defaultStaticDir())) copyFileSync(path.join(defaultStaticDir(), f), path.join(web, f));
  writeFileSync(path.join(dir, 'secret.txt'), 'secret');
  symlinkSync(path.join(dir, 'secret.txt'), path.join(web, 'leak.txt'));
  symlinkSync(dir, path.join(web, 'up'));
  writeFileSync(path.join(web, 'ok.txt'), 'fine');
  const s = await startServer({ db: DB, staticDir: web });
  try {
    assert.equal((await raw('/static/ok.txt', { base: s })).body, 'fine');
    for (const p of ['/static/leak.txt', '/static/up/secret.txt', '/static/up/atlas.db']) {
      const r = await raw(p, { base: s });
      assert.equal(r.status, 404, p);
      assert.ok(!r.body.includes('secret'));
    }
  } finally {
    await s.close();
  }
});

test('while bound to loopback, requests for other host names are refused (DNS rebinding)', async () => {
  assert.equal((await raw('/api/overview', { headers: { Host: 'evil.example:80' } })).status, 403);
  assert.equal((await raw('/', { headers: { Host: 'attacker.test' } })).status, 403);
  assert.equal((await raw('/api/overview', { headers: { Host: `localhost:${server.port}` } })).status, 200);
  assert.equal((await raw('/api/overview', { headers: { Host: `127.0.0.1:${server.port}` } })).status, 200);
});

test('the server never writes to the atlas, and keeps answering while another process writes to it', async () => {
  const o0 = await json('/api/overview');
  // A writer in another process: 20 batches of 100 records, each one transaction.
  const script = path.join(dir, 'writer.mjs');
  const storeUrl = pathToFileURL(path.join(projectRoot, 'dist/src/atlas/store.js')).href;
  writeFileSync(
    script,
    `import { Atlas } from ${JSON.stringify(storeUrl)};
const [db, hash, settings] = process.argv.slice(2);
const atlas = Atlas.open(db);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let b = 0; b < 20; b++) {
  const results = [];
  for (let i = 0; i < 100; i++) {
    const f = b * 100 + i;
    results.push({ select: '[:, :, ' + f + ']', blocks: [3, 3], hook: 'resid', settings: {}, ids: [1, 2], free: [0, 1], topk: [[1, 2]], topk_text: ['w' + f],
      cosine: [0.1, 0.2], cosine_scale: 0.5, activation: { continuous: 1, decoded: 1, random: 0 }, objective: { initial: 1, final: 0 }, baseline: null,
      loss: [[0, 1]], status: 'ok', timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 } });
  }
  atlas.insertResults(hash, settings, results);
  await sleep(15);
}
atlas.close();
`,
  );
  const child = spawn(process.execPath, [script, DB, realHash, s1], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let running = true;
  void exited.then(() => (running = false));
  let last = o0.records;
  let polls = 0;
  let sawGrowth = false;
  while (running) {
    const o = await json('/api/overview');
    assert.ok(o.records >= last, 'record counts never go backwards');
    assert.equal((o.records - o0.records) % 100, 0, 'whole batches only');
    if (o.records > o0.records) {
      sawGrowth = true;
      const g = await json('/api/grid?model=stories260K.bin&blocks=3&hook=resid&limit=500');
      assert.equal(g.cells.length, Math.min(500, g.group.records));
      // The search entries are topped up as batches land: features 0..n-1 with text w<f>.
      const found = await json('/api/grid?model=stories260K.bin&blocks=3&hook=resid&q=w1&limit=500');
      const n = found.group.records;
      const expected = Array.from({ length: n }, (_, f) => f).filter((f) => String(f).startsWith('1'));
      assert.equal(found.matched, expected.length);
      assert.deepEqual(
        found.cells.map((c: { feature: number }) => c.feature),
        expected.slice(0, 500),
      );
    }
    last = o.records;
    polls++;
  }
  assert.equal(await exited, 0, stderr);
  const o1 = await json('/api/overview');
  assert.equal(o1.records, o0.records + 2000);
  assert.ok(polls > 3 && sawGrowth, `polled ${polls} times while the writer ran`);
  // The incrementally kept counts equal a fresh pass over the file.
  assert.ok(server.api.stats.passes.incremental > 0);
  const fresh = Atlas.open(DB, { readonly: true });
  try {
    assert.deepEqual(
      o1.groups.map((g: Record<string, unknown>) => ({ ...g, blocks_label: undefined })),
      fresh.groups().map((g) => ({ ...g, blocks_label: undefined })),
    );
  } finally {
    fresh.close();
  }

  // Without a writer, the server's reading leaves the file as it was.
  const s = await startServer({ db: DB });
  const copy = readFileSync(DB);
  await fetch(`${s.url}/api/overview`);
  await fetch(`${s.url}/api/grid?model=stories260K.bin&blocks=1&hook=resid`);
  await s.close();
  assert.ok(readFileSync(DB).equals(copy), 'reading changed the atlas file');
});

test('group counts: incremental after inserts, a full pass again after rows are deleted behind their back', () => {
  const copy = path.join(dir, 'stats-copy.db');
  const src = new Database(DB, { readonly: true });
  src.prepare('VACUUM INTO ?').run(copy);
  src.close();
  const reader = Atlas.open(copy, { readonly: true });
  const writer = Atlas.open(copy);
  try {
    const stats = new AtlasStats(reader, 0);
    const total = () => stats.groups().reduce((n, g) => n + g.records, 0);
    const fresh = () => writer.groups().map(({ blocks: _b, ...g }) => g);
    const mine = () => stats.groups().map(({ blocks: _b, first_id: _f, featured: _n, ...g }) => g);
    stats.refresh();
    const n0 = total();
    assert.deepEqual(stats.passes, { full: 1, incremental: 0 });
    writer.insertResults(realHash, s1, [fake(0, [7, 7], 'resid'), fake(1, [7, 7], 'resid', { failed: true })]);
    stats.refresh();
    assert.deepEqual(stats.passes, { full: 1, incremental: 1 });
    assert.equal(total(), n0 + 2);
    assert.equal(stats.recentFailures()[0]!.feature, 1);
    assert.deepEqual(mine(), fresh());
    stats.refresh();
    assert.deepEqual(stats.passes, { full: 1, incremental: 1 }, 'nothing committed, nothing read');
    writer.db.prepare("DELETE FROM records WHERE block_a = 1 AND block_b = 1 AND feature < 10 AND model_hash = ?").run(realHash);
    stats.refresh();
    assert.equal(stats.passes.full, 2);
    assert.equal(total(), n0 + 2 - 10);
    assert.deepEqual(mine(), fresh());
  } finally {
    writer.close();
    reader.close();
  }
});

test('startServer and serve: a missing atlas, a port in use and bad flags are one-line user errors', async () => {
  await assert.rejects(() => startServer({ db: path.join(dir, 'nope.db') }), (e: unknown) => e instanceof UserError && /no such atlas/.test(e.message));
  await assert.rejects(() => startServer({ db: DB, port: server.port }), (e: unknown) => e instanceof UserError && /already in use/.test(e.message));
  await assert.rejects(() => startServer({ db: DB, port: 70000 }), UserError);
  const notAtlas = path.join(dir, 'not-an-atlas.db');
  writeFileSync(notAtlas, 'hello, not sqlite at all, definitely not a database file header');
  await assert.rejects(() => startServer({ db: notAtlas }), UserError);
  assert.throws(() => parseArgs('serve', ['--db', DB, '--port', '99999']), /--port: must be ≤ 65535/);
  assert.throws(() => parseArgs('serve', ['--db', DB, '--port', 'x']), /--port: expected an integer/);
  assert.throws(() => parseArgs('serve', ['--port', '0']), /--db: required/);
  assert.ok(serveCommand.summary);
});

test('reproduceCommand: quoting, token-id settings without a tokenizer, refinement and unknown settings become notes', () => {
  assert.equal(shellQuote('abc-1.5'), 'abc-1.5');
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(shellQuote('[:, :, 3]'), `'[:, :, 3]'`);
  const r = reproduceCommand(
    { select: '[:, 2, 3]', blocks: [2, 4], hook: 'mlp', feature: null, settings: { ...S1, prefix: [5, 6], init: 'tokens:1,2', future_knob: 3 } },
    { path: '/m/x y.gguf', name: 'x y.gguf' },
    null,
    '/tmp/a.db',
  );
  assert.match(r.visualize, /^llm-features visualize --model '\/m\/x y\.gguf' --blocks 2-4 --hook mlp --select '\[:, 2, 3\]' /);
  assert.equal(r.atlas_build, null);
  assert.match(r.notes.join('\n'), /prefix was the token ids 5,6/);
  assert.match(r.notes.join('\n'), /--init was the token ids 1,2/);
  assert.match(r.notes.join('\n'), /future_knob=3 has no flag/);
  const refine = { method: 'epo', steps: 20, candidates: 8, swap_topk: 4, population: 3, fluency: [0, 1], restart_every: 5, ban: [], printable: true, ascii: false, retokenize: true };
  const e = reproduceCommand({ select: '[:, :, 1]', blocks: [1, 1], hook: 'resid', feature: 1, settings: { ...S1, refine, baseline: 'exhaustive' } }, { path: '/m.bin', name: 'm.bin' }, null, 'a.db');
  assert.match(e.visualize, / --baseline exhaustive --refine epo --refine-steps 20 --candidates 8 --swap-topk 4 --population 3 --fluency 0,1 --restart-every 5 --printable --retokenize$/);
  assert.equal(e.atlas_build, null);
  assert.deepEqual(e.notes, []);
});
