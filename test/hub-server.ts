/**
 * A stand-in for the Hugging Face hub on a loopback port, serving fixture folders in the hub's URL layout: the
 * revision API, paths-info, and /resolve/ downloads with Range support. Knobs make one download break off half-way
 * or arrive corrupted; every request is logged. It listens on 127.0.0.1 only and closes itself after `lifetimeMs`.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface LoggedRequest {
  method: string;
  url: string;
  range: string | undefined;
  auth: string | undefined;
}

export interface FakeHub {
  endpoint: string;
  log: LoggedRequest[];
  /** Files whose next download sends half the bytes and then drops the connection. */
  interruptOnce: Set<string>;
  /** Files served with one byte flipped (their announced hash stays the true one). */
  corrupt: Set<string>;
  sha: string;
  close(): Promise<void>;
}

/** Files kept in git itself (hashed as git blobs); everything else is an LFS file (sha256). */
const GIT_FILES = /\.json$/;

export async function startFakeHub(repos: Record<string, string>, lifetimeMs = 120_000): Promise<FakeHub> {
  const sha = createHash('sha1').update('fake-hub-commit').digest('hex');
  const files = new Map<string, Map<string, Buffer>>();
  for (const [repo, dir] of Object.entries(repos)) {
    files.set(repo, new Map(readdirSync(dir).filter((f) => f !== 'reference.json').map((f) => [f, readFileSync(path.join(dir, f))])));
  }
  const log: LoggedRequest[] = [];
  const interruptOnce = new Set<string>();
  const corrupt = new Set<string>();

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    log.push({ method: req.method ?? '', url: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'GET') {
      const repo = files.get(m[1]!);
      if (!repo) return json(404, { error: 'Repository not found' });
      return json(200, { _id: 'x', id: m[1], sha, siblings: [...repo.keys()].map((rfilename) => ({ rfilename })) });
    }
    m = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'POST') {
      const repo = files.get(m[1]!);
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (!repo || m![2] !== sha) return json(404, { error: 'Revision not found' });
        const paths = (JSON.parse(body) as { paths: string[] }).paths;
        json(200, paths.filter((p) => repo.has(p)).map((p) => describe(p, repo.get(p)!)));
      });
      return;
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m && req.method === 'GET') {
      const file = decodeURIComponent(m[3]!);
      let bytes = files.get(m[1]!)?.get(file);
      if (!bytes || m[2] !== sha) {
        res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
        return res.end();
      }
      if (corrupt.has(file)) {
        bytes = Buffer.from(bytes);
        bytes[bytes.length >> 1] ^= 0xff;
      }
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const body = bytes.subarray(start);
      const headers: Record<string, string | number> = { 'content-length': body.length, etag: `"${etagOf(file, bytes)}"` };
      if (start > 0) headers['content-range'] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
      res.writeHead(start > 0 ? 206 : 200, headers);
      if (interruptOnce.delete(file)) {
        // Half the promised bytes, flushed, then the connection dies.
        res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.destroy(), 20));
        return;
      }
      return res.end(body);
    }
    json(404, { error: `no route ${req.method} ${url.pathname}` });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const timer = setTimeout(() => server.close(), lifetimeMs);
  timer.unref();
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    log,
    interruptOnce,
    corrupt,
    sha,
    close: () =>
      new Promise((resolve) => {
        clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function etagOf(file: string, bytes: Buffer): string {
  return GIT_FILES.test(file) ? gitSha1(bytes) : createHash('sha256').update(bytes).digest('hex');
}

function gitSha1(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** paths-info's answer for one file, as the hub spells it. */
function describe(p: string, bytes: Buffer): Record<string, unknown> {
  if (GIT_FILES.test(p)) return { type: 'file', path: p, size: bytes.length, oid: gitSha1(bytes) };
  const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${etagOf(p, bytes)}\nsize ${bytes.length}\n`;
  return {
    type: 'file',
    path: p,
    size: pointer.length,
    oid: gitSha1(Buffer.from(pointer)),
    lfs: { oid: etagOf(p, bytes), size: bytes.length, pointerSize: pointer.length },
  };
}
