/**
 * Command-line pieces of `atlas build`: block lists, feature specs and the visualize settings (the same flags, names
 * and defaults as `visualize`).
 */
import { UserError } from '../errors.js';
import { DECODE_MODES, type DecodeMode } from '../features/decode.js';
import { OBJECTIVES, type ObjectiveKind } from '../features/objective.js';
import { DEFAULT_SETTINGS, type InitKind, type VisualizeSettings } from '../features/visualize.js';
import { HOOKS, type Hook } from '../models/config.js';
import type { LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { optNumber, optString, parseBlockRange, type FlagSpec, type ParsedFlags } from '../cli/args.js';

/** The visualize flags that become settings (`--blocks`, `--hook` and `--select` are the sweep's, not the settings'). */
export const SETTINGS_FLAGS: FlagSpec = {
  tokens: 'int',
  steps: 'int',
  lr: 'number',
  'lr-end': 'number',
  optimizer: 'string',
  objective: 'string',
  C: 'number',
  topk: 'int',
  decode: 'string',
  init: 'string',
  prefix: 'string',
  suffix: 'string',
  bos: 'bool',
  seed: 'int',
  batch: 'int',
  'random-draws': 'int',
};

export function oneOf<T extends string>(flags: ParsedFlags, name: string, allowed: readonly T[], fallback: T): T {
  const v = optString(flags, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new UserError(`--${name}: "${v}" is not one of ${allowed.join(', ')}`);
  return v as T;
}

export function parseHook(flags: ParsedFlags): Hook {
  return oneOf<Hook>(flags, 'hook', HOOKS, 'resid');
}

function parseInit(spec: string, tokenizer: Tokenizer | null): InitKind {
  if (spec === 'randn') return { kind: 'randn' };
  if (spec === 'random-tokens') return { kind: 'random-tokens' };
  if (spec.startsWith('tokens:')) {
    if (!tokenizer) throw new UserError('--init: tokens:TEXT needs a tokenizer');
    const ids = tokenizer.encode(spec.slice(7));
    if (ids.length === 0) throw new UserError('--init: tokens:TEXT encodes to no tokens');
    return { kind: 'tokens', ids };
  }
  throw new UserError(`--init: "${spec}" is not one of randn, random-tokens, tokens:TEXT`);
}

/** Settings from the visualize flags, for one block range and hook. */
export function settingsFromFlags(flags: ParsedFlags, model: LoadedModel, blocks: [number, number], hook: Hook): VisualizeSettings {
  const d = DEFAULT_SETTINGS;
  const encode = (name: string): number[] => {
    const text = optString(flags, name);
    if (text === undefined) return [];
    if (!model.tokenizer) throw new UserError(`--${name}: ${model.path} has no tokenizer (give --tokenizer PATH)`);
    return model.tokenizer.encode(text);
  };
  return {
    blocks,
    hook,
    tokens: optNumber(flags, 'tokens', d.tokens, { min: 1, max: 4096 }),
    steps: optNumber(flags, 'steps', d.steps, { min: 0, max: 1_000_000 }),
    lr: optNumber(flags, 'lr', d.lr),
    lrEnd: optNumber(flags, 'lr-end', d.lrEnd),
    optimizer: oneOf(flags, 'optimizer', ['sgd', 'adam'] as const, d.optimizer),
    objective: { kind: oneOf<ObjectiveKind>(flags, 'objective', OBJECTIVES, d.objective.kind), C: optNumber(flags, 'C', d.objective.C) },
    topk: optNumber(flags, 'topk', d.topk, { min: 1, max: 100 }),
    decode: oneOf<DecodeMode>(flags, 'decode', DECODE_MODES, d.decode),
    init: parseInit(optString(flags, 'init') ?? 'randn', model.tokenizer),
    prefix: encode('prefix'),
    suffix: encode('suffix'),
    bos: flags.bos === true,
    seed: optNumber(flags, 'seed', d.seed),
    batch: optNumber(flags, 'batch', d.batch, { min: 1, max: 1024 }),
    randomDraws: optNumber(flags, 'random-draws', d.randomDraws, { min: 0, max: 1000 }),
  };
}

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
