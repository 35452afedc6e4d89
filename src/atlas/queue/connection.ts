/**
 * `--queue redis://[:PASS@]HOST:PORT[/DB]` (or `rediss://` for TLS) → Redis clients for BullMQ. The URL goes to ioredis
 * as is, so its password, user, database number and TLS all pass through. BullMQ's ESM build cannot load ioredis by
 * itself, so every queue, worker and collector is handed clients made here.
 */
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { UserError } from '../../errors.js';

export interface QueueUrl {
  url: string;
  /** The URL without its password, for messages. */
  display: string;
}

export function parseQueueUrl(url: string, flag = '--queue'): QueueUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`${flag}: "${url}" is not a URL (expected redis://HOST:PORT[/DB] or rediss://…)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UserError(`${flag}: "${u.protocol}" is not redis: or rediss:`);
  if (!u.hostname) throw new UserError(`${flag}: "${url}" names no host`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new UserError(`${flag}: database "${db}" is not a number`);
  const safe = new URL(url);
  if (safe.password) safe.password = '***';
  return { url, display: safe.toString() };
}

/**
 * A client that waits out a Redis restart instead of failing commands (BullMQ requires `maxRetriesPerRequest: null`
 * for its blocking connections, and a sweep should survive a restart anyway).
 */
export function redisClient(q: QueueUrl): Redis {
  const client = new Redis(q.url, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 200, 2000) });
  // Errors while reconnecting are reported by the commands that wait on them; an unhandled 'error' event would crash.
  client.on('error', () => {});
  return client;
}

/** Fail fast with one clear line when Redis is not there at the start (later outages are waited out). */
export async function checkReachable(q: QueueUrl, timeoutMs = 5000, flag = '--queue'): Promise<void> {
  // A plain TCP probe first: ioredis, even told not to retry, keeps the process alive ~2 s after a refused connection.
  const u = new URL(q.url);
  await new Promise<void>((resolve, reject) => {
    const sock = connect({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379), timeout: timeoutMs });
    sock.once('connect', () => {
      sock.destroy();
      resolve();
    });
    sock.once('timeout', () => {
      sock.destroy();
      reject(new UserError(`${flag}: cannot reach Redis at ${q.display}: no answer within ${timeoutMs / 1000} s`));
    });
    sock.once('error', (e) => reject(new UserError(`${flag}: cannot reach Redis at ${q.display}: ${e.message}`)));
  });
  const client = new Redis(q.url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, connectTimeout: timeoutMs });
  let lastError = '';
  client.on('error', (e: Error) => (lastError = e.message));
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw new UserError(`${flag}: cannot reach Redis at ${q.display}: ${lastError || (err as Error).message}`);
  } finally {
    client.disconnect();
  }
}
