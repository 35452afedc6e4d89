/**
 * `--model org/name[@revision]`: the files a request needs, from the local Hugging Face cache or, when missing and
 * allowed, from the hub (HF_ENDPOINT, default https://huggingface.co; HF_TOKEN; HF_HUB_OFFLINE=1 forbids the network).
 *
 * What is fetched: config.json, the tokenizer files the repo has, and model.safetensors — or, for a sharded
 * checkpoint, the index and only the shards holding the tensors of blocks 1..lastBlock and the input embeddings (the
 * family's spec says which tensor belongs where). Files land in the cache layout huggingface_hub uses (cache.ts), so
 * either tool reuses the other's downloads.
 *
 * The client: @huggingface/hub's `pathsInfo` gives each file's size and hash (sha256 for LFS files, the git blob sha1
 * otherwise). Its own `downloadFileToCacheDir` is not used: it restarts an interrupted download from zero, checks no
 * hash and shows no progress, and its `modelInfo` drops the commit a revision resolves to. So the revision is resolved
 * with one GET of the hub's revision API, and the bytes come through ranged requests over node's fetch: a download
 * appends to `blobs/<etag>.incomplete`, resumes from its length (`Range: bytes=N-`), and becomes the blob only once its
 * size and hash match what the hub announced — a corrupted file is deleted and refused.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { UserError } from '../errors.js';
import { specForHfConfig } from '../models/registry.js';
import { cachedCommit, hubCacheDir, isCommit, repoFolder, type HubId } from './cache.js';

export interface HubRequest {
  /** The last block (1-based) the request runs; null: the whole model (every shard). */
  lastBlock: number | null;
  env?: NodeJS.ProcessEnv;
  /** Draw a progress bar on stderr (default: when stderr is a terminal). */
  progress?: boolean;
}

/** Tokenizer files taken along when the repo has them (tokenizer.json is what llm-features reads). */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
const INDEX = 'model.safetensors.index.json';
/** API calls (revision, paths-info) must answer within this; downloads themselves are not time-limited. */
const API_TIMEOUT_MS = 30_000;

interface Context {
  label: string;
  id: HubId;
  repoDir: string;
  endpoint: string;
  token: string | undefined;
  progress: boolean;
}

/** The local snapshot folder holding everything `req` needs, downloading what is missing when allowed. */
export async function resolveHubModel(id: HubId, req: HubRequest): Promise<string> {
  const env = req.env ?? process.env;
  const ctx: Context = {
    label: id.pinned ? `${id.repo}@${id.revision}` : id.repo,
    id,
    repoDir: repoFolder(hubCacheDir(env), id.repo),
    endpoint: (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, ''),
    token: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined,
    progress: req.progress ?? process.stderr.isTTY === true,
  };
  if (ctx.token !== undefined && !ctx.token.startsWith('hf_')) throw new UserError('HF_TOKEN: a Hugging Face access token starts with "hf_"');
  if (isTruthy(env.HF_HUB_OFFLINE)) {
    const cached = fromCache(ctx, req.lastBlock);
    if (cached.missing.length === 0) return cached.snapshot!;
    throw new UserError(`${ctx.label}: HF_HUB_OFFLINE is set and the cache (${ctx.repoDir}) lacks ${cached.missing.join(', ')}`);
  }

  let revision: { sha: string; files: Set<string> };
  try {
    revision = await resolveRevision(ctx);
  } catch (e) {
    if (!isNetworkError(e)) throw e;
    // The hub is unreachable: a complete cached snapshot serves, as huggingface_hub does.
    const cached = fromCache(ctx, req.lastBlock);
    if (cached.missing.length === 0) return cached.snapshot!;
    throw new UserError(`${ctx.label}: cannot reach ${ctx.endpoint} (${networkReason(e)}) and the cache (${ctx.repoDir}) lacks ${cached.missing.join(', ')}`);
  }
  const { sha, files } = revision;
  if (!isCommit(ctx.id.revision)) writeRef(ctx, sha);
  const snapshot = path.join(ctx.repoDir, 'snapshots', sha);
  if (!files.has('config.json')) throw new UserError(`${ctx.label}: the repository has no config.json (not a transformers model)`);
  const wanted = ['config.json', ...TOKENIZER_FILES.filter((f) => files.has(f))];
  if (files.has('model.safetensors')) wanted.push('model.safetensors');
  else if (files.has(INDEX)) {
    await ensureFiles(ctx, sha, snapshot, [...wanted, INDEX]);
    wanted.push(INDEX, ...shardsNeeded(snapshot, req.lastBlock));
  } else {
    throw new UserError(`${ctx.label}: the repository has no model.safetensors or ${INDEX} (PyTorch .bin checkpoints are not supported)`);
  }
  await ensureFiles(ctx, sha, snapshot, wanted);
  return snapshot;
}

// ---------------------------------------------------------------------------------------------------------------
// What a request needs

/** The cached snapshot for the revision and the files it lacks for the request (judged from the cached files alone). */
function fromCache(ctx: Context, lastBlock: number | null): { snapshot: string | null; missing: string[] } {
  const commit = cachedCommit(ctx.repoDir, ctx.id.revision);
  if (!commit) return { snapshot: null, missing: [isCommit(ctx.id.revision) ? `snapshots/${ctx.id.revision}` : `refs/${ctx.id.revision}`] };
  const snapshot = path.join(ctx.repoDir, 'snapshots', commit);
  const has = (f: string) => existsSync(path.join(snapshot, f));
  const missing: string[] = [];
  if (!has('config.json')) missing.push('config.json');
  if (!has('model.safetensors')) {
    if (!has(INDEX)) missing.push(`model.safetensors or ${INDEX}`);
    else if (has('config.json')) missing.push(...shardsNeeded(snapshot, lastBlock).filter((s) => !has(s)));
  }
  return { snapshot, missing: missing.map((f) => (f.includes(' or ') ? f : `snapshots/${commit}/${f}`)) };
}

/**
 * The shards holding every tensor of blocks 1..lastBlock and before them (the family spec's `layer`), plus any
 * tensor the spec does not name (so the reader sees, and refuses, it as it would in a complete folder).
 */
export function shardsNeeded(snapshot: string, lastBlock: number | null): string[] {
  const weightMap = readJson(path.join(snapshot, INDEX)).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new UserError(`${path.join(snapshot, INDEX)}: weight_map is missing or not an object`);
  }
  const map = weightMap as Record<string, unknown>;
  const all = [...new Set(Object.values(map).map(String))].sort();
  const configPath = path.join(snapshot, 'config.json');
  const json = readJson(configPath);
  const spec = specForHfConfig(json);
  // Unknown families and whole-model requests take every shard; the reader then says what is wrong, if anything.
  if (!spec || lastBlock === null) return all;
  const reading = spec.fromHfConfig({ path: configPath, json, has: (n) => Object.hasOwn(map, n), tensorCount: Object.keys(map).length });
  if (lastBlock >= reading.config.nLayers) return all;
  const layerOf = new Map(spec.tensors(reading.config).map((t) => [reading.prefix + t.hf, t.layer]));
  const need = new Set<string>();
  for (const [name, shard] of Object.entries(map)) {
    const layer = layerOf.get(name);
    if (layer === undefined ? !reading.ignore(name) : layer < lastBlock) need.add(String(shard));
  }
  return [...need].sort();
}

// ---------------------------------------------------------------------------------------------------------------
// Talking to the hub

/** The commit a revision points at, and the repository's file list, from the hub's revision API. */
async function resolveRevision(ctx: Context): Promise<{ sha: string; files: Set<string> }> {
  const url = `${ctx.endpoint}/api/models/${ctx.id.repo}/revision/${encodeURIComponent(ctx.id.revision)}`;
  const resp = await fetch(url, { headers: authHeaders(ctx), signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  if (!resp.ok) throw new UserError(`${ctx.label}: ${ctx.endpoint} answered ${resp.status} for revision ${ctx.id.revision}${await hubMessage(resp)}`);
  const json = (await resp.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
  if (typeof json.sha !== 'string' || !isCommit(json.sha) || !Array.isArray(json.siblings)) {
    throw new UserError(`${ctx.label}: ${url} did not answer with a commit and a file list`);
  }
  return { sha: json.sha, files: new Set(json.siblings.map((s) => String(s.rfilename))) };
}

/** Every file in `names` present in the snapshot, downloading (resuming, verifying) the missing ones. */
async function ensureFiles(ctx: Context, sha: string, snapshot: string, names: string[]): Promise<void> {
  const missing = [...new Set(names)].filter((f) => !existsSync(path.join(snapshot, f)));
  if (missing.length === 0) return;
  const { pathsInfo } = await import('@huggingface/hub');
  let infos;
  try {
    infos = await pathsInfo({
      repo: { type: 'model', name: ctx.id.repo },
      paths: missing,
      revision: sha,
      hubUrl: ctx.endpoint,
      accessToken: ctx.token,
      fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(API_TIMEOUT_MS) }),
    });
  } catch (e) {
    if (isNetworkError(e)) throw new UserError(`${ctx.label}: cannot reach ${ctx.endpoint} (${networkReason(e)}) to fetch ${missing.join(', ')}`);
    throw new UserError(`${ctx.label}: paths-info for ${missing.join(', ')} failed (${String((e as Error).message).split('\n')[0]})`);
  }
  for (const file of missing) {
    const info = infos.find((i) => i.path === file);
    if (!info || info.type !== 'file') throw new UserError(`${ctx.label}: the hub lists ${file} but gives no size or hash for it`);
    const lfs = info.lfs;
    const expected: Expected = lfs ? { size: lfs.size, hash: 'sha256', digest: lfs.oid } : { size: info.size, hash: 'git-sha1', digest: info.oid ?? '' };
    if (!/^[0-9a-f]{40,64}$/.test(expected.digest) || !Number.isSafeInteger(expected.size) || expected.size < 0) {
      throw new UserError(`${ctx.label}: the hub gave no usable hash or size for ${file}`);
    }
    const blob = path.join(ctx.repoDir, 'blobs', expected.digest);
    if (!existsSync(blob)) await download(ctx, `${ctx.endpoint}/${ctx.id.repo}/resolve/${sha}/${file.split('/').map(encodeURIComponent).join('/')}`, file, blob, expected);
    link(path.join(snapshot, file), blob);
  }
}

interface Expected {
  size: number;
  /** sha256 of the bytes (LFS files), or git's blob sha1 ("blob <size>\0" + bytes) for files kept in git itself. */
  hash: 'sha256' | 'git-sha1';
  digest: string;
}

/** Download into blob.incomplete (resuming what is there), verify, then rename to the blob. */
async function download(ctx: Context, url: string, file: string, blob: string, expected: Expected): Promise<void> {
  mkdirSync(path.dirname(blob), { recursive: true });
  const part = `${blob}.incomplete`;
  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > expected.size) {
    truncateSync(part, 0);
    have = 0;
  }
  if (have < expected.size) {
    const headers: Record<string, string> = { ...authHeaders(ctx), ...(have > 0 ? { Range: `bytes=${have}-` } : {}) };
    let resp: Response;
    try {
      resp = await fetch(url, { headers, redirect: 'follow' });
    } catch (e) {
      throw new UserError(`${ctx.label}: cannot download ${file} from ${ctx.endpoint} (${networkReason(e)})${have > 0 ? `; ${have} bytes kept, run again to resume` : ''}`);
    }
    // A server that ignores Range answers 200 with the whole file: start over rather than append it.
    const resumed = resp.status === 206 && new RegExp(`^bytes ${have}-`).test(resp.headers.get('content-range') ?? '');
    if (!resp.ok || !resp.body) throw new UserError(`${ctx.label}: downloading ${file} failed: ${ctx.endpoint} answered ${resp.status}${await hubMessage(resp)}`);
    if (!resumed) have = 0;
    const bar = ctx.progress ? progressBar(file, expected.size) : null;
    let done = have;
    const counted = Readable.fromWeb(resp.body as WebReadableStream<Uint8Array>);
    counted.on('data', (chunk: Buffer) => {
      done += chunk.length;
      bar?.(done);
    });
    try {
      await pipeline(counted, createWriteStream(part, { flags: have > 0 ? 'a' : 'w' }));
    } catch (e) {
      if (bar) process.stderr.write('\n');
      const kept = existsSync(part) ? statSync(part).size : 0;
      throw new UserError(`${ctx.label}: download of ${file} was interrupted at ${kept} of ${expected.size} bytes (${networkReason(e)}); run again to resume`);
    }
    if (bar) process.stderr.write('\n');
  }
  const size = statSync(part).size;
  if (size !== expected.size) {
    if (size > expected.size) unlinkSync(part);
    throw new UserError(`${ctx.label}: ${file} arrived with ${size} bytes, the hub announced ${expected.size}${size < expected.size ? '; run again to resume' : '; removed it'}`);
  }
  const digest = await hashFile(part, expected);
  if (digest !== expected.digest) {
    unlinkSync(part);
    throw new UserError(`${ctx.label}: ${file} does not match the hub's ${expected.hash === 'sha256' ? 'sha256' : 'git sha1'} (expected ${expected.digest}, got ${digest}); removed the corrupted download`);
  }
  renameSync(part, blob);
}

function hashFile(file: string, expected: Expected): Promise<string> {
  const h = createHash(expected.hash === 'sha256' ? 'sha256' : 'sha1');
  if (expected.hash === 'git-sha1') h.update(`blob ${expected.size}\0`);
  return new Promise((resolve, reject) => {
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** snapshots/<sha>/<file> → ../../blobs/<etag>, relative as huggingface_hub writes it. */
function link(pointer: string, blob: string): void {
  mkdirSync(path.dirname(pointer), { recursive: true });
  try {
    if (lstatSync(pointer)) unlinkSync(pointer); // a dangling link to a blob that was removed
  } catch {
    // no pointer yet
  }
  symlinkSync(path.relative(path.dirname(pointer), blob), pointer);
}

function writeRef(ctx: Context, sha: string): void {
  const ref = path.join(ctx.repoDir, 'refs', ...ctx.id.revision.split('/'));
  mkdirSync(path.dirname(ref), { recursive: true });
  writeFileSync(ref, sha);
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

function authHeaders(ctx: Context): Record<string, string> {
  return ctx.token ? { Authorization: `Bearer ${ctx.token}` } : {};
}

async function hubMessage(resp: Response): Promise<string> {
  try {
    const text = (await resp.text()).trim();
    const json = text.startsWith('{') ? (JSON.parse(text) as { error?: unknown }) : null;
    const msg = typeof json?.error === 'string' ? json.error : text;
    return msg ? `: ${msg.replace(/\s+/g, ' ').slice(0, 200)}` : '';
  } catch {
    return '';
  }
}

function isTruthy(v: string | undefined): boolean {
  return ['1', 'true', 'yes', 'on'].includes((v ?? '').trim().toLowerCase());
}

/** fetch's failures to connect (undici's TypeError with a cause), timeouts and aborts — not HTTP errors. */
function isNetworkError(e: unknown): boolean {
  if (e instanceof UserError) return false;
  const err = e as { name?: string; cause?: unknown };
  return err?.name === 'TimeoutError' || err?.name === 'AbortError' || (e instanceof TypeError && err.cause !== undefined);
}

function networkReason(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? (err?.name === 'TimeoutError' ? 'timed out' : String(err?.message ?? e).split('\n')[0]!);
}

function readJson(file: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new UserError(`${file}: not a JSON object`);
}

/** A one-line bar redrawn in place: name, bar, MiB done / total. */
function progressBar(file: string, total: number): (done: number) => void {
  let last = 0;
  return (done) => {
    const now = Date.now();
    if (now - last < 100 && done < total) return;
    last = now;
    const width = 30;
    const filled = total > 0 ? Math.round((done / total) * width) : width;
    const mib = (b: number) => (b / 2 ** 20).toFixed(1);
    process.stderr.write(`\r${file} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${mib(done)}/${mib(total)} MiB`);
  };
}
