import { UserError } from '../errors.js';

/** What a command accepts: each flag's kind. Flags are long-form only (`--name value` or `--name=value`). */
export type FlagKind = 'string' | 'number' | 'int' | 'bool';
export type FlagSpec = Record<string, FlagKind>;

export type ParsedFlags = Record<string, string | number | boolean | undefined>;

/**
 * Parses argv against a spec. Unknown flags, missing values and malformed numbers are user errors naming the flag, so
 * a typo never silently falls back to a default.
 */
export function parseFlags(command: string, argv: string[], spec: FlagSpec): ParsedFlags {
  const out: ParsedFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UserError(`${command}: unexpected argument "${arg}" (flags start with --)`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const kind = spec[name];
    if (!kind) {
      const known = Object.keys(spec).map((k) => `--${k}`).join(', ');
      throw new UserError(`--${name}: unknown flag for '${command}' (known: ${known})`);
    }
    if (name in out) throw new UserError(`--${name}: given twice`);
    if (kind === 'bool') {
      if (eq >= 0) throw new UserError(`--${name}: takes no value`);
      out[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UserError(`--${name}: missing value`);
      value = argv[++i]!;
    }
    out[name] = convert(name, kind, value);
  }
  return out;
}

function convert(name: string, kind: FlagKind, value: string): string | number {
  if (kind === 'string') return value;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UserError(`--${name}: expected a number, got "${value}"`);
  if (kind === 'int' && !Number.isInteger(n)) throw new UserError(`--${name}: expected an integer, got "${value}"`);
  return n;
}

export function requireString(flags: ParsedFlags, name: string): string {
  const v = flags[name];
  if (typeof v !== 'string' || v === '') throw new UserError(`--${name}: required`);
  return v;
}

export function optString(flags: ParsedFlags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function optNumber(flags: ParsedFlags, name: string, fallback: number, check?: { min?: number; max?: number }): number {
  const v = flags[name];
  const n = typeof v === 'number' ? v : fallback;
  if (check?.min !== undefined && n < check.min) throw new UserError(`--${name}: must be ≥ ${check.min}, got ${n}`);
  if (check?.max !== undefined && n > check.max) throw new UserError(`--${name}: must be ≤ ${check.max}, got ${n}`);
  return n;
}

// Block ranges are parsed where hooks are (models/hooks.ts), since a TransformerLens hook name implies one.
export { parseBlockRange } from '../models/hooks.js';

/** Parse "1,2,3" into token ids (checked against the vocabulary later, once the model is known). */
export function parseIds(spec: string, flag = '--ids'): number[] {
  const parts = spec.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) throw new UserError(`${flag}: expected comma-separated token ids, got "${spec}"`);
  return parts.map(Number);
}
