#!/usr/bin/env node
import { UserError } from '../errors.js';
import { parseFlags } from './args.js';
import type { Command } from './command.js';
import { atlasCommand } from './atlas.js';
import { attributeCommand } from './attribute.js';
import { baselineCommand } from './baseline.js';
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

const COMMANDS: Command[] = [inspectCommand, tokenizeCommand, generateCommand, forwardCommand, visualizeCommand, attributeCommand, baselineCommand, invertCommand, randomModelCommand, atlasCommand, serveCommand, workerCommand, queueCommand];

function help(): string {
  const lines = ['usage: llm-features <command> [flags]', '', 'commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push('', "run 'llm-features <command> --help' for a command's flags");
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  let command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UserError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
  if (command.subcommands) {
    const subs = command.subcommands;
    const sub = subs.find((c) => c.name === rest[0]);
    if (!sub) throw new UserError(`${name}: expected a subcommand (${subs.map((c) => c.name).join(', ')})${rest[0] ? `, got "${rest[0]}"` : ''}`);
    command = { ...sub, name: `${name} ${sub.name}` };
    rest.shift();
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n\nflags: ${Object.keys(command.flags).map((f) => `--${f}`).join(' ')}\n`);
    return 0;
  }
  await command.run(parseFlags(command.name, rest, command.flags));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UserError) {
      process.stderr.write(`llm-features: ${err.message}\n${err.detail ? err.detail + '\n' : ''}`);
      process.exitCode = 2;
    } else {
      const e = err instanceof Error ? err : new Error(String(err));
      process.stderr.write(`llm-features: internal error: ${e.message.split('\n')[0]}\n`);
      if (process.env.LLMF_DEBUG) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  },
);
