/** Help text, derived from the settings table: every flag a command takes, grouped, with its description and default. */
import { choicesFor, defaultFor, GROUPS, settingsFor, SETTINGS, type CommandName, type Setting } from '../features/settings.js';
import type { Command } from './command.js';

function defaultText(s: Setting, command: CommandName): string | null {
  const d = defaultFor(s, command);
  if (d === undefined || d === false || (Array.isArray(d) && d.length === 0)) return null;
  return Array.isArray(d) ? d.join(',') : String(d);
}

function flagText(s: Setting, command: CommandName | null = null): string {
  if (s.kind === 'bool') return `--${s.flag}`;
  const meta = s.kind === 'enum' ? choicesFor(s, command).join('|') : (s.metavar ?? 'VALUE');
  return `--${s.flag} ${meta}`;
}

function usageLine(command: CommandName, table: readonly Setting[]): string {
  const required = settingsFor(command, table).filter((s) => s.required?.includes(command));
  return ['usage: llm-features', command, ...required.map((s) => flagText(s, command)), '[flags]'].join(' ');
}

/** `llm-features CMD --help`. */
export function commandHelp(cmd: Command & { name: CommandName }, table: readonly Setting[] = SETTINGS): string {
  const lines = [usageLine(cmd.name, table), '', cmd.summary];
  const mine = settingsFor(cmd.name, table);
  const width = Math.min(26, Math.max(...mine.map((s) => flagText(s, cmd.name).length)) + 2);
  for (const group of GROUPS) {
    const inGroup = mine.filter((s) => s.group === group);
    if (inGroup.length === 0) continue;
    lines.push('', `${group}${group === 'run' ? ' options (not part of the recorded settings)' : ''}:`);
    for (const s of inGroup) {
      const extra: string[] = [];
      if (s.required?.includes(cmd.name)) extra.push('required');
      const d = defaultText(s, cmd.name);
      if (d !== null) extra.push(`default ${d}`);
      if (s.needs) extra.push(`with --${s.needs.flag}${s.needs.values ? ` ${s.needs.values.join('|')}` : ''}`);
      const head = `  ${flagText(s, cmd.name)}`;
      const text = `${s.describe}${extra.length ? ` (${extra.join('; ')})` : ''}`;
      lines.push(head.length + 2 > width + 2 ? `${head}\n${' '.repeat(width + 2)}${text}` : `${head.padEnd(width + 2)}${text}`);
    }
  }
  for (const note of cmd.notes ?? []) lines.push('', note);
  return lines.join('\n') + '\n';
}

/** `llm-features --help` and `llm-features atlas --help`: the commands, one line each. */
export function listHelp(title: string, commands: Command[], prefix = ''): string {
  const lines = [title, '', 'commands:'];
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  for (const c of commands) lines.push(`  ${(prefix + c.name).padEnd(width + prefix.length)}  ${c.summary}`);
  return lines.join('\n') + '\n';
}
