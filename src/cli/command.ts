import type { CommandName } from '../features/settings.js';
import type { Values } from './args.js';

/**
 * One CLI command: a summary, extra help text, and a thin run function (parse → library call → print). Its flags are
 * the settings table's entries for its name; nothing here lists them again.
 */
export interface Command {
  name: CommandName | 'atlas' | 'queue';
  summary: string;
  /** Paragraphs printed after the flags in `--help`. */
  notes?: string[];
  run(values: Values): Promise<void>;
  /** Commands with subcommands (`atlas build`, `atlas compare`) dispatch on the first argument instead. */
  subcommands?: Command[];
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}
