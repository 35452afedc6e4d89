/**
 * The original method's selection notation, `[:, P, F]`: batch index (`:` or `0`), then positions P and features F.
 * Each of P and F is
 *   `:`      all, in one objective        `n`    one index
 *   `a-b`    inclusive, one RUN PER ELEMENT `a:b`  half-open, combined into ONE objective
 *   `x,y,…`  a list of the above, each item its own run(s); on the position axis a list is written in
 *            parentheses, `(0,3)`, because a bare comma there separates the axes
 * Runs are the Cartesian product of the position runs and the feature runs.
 */
import { UserError } from '../errors.js';

/** One axis of one run: every index, or an explicit set combined into one objective. */
export type AxisPick = { all: true } | { all: false; indices: number[]; text: string };

export interface SelectionRun {
  positions: AxisPick;
  features: AxisPick;
  /** The run in the original notation, e.g. "[:, :, 2000]" or "[:, 0, 0:4]". */
  label: string;
}

interface ParsedItem {
  kind: 'all' | 'one' | 'inclusive' | 'halfopen';
  a: number;
  b: number;
  /** Offset of the item in the selection text, for error carets and range errors. */
  at: number;
}

function syntaxError(text: string, at: number, what: string): UserError {
  return new UserError(`select: ${what} at character ${at + 1}`, `  ${text}\n  ${' '.repeat(at)}^`, 'select');
}

/** Parse the notation; indices are checked against a model's sizes later, by `expandSelection`. */
export function parseSelection(text: string): { positions: ParsedItem[]; features: ParsedItem[] } {
  let i = 0;
  const skip = () => {
    while (text[i] === ' ') i++;
  };
  const expect = (ch: string, what: string) => {
    skip();
    if (text[i] !== ch) throw syntaxError(text, Math.min(i, text.length), `expected ${what}`);
    i++;
  };
  const integer = (): number => {
    skip();
    const start = i;
    while (i < text.length && /[0-9]/.test(text[i]!)) i++;
    if (start === i) throw syntaxError(text, Math.min(i, text.length), 'expected an index');
    return Number(text.slice(start, i));
  };
  const item = (): ParsedItem => {
    skip();
    const at = i;
    if (text[i] === ':') {
      i++;
      return { kind: 'all', a: 0, b: 0, at };
    }
    const a = integer();
    skip();
    if (text[i] === '-' || text[i] === ':') {
      const kind = text[i] === '-' ? 'inclusive' : 'halfopen';
      i++;
      const b = integer();
      if (kind === 'inclusive' && b < a) throw syntaxError(text, at, `range ${a}-${b} ends before it starts`);
      if (kind === 'halfopen' && b <= a) throw syntaxError(text, at, `range ${a}:${b} is empty`);
      return { kind, a, b, at };
    }
    return { kind: 'one', a, b: a, at };
  };
  const list = (closer: string): ParsedItem[] => {
    const items = [item()];
    skip();
    while (text[i] === ',') {
      i++;
      items.push(item());
      skip();
    }
    if (text[i] !== closer) throw syntaxError(text, Math.min(i, text.length), `expected "${closer}"`);
    return items;
  };
  /** Positions are one item or a parenthesised list: a bare comma there separates the axes. */
  const positionAxis = (): ParsedItem[] => {
    skip();
    if (text[i] !== '(') return [item()];
    i++;
    const items = list(')');
    i++;
    return items;
  };

  expect('[', '"["');
  skip();
  const batchAt = i;
  if (text[i] === ':') i++;
  else if (text[i] === '0') i++;
  else throw syntaxError(text, batchAt, 'batch index must be ":" or "0"');
  expect(',', '","');
  const positions = positionAxis();
  expect(',', '","');
  // The feature axis is last, so a bare comma list there is unambiguous.
  const features = list(']');
  i++;
  skip();
  if (i !== text.length) throw syntaxError(text, i, 'unexpected text after "]"');
  return { positions, features };
}

/** Expand one axis into its runs, checking indices against the axis size. */
function expandAxis(items: ParsedItem[], size: number, axis: 'position' | 'feature', text: string): AxisPick[] {
  const check = (n: number, at: number) => {
    if (n >= size) {
      throw new UserError(`select: ${axis} ${n} is outside the valid range 0-${size - 1}`, `  ${text}\n  ${' '.repeat(at)}^`, 'select');
    }
  };
  const out: AxisPick[] = [];
  for (const it of items) {
    if (it.kind === 'all') out.push({ all: true });
    else if (it.kind === 'one') {
      check(it.a, it.at);
      out.push({ all: false, indices: [it.a], text: String(it.a) });
    } else if (it.kind === 'inclusive') {
      check(it.b, it.at);
      for (let n = it.a; n <= it.b; n++) out.push({ all: false, indices: [n], text: String(n) });
    } else {
      check(it.b - 1, it.at);
      out.push({ all: false, indices: range(it.a, it.b), text: `${it.a}:${it.b}` });
    }
  }
  return out;
}

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a }, (_, k) => a + k);
}

const show = (p: AxisPick) => (p.all ? ':' : p.text);

/**
 * The most runs one `visualize` call takes. Each run is a separate optimisation (seconds each), so more is a sweep:
 * `atlas build` does it resumably, one committed record per feature.
 */
export const MAX_VISUALIZE_RUNS = 4096;

/**
 * The runs a selection means for a hook output of `positions` × `features`. With `maxRuns`, a selection that means
 * more is refused (before the product is built) with `tooMany`'s hint.
 */
export function expandSelection(
  text: string,
  positions: number,
  features: number,
  limit?: { maxRuns: number; hint: string },
): SelectionRun[] {
  const parsed = parseSelection(text);
  const pRuns = expandAxis(parsed.positions, positions, 'position', text);
  const fRuns = expandAxis(parsed.features, features, 'feature', text);
  if (limit && pRuns.length * fRuns.length > limit.maxRuns) {
    throw new UserError(`--select: ${pRuns.length * fRuns.length} runs, more than the ${limit.maxRuns} one call accepts; ${limit.hint}`);
  }
  const runs: SelectionRun[] = [];
  for (const p of pRuns) for (const f of fRuns) runs.push({ positions: p, features: f, label: `[:, ${show(p)}, ${show(f)}]` });
  return runs;
}

/** 0/1 mask over [T, F] for one run. */
export function selectionMask(run: SelectionRun, T: number, F: number): Float32Array {
  const mask = new Float32Array(T * F);
  const ps = run.positions.all ? range(0, T) : run.positions.indices;
  const fs = run.features.all ? range(0, F) : run.features.indices;
  for (const p of ps) for (const f of fs) mask[p * F + f] = 1;
  return mask;
}
