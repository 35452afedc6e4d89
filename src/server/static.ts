/**
 * The viewer's static files: only regular files inside one folder (web/), by a whitelist of types. The raw request
 * path is checked before and after percent-decoding: encoded slashes or backslashes, `.`/`..`/empty segments,
 * absolute paths, dotfiles, NUL and control characters are refused, and the resolved real path (symlinks followed)
 * must still lie inside the folder.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { badRequest, notFound } from './params.js';

/** web/ beside the package: dist/src/server/static.js → ../../../web. */
export function defaultStaticDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web');
}

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The file a `/static/<rel>` request names: `rel` is the raw (still percent-encoded) remainder of the path. Throws a
 * 400 for a malformed or traversing path and a 404 for anything that is not a servable file inside `root`.
 */
export function resolveStatic(root: string, rel: string): { file: string; type: string; size: number } {
  if (/%2f|%5c|%00/i.test(rel)) throw badRequest('static path: encoded slashes, backslashes and NUL are not allowed');
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    throw badRequest('static path: malformed percent-encoding');
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(decoded)) throw badRequest('static path: control characters and backslashes are not allowed');
  if (decoded.length > 512) throw badRequest('static path: too long');
  const segments = decoded.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw badRequest('static path: empty, "." and ".." segments (and absolute paths) are not allowed');
  if (segments.some((s) => s.startsWith('.'))) throw notFound('no such file');
  if (/^[a-zA-Z]:/.test(segments[0]!)) throw badRequest('static path: drive letters are not allowed');
  const type = CONTENT_TYPES[path.extname(decoded).toLowerCase()];
  if (!type) throw notFound('no such file');
  const realRoot = realpathSync(root);
  const candidate = path.resolve(realRoot, ...segments);
  if (!inside(realRoot, candidate)) throw notFound('no such file');
  let real: string;
  try {
    real = realpathSync(candidate);
  } catch {
    throw notFound('no such file');
  }
  if (!inside(realRoot, real)) throw notFound('no such file');
  const st = statSync(real);
  if (!st.isFile()) throw notFound('no such file');
  return { file: real, type, size: st.size };
}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel);
}
