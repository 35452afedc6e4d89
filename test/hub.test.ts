// Hub ids and the Hugging Face cache, against a stand-in hub on a loopback port (test/hub-server.ts) reached through
// HF_ENDPOINT: a first download of only the shards a block range needs, a cached run with the server stopped, an
// interrupted download that resumes with a ranged request, a corrupted file refused, HF_HUB_OFFLINE=1, cache repo
// folders given as --model.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { ModelRunner } from '../src/engine/runner.js';
import { hubCacheDir, parseHubId } from '../src/hub/cache.js';
import { resolveHubModel } from '../src/hub/download.js';
import { loadModel } from '../src/models/load.js';
import { spawn } from 'node:child_process';
import { cli, type CliResult } from './cli-helpers.js';
import { fixturePath, projectRoot } from './helpers.js';
import { startFakeHub } from './hub-server.js';
import { maxRelError } from './numeric.js';

const LLAMA = 'test-org/tiny-llama';
const GPT2 = 'test-org/tiny-gpt2';
const llamaDir = fixturePath('hf/llama-gqa-bf16');
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmf-hub-'));
const weightCache = path.join(tmp, 'weights');
const hub = await startFakeHub({ [LLAMA]: llamaDir, [GPT2]: fixturePath('hf/gpt2-f16') });
const runners: ModelRunner[] = [];
after(async () => {
  for (const r of runners) await r.close();
  await hub.close();
});

const envFor = (cache: string, extra: Record<string, string> = {}) => ({ HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, ...extra });
const id = (text: string) => parseHubId(text)!;
const userError = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message) && !e.message.includes('\n');
const downloads = (from: number) => hub.log.slice(from).filter((r) => r.url.includes('/resolve/')).map((r) => path.basename(r.url));
/** The CLI in a child process without blocking this one, which serves the fake hub (spawnSync would starve it). */
function cliAsync(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(projectRoot, 'dist/src/cli/main.js'), ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

test('hub ids and cache folders parse as huggingface_hub spells them', () => {
  assert.deepEqual(parseHubId('EleutherAI/pythia-70m'), { repo: 'EleutherAI/pythia-70m', revision: 'main', pinned: false });
  assert.deepEqual(parseHubId('org/name@v1.0'), { repo: 'org/name', revision: 'v1.0', pinned: true });
  for (const bad of ['./model', 'a/b/c', 'org/..', '/abs/path', 'model.gguf', 'org/name@..', 'models/stories.gguf', 'dir/model.bin']) assert.equal(parseHubId(bad), null, bad);
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/x' }), '/x');
  assert.equal(hubCacheDir({ HF_HOME: '/h' }), path.join('/h', 'hub'));
  assert.equal(hubCacheDir({ HOME: os.homedir() }), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
});

const cache = path.join(tmp, 'hub-cache');

test('first download: only the shard holding block 1, into the cache layout, and the model runs', async () => {
  const from = hub.log.length;
  const snap = await resolveHubModel(id(LLAMA), { lastBlock: 1, env: envFor(cache) });
  const repoDir = path.join(cache, 'models--test-org--tiny-llama');
  assert.equal(snap, path.join(repoDir, 'snapshots', hub.sha));
  assert.equal(readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8'), hub.sha);
  assert.deepEqual(downloads(from).sort(), ['config.json', SHARD1, 'model.safetensors.index.json'].sort());
  assert.ok(!existsSync(path.join(snap, SHARD2)), 'the shard of block 3 and the head is not fetched');
  // Blobs are named by their hash (sha256 for LFS files) and the snapshot links into them.
  const blob = realpathSync(path.join(snap, SHARD1));
  assert.equal(path.basename(blob), sha256(path.join(llamaDir, SHARD1)));
  assert.equal(path.dirname(blob), realpathSync(path.join(repoDir, 'blobs')));

  const model = loadModel(snap);
  const runner = new ModelRunner(model, { cacheDir: weightCache });
  runners.push(runner);
  const ref = JSON.parse(readFileSync(path.join(llamaDir, 'reference.json'), 'utf8')) as { ids: number[]; cases: { blocks: number[] | null; hook: string; values: number[][] }[] };
  const out = await runner.hidden([ref.ids], [1, 1], 'resid');
  assert.ok(maxRelError(out.data, ref.cases.find((c) => c.blocks?.join('-') === '1-1' && c.hook === 'resid')!.values.flat()) <= 1e-4);
  // A block whose shard is absent is refused with a clear line, not an internal error.
  await assert.rejects(runner.hidden([ref.ids], [1, 3], 'resid'), userError(/is in model-00002-of-00002\.safetensors, which is not downloaded/));
});

test('a whole-model request fetches the rest; then a run with the server stopped uses the cache', async () => {
  const from = hub.log.length;
  const snap = await resolveHubModel(id(LLAMA), { lastBlock: null, env: envFor(cache) });
  assert.deepEqual(downloads(from), [SHARD2], 'only the missing shard is downloaded');
  assert.equal(sha256(path.join(snap, SHARD2)), sha256(path.join(llamaDir, SHARD2)));
  // A dead endpoint (nothing listens on port 9 of loopback) stands for the stopped server.
  const dead = { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: cache };
  assert.equal(await resolveHubModel(id(LLAMA), { lastBlock: null, env: dead }), snap);
  const r = cli(['forward', '--model', LLAMA, '--ids', '1,2,3', '--blocks', '1-3', '--json'], { ...dead, LLMF_CACHE: weightCache });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).blocks, [1, 3]);
  // Uncached and unreachable: one line naming what is missing.
  await assert.rejects(resolveHubModel(id(GPT2), { lastBlock: null, env: dead }), userError(/^test-org\/tiny-gpt2: cannot reach http:\/\/127\.0\.0\.1:9 \(.+\) and the cache .* lacks refs\/main$/));
});

test('HF_HUB_OFFLINE=1: cached files serve without a request; uncached ones are a one-line error', async () => {
  const from = hub.log.length;
  const snap = await resolveHubModel(id(LLAMA), { lastBlock: 3, env: envFor(cache, { HF_HUB_OFFLINE: '1' }) });
  assert.ok(existsSync(path.join(snap, 'config.json')));
  assert.equal(hub.log.length, from, 'no request reached the hub');
  await assert.rejects(resolveHubModel(id(GPT2), { lastBlock: null, env: envFor(cache, { HF_HUB_OFFLINE: '1' }) }), userError(/^test-org\/tiny-gpt2: HF_HUB_OFFLINE is set and the cache .* lacks refs\/main$/));
  const partial = path.join(tmp, 'partial-cache');
  await resolveHubModel(id(LLAMA), { lastBlock: 1, env: envFor(partial) });
  await assert.rejects(
    resolveHubModel(id(LLAMA), { lastBlock: 3, env: envFor(partial, { HF_HUB_OFFLINE: '1' }) }),
    userError(new RegExp(`lacks snapshots/${hub.sha}/${SHARD2.replaceAll('.', '\\.')}$`)),
  );
  assert.equal(hub.log.filter((r) => r.url.includes('resolve') && r.url.endsWith(SHARD2)).length, 1, 'offline never downloads');
});

test('an interrupted download resumes with a ranged request and ends with the right bytes', async () => {
  const c = path.join(tmp, 'resume-cache');
  hub.interruptOnce.add(SHARD1);
  await assert.rejects(resolveHubModel(id(LLAMA), { lastBlock: 1, env: envFor(c) }), userError(/download of model-00001-of-00002\.safetensors was interrupted at \d+ of \d+ bytes .*run again to resume$/));
  const blobs = path.join(c, 'models--test-org--tiny-llama', 'blobs');
  const part = readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
  const kept = statSync(path.join(blobs, part)).size;
  assert.ok(kept > 0 && kept < statSync(path.join(llamaDir, SHARD1)).size, `kept ${kept} bytes`);
  const from = hub.log.length;
  const snap = await resolveHubModel(id(LLAMA), { lastBlock: 1, env: envFor(c) });
  const resumed = hub.log.slice(from).find((r) => r.url.endsWith(SHARD1))!;
  assert.equal(resumed.range, `bytes=${kept}-`);
  assert.equal(sha256(path.join(snap, SHARD1)), sha256(path.join(llamaDir, SHARD1)));
  assert.ok(!readdirSync(blobs).some((f) => f.endsWith('.incomplete')));
});

test('a corrupted download is refused and removed', async () => {
  const c = path.join(tmp, 'corrupt-cache');
  hub.corrupt.add(SHARD1);
  try {
    await assert.rejects(resolveHubModel(id(LLAMA), { lastBlock: 1, env: envFor(c) }), userError(/model-00001-of-00002\.safetensors does not match the hub's sha256 \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); removed the corrupted download$/));
  } finally {
    hub.corrupt.delete(SHARD1);
  }
  const blobs = path.join(c, 'models--test-org--tiny-llama', 'blobs');
  const shardBlob = sha256(path.join(llamaDir, SHARD1));
  assert.ok(!readdirSync(blobs).some((f) => f.startsWith(shardBlob)), 'nothing of the bad file stays');
  assert.ok(!existsSync(path.join(c, 'models--test-org--tiny-llama', 'snapshots', hub.sha, SHARD1)));
});

test('the CLI: --model org/name downloads (with HF_TOKEN sent), a cache repo folder works as --model, bad ids are one line', async () => {
  const c = path.join(tmp, 'cli-cache');
  const from = hub.log.length;
  const r = await cliAsync(['inspect', '--model', GPT2], envFor(c, { HF_TOKEN: 'hf_test' }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).architecture, 'gpt2');
  assert.ok(hub.log.slice(from).every((q) => q.auth === 'Bearer hf_test'), 'every request carries the token');
  const repoDir = path.join(c, 'models--test-org--tiny-gpt2');
  const again = cli(['inspect', '--model', repoDir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).architecture, 'gpt2');
  const missing = await cliAsync(['inspect', '--model', 'test-org/no-such-model'], envFor(c));
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^llm-features: test-org\/no-such-model: http:\/\/127\.0\.0\.1:\d+ answered 404 for revision main: Repository not found\n$/);
  const badToken = await cliAsync(['inspect', '--model', 'test-org/other'], envFor(c, { HF_TOKEN: 'nope' }));
  assert.equal(badToken.code, 2);
  assert.match(badToken.stderr, /HF_TOKEN: a Hugging Face access token starts with "hf_"/);
});
