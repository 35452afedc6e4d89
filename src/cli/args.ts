/**
 * The command line, parsed against the settings table (src/features/settings.ts): a command accepts exactly the
 * flags the table lists for it, each converted to its kind and checked against its bounds and choices.
 *
 * Why not commander or yargs: the table already holds every flag's kind, bounds, default, group and description, so
 * what a library would add is a second description of the same flags. What this parser guarantees instead — one-line
 * errors naming the flag with exit code 2, strict number syntax (no `0x10`, `" 3"` or `1e3` for an integer), a flag
 * given twice refused, a typo answered with the nearest flag — would each need overriding in either library.
 */
import { UserError } from '../errors.js';
import { resolveAtFile } from './at-file.js';
import { checkBounds, choicesFor, defaultFor, settingsFor, SETTINGS, type CommandName, type GivenValues, type Setting } from '../features/settings.js';

const INT = /^-?\d+$/;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A command's parsed flags: what was given, and the table's defaults for the rest. */
export class Values {
  constructor(
    readonly command: CommandName,
    readonly given: GivenValues,
    private readonly table: readonly Setting[] = SETTINGS,
  ) {}

  /** Replace a given value (the hub step swaps a hub id in --model for its local snapshot before a command runs). */
  set(flag: string, value: unknown): void {
    (this.given as Map<string, unknown>).set(flag, value);
  }

  has(flag: string): boolean {
    return this.given.has(flag);
  }

  /** The given value, else the command's default (undefined when it has none). */
  get(flag: string): unknown {
    if (this.given.has(flag)) return this.given.get(flag);
    const s = this.table.find((x) => x.flag === flag);
    if (!s) throw new Error(`flag --${flag} is not in the settings table`);
    if (!s.commands.includes(this.command)) throw new Error(`flag --${flag} is not one of ${this.command}'s`);
    return defaultFor(s, this.command);
  }

  str(flag: string): string | undefined {
    const v = this.get(flag);
    return v === undefined ? undefined : String(v);
  }

  /** A string flag that must be given (the table's `required` is checked at parse time; this also refuses ""). */
  need(flag: string): string {
    const v = this.str(flag);
    if (v === undefined || v === '') throw new UserError(`--${flag}: required`);
    return v;
  }

  num(flag: string): number {
    const v = this.get(flag);
    if (typeof v !== 'number') throw new Error(`flag --${flag} has no numeric value or default`);
    return v;
  }

  bool(flag: string): boolean {
    return this.get(flag) === true;
  }
}

/** Parse argv for a command. Unknown flags get the nearest known one; values are checked against the table. */
export function parseArgs(command: CommandName, argv: string[], table: readonly Setting[] = SETTINGS): Values {
  const mine = settingsFor(command, table);
  const byFlag = new Map(mine.map((s) => [s.flag, s]));
  const given = new Map<string, unknown>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UserError(`${command}: unexpected argument "${arg}" (flags start with --)`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const s = byFlag.get(name);
    if (!s) {
      const near = nearest(name, [...byFlag.keys()]);
      throw new UserError(`--${name}: unknown flag for '${command}'${near ? ` (did you mean --${near}?)` : ''}; see 'llm-features ${command} --help'`);
    }
    if (given.has(name)) throw new UserError(`--${name}: given twice`);
    if (s.kind === 'bool') {
      if (eq >= 0) throw new UserError(`--${name}: takes no value`);
      given.set(name, true);
      continue;
    }
    let text: string;
    if (eq >= 0) text = arg.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UserError(`--${name}: missing value`);
      text = argv[++i]!;
    }
    given.set(name, convert(s, s.atFile ? resolveAtFile(text, `--${name}`) : text, command));
  }
  for (const s of mine) {
    if (s.required?.includes(command) && (!given.has(s.flag) || given.get(s.flag) === '')) throw new UserError(`--${s.flag}: required`);
  }
  return new Values(command, given, table);
}

function convert(s: Setting, text: string, command: CommandName): unknown {
  switch (s.kind) {
    case 'int': {
      if (!INT.test(text)) throw new UserError(`--${s.flag}: expected an integer, got "${text}"`);
      const n = Number(text);
      checkBounds(s, n, command, `--${s.flag}`);
      return n;
    }
    case 'number': {
      if (!NUMBER.test(text)) throw new UserError(`--${s.flag}: expected a number, got "${text}"`);
      const n = Number(text);
      checkBounds(s, n, command, `--${s.flag}`);
      return n;
    }
    case 'enum': {
      const choices = choicesFor(s, command);
      if (!choices.includes(text)) throw new UserError(`--${s.flag}: "${text}" is not one of ${choices.join(', ')}`);
      return text;
    }
    default:
      return text;
  }
}

/** The known flag closest to a typo: edit distance ≤ 2 (or ≤ a third of its length), or a unique prefix. */
export function nearest(name: string, known: string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  if (best !== null && bestD <= Math.max(2, Math.floor(name.length / 3))) return best;
  const prefixed = known.filter((k) => k.startsWith(name));
  return prefixed.length === 1 ? prefixed[0]! : null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
