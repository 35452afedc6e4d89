/**
 * The visualize settings as command-line flags, shared by `visualize`, `atlas build`, `baseline` and `invert`: one
 * parser, so the same flag means the same thing (with the same default and the same error) everywhere.
 */
import { UserError } from '../errors.js';
import { DECODE_MODES, type DecodeMode } from '../features/decode.js';
import { OBJECTIVES, type ObjectiveKind } from '../features/objective.js';
import { DEFAULT_REFINE, REFINE_METHODS, type RefineMethod, type RefineSettings } from '../features/refine.js';
import { DEFAULT_SETTINGS, type InitKind, type VisualizeSettings } from '../features/visualize.js';
import { readDirectionFile } from '../formats/npy.js';
import { HOOKS, type Hook } from '../models/config.js';
import type { LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { optNumber, optString, parseIds, type FlagSpec, type ParsedFlags } from './args.js';

export function oneOf<T extends string>(flags: ParsedFlags, name: string, allowed: readonly T[], fallback: T): T {
  const v = optString(flags, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new UserError(`--${name}: "${v}" is not one of ${allowed.join(', ')}`);
  return v as T;
}

export function parseHook(flags: ParsedFlags): Hook {
  return oneOf<Hook>(flags, 'hook', HOOKS, 'resid');
}

/** A direction vector from JSON (an array of numbers) or .npy (little-endian float32/float64, 1-D). */
export function readDirection(path: string): Float32Array {
  return readDirectionFile(path);
}

/** Flags of discrete refinement, shared by `visualize`, `atlas build` and `invert`. */
export const REFINE_FLAGS: FlagSpec = {
  refine: 'string',
  'refine-steps': 'int',
  candidates: 'int',
  'swap-topk': 'int',
  'refine-starts': 'int',
  population: 'int',
  fluency: 'string',
  'restart-every': 'int',
  ban: 'string',
  printable: 'bool',
  ascii: 'bool',
  retokenize: 'bool',
};

export const REFINE_USAGE =
  '  [--refine gcg|epo [--refine-steps N] [--candidates N] [--swap-topk K] [--refine-starts N] [--population N] [--fluency MIN,MAX|L1,L2,…]\n' +
  '   [--restart-every N] [--ban ID,ID,…] [--printable] [--ascii] [--retokenize]]';

/**
 * Refinement settings from the flags, or null without --refine (then every other refinement flag is refused, so a
 * forgotten --refine is not silently ignored). `methods` limits --refine (invert: gcg only).
 */
export function parseRefineFlags(flags: ParsedFlags, seed: number, methods: readonly RefineMethod[] = REFINE_METHODS): RefineSettings | null {
  const method = optString(flags, 'refine');
  if (method === undefined) {
    const stray = Object.keys(REFINE_FLAGS).find((f) => f !== 'refine' && flags[f] !== undefined);
    if (stray) throw new UserError(`--${stray}: only with --refine`);
    return null;
  }
  if (!(methods as readonly string[]).includes(method)) throw new UserError(`--refine: "${method}" is not one of ${methods.join(', ')}`);
  const d = DEFAULT_REFINE;
  if (method !== 'epo') {
    const stray = ['population', 'fluency', 'restart-every'].find((f) => flags[f] !== undefined);
    if (stray) throw new UserError(`--${stray}: only with --refine epo`);
  } else if (flags['refine-starts'] !== undefined) throw new UserError('--refine-starts: only with --refine gcg');
  const fluencyText = optString(flags, 'fluency');
  let fluency = d.fluency;
  if (fluencyText !== undefined) {
    fluency = fluencyText.split(',').map((x) => Number(x.trim()));
    if (fluency.some((x) => !Number.isFinite(x) || x < 0)) throw new UserError(`--fluency: expected non-negative numbers separated by commas, got "${fluencyText}"`);
  }
  const ban = optString(flags, 'ban');
  return {
    method: method as RefineMethod,
    steps: optNumber(flags, 'refine-steps', d.steps, { min: 0, max: 100_000 }),
    candidates: optNumber(flags, 'candidates', d.candidates, { min: 1, max: 4096 }),
    swapTopk: optNumber(flags, 'swap-topk', d.swapTopk, { min: 1, max: 1_000_000 }),
    starts: optNumber(flags, 'refine-starts', d.starts, { min: 1, max: 64 }),
    population: optNumber(flags, 'population', d.population, { min: 1, max: 1024 }),
    fluency,
    restartEvery: optNumber(flags, 'restart-every', d.restartEvery, { min: 0, max: 1_000_000 }),
    filter: { ban: ban === undefined ? [] : parseIds(ban, '--ban'), printable: flags.printable === true, ascii: flags.ascii === true },
    retokenize: flags.retokenize === true,
    seed,
  };
}

/** `--baseline skip-connection|exhaustive`: true when the exhaustive single-token baseline is asked for. */
export function parseBaselineFlag(flags: ParsedFlags): boolean {
  return oneOf(flags, 'baseline', ['skip-connection', 'exhaustive'] as const, 'skip-connection') === 'exhaustive';
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

/** The visualize flags that become settings (`--blocks`, `--hook` and `--select` belong to the sweep, not the settings). */
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
  baseline: 'string',
  ...REFINE_FLAGS,
};

/** Settings from the flags for one block range and hook; `--direction` is read when the command offers it. */
export function settingsFromFlags(flags: ParsedFlags, model: LoadedModel, blocks: [number, number], hook: Hook): VisualizeSettings {
  const d = DEFAULT_SETTINGS;
  const encode = (name: string): number[] => {
    const text = optString(flags, name);
    if (text === undefined) return [];
    if (!model.tokenizer) throw new UserError(`--${name}: ${model.path} has no tokenizer (give --tokenizer PATH)`);
    return model.tokenizer.encode(text);
  };
  const direction = optString(flags, 'direction');
  const seed = optNumber(flags, 'seed', d.seed);
  return {
    blocks,
    hook,
    tokens: optNumber(flags, 'tokens', d.tokens, { min: 1, max: 4096 }),
    steps: optNumber(flags, 'steps', d.steps, { min: 0, max: 1_000_000 }),
    lr: optNumber(flags, 'lr', d.lr),
    lrEnd: optNumber(flags, 'lr-end', d.lrEnd),
    optimizer: oneOf(flags, 'optimizer', ['sgd', 'adam'] as const, d.optimizer),
    objective: {
      kind: oneOf<ObjectiveKind>(flags, 'objective', OBJECTIVES, d.objective.kind),
      C: optNumber(flags, 'C', d.objective.C),
      ...(direction ? { direction: readDirection(direction) } : {}),
    },
    topk: optNumber(flags, 'topk', d.topk, { min: 1, max: 100 }),
    decode: oneOf<DecodeMode>(flags, 'decode', DECODE_MODES, d.decode),
    init: parseInit(optString(flags, 'init') ?? 'randn', model.tokenizer),
    prefix: encode('prefix'),
    suffix: encode('suffix'),
    bos: flags.bos === true,
    seed,
    batch: optNumber(flags, 'batch', d.batch, { min: 1, max: 1024 }),
    randomDraws: optNumber(flags, 'random-draws', d.randomDraws, { min: 0, max: 1000 }),
    refine: parseRefineFlags(flags, seed),
    exhaustive: parseBaselineFlag(flags),
  };
}
