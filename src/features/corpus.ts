/**
 * Real text for grounding: reading a corpus file into stories, tokenising each story on its own, and cutting the
 * token streams into windows that never cross a story boundary.
 *
 * Two corpus formats:
 *   - JSONL (`.jsonl`): one JSON object per non-empty line with a string `text` field; one object = one story.
 *   - plain text (anything else): stories separated by a line holding only the separator (`<|endoftext|>` by
 *     default, TinyStories' convention). Text after the last separator is a story too.
 * Stories that are empty or whitespace only are dropped.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import type { Tokenizer } from '../tokenizers/types.js';

export const DEFAULT_SEPARATOR = '<|endoftext|>';
/** A corpus larger than this is refused before it is read (the whole file is held in memory). */
export const MAX_CORPUS_BYTES = 256 * 2 ** 20;

export interface Corpus {
  file: string;
  /** SHA-256 of the file's bytes: what an atlas scan is keyed by. */
  hash: string;
  stories: string[];
}

/** Split plain text into stories on separator lines. */
export function splitStories(text: string, separator = DEFAULT_SEPARATOR): string[] {
  const stories: string[] = [];
  let current: string[] = [];
  for (const line of text.split('\n')) {
    if (line.replace(/\r$/, '').trim() === separator) {
      stories.push(current.join('\n'));
      current = [];
    } else current.push(line);
  }
  stories.push(current.join('\n'));
  return stories.filter((s) => s.trim() !== '');
}

/** JSONL stories: each non-empty line an object with a string `text`; errors name the file and line. */
export function parseJsonl(text: string, file: string): string[] {
  const stories: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new UserError(`--corpus: ${file}:${i + 1}: not valid JSON`);
    }
    const t = (obj as { text?: unknown } | null)?.text;
    if (typeof t !== 'string') throw new UserError(`--corpus: ${file}:${i + 1}: expected an object with a string "text" field`);
    if (t.trim() !== '') stories.push(t);
  });
  return stories;
}

export function readCorpus(file: string, opts: { separator?: string; flag?: string } = {}): Corpus {
  const flag = opts.flag ?? '--corpus';
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UserError(`${flag}: ${file}: not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${flag}: ${file}: cannot read the file`);
  }
  if (size > MAX_CORPUS_BYTES) throw new UserError(`${flag}: ${file}: ${size} bytes is more than the ${MAX_CORPUS_BYTES}-byte limit for a corpus`);
  const bytes = readFileSync(file);
  const text = bytes.toString('utf8');
  const stories = path.extname(file).toLowerCase() === '.jsonl' ? parseJsonl(text, file) : splitStories(text, opts.separator);
  if (stories.length === 0) throw new UserError(`${flag}: ${file}: holds no stories`);
  return { file, hash: createHash('sha256').update(bytes).digest('hex'), stories };
}

/** Each story's token ids, tokenised on its own, with BOS in front when asked. */
export function tokenizeStories(tokenizer: Tokenizer, stories: string[], opts: { bos: boolean }): number[][] {
  if (opts.bos && tokenizer.bosId === null) throw new UserError('--bos: the tokenizer has no BOS token');
  return stories.map((s) => tokenizer.encode(s, { bos: opts.bos }));
}

/** A window of one story's tokens: `ids` start at token `start` of story `story`. */
export interface Window {
  story: number;
  start: number;
  ids: number[];
}

/**
 * Windows of `size` tokens with stride = size, never crossing a story: each story's last window may be shorter.
 * `maxTokens` stops once that many tokens are covered (the window that crosses the limit is cut at it).
 */
export function cutWindows(stories: number[][], size: number, maxTokens = Infinity): Window[] {
  if (!Number.isInteger(size) || size < 1) throw new UserError(`--window: must be a positive integer, got ${size}`);
  const out: Window[] = [];
  let budget = maxTokens;
  for (const [story, ids] of stories.entries()) {
    for (let start = 0; start < ids.length && budget > 0; start += size) {
      const w = ids.slice(start, Math.min(start + size, start + budget));
      out.push({ story, start, ids: w });
      budget -= w.length;
    }
    if (budget <= 0) break;
  }
  return out;
}

/**
 * Every stretch of `length` consecutive tokens of every story (stride 1, never crossing a story): the real inputs a
 * visualize run's free positions are compared with. Returns [story, start] pairs; a story shorter than `length`
 * gives none.
 */
export function slidingStarts(stories: number[][], length: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [story, ids] of stories.entries()) for (let s = 0; s + length <= ids.length; s++) out.push([story, s]);
  return out;
}
