/** Block ranges: which of a model's blocks a request applies to the embeddings, in the notation the CLI spells. */
import { UserError } from '../errors.js';

/** 1-based inclusive block range ("2-4" = blocks 2, 3 and 4; "3" = block 3 alone). */
export type BlockRange = readonly [number, number];

/** Parse a block range "A-B" or "K" (1-based, inclusive). Errors name `param` (the CLI maps it to its flag). */
export function parseBlockRange(spec: string, param = 'blocks'): [number, number] {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(spec);
  if (!m) throw new UserError(`${param}: expected a block range like "2-4" or "3", got "${spec}"`, undefined, param.split(' ')[0]);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a < 1) throw new UserError(`${param}: blocks are numbered from 1, got "${spec}"`, undefined, param.split(' ')[0]);
  if (b < a) throw new UserError(`${param}: range "${spec}" ends before it starts`, undefined, param.split(' ')[0]);
  return [a, b];
}

/** `1,1-4,5` → [[1,1],[1,4],[5,5]]: each item one block range (duplicates dropped, order kept). */
export function parseBlockList(spec: string, param = 'blocks'): [number, number][] {
  const items = spec.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UserError(`${param}: expected a comma-separated list of block ranges like "1,1-4,5", got "${spec}"`, undefined, param.split(' ')[0]);
  const out: [number, number][] = [];
  for (const item of items) {
    const r = parseBlockRange(item, param);
    if (!out.some((o) => o[0] === r[0] && o[1] === r[1])) out.push(r);
  }
  return out;
}
