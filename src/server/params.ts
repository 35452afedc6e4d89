/**
 * Request parameters of the JSON API, validated strictly: an unknown, repeated, empty or malformed parameter is a
 * 400 naming it, never a silent default (the same policy as the CLI's flags).
 */
import { HOOKS, type Hook } from '../models/config.js';

/** An error with an HTTP status; its message is sent to the client as `{"error": message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const badRequest = (message: string): HttpError => new HttpError(400, message);
export const notFound = (message: string): HttpError => new HttpError(404, message);

/** The longest search text `q=` accepts. */
export const MAX_QUERY_TEXT = 200;
/** Grid page sizes. */
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 500;
/** Largest integer any id/feature/after parameter accepts (SQLite's integers are 64-bit; ours stay exact in JS). */
const MAX_INT = Number.MAX_SAFE_INTEGER;

/** The query string as a map, refusing parameters the route does not know and parameters given twice. */
export function queryParams(search: URLSearchParams, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of search) {
    if (!allowed.includes(key)) throw badRequest(`unknown parameter "${key}" (known: ${allowed.join(', ') || 'none'})`);
    if (out.has(key)) throw badRequest(`parameter "${key}" given twice`);
    out.set(key, value);
  }
  return out;
}

function nonEmpty(p: Map<string, string>, key: string): string | undefined {
  const v = p.get(key);
  if (v === undefined) return undefined;
  if (v === '') throw badRequest(`${key}= needs a value`);
  return v;
}

export function requireParam(p: Map<string, string>, key: string): string {
  const v = nonEmpty(p, key);
  if (v === undefined) throw badRequest(`${key}= is required`);
  return v;
}

/** A non-negative decimal integer (no sign, no exponent, no fraction), within [min, max]. */
export function parseIntParam(text: string, key: string, min = 0, max = MAX_INT): number {
  if (!/^\d{1,16}$/.test(text)) throw badRequest(`${key}=: expected a non-negative integer, got ${JSON.stringify(clip(text))}`);
  const n = Number(text);
  if (n < min || n > max) throw badRequest(`${key}=: must be between ${min} and ${max}, got ${n}`);
  return n;
}

export function optInt(p: Map<string, string>, key: string, fallback: number, min = 0, max = MAX_INT): number {
  const v = nonEmpty(p, key);
  return v === undefined ? fallback : parseIntParam(v, key, min, max);
}

/** `3` or `1-4` (1-based, inclusive), as the CLI's --blocks. */
export function parseBlocksParam(text: string, key = 'blocks'): [number, number] {
  const m = /^(\d{1,6})(?:-(\d{1,6}))?$/.exec(text);
  if (!m) throw badRequest(`${key}=: expected a block range like "2-4" or "3", got ${JSON.stringify(clip(text))}`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a < 1) throw badRequest(`${key}=: blocks are numbered from 1, got "${text}"`);
  if (b < a) throw badRequest(`${key}=: range "${text}" ends before it starts`);
  return [a, b];
}

export function parseHookParam(text: string): Hook {
  if (!(HOOKS as readonly string[]).includes(text)) throw badRequest(`hook=: "${clip(text)}" is not one of ${HOOKS.join(', ')}`);
  return text as Hook;
}

/** A settings-hash prefix: 1 to 64 hex digits. */
export function parseSettingsParam(text: string): string {
  if (!/^[0-9a-fA-F]{1,64}$/.test(text)) throw badRequest(`settings=: expected a settings-hash prefix (hex digits), got ${JSON.stringify(clip(text))}`);
  return text.toLowerCase();
}

/** A model name (as listed) or a hash prefix; names are file basenames, so no control characters and a sane length. */
export function parseModelParam(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (text.length > 256 || /[\u0000-\u001f\u007f]/.test(text)) throw badRequest('model=: expected a model name or hash prefix');
  return text;
}

export function parseQueryText(text: string): string {
  if (text.length > MAX_QUERY_TEXT) throw badRequest(`q=: at most ${MAX_QUERY_TEXT} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000]/.test(text)) throw badRequest('q=: must not contain NUL');
  return text;
}

export function parseStatusParam(text: string): 'ok' | 'failed' | 'all' {
  if (text !== 'ok' && text !== 'failed' && text !== 'all') throw badRequest(`status=: "${clip(text)}" is not one of ok, failed, all`);
  return text;
}

/** `sort=`: one of the grid's orders (viewer-queries.ts GRID_SORTS). */
export function parseSortParam<T extends string>(text: string, sorts: readonly T[]): T {
  if (!(sorts as readonly string[]).includes(text)) throw badRequest(`sort=: "${clip(text)}" is not one of ${sorts.join(', ')}`);
  return text as T;
}

export function parseOrderParam(text: string): 'asc' | 'desc' {
  if (text !== 'asc' && text !== 'desc') throw badRequest(`order=: "${clip(text)}" is not one of asc, desc`);
  return text;
}

/**
 * `verdict=`: a finding code (features/verdict.ts), e.g. decoded-high. Checked for shape only, not against a fixed
 * list: the codes are verdict.ts's to grow, and a code no record carries simply matches nothing.
 */
export function parseVerdictParam(text: string): string {
  if (!/^[a-z][a-z0-9-]{0,39}$/.test(text)) throw badRequest(`verdict=: expected a finding code such as decoded-high (lower-case letters, digits, -), got ${JSON.stringify(clip(text))}`);
  return text;
}

/** Long input is quoted back only in part. */
function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
