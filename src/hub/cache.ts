/**
 * The local Hugging Face cache, read the way huggingface_hub writes it:
 *   <cache>/models--org--name/refs/<revision>        the commit a branch or tag pointed at when last resolved
 *   <cache>/models--org--name/snapshots/<commit>/…   the files of that commit (symlinks into ../../blobs)
 *   <cache>/models--org--name/blobs/<etag>           the bytes (etag: sha256 for LFS files, git blob sha1 otherwise)
 * The cache folder is HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../errors.js';

export interface HubId {
  /** org/name */
  repo: string;
  /** A branch, tag or 40-hex commit; "main" when not given. */
  revision: string;
  /** True when the user gave the revision explicitly (org/name@rev). */
  pinned: boolean;
}

const COMMIT = /^[0-9a-f]{40}$/;

export function isCommit(revision: string): boolean {
  return COMMIT.test(revision);
}

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface', 'hub');
}

/**
 * `org/name` or `org/name@revision`, as `from_pretrained` takes it; null for anything else (a path). Names follow the
 * hub's rules (letters, digits, `-`, `_`, `.`; no `..`); a revision may contain `/` (refs/pr/1) but no `..`.
 */
export function parseHubId(text: string): HubId | null {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,95})\/([A-Za-z0-9][A-Za-z0-9_.-]{0,95})(?:@([A-Za-z0-9_.\/-]{1,200}))?$/.exec(text);
  if (!m) return null;
  const [, org, name, rev] = m;
  // A missing checkpoint file (dir/model.gguf) is a path with a typo, not a hub repository.
  if (/\.(gguf|bin|safetensors|json)$/i.test(name!) && rev === undefined) return null;
  if ([org, name, rev ?? ''].some((p) => p!.includes('..'))) return null;
  return { repo: `${org}/${name}`, revision: rev ?? 'main', pinned: rev !== undefined };
}

export function repoFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, `models--${repo.replace('/', '--')}`);
}

/** The commit a revision names in a cached repo folder: itself when it is one, else refs/<revision>; null when unknown. */
export function cachedCommit(repoDir: string, revision: string): string | null {
  if (isCommit(revision)) return revision;
  const ref = path.join(repoDir, 'refs', ...revision.split('/'));
  if (!existsSync(ref)) return null;
  const commit = readFileSync(ref, 'utf8').trim();
  return isCommit(commit) ? commit : null;
}

/** A folder given on the command line that is a cache repo folder (`models--org--name/`, with snapshots/ inside). */
export function isCacheRepoFolder(dir: string): boolean {
  return path.basename(path.resolve(dir)).startsWith('models--') && existsSync(path.join(dir, 'snapshots')) && !existsSync(path.join(dir, 'config.json'));
}

/** The snapshot a cache repo folder stands for: the one refs/main names, else its only snapshot; otherwise a UserError. */
export function snapshotOfRepoFolder(dir: string): string {
  const main = cachedCommit(dir, 'main');
  if (main && isDir(path.join(dir, 'snapshots', main))) return path.join(dir, 'snapshots', main);
  const snaps = readdirSync(path.join(dir, 'snapshots')).filter((s) => isDir(path.join(dir, 'snapshots', s))).sort();
  if (snaps.length === 1) return path.join(dir, 'snapshots', snaps[0]!);
  if (snaps.length === 0) throw new UserError(`${dir}: a Hugging Face cache repo folder with no snapshots (nothing downloaded yet)`);
  throw new UserError(`${dir}: ${snaps.length} snapshots and no refs/main; give one: ${snaps.map((s) => path.join(dir, 'snapshots', s)).join(', ')}`);
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
