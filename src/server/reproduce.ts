/**
 * The command line that reproduces a stored record: `llm-features visualize` with every setting spelled out (defaults
 * too, so a later change of defaults does not change what the command does), and, for a single-feature record whose
 * settings `atlas build` takes, the `atlas build` line that would add it to an atlas. The flags come from the settings
 * table (src/features/settings.ts), the same table that wrote the record.
 */
import { recordArgs, settingsFor, SETTINGS } from '../features/settings.js';
import type { Tokenizer } from '../tokenizers/types.js';

export interface Reproduction {
  visualize: string;
  /** Null when the record is not one feature at all positions, or uses settings `atlas build` does not take. */
  atlas_build: string | null;
  /** Caveats: text standing in for stored token ids, settings without a flag, a missing checkpoint or vector. */
  notes: string[];
}

/** POSIX-shell quoting: bare when safe, else single quotes. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const BUILD_FLAGS = new Set(settingsFor('atlas build').map((s) => s.flag));

export function reproduceCommand(
  rec: { select: string; blocks: [number, number]; hook: string; feature: number | null; settings: Record<string, unknown>; direction?: number[] },
  model: { path: string | null; name: string },
  tokenizer: Tokenizer | null,
  dbFile: string,
): Reproduction {
  const notes: string[] = [];
  // A direction record keeps its vector (the result's `direction`): the command names a file to write it to.
  const stored = (rec as { direction?: unknown }).direction;
  // An SAE record keeps the folder it was read from (the result's `sae`): its hash must still name that SAE.
  const sae = (rec as { sae?: { hash?: unknown; path?: unknown } }).sae;
  const vectorFile = (hash: string) => {
    if (sae && sae.hash === hash && typeof sae.path === 'string') return sae.path;
    if (!Array.isArray(stored)) return null;
    const file = `direction-${hash.slice(0, 12)}.json`;
    notes.push(`write this record's direction values (its "direction" array, ${stored.length} numbers) to ${file} as a JSON array`);
    return file;
  };
  const flags = recordArgs(rec.settings, { tokenizer, vectorFile, notes });
  const modelArg = model.path ?? model.name;
  if (!model.path) notes.push(`the checkpoint of ${model.name} was not found where the atlas saw it; give its path to --model`);
  const blocks = rec.blocks[0] === rec.blocks[1] ? String(rec.blocks[0]) : `${rec.blocks[0]}-${rec.blocks[1]}`;
  const line = (parts: string[]) => parts.map(shellQuote).join(' ');
  const visualize = line(['llm-features', 'visualize', '--model', modelArg, '--blocks', blocks, '--hook', rec.hook, '--select', rec.select, ...flags]);
  const buildable = rec.feature !== null && flags.filter((f) => f.startsWith('--')).every((f) => BUILD_FLAGS.has(f.slice(2)) && SETTINGS.some((s) => s.flag === f.slice(2)));
  const atlas_build = buildable
    ? line(['llm-features', 'atlas', 'build', '--model', modelArg, '--db', dbFile, '--blocks', blocks, '--hook', rec.hook, '--features', String(rec.feature), ...flags])
    : null;
  return { visualize, atlas_build, notes };
}
