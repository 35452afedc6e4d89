/** The pieces of an atlas sweep beyond the visualize settings: which features, and the selection each becomes. */
import { paramError } from '../errors.js';

/** `0-63` or `0,5,9-12` → feature indices (duplicates dropped, order kept), each checked against the hook's width. */
export function parseFeatures(spec: string, width?: number): number[] {
  const items = spec.split(',').map((s) => s.trim());
  const out: number[] = [];
  const seen = new Set<number>();
  for (const item of items) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!m) throw paramError('features', `expected indices and ranges like "0-63" or "0,5,9-12", got "${spec}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw paramError('features', `range "${item}" ends before it starts`);
    if (width !== undefined && b >= width) throw paramError('features', `feature ${b} is outside the hook's features 0-${width - 1}`);
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
