/**
 * The command line that reproduces a stored record: `llm-features visualize` with every setting spelled out (defaults
 * too, so a later change of defaults does not change what the command does), and, for a single-feature record without
 * refinement, the `atlas build` line that would add it to an atlas.
 */
import type { Tokenizer } from '../tokenizers/types.js';

export interface Reproduction {
  visualize: string;
  /** Null when the record is not one feature at all positions, or uses settings `atlas build` has no flags for. */
  atlas_build: string | null;
  /** Caveats: text standing in for stored token ids, settings without a flag, a missing checkpoint. */
  notes: string[];
}

/** POSIX-shell quoting: bare when safe, else single quotes. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const SIMPLE: [key: string, flag: string][] = [
  ['tokens', '--tokens'],
  ['steps', '--steps'],
  ['lr', '--lr'],
  ['lr_end', '--lr-end'],
  ['optimizer', '--optimizer'],
  ['objective', '--objective'],
  ['C', '--C'],
  ['topk', '--topk'],
  ['decode', '--decode'],
  ['seed', '--seed'],
  ['random_draws', '--random-draws'],
];

const REFINE_FLAGS: [key: string, flag: string][] = [
  ['steps', '--refine-steps'],
  ['candidates', '--candidates'],
  ['swap_topk', '--swap-topk'],
  ['starts', '--refine-starts'],
  ['population', '--population'],
  ['fluency', '--fluency'],
  ['restart_every', '--restart-every'],
  ['ban', '--ban'],
];

const isIdList = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x));

function scalar(v: unknown): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number' || typeof x === 'string')) return v.join(',');
  return null;
}

export function reproduceCommand(
  rec: { select: string; blocks: [number, number]; hook: string; feature: number | null; settings: Record<string, unknown> },
  model: { path: string | null; name: string },
  tokenizer: Tokenizer | null,
  dbFile: string,
): Reproduction {
  const notes: string[] = [];
  const s = rec.settings;
  const used = new Set<string>();
  const flags: string[] = [];
  const atlasOk = { ok: rec.feature !== null };

  for (const [key, flag] of SIMPLE) {
    if (!(key in s)) continue;
    used.add(key);
    const v = scalar(s[key]);
    if (key === 'objective' && v === 'direction') {
      flags.push('--direction', 'DIRECTION_FILE');
      notes.push('the objective was a direction vector; --direction needs the file it came from');
      atlasOk.ok = false;
      continue;
    }
    if (v === null) notes.push(`setting ${key}=${JSON.stringify(s[key])} has no flag value this viewer can write`);
    else flags.push(flag, v);
  }

  const tokensText = (key: string, ids: number[], flag: string) => {
    if (ids.length === 0) return;
    if (!tokenizer) {
      notes.push(`${key} was the token ids ${ids.join(',')}; without the model's tokenizer the text for ${flag} is unknown`);
      flags.push(flag, `<ids ${ids.join(',')}>`);
      return;
    }
    const text = tokenizer.decode(ids);
    const again = tokenizer.encode(text);
    if (again.length !== ids.length || again.some((x, i) => x !== ids[i])) notes.push(`${flag} ${JSON.stringify(text)} encodes to ${again.join(',')}, not the stored ids ${ids.join(',')}`);
    flags.push(flag, text);
  };

  if ('init' in s) {
    used.add('init');
    const init = String(s.init);
    if (init.startsWith('tokens:')) {
      const ids = init.slice(7).split(',').filter((x) => x !== '').map(Number);
      if (tokenizer && ids.every((x) => Number.isInteger(x))) {
        const text = tokenizer.decode(ids);
        flags.push('--init', `tokens:${text}`);
        const again = tokenizer.encode(text);
        if (again.length !== ids.length || again.some((x, i) => x !== ids[i])) notes.push(`--init tokens:${JSON.stringify(text)} encodes to ${again.join(',')}, not the stored ids ${ids.join(',')}`);
      } else {
        flags.push('--init', init);
        notes.push(`--init was the token ids ${ids.join(',')}; give them as text`);
      }
    } else flags.push('--init', init);
  }
  for (const key of ['prefix', 'suffix']) {
    if (!(key in s)) continue;
    used.add(key);
    const v = s[key];
    if (isIdList(v)) tokensText(key, v, `--${key}`);
    else notes.push(`setting ${key}=${JSON.stringify(v)} is not a list of token ids`);
  }
  if ('bos' in s) {
    used.add('bos');
    if (s.bos === true) flags.push('--bos');
  }
  if ('baseline' in s) {
    used.add('baseline');
    flags.push('--baseline', String(s.baseline));
    atlasOk.ok = false;
  }
  if ('refine' in s && s.refine && typeof s.refine === 'object') {
    used.add('refine');
    atlasOk.ok = false;
    const r = s.refine as Record<string, unknown>;
    flags.push('--refine', String(r.method));
    for (const [key, flag] of REFINE_FLAGS) {
      if (!(key in r)) continue;
      const v = scalar(r[key]);
      if (v === null || v === '') continue;
      flags.push(flag, v);
    }
    for (const key of ['printable', 'ascii', 'retokenize']) if (r[key] === true) flags.push(`--${key}`);
  }
  for (const key of Object.keys(s)) if (!used.has(key)) notes.push(`setting ${key}=${JSON.stringify(s[key])} has no flag known to this viewer`);

  const modelArg = model.path ?? model.name;
  if (!model.path) notes.push(`the checkpoint of ${model.name} was not found where the atlas saw it; give its path to --model`);
  const blocks = rec.blocks[0] === rec.blocks[1] ? String(rec.blocks[0]) : `${rec.blocks[0]}-${rec.blocks[1]}`;
  const line = (parts: string[]) => parts.map(shellQuote).join(' ');
  const visualize = line(['llm-features', 'visualize', '--model', modelArg, '--blocks', blocks, '--hook', rec.hook, '--select', rec.select, ...flags]);
  const atlas_build =
    atlasOk.ok && rec.feature !== null
      ? line(['llm-features', 'atlas', 'build', '--model', modelArg, '--db', dbFile, '--blocks', blocks, '--hook', rec.hook, '--features', String(rec.feature), ...flags])
      : null;
  return { visualize, atlas_build, notes };
}
