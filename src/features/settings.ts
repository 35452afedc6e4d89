/**
 * THE settings table: every setting the library and the CLI know, once — its parameter name, flag, type, range,
 * default, description, the commands that take it, and how a visualize record stores it. Flags, parsing and
 * validation, `--help`, the atlas record's settings (and so the settings hash), the viewer's reproduce command and the
 * JSON schema's settings are all derived from this table; nothing else states a setting.
 *
 * Three scopes:
 * - `recorded`: decides a result. Part of the command's settings object and, for visualize and `atlas build`, of the
 *   stored settings record that is hashed.
 * - `run`: how a result is computed, not what it is (threads, batch, memory mode, tokenizer file). Recorded as
 *   provenance beside a record, outside the settings hash.
 * - `input`: what a command works on (the model, blocks, hook, selection, an atlas file, output format). Blocks, hook
 *   and selection are columns of an atlas record, not settings.
 *
 * Adding a setting: add an entry here and use its parameter where it matters. A new recorded setting must have a
 * default and no `record.always`: at its default it is left out of the record, so records made before it existed keep
 * their hash (and so resume and compare).
 */
import { createHash } from 'node:crypto';
import { paramError, UserError } from '../errors.js';
import { readDirectionFile } from '../formats/npy.js';
import { HOOKS } from '../models/config.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { RefineSettings } from './refine/settings.js';
import { DECODE_MODES } from './decode.js';
import { OBJECTIVES } from './objective.js';
import { REFINE_METHODS } from './refine/methods.js';
import { loadSae, SAE_OBJECTIVES } from './sae.js';

export const COMMANDS = [
  'inspect',
  'tokenize',
  'generate',
  'forward',
  'visualize',
  'attribute',
  'baseline',
  'invert',
  'random-model',
  'atlas build',
  'atlas scan',
  'atlas compare',
  'atlas export',
  'atlas ls',
  'serve',
  'devices',
  'worker',
  'queue status',
  'queue drain',
  'queue cancel',
] as const;
export type CommandName = (typeof COMMANDS)[number];

export type SettingKind = 'int' | 'number' | 'string' | 'bool' | 'enum' | 'path';
export type Scope = 'recorded' | 'run' | 'input';
/** Help groups, in the order `--help` lists them. */
export const GROUPS = ['model', 'selection', 'optimisation', 'decoding', 'verification', 'refinement', 'run', 'output'] as const;
export type Group = (typeof GROUPS)[number];

/** What a setting's transform may consult: the model's tokenizer, for settings given as text but stored as ids. */
export interface SettingContext {
  tokenizer: Tokenizer | null;
  /** For error messages: where the tokenizer would have come from. */
  modelPath?: string;
}

/** What a reproduce command may consult: the tokenizer (ids → text) and the atlas's stored vectors (hash → file). */
export interface ReproduceContext {
  tokenizer: Tokenizer | null;
  /** The path a stored vector is written back to, or null when the atlas does not hold it. */
  vectorFile(hash: string): string | null;
  notes: string[];
}

export interface Setting {
  /** The command-line flag, without `--`. */
  flag: string;
  /**
   * The library's name: a path into the command's settings object (`lrEnd`, `objective.C`, `refine.filter.ban`) for
   * recorded and run settings; for inputs, the name the library's errors use.
   */
  param: string;
  kind: SettingKind;
  choices?: readonly string[];
  /** Inclusive bounds; `above` is an exclusive lower bound (a learning rate must be > 0). */
  min?: number;
  max?: number;
  above?: number;
  /** The default for every command that takes it (undefined: none — absent unless given). */
  default?: unknown;
  /** Run options that configure the engine or the model loading (threads, memory mode, tokenizer file), not a command's settings object. */
  engine?: boolean;
  /** Per-command overrides of default and bounds. */
  per?: Partial<Record<CommandName, { default?: unknown; max?: number; choices?: readonly string[] }>>;
  /** The value may be given as `@FILE` (read from a file: selections too long for a command line). */
  atFile?: boolean;
  /** Shown in help after the flag: `--steps N`. */
  metavar?: string;
  describe: string;
  group: Group;
  scope: Scope;
  commands: readonly CommandName[];
  required?: readonly CommandName[];
  /** Valid only together with another flag (and, when given, one of its values): `--population` needs `--refine epo`. */
  needs?: { flag: string; values?: readonly string[] };
  /** The flag's text → the parameter's value (default: the parsed value itself). */
  toParam?: (value: unknown, ctx: SettingContext) => unknown;
  /** How a visualize record stores it (recorded settings only). */
  record?: {
    key: string;
    /** Nested under the record's `refine` object. */
    in?: 'refine';
    /** Stored even at its default: the settings that existed when the record format was fixed (their hash depends on it). */
    always?: boolean;
    /** The stored value from the parameter's value (default: the value itself). `undefined` = not stored. */
    encode?: (paramValue: unknown) => unknown;
    /** The flag arguments that reproduce a stored value (default: `--flag value`, or `--flag` for a true bool). */
    toArgs?: (stored: unknown, ctx: ReproduceContext) => string[];
  };
}

const MODEL_COMMANDS = ['inspect', 'tokenize', 'generate', 'forward', 'visualize', 'attribute', 'baseline', 'invert', 'atlas build', 'atlas scan'] as const satisfies readonly CommandName[];
const RUNNING_COMMANDS = ['generate', 'forward', 'visualize', 'attribute', 'baseline', 'invert', 'atlas build', 'atlas scan'] as const satisfies readonly CommandName[];
/** Commands whose settings object is VisualizeSettings (and whose results are records). */
export const VISUALIZE_COMMANDS = ['visualize', 'atlas build'] as const satisfies readonly CommandName[];
const VIS = VISUALIZE_COMMANDS;
const REFINING = ['visualize', 'atlas build', 'invert'] as const satisfies readonly CommandName[];
const JSON_COMMANDS = ['forward', 'visualize', 'attribute', 'baseline', 'invert', 'random-model', 'atlas build', 'atlas scan', 'atlas compare', 'atlas ls'] as const satisfies readonly CommandName[];

/** Token ids stored for a setting given as text: reproduced as text through the tokenizer, with a note when it does not round-trip. */
function textArgs(flag: string, ids: number[], ctx: ReproduceContext, prefix = ''): string[] {
  if (ids.length === 0) return [];
  if (!ctx.tokenizer) {
    ctx.notes.push(`--${flag} was the token ids ${ids.join(',')}; without the model's tokenizer the text is unknown`);
    return [`--${flag}`, `${prefix}<ids ${ids.join(',')}>`];
  }
  const text = ctx.tokenizer.decode(ids);
  const again = ctx.tokenizer.encode(text);
  if (again.length !== ids.length || again.some((x, i) => x !== ids[i])) {
    ctx.notes.push(`--${flag} ${JSON.stringify(prefix + text)} encodes to ${again.join(',')}, not the stored ids ${ids.join(',')}`);
  }
  return [`--${flag}`, prefix + text];
}

function encodeText(param: string, flag: string) {
  return (value: unknown, ctx: SettingContext): number[] => {
    if (Array.isArray(value)) return value as number[];
    if (value === undefined || value === '') return [];
    if (!ctx.tokenizer) throw paramError(param, `${ctx.modelPath ?? 'the model'} has no tokenizer (give --tokenizer PATH) to encode --${flag}`);
    return ctx.tokenizer.encode(String(value));
  };
}

/** "1,2,3" → ids (checked against the vocabulary once the model is known). */
export function parseIdList(spec: string, param: string): number[] {
  const parts = spec.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw paramError(param, `expected comma-separated token ids, got "${spec}"`);
  return parts.map(Number);
}

const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x));

/** SHA-256 of a vector's float32 bytes: how a direction is named in a record and kept in an atlas. */
export function vectorHash(v: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).digest('hex');
}

export const SETTINGS: readonly Setting[] = [
  // ---- model -------------------------------------------------------------------------------------------------
  { flag: 'model', param: 'model', kind: 'path', metavar: 'PATH', group: 'model', scope: 'input', commands: MODEL_COMMANDS, required: MODEL_COMMANDS,
    describe: 'checkpoint: a .gguf file, a llama2.c .bin, or a Hugging Face folder (config.json + safetensors)' },
  { flag: 'tokenizer', engine: true, param: 'tokenizer', kind: 'path', metavar: 'PATH', group: 'model', scope: 'run', commands: [...MODEL_COMMANDS, 'random-model'],
    describe: 'a llama2.c tokenizer.bin (default: tok{vocab}.bin or tokenizer.bin beside a .bin checkpoint)' },
  { flag: 'keep-embeddings', param: 'keepEmbeddings', kind: 'bool', default: false, group: 'model', scope: 'input', commands: ['random-model'],
    describe: 'keep the trained embedding table (and position table), final norm and head; draw only the blocks fresh' },
  { flag: 'map-from', param: 'mapFrom', kind: 'path', metavar: 'PATH', group: 'model', scope: 'input', commands: ['atlas build'],
    describe: 'a second checkpoint A with the same tokenizer: fit a ridge map from its embedding table to --model\'s over the shared vocabulary and build, per --features f, one --direction record along A\'s feature f mapped into --model (for atlas compare --pair vocab)' },
  { flag: 'like', param: 'like', kind: 'path', metavar: 'PATH', group: 'model', scope: 'input', commands: ['random-model'], required: ['random-model'],
    describe: 'the trained checkpoint whose architecture and tokenizer the control copies' },
  { flag: 'out', param: 'out', kind: 'path', metavar: 'PATH', group: 'output', scope: 'input', commands: ['random-model', 'generate'], required: ['random-model'],
    describe: 'random-model: an empty or new folder for the Hugging Face checkpoint; generate: the corpus file --samples writes' },

  // ---- selection ---------------------------------------------------------------------------------------------
  { flag: 'blocks', param: 'blocks', kind: 'string', metavar: 'A-B', group: 'selection', scope: 'input', commands: ['forward', 'visualize', 'attribute', 'baseline', 'invert', 'atlas build', 'atlas scan'],
    describe: 'blocks A..B applied straight to the embeddings (1-based, inclusive; K = K-K). atlas build: a list, "1,1-4,5". Required unless --hook is a TransformerLens name' },
  { flag: 'hook', param: 'hook', kind: 'string', metavar: 'H', group: 'selection', scope: 'input', default: 'resid',
    commands: ['forward', 'visualize', 'attribute', 'baseline', 'invert', 'atlas build', 'atlas scan', 'inspect'], per: { forward: { default: undefined }, inspect: { default: undefined } },
    describe: `which output of block B: ${HOOKS.join(', ')} (see the README's hook table), or a TransformerLens name such as blocks.0.hook_resid_post (implies blocks 1..l+1)` },
  { flag: 'select', param: 'select', kind: 'string', metavar: 'SEL', atFile: true, group: 'selection', scope: 'input', commands: ['visualize', 'attribute', 'baseline'], required: ['visualize', 'attribute', 'baseline'],
    describe: 'the slice of the hook output, "[:, P, F]": a-b = one run each, a:b = one combined objective, (0,3) = a list of positions; @FILE reads it from a file' },
  { flag: 'features', param: 'features', kind: 'string', metavar: 'SPEC', group: 'selection', scope: 'input', commands: ['atlas build', 'atlas scan'],
    describe: 'features to sweep, "0-63" or "0,5,9-12": one run [:, :, f] per feature' },
  { flag: 'ids', param: 'ids', kind: 'string', metavar: 'IDS', group: 'selection', scope: 'input', commands: ['forward', 'attribute', 'invert'],
    describe: 'input token ids, "1,2,3" (or give --text)' },
  { flag: 'text', param: 'text', kind: 'string', metavar: 'TEXT', group: 'selection', scope: 'input', commands: ['tokenize', 'forward', 'attribute', 'invert'], required: ['tokenize'],
    describe: 'input text, encoded with the model\'s tokenizer' },
  { flag: 'tokens', param: 'tokens', kind: 'int', min: 1, max: 4096, default: 5, metavar: 'N', group: 'selection', scope: 'recorded', commands: [...VIS, 'baseline'],
    describe: 'optimised (free) positions', record: { key: 'tokens', always: true } },
  { flag: 'prefix', param: 'prefix', kind: 'string', metavar: 'TEXT', group: 'selection', scope: 'recorded', commands: [...VIS, 'baseline'], default: [],
    describe: 'fixed context before the free positions (not optimised)', toParam: encodeText('prefix', 'prefix'),
    record: { key: 'prefix', always: true, toArgs: (v, ctx) => (isIds(v) ? textArgs('prefix', v, ctx) : []) } },
  { flag: 'suffix', param: 'suffix', kind: 'string', metavar: 'TEXT', group: 'selection', scope: 'recorded', commands: [...VIS, 'baseline'], default: [],
    describe: 'fixed context after the free positions', toParam: encodeText('suffix', 'suffix'),
    record: { key: 'suffix', always: true, toArgs: (v, ctx) => (isIds(v) ? textArgs('suffix', v, ctx) : []) } },
  { flag: 'bos', param: 'bos', kind: 'bool', default: false, group: 'selection', scope: 'recorded', commands: ['tokenize', 'forward', 'attribute', 'invert', ...VIS, 'baseline'],
    describe: 'start the input with the BOS token (a fixed position)', record: { key: 'bos', always: true } },

  // ---- optimisation ------------------------------------------------------------------------------------------
  { flag: 'steps', param: 'steps', kind: 'int', min: 0, max: 1_000_000, default: 500, per: { invert: { default: 2000 } }, metavar: 'N', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'invert'],
    describe: 'gradient steps on the embeddings', record: { key: 'steps', always: true } },
  { flag: 'lr', param: 'lr', kind: 'number', above: 0, default: 2, per: { invert: { default: 0.05 } }, metavar: 'X', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'invert'],
    describe: 'learning rate at the first step', record: { key: 'lr', always: true } },
  { flag: 'lr-end', param: 'lrEnd', kind: 'number', min: 0, default: 0.2, per: { invert: { default: 0.005 } }, metavar: 'X', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'invert'],
    describe: 'learning rate at the last step (linear schedule; invert: --lr / 10 when only --lr is given)', record: { key: 'lr_end', always: true } },
  { flag: 'optimizer', param: 'optimizer', kind: 'enum', choices: ['sgd', 'adam'], default: 'sgd', per: { invert: { default: 'adam' } }, metavar: 'NAME', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'invert'],
    describe: 'plain gradient steps (the original method) or Adam', record: { key: 'optimizer', always: true } },
  { flag: 'objective', param: 'objective.kind', kind: 'enum', choices: OBJECTIVES, default: 'l1', metavar: 'KIND', group: 'optimisation', scope: 'recorded', commands: VIS,
    describe: 'l1 = Σ|C − O[sel]| (the original), sum = Σ(C − O) without a ceiling, max = maximise the mean',
    record: { key: 'objective', always: true, toArgs: (v) => (v === 'direction' ? [] : ['--objective', String(v)]) } },
  { flag: 'C', param: 'objective.C', kind: 'number', above: 0, default: 100, metavar: 'X', group: 'optimisation', scope: 'recorded', commands: VIS,
    describe: 'the target constant of l1 and sum', record: { key: 'C', always: true } },
  { flag: 'direction', param: 'objective.direction', kind: 'path', metavar: 'FILE', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'baseline', 'atlas scan'],
    describe: 'a probe or SAE vector (JSON array or 1-D .npy): maximise its dot product with the hook output at the selected positions (atlas build: one record per block range, instead of --features)',
    toParam: (v) => (v === undefined ? undefined : readDirectionFile(String(v), 'objective.direction')),
    record: {
      key: 'direction',
      encode: (v) => (v instanceof Float32Array ? vectorHash(v) : undefined),
      toArgs: (hash, ctx) => {
        const file = ctx.vectorFile(String(hash));
        if (file) return ['--direction', file];
        ctx.notes.push(`the direction vector ${String(hash).slice(0, 12)} is not in this atlas; --direction needs the file it came from`);
        return ['--direction', 'DIRECTION_FILE'];
      },
    } },
  { flag: 'sae', param: 'sae', kind: 'path', metavar: 'DIR', group: 'selection', scope: 'recorded', commands: [...VIS, 'attribute', 'baseline', 'atlas scan', 'inspect'],
    describe: 'a sparse autoencoder (SAELens folder: cfg.json + sae_weights.safetensors; or a Gemma Scope params.npz, with --hook): the feature axis becomes its latents, [:, :, 123] = latent 123; its hook_name sets the hook',
    toParam: (v) => (v === undefined ? undefined : loadSae(String(v), 'sae')),
    record: {
      key: 'sae',
      encode: (v) => (v && typeof v === 'object' && 'hash' in v ? (v as { hash: string }).hash : undefined),
      toArgs: (hash, ctx) => {
        const file = ctx.vectorFile(String(hash));
        if (file) return ['--sae', file];
        ctx.notes.push(`the SAE ${String(hash).slice(0, 12)} is not in this atlas; --sae needs the folder it came from`);
        return ['--sae', 'SAE_DIR'];
      },
    } },
  { flag: 'sae-objective', param: 'saeObjective', kind: 'enum', choices: SAE_OBJECTIVES, default: 'pre', metavar: 'SIDE', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'attribute'],
    needs: { flag: 'sae' },
    describe: "optimise the latent's pre-activation (it has a gradient below the threshold / outside the top k, as EPO's SAE variant) or its post-activation; reported activations are always post",
    record: { key: 'sae_objective' } },
  { flag: 'init', param: 'init', kind: 'string', default: 'randn', metavar: 'INIT', group: 'optimisation', scope: 'recorded', commands: VIS,
    describe: 'the start: randn (N(0, 1)), random-tokens, or tokens:TEXT',
    toParam: (v, ctx) => {
      const spec = String(v);
      if (spec === 'randn' || spec === 'random-tokens') return { kind: spec };
      if (spec.startsWith('tokens:')) {
        if (!ctx.tokenizer) throw paramError('init', 'tokens:TEXT needs a tokenizer');
        const ids = ctx.tokenizer.encode(spec.slice(7));
        if (ids.length === 0) throw paramError('init', 'tokens:TEXT encodes to no tokens');
        return { kind: 'tokens', ids };
      }
      throw paramError('init', `"${spec}" is not one of randn, random-tokens, tokens:TEXT`);
    },
    record: {
      key: 'init',
      always: true,
      encode: (v) => {
        const init = v as { kind: string; ids?: number[] };
        return init.kind === 'tokens' ? `tokens:${init.ids!.join(',')}` : init.kind;
      },
      toArgs: (v, ctx) => {
        const s = String(v);
        if (!s.startsWith('tokens:')) return ['--init', s];
        const ids = s.slice(7).split(',').filter((x) => x !== '').map(Number);
        return textArgs('init', ids, ctx, 'tokens:');
      },
    } },
  { flag: 'seed', param: 'seed', kind: 'int', min: 0, max: 0xffffffff, default: 0, metavar: 'S', group: 'optimisation', scope: 'recorded', commands: [...VIS, 'baseline', 'invert', 'generate', 'random-model'],
    describe: 'random seed (each run\'s start depends only on it and the run\'s selection)', record: { key: 'seed', always: true } },
  { flag: 'seeds', param: 'seeds', kind: 'int', min: 1, max: 64, default: 1, metavar: 'K', group: 'optimisation', scope: 'recorded', commands: VIS,
    describe: 'independent starts per selection, optimised in the same batch; the result keeps the best start (highest decoded activation) and reports how the starts agree (stability)',
    record: { key: 'seeds' } },
  { flag: 'l1', param: 'l1', kind: 'number', min: 0, default: 1, metavar: 'W', group: 'optimisation', scope: 'recorded', commands: ['invert'],
    describe: 'weight of the L1 distance to the text\'s output', record: { key: 'l1', always: true } },
  { flag: 'cosine', param: 'cosine', kind: 'number', min: 0, default: 0, metavar: 'W', group: 'optimisation', scope: 'recorded', commands: ['invert'],
    describe: 'weight of the per-position cosine distance (0: off)', record: { key: 'cosine', always: true } },
  { flag: 'init-scale', param: 'initScale', kind: 'number', min: 0, default: 1, metavar: 'X', group: 'optimisation', scope: 'recorded', commands: ['invert'],
    describe: 'standard deviation of the random start, relative to the embedding table\'s RMS', record: { key: 'init_scale', always: true } },
  // The original method starts from N(0, 1) whatever the table's scale (stories260K's entries have RMS 0.31), so its
  // recipe needs an absolute spread; the relative one stays the default.
  { flag: 'init-std', param: 'initStd', kind: 'number', above: 0, metavar: 'X', group: 'optimisation', scope: 'recorded', commands: ['invert'],
    describe: 'absolute standard deviation of the random start, instead of --init-scale (the original method: --init-std 1, i.e. N(0, 1))', record: { key: 'init_std' } },
  { flag: 'restarts', param: 'restarts', kind: 'int', min: 1, max: 1024, default: 1, metavar: 'N', group: 'optimisation', scope: 'recorded', commands: ['invert'],
    describe: 'independent starts, optimised as one batch; the lowest final loss is kept', record: { key: 'restarts', always: true } },

  // ---- decoding ----------------------------------------------------------------------------------------------
  { flag: 'topk', param: 'topk', kind: 'int', min: 1, max: 100, default: 5, per: { baseline: { default: 10, max: 1000 }, 'atlas scan': { default: 10, max: 1000 } }, metavar: 'K', group: 'decoding', scope: 'recorded', commands: [...VIS, 'baseline', 'atlas scan'],
    describe: 'decoded rows (row i = the i-th ranked token at every position); baseline: best tokens listed; atlas scan: top examples kept per feature', record: { key: 'topk', always: true } },
  { flag: 'decode', param: 'decode', kind: 'enum', choices: DECODE_MODES, default: 'pinv', metavar: 'MODE', group: 'decoding', scope: 'recorded', commands: [...VIS, 'invert'],
    describe: 'pinv (Moore–Penrose pseudoinverse of the embedding table), nearest-cosine or nearest-l2', record: { key: 'decode', always: true } },

  // ---- verification ------------------------------------------------------------------------------------------
  { flag: 'random-draws', param: 'randomDraws', kind: 'int', min: 0, max: 1000, default: 8, metavar: 'N', group: 'verification', scope: 'recorded', commands: VIS,
    describe: 'random real-token sequences averaged for the "random" activation', record: { key: 'random_draws', always: true } },
  { flag: 'baseline', param: 'exhaustive', kind: 'enum', choices: ['skip-connection', 'exhaustive'], default: 'skip-connection', metavar: 'KIND', group: 'verification', scope: 'recorded', commands: ['visualize'],
    describe: 'also run the exhaustive single-token baseline (every vocabulary token), or only the skip-connection one',
    toParam: (v) => v === 'exhaustive', record: { key: 'baseline', encode: (v) => (v ? 'exhaustive' : undefined) } },
  { flag: 'corpus', param: 'corpus', kind: 'path', metavar: 'FILE', group: 'verification', scope: 'input', commands: [...VIS, 'atlas scan', 'inspect'], required: ['atlas scan'],
    describe: 'real text (stories separated by <|endoftext|> lines, or .jsonl with "text"): visualize/build report every activation as a percentile of the same statistic on its windows; atlas scan scans it; inspect --sae: L0, FVU and dead latents over it' },
  { flag: 'scan-db', param: 'scanDb', kind: 'path', metavar: 'FILE', group: 'verification', scope: 'input', commands: VIS,
    describe: 'percentiles from a matching atlas scan (atlas scan --calibrate-tokens) instead of --corpus' },
  { flag: 'window', param: 'window', kind: 'int', min: 2, max: 1 << 20, default: 64, metavar: 'N', group: 'selection', scope: 'input', commands: ['atlas scan'],
    describe: 'tokens per window (stride = window; windows never cross a story)' },
  { flag: 'no-bos', param: 'noBos', kind: 'bool', default: false, group: 'selection', scope: 'input', commands: ['atlas scan'],
    describe: 'do not start each story with BOS (the default when the model expects one, as visualize --bos)' },
  { flag: 'bin-examples', param: 'binExamples', kind: 'int', min: 0, max: 1000, default: 3, metavar: 'N', group: 'output', scope: 'input', commands: ['atlas scan'],
    describe: 'examples kept from each quantile bin (p0-50, 50-90, 90-99, 99-99.9, 99.9-max)' },
  { flag: 'calibrate-tokens', param: 'calibrateTokens', kind: 'int', min: 1, max: 4096, metavar: 'N', group: 'output', scope: 'input', commands: ['atlas scan'],
    describe: "also store each feature's reference distribution for visualize runs [:, :, f] of N tokens (for visualize --scan-db)" },
  { flag: 'calibrate-bos', param: 'calibrateBos', kind: 'bool', default: false, group: 'output', scope: 'input', commands: ['atlas scan'],
    describe: 'the stored reference is for runs with --bos' },
  { flag: 'rank-ids', param: 'rankIds', kind: 'string', metavar: 'IDS', group: 'verification', scope: 'input', commands: ['baseline'],
    describe: 'report the ranks of these token ids' },
  { flag: 'rank-text', param: 'rankText', kind: 'string', metavar: 'TEXT', group: 'verification', scope: 'input', commands: ['baseline'],
    describe: 'report the ranks of this text\'s tokens' },

  // ---- refinement --------------------------------------------------------------------------------------------
  { flag: 'refine', param: 'refine', kind: 'enum', choices: REFINE_METHODS, per: { invert: { choices: ['gcg'] } }, metavar: 'METHOD', group: 'refinement', scope: 'recorded', commands: REFINING,
    describe: 'refine the decoded tokens discretely: gcg (greedy coordinate gradient) or epo (fluency-regularised population; not invert)',
    record: { key: 'method', in: 'refine', always: true, toArgs: (v) => ['--refine', String(v)] } },
  { flag: 'refine-steps', param: 'refine.steps', kind: 'int', min: 0, max: 100_000, default: 100, metavar: 'N', group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'refinement steps (each: one gradient, one batch of candidates)', record: { key: 'steps', in: 'refine', always: true } },
  { flag: 'candidates', param: 'refine.candidates', kind: 'int', min: 1, max: 4096, default: 128, metavar: 'N', group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'candidates evaluated per step (epo: shared among the population)', record: { key: 'candidates', in: 'refine', always: true } },
  { flag: 'swap-topk', param: 'refine.swapTopk', kind: 'int', min: 1, max: 1_000_000, default: 16, metavar: 'K', group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'swaps considered per position: the top-k tokens of the linearised score', record: { key: 'swap_topk', in: 'refine', always: true } },
  { flag: 'refine-starts', param: 'refine.starts', kind: 'int', min: 1, max: 64, default: 3, metavar: 'N', group: 'refinement', scope: 'recorded', commands: VIS, needs: { flag: 'refine', values: ['gcg'] },
    describe: 'gcg climbs from the decode\'s first N rows and keeps the best', record: { key: 'starts', in: 'refine', always: true } },
  { flag: 'population', param: 'refine.population', kind: 'int', min: 1, max: 1024, default: 8, metavar: 'N', group: 'refinement', scope: 'recorded', commands: VIS, needs: { flag: 'refine', values: ['epo'] },
    describe: 'epo population size', record: { key: 'population', in: 'refine', always: true } },
  { flag: 'fluency', param: 'refine.fluency', kind: 'string', default: [0.01, 10], metavar: 'λ', group: 'refinement', scope: 'recorded', commands: VIS, needs: { flag: 'refine', values: ['epo'] },
    describe: 'epo fluency weights: MIN,MAX (log-spaced over the population), one value, or one per member',
    toParam: (v) => {
      if (Array.isArray(v)) return v;
      const text = String(v);
      const xs = text.split(',').map((x) => x.trim());
      if (xs.some((x) => !/^[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(x))) throw paramError('refine.fluency', `expected non-negative numbers separated by commas, got "${text}"`);
      return xs.map(Number);
    },
    record: { key: 'fluency', in: 'refine', always: true, toArgs: (v) => ['--fluency', (v as number[]).join(',')] } },
  { flag: 'restart-every', param: 'refine.restartEvery', kind: 'int', min: 0, max: 1_000_000, default: 5, metavar: 'N', group: 'refinement', scope: 'recorded', commands: VIS, needs: { flag: 'refine', values: ['epo'] },
    describe: 'epo restarts each member from the best prompt for its λ every N steps (0: never)', record: { key: 'restart_every', in: 'refine', always: true } },
  { flag: 'ban', param: 'refine.filter.ban', kind: 'string', default: [], metavar: 'IDS', group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'token ids never proposed, "1,2,3"', toParam: (v) => (Array.isArray(v) ? v : parseIdList(String(v), 'refine.filter.ban')),
    record: { key: 'ban', in: 'refine', always: true, toArgs: (v) => ((v as number[]).length ? ['--ban', (v as number[]).join(',')] : []) } },
  { flag: 'printable', param: 'refine.filter.printable', kind: 'bool', default: false, group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'propose only printable text tokens (no control, special or byte-fallback tokens)', record: { key: 'printable', in: 'refine', always: true } },
  { flag: 'ascii', param: 'refine.filter.ascii', kind: 'bool', default: false, group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'propose only printable ASCII tokens', record: { key: 'ascii', in: 'refine', always: true } },
  { flag: 'retokenize', param: 'refine.retokenize', kind: 'bool', default: false, group: 'refinement', scope: 'recorded', commands: REFINING, needs: { flag: 'refine' },
    describe: 'reject candidates whose text does not encode back to the same ids', record: { key: 'retokenize', in: 'refine', always: true } },

  // ---- run options: provenance, not settings -------------------------------------------------------------------
  { flag: 'threads', engine: true, param: 'threads', kind: 'int', min: 1, max: 256, default: 2, metavar: 'N', group: 'run', scope: 'run', commands: [...RUNNING_COMMANDS, 'worker'],
    describe: 'onnxruntime intra-op threads' },
  { flag: 'low-memory', engine: true, param: 'lowMemory', kind: 'bool', default: false, group: 'run', scope: 'run', commands: [...RUNNING_COMMANDS, 'worker'],
    describe: 'keep weights file-backed (no prepacking): about half the memory, slower at batch 1' },
  { flag: 'device', engine: true, param: 'device', kind: 'enum', choices: ['cpu', 'webgpu'], metavar: 'D', group: 'run', scope: 'run', commands: [...MODEL_COMMANDS, 'devices'],
    describe: 'where the graphs run: cpu, or webgpu (onnxruntime\'s bundled WebGPU provider; a GPU or a Vulkan driver such as SwiftShader); default LLMF_DEVICE, else cpu' },
  { flag: 'batch', param: 'batch', kind: 'int', min: 1, max: 1024, default: 32, per: { baseline: { default: 64, max: 4096 }, 'atlas scan': { default: 64, max: 4096 } }, metavar: 'N', group: 'run', scope: 'run', commands: [...VIS, 'baseline', 'atlas scan'],
    describe: 'runs (atlas scan: windows) computed together as one batch (results do not depend on it)' },

  // ---- generate ----------------------------------------------------------------------------------------------
  { flag: 'prompt', param: 'prompt', kind: 'string', metavar: 'TEXT', group: 'selection', scope: 'input', commands: ['generate'],
    describe: 'text to continue (generation starts from BOS)' },
  { flag: 'samples', param: 'samples', kind: 'int', min: 1, max: 1_000_000, metavar: 'N', group: 'output', scope: 'input', commands: ['generate'],
    describe: 'write N samples (seeds S, S+1, …) to --out as a corpus, one story per <|endoftext|> line' },
  { flag: 'max-tokens', param: 'maxTokens', kind: 'int', min: 0, max: 1_000_000_000, default: 256, per: { 'atlas scan': { default: undefined } }, metavar: 'N', group: 'decoding', scope: 'input', commands: ['generate', 'atlas scan'],
    describe: 'generate: tokens to sample at most (stops at BOS/EOS); atlas scan: stop after this many corpus tokens' },
  { flag: 'temperature', param: 'temperature', kind: 'number', min: 0, default: 0, metavar: 'T', group: 'decoding', scope: 'input', commands: ['generate'],
    describe: 'sampling temperature; 0 = greedy' },

  // ---- atlas and viewer --------------------------------------------------------------------------------------
  { flag: 'db', param: 'db', kind: 'path', metavar: 'FILE', group: 'output', scope: 'input', commands: ['atlas build', 'atlas scan', 'atlas compare', 'atlas export', 'atlas ls', 'serve'],
    required: ['atlas build', 'atlas scan', 'atlas compare', 'atlas export', 'atlas ls', 'serve'], describe: 'the atlas: an SQLite file (created by atlas build)' },
  { flag: 'a', param: 'a', kind: 'string', metavar: 'QUERY', group: 'selection', scope: 'input', commands: ['atlas compare'], required: ['atlas compare'],
    describe: 'side A: comma-separated filters model=NAME|HASH, blocks=A-B, hook=H, settings=HASH' },
  { flag: 'b', param: 'b', kind: 'string', metavar: 'QUERY', group: 'selection', scope: 'input', commands: ['atlas compare'], required: ['atlas compare'],
    describe: 'side B, the same filters' },
  { flag: 'pair', param: 'pair', kind: 'enum', choices: ['auto', 'index', 'vocab'], default: 'auto', metavar: 'HOW', group: 'selection', scope: 'input', commands: ['atlas compare'],
    describe: 'how features of A and B are paired: auto = by index within one embedding space (one model, or models with the same embedding table), refused across spaces; index = by index regardless (a warned, arbitrary pairing across spaces); vocab = A\'s feature f with B\'s records along its vocabulary-mapped direction (atlas build --map-from)' },
  { flag: 'where', param: 'where', kind: 'string', metavar: 'QUERY', group: 'selection', scope: 'input', commands: ['atlas export'],
    describe: 'only records matching these filters (as for atlas compare)' },
  { flag: 'format', param: 'format', kind: 'enum', choices: ['json', 'csv'], default: 'json', metavar: 'FMT', group: 'output', scope: 'input', commands: ['atlas export'],
    describe: 'json ({"records": [...]}) or csv' },
  { flag: 'port', param: 'port', kind: 'int', min: 0, max: 65535, default: 8080, metavar: 'N', group: 'output', scope: 'input', commands: ['serve'],
    describe: 'TCP port (0 picks a free one)' },
  { flag: 'host', param: 'host', kind: 'string', default: '127.0.0.1', metavar: 'HOST', group: 'output', scope: 'input', commands: ['serve'],
    describe: 'address to bind (0.0.0.0 exposes the atlas to the network)' },
  { flag: 'quiet', param: 'quiet', kind: 'bool', default: false, group: 'output', scope: 'input', commands: ['serve'],
    describe: 'no request log on stderr' },
  { flag: 'queue', param: 'queue', kind: 'string', metavar: 'URL', group: 'run', scope: 'input', commands: ['atlas build', 'atlas scan', 'worker', 'queue status', 'queue drain', 'queue cancel'],
    required: ['worker', 'queue status', 'queue drain', 'queue cancel'],
    describe: 'a Redis queue, redis://[:PASS@]HOST:PORT[/DB] or rediss://: atlas build/scan enqueue their batches as jobs for workers and collect the results' },
  { flag: 'concurrency', param: 'concurrency', kind: 'int', min: 1, max: 64, default: 1, metavar: 'N', group: 'run', scope: 'input', commands: ['worker'],
    describe: 'jobs run at once' },
  { flag: 'models', param: 'models', kind: 'path', metavar: 'DIR', group: 'model', scope: 'input', commands: ['worker'],
    describe: "open each job's model, tokenizer and corpus by its basename in DIR instead of the path it was enqueued with" },
  { flag: 'lock-ms', param: 'lockMs', kind: 'int', min: 1000, max: 3_600_000, default: 30_000, metavar: 'MS', group: 'run', scope: 'input', commands: ['worker'],
    describe: 'job lock length; a worker that dies holding a job loses it after this long (also the stalled-job check interval)' },
  { flag: 'json', param: 'json', kind: 'bool', default: false, group: 'output', scope: 'input', commands: [...JSON_COMMANDS, 'queue status'],
    describe: 'print one JSON document instead of text' },
];

const BY_FLAG = new Map(SETTINGS.map((s) => [s.flag, s]));
const BY_PARAM = new Map(SETTINGS.map((s) => [s.param, s]));

export function settingByFlag(flag: string, table: readonly Setting[] = SETTINGS): Setting | undefined {
  return table === SETTINGS ? BY_FLAG.get(flag) : table.find((s) => s.flag === flag);
}

/** The flag a library parameter is given by, for error messages (a parameter path or its last part). */
export function flagOfParam(param: string): string | undefined {
  return BY_PARAM.get(param)?.flag ?? BY_FLAG.get(param)?.flag;
}

/** The settings a command takes, in table order. */
export function settingsFor(command: CommandName, table: readonly Setting[] = SETTINGS): Setting[] {
  return table.filter((s) => s.commands.includes(command));
}

/** The choices of an enum setting for a command (a command may offer fewer: invert refines by gcg only). */
export function choicesFor(s: Setting, command: CommandName | null): readonly string[] {
  return (command && s.per?.[command]?.choices) ?? s.choices ?? [];
}

export function defaultFor(s: Setting, command: CommandName): unknown {
  const per = s.per?.[command];
  return per && 'default' in per ? per.default : s.default;
}

function boundsFor(s: Setting, command: CommandName | null): { min?: number; max?: number; above?: number } {
  const max = (command && s.per?.[command]?.max) ?? s.max;
  return { min: s.min, max, above: s.above };
}

/** Check a numeric value against a setting's bounds; errors start with `name` (the parameter; the CLI passes its flag). */
export function checkBounds(s: Setting, v: number, command: CommandName | null = null, name: string = s.param): void {
  const { min, max, above } = boundsFor(s, command);
  const fail = (problem: string) => new UserError(`${name}: ${problem}`, undefined, s.param);
  if (s.kind === 'int' && !Number.isInteger(v)) throw fail(`must be an integer, got ${v}`);
  if (!Number.isFinite(v)) throw fail(`must be a finite number, got ${v}`);
  if (above !== undefined && !(v > above)) throw fail(`must be > ${above}, got ${v}`);
  if (min !== undefined && v < min) throw fail(`must be ≥ ${min}, got ${v}`);
  if (max !== undefined && v > max) throw fail(`must be ≤ ${max}, got ${v}`);
}

export function getPath(obj: unknown, path: string): unknown {
  let cur = obj as Record<string, unknown> | null | undefined;
  for (const part of path.split('.')) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    cur = cur[part] as Record<string, unknown> | undefined;
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (cur[part] === null || cur[part] === undefined || typeof cur[part] !== 'object') cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  if (value === undefined) delete cur[parts[parts.length - 1]!];
  else cur[parts[parts.length - 1]!] = value;
}

/** Values given for a command (by flag, already parsed to their kind); absent = the command's default. */
export type GivenValues = ReadonlyMap<string, unknown>;

/**
 * The settings object of a command (VisualizeSettings for visualize/atlas build, InvertSettings for invert, …) from
 * the given values and the table's defaults. Every recorded and run setting of the command is placed at its parameter
 * path; refinement settings only when `refine` is set (else `refine` is null). Flags given without what they need
 * (`--population` without `--refine epo`) are refused.
 */
export function buildSettings(command: CommandName, given: GivenValues, ctx: SettingContext, table: readonly Setting[] = SETTINGS): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const mine = settingsFor(command, table).filter((s) => s.scope !== 'input' && !s.engine);
  for (const s of mine) checkNeeds(s, given, command, table);
  const refineSetting = settingByFlag('refine', table);
  const refine = given.get('refine') ?? (refineSetting ? defaultFor(refineSetting, command) : undefined);
  for (const s of mine) {
    if (s.param.startsWith('refine.') && refine === undefined) continue;
    const raw = given.has(s.flag) ? given.get(s.flag) : defaultFor(s, command);
    if (s.flag === 'refine') {
      setPath(out, 'refine', raw === undefined ? null : { method: raw });
      continue;
    }
    const value = s.toParam && raw !== undefined ? s.toParam(raw, ctx) : raw;
    setPath(out, s.param, cloneValue(value));
  }
  // The refinement's own seed is the run's seed (each run derives its own from it).
  if (out.refine && typeof out.refine === 'object') (out.refine as Record<string, unknown>).seed = out.seed ?? 0;
  return out;
}

function cloneValue(v: unknown): unknown {
  return Array.isArray(v) ? [...v] : v;
}

/** `needs`: a flag given without the flag (or value) it belongs to is an error, not silently ignored. */
function checkNeeds(s: Setting, given: GivenValues, command: CommandName, table: readonly Setting[]): void {
  if (!s.needs || !given.has(s.flag)) return;
  const other = settingByFlag(s.needs.flag, table);
  const value = given.has(s.needs.flag) ? given.get(s.needs.flag) : other ? defaultFor(other, command) : undefined;
  if (value === undefined) throw paramError(s.param, `only with --${s.needs.flag}`);
  if (s.needs.values && !s.needs.values.includes(String(value))) throw paramError(s.param, `only with --${s.needs.flag} ${s.needs.values.join('|')}`);
}

/** The defaults of a command's settings object, from the table (what the library uses when a caller gives nothing). */
export function defaultSettings(command: CommandName): Record<string, unknown> {
  return buildSettings(command, new Map(), { tokenizer: null });
}

/**
 * Validate a settings object a library caller built (it did not come through the flag parser): every numeric setting
 * of the command within its bounds, every enum one of its choices. Errors name the parameter.
 */
export function checkSettings(command: CommandName, settings: object, table: readonly Setting[] = SETTINGS): void {
  for (const s of settingsFor(command, table)) {
    if (s.scope === 'input') continue;
    const v = getPath(settings, s.param);
    if (v === undefined || v === null) continue;
    if (s.kind === 'int' || s.kind === 'number') {
      if (typeof v !== 'number') throw paramError(s.param, `expected a number, got ${JSON.stringify(v)}`);
      checkBounds(s, v, command);
    } else if (s.kind === 'enum' && s.toParam === undefined && s.flag !== 'refine') {
      const choices = choicesFor(s, command);
      if (!choices.includes(String(v))) throw paramError(s.param, `"${String(v)}" is not one of ${choices.join(', ')}`);
    } else if (s.flag === 'refine') {
      const method = (v as { method?: unknown }).method;
      const choices = choicesFor(s, command);
      if (!choices.includes(String(method))) throw paramError('refine', `"${String(method)}" is not one of ${choices.join(', ')}`);
    }
  }
}

/**
 * The stored settings record of a visualize settings object: what the atlas hashes and the viewer reproduces.
 * Settings marked `always` are stored as they are; any other setting only when it differs from its default, so that
 * adding a setting never changes the hash of records made before it existed.
 */
export function settingsRecord(settings: object, table: readonly Setting[] = SETTINGS, command: CommandName = 'visualize'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const refine = getPath(settings, 'refine') as { method?: string } | null | undefined;
  for (const s of table) {
    if (!s.record || s.scope !== 'recorded' || !s.commands.includes(command)) continue;
    if (s.record.in === 'refine') {
      if (!refine) continue;
      if (s.needs?.values && !s.needs.values.includes(String(refine.method))) continue;
    }
    const paramValue = s.flag === 'refine' ? refine?.method : getPath(settings, s.param);
    if (paramValue === undefined) continue;
    const stored = s.record.encode ? s.record.encode(paramValue) : paramValue;
    if (stored === undefined) continue;
    if (!s.record.always) {
      const d = defaultFor(s, command);
      const dParam = d !== undefined && s.toParam ? s.toParam(d, { tokenizer: null }) : d;
      const dStored = dParam === undefined ? undefined : s.record.encode ? s.record.encode(dParam) : dParam;
      if (JSON.stringify(stored) === JSON.stringify(dStored)) continue;
    }
    if (s.record.in === 'refine') {
      out.refine ??= {};
      (out.refine as Record<string, unknown>)[s.record.key] = cloneValue(stored);
    } else out[s.record.key] = cloneValue(stored);
  }
  // The objective kind of a direction record is "direction": the vector replaces the feature axis.
  if (out.direction !== undefined && 'objective' in out) out.objective = 'direction';
  return out;
}

/**
 * The flags that reproduce a stored settings record, every setting spelled out (defaults too, so a later change of
 * defaults does not change what the command does). Keys the table does not know become notes.
 */
export function recordArgs(record: Record<string, unknown>, ctx: ReproduceContext, table: readonly Setting[] = SETTINGS): string[] {
  const args: string[] = [];
  const used = new Set<string>();
  const refine = record.refine && typeof record.refine === 'object' ? (record.refine as Record<string, unknown>) : null;
  const usedRefine = new Set<string>();
  for (const s of table) {
    if (!s.record || s.scope !== 'recorded') continue;
    const src = s.record.in === 'refine' ? refine : record;
    if (!src || !(s.record.key in src)) continue;
    (s.record.in === 'refine' ? usedRefine : used).add(s.record.key);
    const v = src[s.record.key];
    if (s.record.toArgs) args.push(...s.record.toArgs(v, ctx));
    else if (s.kind === 'bool') {
      if (v === true) args.push(`--${s.flag}`);
    } else if (typeof v === 'number' || typeof v === 'string') args.push(`--${s.flag}`, String(v));
    else if (Array.isArray(v)) {
      if (v.length) args.push(`--${s.flag}`, v.join(','));
    } else ctx.notes.push(`setting ${s.record.key}=${JSON.stringify(v)} has no flag value this viewer can write`);
  }
  if (refine) used.add('refine');
  for (const key of Object.keys(record)) if (!used.has(key)) ctx.notes.push(`setting ${key}=${JSON.stringify(record[key])} has no flag known to this version`);
  if (refine) for (const key of Object.keys(refine)) if (!usedRefine.has(key)) ctx.notes.push(`refine setting ${key}=${JSON.stringify(refine[key])} has no flag known to this version`);
  return args;
}

/** The run options of a command's values, recorded as provenance beside a result (outside the settings hash). */
export function runOptions(command: CommandName, given: GivenValues): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of settingsFor(command)) {
    if (s.scope !== 'run') continue;
    const v = given.has(s.flag) ? given.get(s.flag) : defaultFor(s, command);
    if (v !== undefined) out[s.param] = v;
  }
  return out;
}

/** The refinement defaults (gcg), as the table states them: for library callers that build their own settings. */
export const DEFAULT_REFINE = buildSettings('visualize', new Map([['refine', 'gcg']]), { tokenizer: null }).refine as RefineSettings;

/**
 * The JSON schema of a visualize run's `settings` object, from the table: the keys stored always are required, every
 * key a record may hold is described. scripts/write_schema.mjs writes it into schemas/visualize.schema.json (a test
 * checks that the committed file equals it).
 */
export function settingsJsonSchema(table: readonly Setting[] = SETTINGS): Record<string, unknown> {
  const top: Record<string, unknown> = {};
  const refine: Record<string, unknown> = {};
  const required: string[] = [];
  const refineRequired: string[] = [];
  const typeOf = (s: Setting): Record<string, unknown> => {
    if (s.flag === 'prefix' || s.flag === 'suffix' || s.flag === 'ban') return { type: 'array', items: { type: 'integer', minimum: 0 } };
    if (s.flag === 'fluency') return { type: 'array', items: { type: 'number', minimum: 0 } };
    if (s.flag === 'direction' || s.flag === 'sae') return { type: 'string', pattern: '^[0-9a-f]{64}$' };
    if (s.flag === 'objective') return { enum: [...(s.choices ?? []), 'direction'] };
    if (s.flag === 'baseline') return { enum: ['exhaustive'] };
    if (s.kind === 'enum') return { enum: [...(s.choices ?? [])] };
    if (s.kind === 'bool') return { type: 'boolean' };
    if (s.kind === 'int') return { type: 'integer' };
    if (s.kind === 'number') return { type: 'number' };
    return { type: 'string' };
  };
  for (const s of table) {
    if (!s.record || s.scope !== 'recorded' || !s.commands.includes('visualize')) continue;
    const entry = { ...typeOf(s), description: s.describe };
    if (s.record.in === 'refine') {
      refine[s.record.key] = entry;
      if (s.record.always && !s.needs?.values) refineRequired.push(s.record.key);
    } else {
      top[s.record.key] = entry;
      if (s.record.always) required.push(s.record.key);
    }
  }
  top.refine = { type: 'object', required: refineRequired, properties: refine };
  return { type: 'object', required, properties: top };
}
