import type { FlagSpec, ParsedFlags } from './args.js';

/** One CLI command: its flags and a thin run function (parse → library call → print). */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  flags: FlagSpec;
  run(flags: ParsedFlags): Promise<void>;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}
