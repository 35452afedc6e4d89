/** Command-line pieces of `atlas build` beyond the visualize settings (src/cli/settings.ts): block lists, features. */
import { UserError } from '../errors.js';
import { parseBlockRange } from '../cli/args.js';

/** `1,1-4,5` → [[1,1],[1,4],[5,5]]: each item one block range (duplicates dropped, order kept). */
export function parseBlockList(spec: string): [number, number][] {
  const items = spec.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UserError(`--blocks: expected a comma-separated list of block ranges like "1,1-4,5", got "${spec}"`);
  const out: [number, number][] = [];
  for (const item of items) {
    const r = parseBlockRange(item);
    if (!out.some((o) => o[0] === r[0] && o[1] === r[1])) out.push(r);
  }
  return out;
}

/** `0-63` or `0,5,9-12` → feature indices (duplicates dropped, order kept), each checked against the hook's width. */
export function parseFeatures(spec: string, width?: number): number[] {
  const items = spec.split(',').map((s) => s.trim());
  const out: number[] = [];
  const seen = new Set<number>();
  for (const item of items) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!m) throw new UserError(`--features: expected indices and ranges like "0-63" or "0,5,9-12", got "${spec}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new UserError(`--features: range "${item}" ends before it starts`);
    if (width !== undefined && b >= width) throw new UserError(`--features: feature ${b} is outside the hook's features 0-${width - 1}`);
    for (let f = a; f <= b; f++) {
      if (!seen.has(f)) out.push(f);
      seen.add(f);
    }
  }
  return out;
}

/** The selection of one feature at every position, in the notation visualize labels its runs with. */
export function featureSelect(f: number): string {
  return `[:, :, ${f}]`;
}
