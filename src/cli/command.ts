import type { FlagSpec, ParsedFlags } from './args.js';

/** One CLI command: its flags and a thin run function (parse → library call → print). */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  flags: FlagSpec;
  run(flags: ParsedFlags): Promise<void>;
  /** Commands with subcommands (`atlas build`, `atlas compare`) dispatch on the first argument instead. */
  subcommands?: Command[];
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}
