/**
 * `--model org/name[@revision]` (and `random-model --like`): before a command opens its model, a hub id is replaced
 * by the local cache snapshot holding what the command needs (hub/download.ts). Commands that run a block range
 * fetch only the shards of blocks 1..B; everything else (logits, generation, EPO's fluency term) takes the whole model.
 */
import { existsSync } from 'node:fs';
import { parseBlockList } from '../models/block-range.js';
import { parseHubId } from '../hub/cache.js';
import { resolveHubModel } from '../hub/download.js';
import { resolveBlockListAndHook, resolveBlocksAndHook } from '../models/hooks.js';
import type { Values } from './args.js';

/** Commands that touch only blocks 1..B of the model (unless EPO refinement asks for the full model's fluency). */
const BLOCK_COMMANDS = new Set(['forward', 'visualize', 'attribute', 'baseline', 'invert', 'atlas build']);

export async function resolveHubModelFlags(v: Values): Promise<void> {
  for (const name of ['model', 'like']) {
    const value = v.has(name) ? String(v.get(name)) : undefined;
    if (value === undefined || existsSync(value)) continue;
    const id = parseHubId(value);
    if (!id) continue; // not a hub id: the loader reports the missing path
    v.set(name, await resolveHubModel(id, { lastBlock: name === 'model' ? lastBlock(v.command, v) : null }));
  }
}

/** The last block the command runs, from --blocks / --hook; null when it needs the whole model. */
function lastBlock(command: string, v: Values): number | null {
  if (!BLOCK_COMMANDS.has(command) || (v.has('refine') && v.get('refine') === 'epo')) return null;
  const blocks = v.has('blocks') ? String(v.get('blocks')) : undefined;
  const hook = v.has('hook') ? String(v.get('hook')) : undefined;
  if (command === 'atlas build') {
    const list = resolveBlockListAndHook(blocks === undefined ? null : parseBlockList(blocks), hook).blocks;
    return list ? Math.max(...list.map((r) => r[1])) : null;
  }
  return resolveBlocksAndHook(blocks, hook).blocks?.[1] ?? null;
}
