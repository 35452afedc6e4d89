/**
 * API latency of `llm-features serve` on a large synthetic atlas (a benchmark, not a test).
 *
 *   node dist/bench/api-latency.js [--records 100000] [--requests 200] [--one-layer] [--db FILE] [--keep] [--json]
 *
 * Writes a synthetic atlas through the Atlas library's insert API (default 100,000 records: 2 models × 5 block ranges
 * × 10,000 features, or with --one-layer all of them as the features of one model, block range and hook; resid hook, default visualize shapes — 5 positions, top-5, a 100-point loss curve; 1% failed),
 * starts the server in-process on 127.0.0.1, and times sequential requests (keep-alive, one at a time, after a warm-up)
 * for each route the pages use. A --db that already exists is reused as it is (and kept).
 * Reports median, p95 and max milliseconds per route (client round trip: request, query, JSON both ways). The last
 * rows repeat the grid and overview while another process commits a batch of 100 records every ~20 ms (as
 * `atlas build` does; its records, at blocks 9, stay in a reused --db).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Atlas } from '../src/atlas/store.js';
import type { RunResult } from '../src/features/visualize.js';
import { startServer } from '../src/server/server.js';
import { uniformStream } from '../src/util/random.js';
import { median } from './common.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? '' : v;
}

const RECORDS = Number(flag('records') ?? 100_000);
const REQUESTS = Number(flag('requests') ?? 200);
const WARMUP = 10;
const ONE_LAYER = flag('one-layer') !== undefined;
const MODELS = ONE_LAYER ? 1 : 2;
const RANGES: [number, number][] = ONE_LAYER
  ? [[1, 1]]
  : [
      [1, 1],
      [1, 2],
      [1, 4],
      [2, 2],
      [3, 4],
    ];
const T = 5;
const K = 5;
const VOCAB = 32000;
const SETTINGS = { tokens: T, steps: 500, lr: 2, lr_end: 0.2, optimizer: 'sgd', objective: 'l1', C: 100, topk: K, decode: 'pinv', init: 'randn', prefix: [], suffix: [], bos: false, seed: 0, random_draws: 8 };
const WORDS = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'then', 'ran', 'away', 'from', 'big', 'dog', 'in', 'park', 'sun', 'was', 'happy', 'Lily', 'Tim'];

function synthetic(f: number, blocks: [number, number], rand: () => number): RunResult {
  const select = `[:, :, ${f}]`;
  const base = { select, blocks, hook: 'resid' as const, settings: {}, free: [0, 1, 2, 3, 4], cosine_scale: 0.42, baseline: null };
  const timings = { optimize_ms: 100 + rand() * 50, decode_ms: 20 + rand() * 5, verify_ms: 10 + rand() * 5 };
  if (rand() < 0.01) {
    return { ...base, ids: [], topk: [], topk_text: [], cosine: [], activation: { continuous: null, decoded: null, random: null }, objective: { initial: null, final: null }, loss: [], status: 'failed', error: 'optimisation diverged (non-finite loss at step 17)', timings };
  }
  const topk = Array.from({ length: K }, () => Array.from({ length: T }, () => Math.floor(rand() * VOCAB)));
  const word = (id: number) => WORDS[id % WORDS.length]!;
  const topk_text = topk.map((row) => row.map((id, t) => (t && id % 3 ? ' ' : '') + word(id)).join(''));
  let loss = 400 + rand() * 100;
  const curve: [number, number][] = [];
  for (let s = 0; s < 500; s += 5) {
    curve.push([s, Math.fround(loss)]);
    loss *= 0.99 - rand() * 0.002;
  }
  return {
    ...base,
    ids: topk[0]!,
    topk,
    topk_text,
    cosine: Array.from({ length: T }, () => Math.fround(rand() * 0.6)),
    activation: { continuous: Math.fround(10 + rand() * 30), decoded: Math.fround(rand() * 3 - 0.5), random: Math.fround(rand() - 0.5) },
    objective: { initial: Math.fround(curve[0]![1]), final: Math.fround(loss) },
    baseline: {
      kind: 'skip-connection',
      tokens: topk.map((row) => row[0]!),
      tokens_text: topk.map((row) => word(row[0]!)),
      agreement: Math.floor(rand() * 6) / 5,
      activation: Math.fround(rand() * 2),
    },
    loss: curve,
    status: 'ok',
    timings,
  };
}

function writeAtlas(file: string, records: number): { ms: number; hashes: string[] } {
  const t0 = performance.now();
  const atlas = Atlas.open(file);
  const rand = uniformStream(1);
  const hashes: string[] = [];
  const perGroup = Math.ceil(records / (MODELS * RANGES.length));
  let left = records;
  const settingsHash = atlas.upsertSettings(SETTINGS);
  for (let m = 0; m < MODELS; m++) {
    const hash = (m + 1).toString(16).repeat(64);
    hashes.push(hash);
    atlas.upsertModel({ hash, name: `synthetic-${m}.gguf`, format: 'gguf', architecture: 'llama', n_layers: 4, dim: perGroup, vocab: VOCAB });
    for (const blocks of RANGES) {
      const n = Math.min(perGroup, left);
      for (let start = 0; start < n; start += 1000) {
        const batch: RunResult[] = [];
        for (let f = start; f < Math.min(n, start + 1000); f++) batch.push(synthetic(f, blocks, rand));
        atlas.insertResults(hash, settingsHash, batch);
      }
      left -= n;
    }
  }
  atlas.close();
  return { ms: performance.now() - t0, hashes };
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { n: s.length, median: median(s), p95: q(0.95), max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const given = flag('db');
  const dir = given ? null : mkdtempSync(path.join(os.tmpdir(), 'llmf-api-latency-'));
  const file = given ?? path.join(dir!, 'atlas.db');
  let build: { ms: number } | null = null;
  if (!existsSync(file)) {
    process.stderr.write(`writing a synthetic atlas of ${RECORDS} records to ${file}…\n`);
    build = writeAtlas(file, RECORDS);
  }
  const s0 = performance.now();
  const server = await startServer({ db: file, port: 0 });
  const startMs = performance.now() - s0;
  const rand = uniformStream(7);
  try {
    // Server start makes one full pass over the atlas (group counts need every row's status); requests then read
    // only rows committed since.
    const c0 = performance.now();
    const first = await fetch(`${server.url}/api/overview`);
    const overview = (await first.json()) as { records: number; groups: { model_hash: string; blocks: [number, number]; records: number }[] };
    const coldMs = performance.now() - c0;
    const groups = overview.groups;
    const maxId = overview.records;
    const pickGroup = () => groups[Math.floor(rand() * groups.length)]!;
    const gq = (g: (typeof groups)[number]) => `model=${g.model_hash.slice(0, 16)}&blocks=${g.blocks[0]}-${g.blocks[1]}&hook=resid`;
    const routes: [name: string, url: () => string][] = [
      ['grid: first page (100 cells)', () => `/api/grid?${gq(pickGroup())}&limit=100`],
      ['grid: a page deep in the layer', () => {
        const g = pickGroup();
        return `/api/grid?${gq(g)}&limit=100&after=${Math.floor(rand() * g.records)}`;
      }],
      ['grid: previous page (before=)', () => {
        const g = pickGroup();
        return `/api/grid?${gq(g)}&limit=100&before=${1 + Math.floor(rand() * g.records)}`;
      }],
      ['grid: search q= (common word)', () => `/api/grid?${gq(pickGroup())}&limit=100&q=${WORDS[Math.floor(rand() * WORDS.length)]}`],
      ['grid: search q= (no match, full scan)', () => `/api/grid?${gq(pickGroup())}&limit=100&q=zzzz`],
      ['grid: status=failed', () => `/api/grid?${gq(pickGroup())}&limit=100&status=failed`],
      ['feature page: /api/record/:id', () => `/api/record/${1 + Math.floor(rand() * maxId)}`],
      ['compare: one feature, all groups', () => `/api/compare?feature=${Math.floor(rand() * (maxId / groups.length))}&hook=resid`],
      ['overview (whole atlas)', () => '/api/overview'],
    ];
    const f0 = performance.now();
    const firstSearch = await fetch(`${server.url}/api/grid?${gq(groups[0]!)}&limit=100&q=cat`);
    await firstSearch.arrayBuffer();
    const firstSearchMs = performance.now() - f0;
    const results: { route: string; n: number; median: number; p95: number; max: number; bytes: number }[] = [
      { route: 'server start (open read-only, one full pass for group counts)', n: 1, median: startMs, p95: startMs, max: startMs, bytes: 0 },
      { route: 'first request (overview)', n: 1, median: coldMs, p95: coldMs, max: coldMs, bytes: 0 },
      { route: `first search in a group of ${groups[0]!.records} (loads its search entries)`, n: 1, median: firstSearchMs, p95: firstSearchMs, max: firstSearchMs, bytes: 0 },
    ];
    for (const [name, url] of routes) {
      const times: number[] = [];
      let bytes = 0;
      const n = name.startsWith('overview') ? Math.min(REQUESTS, 50) : REQUESTS;
      for (let i = 0; i < WARMUP + n; i++) {
        const u = `${server.url}${url()}`;
        const t0 = performance.now();
        const res = await fetch(u);
        const body = await res.arrayBuffer();
        const dt = performance.now() - t0;
        if (res.status !== 200) throw new Error(`${u}: ${res.status} ${Buffer.from(body).toString()}`);
        if (i >= WARMUP) {
          times.push(dt);
          bytes += body.byteLength;
        }
      }
      results.push({ route: name, ...stats(times), bytes: Math.round(bytes / n) });
    }
    // While a writer commits batches (as `atlas build` does): each request first folds in what was committed since.
    const writerDir = mkdtempSync(path.join(os.tmpdir(), 'llmf-api-writer-'));
    const script = path.join(writerDir, 'writer.mjs');
    const storeUrl = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/atlas/store.js')).href;
    writeFileSync(
      script,
      `import { Atlas } from ${JSON.stringify(storeUrl)};
const [db, hash, settings] = process.argv.slice(2);
const atlas = Atlas.open(db);
const start = atlas.count({ model: hash, blocks: [9, 9] });
let stop = false;
process.on('SIGTERM', () => (stop = true));
for (let b = 0; !stop; b++) {
  const results = [];
  for (let i = 0; i < 100; i++) {
    const f = start + b * 100 + i;
    results.push({ select: '[:, :, ' + f + ']', blocks: [9, 9], hook: 'resid', settings: {}, ids: [1, 2, 3, 4, 5], free: [0, 1, 2, 3, 4], topk: [[1, 2, 3, 4, 5]],
      topk_text: ['w' + f], cosine: [0.1, 0.2, 0.3, 0.4, 0.5], cosine_scale: 0.5, activation: { continuous: 1, decoded: 1, random: 0 }, objective: { initial: 1, final: 0 },
      baseline: null, loss: Array.from({ length: 100 }, (_, s) => [s * 5, 400 - s]), status: 'ok', timings: { optimize_ms: 1, decode_ms: 1, verify_ms: 1 } });
  }
  atlas.insertResults(hash, settings, results);
  await new Promise((r) => setTimeout(r, 20));
}
atlas.close();
`,
    );
    const settingsHash = (await (await fetch(`${server.url}/api/grid?${gq(groups[0]!)}&limit=1`)).json()) as { group: { settings_hash: string } };
    const writer = spawn(process.execPath, [script, file, groups[0]!.model_hash, settingsHash.group.settings_hash], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      await new Promise((r) => setTimeout(r, 300));
      for (const [name, url] of routes.filter(([n]) => n.startsWith('grid: first') || n.startsWith('feature') || n.startsWith('overview'))) {
        const times: number[] = [];
        let bytes = 0;
        const n = Math.min(REQUESTS, 100);
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          const res = await fetch(`${server.url}${url()}`);
          const body = await res.arrayBuffer();
          times.push(performance.now() - t0);
          bytes += body.byteLength;
          if (res.status !== 200) throw new Error(`${name} during writes: ${res.status} ${Buffer.from(body).toString()}`);
        }
        results.push({ route: `${name}, while a writer commits`, ...stats(times), bytes: Math.round(bytes / n) });
      }
    } finally {
      writer.kill('SIGTERM');
      await new Promise((r) => writer.once('exit', r));
      rmSync(writerDir, { recursive: true, force: true });
    }
    const written = ((await (await fetch(`${server.url}/api/overview`)).json()) as { records: number }).records - overview.records;
    const size = statSync(file).size;
    const report = {
      records: overview.records,
      groups: groups.length,
      written_during_writes: written,
      db_bytes: size,
      build_s: build ? build.ms / 1000 : null,
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      results,
    };
    if (flag('json') !== undefined) process.stdout.write(JSON.stringify(report) + '\n');
    else {
      const lines = [
        `atlas: ${report.records} records in ${report.groups} groups, ${(size / 2 ** 20).toFixed(0)} MiB${build ? `, written in ${(build.ms / 1000).toFixed(1)} s` : ''}; ${report.cpu}, ${report.cores} cores, Node ${report.node}`,
        `the writer added ${written} records while the last rows were measured`,
        '',
        '| route | requests | median ms | p95 ms | max ms | response KiB |',
        '|---|---:|---:|---:|---:|---:|',
        ...results.map((r) => `| ${r.route} | ${r.n} | ${r.median.toFixed(2)} | ${r.n > 1 ? r.p95.toFixed(2) : ''} | ${r.n > 1 ? r.max.toFixed(2) : ''} | ${r.bytes ? (r.bytes / 1024).toFixed(1) : ''} |`),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    }
  } finally {
    await server.close();
    if (dir && flag('keep') === undefined) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`atlas kept at ${file}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`api-latency: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
