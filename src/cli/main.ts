#!/usr/bin/env node
import { UserError } from '../errors.js';
import { VERSION } from '../version.js';
import { flagOfParam, type CommandName } from '../features/settings.js';
import { parseArgs } from './args.js';
import type { Command } from './command.js';
import { commandHelp, listHelp } from './help.js';
import { resolveHubModelFlags } from './hub-model.js';
import { atlasCommand } from './atlas.js';
import { attributeCommand } from './attribute.js';
import { baselineCommand } from './baseline.js';
import { devicesCommand } from './devices.js';
import { forwardCommand } from './forward.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { invertCommand } from './invert.js';
import { randomModelCommand } from './random-model.js';
import { serveCommand } from './serve.js';
import { tokenizeCommand } from './tokenize.js';
import { visualizeCommand } from './visualize.js';
import { queueCommand } from './queue.js';
import { workerCommand } from './worker.js';

const COMMAND_LIST: Command[] = [inspectCommand, tokenizeCommand, generateCommand, forwardCommand, visualizeCommand, attributeCommand, baselineCommand, invertCommand, randomModelCommand, atlasCommand, serveCommand, devicesCommand, workerCommand, queueCommand];

const TOP_HELP = () =>
  listHelp(`usage: llm-features <command> [flags]   (llm-features ${VERSION})`, COMMAND_LIST) +
  "\nrun 'llm-features help <command>' or 'llm-features <command> --help' for its flags; --version prints the version\n";

/** The command (or subcommand) that argv names, and the rest of argv; a user error when it names none. */
function resolve(argv: string[]): { command: Command; rest: string[] } {
  const [name, ...rest] = argv;
  const command = COMMAND_LIST.find((c) => c.name === name);
  if (!command) throw new UserError(`unknown command "${name}" (commands: ${COMMAND_LIST.map((c) => c.name).join(', ')}); see 'llm-features --help'`);
  if (!command.subcommands) return { command, rest };
  const sub = command.subcommands.find((c) => c.name === `${name} ${rest[0]}`);
  if (sub) return { command: sub, rest: rest.slice(1) };
  if (rest.length === 0 || rest[0] === '--help' || rest[0] === '-h') return { command, rest };
  const names = command.subcommands.map((c) => c.name.split(' ')[1]).join(', ');
  throw new UserError(`${name}: expected a subcommand (${names}), got "${rest[0]}"`);
}

function helpFor(command: Command): string {
  if (command.subcommands) return listHelp(`usage: llm-features ${command.name} <subcommand> [flags]`, command.subcommands) + `\nrun 'llm-features ${command.name} <subcommand> --help' for its flags\n`;
  return commandHelp(command as Command & { name: CommandName });
}

async function main(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first === undefined) {
    process.stderr.write(TOP_HELP());
    return 2;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (first === '--help' || first === '-h') {
    process.stdout.write(TOP_HELP());
    return 0;
  }
  if (first === 'help') {
    if (argv.length === 1) process.stdout.write(TOP_HELP());
    else process.stdout.write(helpFor(resolve(argv.slice(1)).command));
    return 0;
  }
  const { command, rest } = resolve(argv);
  if (command.subcommands) {
    // `atlas` alone or `atlas --help`: the list of subcommands (alone, on stderr with exit 2, since nothing ran).
    const asked = rest.length > 0;
    (asked ? process.stdout : process.stderr).write(helpFor(command));
    return asked ? 0 : 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(helpFor(command));
    return 0;
  }
  const values = parseArgs(command.name as CommandName, rest);
  await resolveHubModelFlags(values);
  await command.run(values);
  return 0;
}

/** A library error names its parameter ("refine.filter.ban: …"); on the command line the user gave a flag. */
function cliMessage(err: UserError): string {
  if (!err.param) return err.message;
  const flag = flagOfParam(err.param);
  if (!flag || !err.message.startsWith(err.param)) return err.message;
  return `--${flag}${err.message.slice(err.param.length)}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UserError) {
      process.stderr.write(`llm-features: ${cliMessage(err)}\n${err.detail ? err.detail + '\n' : ''}`);
      process.exitCode = 2;
    } else {
      const e = err instanceof Error ? err : new Error(String(err));
      process.stderr.write(`llm-features: internal error: ${e.message.split('\n')[0]}\n`);
      if (process.env.LLMF_DEBUG) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  },
);
