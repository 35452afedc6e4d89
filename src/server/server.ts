/**
 * `llm-features serve`: a local web viewer over an atlas, on node:http alone.
 *
 * Routes (GET and HEAD only):
 *   /                      the page (web/index.html); the page routes itself by the URL's #fragment
 *   /static/<file>         files of web/ only (see static.ts for what is refused)
 *   /api/overview          models, block ranges, hooks, groups with counts, recent failures
 *   /api/groups            the groups alone
 *   /api/grid              one group's features, paged: model, blocks, hook, [settings], [after|before], [limit], [q],
 *                          [status]; or sorted/filtered, paged by offset: [sort], [order], [verdict], [offset]
 *   /api/search            every group's records whose decode (any rank) or refined text contains q: q, [offset], [limit]
 *   /api/record/<id>       one record with token texts, neighbours and the command that reproduces it
 *   /api/compare           one feature across block ranges and models: feature, [hook], [model], [settings]
 *
 * The atlas is opened read-only (WAL lets `atlas build` keep writing; each request reads the latest commit). The
 * server binds 127.0.0.1 unless told otherwise and, while bound to a loopback address, answers only requests whose
 * Host is a loopback name (so a web page elsewhere cannot reach it through DNS rebinding).
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Atlas } from '../atlas/store.js';
import { paramError, UserError } from '../errors.js';
import { AtlasApi } from './api.js';
import { HttpError } from './params.js';
import { defaultStaticDir, resolveStatic } from './static.js';

export interface ServerOptions {
  /** The atlas file (must exist). */
  db: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The static folder; default web/ of the package. */
  staticDir?: string;
  /** One line per request (method, path, status, ms); default none. */
  log?: (line: string) => void;
}

export interface RunningServer {
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  host: string;
  port: number;
  server: http.Server;
  api: AtlasApi;
  close(): Promise<void>;
}

const SECURITY_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** The 404 page for paths outside /api/ and /static/ (static text: nothing from the request is echoed into it). */
const NOT_FOUND_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found · llm-features atlas</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>Not found</h1><p>This server has no page at this address. The viewer is at <a href="/">/</a>; its JSON API is under /api/.</p></main></body></html>
`;

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host.endsWith('.localhost');
}

/** The hostname of a Host header, without the port (IPv6 keeps its brackets). */
function hostName(header: string): string {
  if (header.startsWith('[')) {
    const end = header.indexOf(']');
    return end < 0 ? header : header.slice(0, end + 1).toLowerCase();
  }
  const colon = header.indexOf(':');
  return (colon < 0 ? header : header.slice(0, colon)).toLowerCase();
}

export function validatePort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw paramError('port', `expected an integer between 0 and 65535, got ${port}`);
  return port;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = validatePort(opts.port ?? 0);
  const staticDir = opts.staticDir ?? defaultStaticDir();
  const atlas = Atlas.open(opts.db, { readonly: true });
  const api = new AtlasApi(atlas);
  // The one full pass over the records (group counts) happens now, not on the first page someone opens.
  try {
    atlas.read(() => api.stats.refresh());
  } catch (err) {
    atlas.close();
    throw err;
  }
  const loopbackOnly = isLoopback(host);

  const send = (res: http.ServerResponse, head: boolean, status: number, type: string, body: string | Buffer, cache = 'no-store') => {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': buf.length, 'Cache-Control': cache });
    res.end(head ? undefined : buf);
  };
  const sendJson = (res: http.ServerResponse, head: boolean, status: number, value: unknown) => send(res, head, status, 'application/json; charset=utf-8', JSON.stringify(value));

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): number => {
    const method = req.method ?? 'GET';
    const head = method === 'HEAD';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, false, 405, { error: `method ${method} not allowed (GET, HEAD)` });
      return 405;
    }
    if (loopbackOnly) {
      const h = req.headers.host;
      if (!h || !isLoopback(hostName(h))) {
        sendJson(res, head, 403, { error: 'this server answers only requests addressed to a loopback host name (localhost, 127.0.0.1, [::1])' });
        return 403;
      }
    }
    const raw = req.url ?? '/';
    try {
      if (!raw.startsWith('/') || raw.startsWith('//')) throw new HttpError(400, 'request target must be a path');
      const qi = raw.indexOf('?');
      const rawPath = qi < 0 ? raw : raw.slice(0, qi);
      const search = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
      if (rawPath === '/' || rawPath === '/index.html') {
        const f = resolveStatic(staticDir, 'index.html');
        serveFile(res, head, f.file, f.type, f.size);
        return 200;
      }
      if (rawPath.startsWith('/static/')) {
        const f = resolveStatic(staticDir, rawPath.slice('/static/'.length));
        serveFile(res, head, f.file, f.type, f.size);
        return 200;
      }
      if (rawPath.startsWith('/api/')) {
        const route = rawPath.slice('/api/'.length);
        let answer: () => unknown;
        if (route === 'overview') answer = () => api.overview(search);
        else if (route === 'groups') answer = () => api.groups(search);
        else if (route === 'grid') answer = () => api.grid(search);
        else if (route === 'compare') answer = () => api.compare(search);
        else if (route === 'search') answer = () => api.search(search);
        else if (route.startsWith('record/')) {
          const id = decodeSegment(route.slice('record/'.length));
          answer = () => api.record(id, search);
        } else throw new HttpError(404, `no API route /api/${route.slice(0, 60)}`);
        // One read transaction per request: all of its queries see the same commit, even while a build writes. The
        // stats refresh comes first, so the snapshot it reads is never older than the data_version it records.
        const body = atlas.read(() => {
          api.stats.refresh();
          return answer();
        });
        sendJson(res, head, 200, body);
        return 200;
      }
      // A page address the viewer does not have (its pages live in the #fragment of /): a page a browser shows with
      // its own title, rather than JSON nobody asked for.
      send(res, head, 404, 'text/html; charset=utf-8', NOT_FOUND_PAGE);
      return 404;
    } catch (err) {
      const status = err instanceof HttpError ? err.status : err instanceof UserError ? 400 : (err as { code?: string }).code === 'SQLITE_BUSY' ? 503 : 500;
      const message = status === 500 ? 'internal error' : (err as Error).message;
      if (status === 500) opts.log?.(`internal error on ${method} ${raw.slice(0, 200)}: ${(err as Error).stack ?? String(err)}`);
      if (!res.headersSent) sendJson(res, head, status, { error: message, status });
      else res.destroy();
      return status;
    }
  };

  function serveFile(res: http.ServerResponse, head: boolean, file: string, type: string, size: number) {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': size, 'Cache-Control': 'no-cache' });
    if (head) {
      res.end();
      return;
    }
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  }

  const server = http.createServer((req, res) => {
    const t0 = performance.now();
    const status = handle(req, res);
    opts.log?.(`${req.method} ${(req.url ?? '').slice(0, 200)} ${status} ${(performance.now() - t0).toFixed(1)}ms`);
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    atlas.close();
    const code = (err as { code?: string }).code;
    if (code === 'EADDRINUSE') throw paramError('port', `${host}:${port} is already in use`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw paramError('host', `cannot bind ${host}`);
    if (code === 'EACCES') throw paramError('port', `not allowed to bind ${host}:${port}`);
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closed: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    server,
    api,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => {
          atlas.close();
          resolve();
        });
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** One path segment, percent-decoded; a slash or malformed escape in it is a 400. */
function decodeSegment(s: string): string {
  if (/%2f|%5c/i.test(s) || s.includes('/')) throw new HttpError(404, 'not found');
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding');
  }
}
