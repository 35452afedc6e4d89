/**
 * Block ranges and hooks as users write them: the native form (`--blocks A-B --hook resid`) and TransformerLens'
 * names (`blocks.{l}.hook_resid_post`, 0-based l), resolved to one (range, native hook) pair. A TransformerLens name
 * is an activation of layer l of the whole model, so it implies blocks 1..l+1; given with `--blocks A-B` it must name
 * block B, and then blocks A..B run straight on the embeddings as usual (the original method). Anything else
 * contradicts itself and is refused.
 */
import { paramError } from '../errors.js';
import { parseBlockRange } from './block-range.js';
import { HOOKS, type Hook } from './config.js';

/** TransformerLens hook-point suffixes (after `blocks.{l}.`) and the native hook each one is. */
export const TRANSFORMER_LENS_HOOKS: Readonly<Record<string, Hook>> = {
  hook_resid_post: 'resid',
  'mlp.hook_post': 'mlp',
  hook_attn_out: 'attn_out',
  hook_mlp_out: 'mlp_out',
};

export { parseBlockRange } from './block-range.js';

/** A hook flag's value: a native hook, or a TransformerLens name with the 1-based block it names. */
export function parseHookName(text: string): { hook: Hook; block: number | null } {
  if ((HOOKS as readonly string[]).includes(text)) return { hook: text as Hook, block: null };
  const m = /^blocks\.(\d+)\.(.+)$/.exec(text);
  const tl = Object.keys(TRANSFORMER_LENS_HOOKS).map((k) => `blocks.{l}.${k}`).join(', ');
  if (!m) throw paramError('hook', `unknown hook "${text}" (expected ${HOOKS.join(', ')}, or a TransformerLens name: ${tl})`);
  const hook = TRANSFORMER_LENS_HOOKS[m[2]!];
  if (!hook) throw paramError('hook', `TransformerLens hook "${m[2]}" is not supported (supported: ${tl})`);
  const layer = Number(m[1]);
  if (!Number.isSafeInteger(layer)) throw paramError('hook', `layer ${m[1]} in "${text}" is not a valid layer index`);
  return { hook, block: layer + 1 };
}

/**
 * `--blocks` and `--hook` (either may be absent) → the block range and native hook. `blocks` is null only when
 * neither names a block (the caller decides whether that is allowed: `forward` then prints logits).
 */
export function resolveBlocksAndHook(
  blocks: string | undefined,
  hook: string | undefined,
  defaultHook: Hook = 'resid',
): { blocks: [number, number] | null; hook: Hook } {
  const h = hook === undefined ? { hook: defaultHook, block: null } : parseHookName(hook);
  const range = blocks === undefined ? null : parseBlockRange(blocks);
  return { blocks: reconcile(range, h, hook ?? '', blocks ?? ''), hook: h.hook };
}

/** The same for a list of block ranges (`atlas build --blocks 1,1-4,5`): with a TransformerLens name, each must end at its block. */
export function resolveBlockListAndHook(
  ranges: [number, number][] | null,
  hook: string | undefined,
  defaultHook: Hook = 'resid',
): { blocks: [number, number][] | null; hook: Hook } {
  const h = hook === undefined ? { hook: defaultHook, block: null } : parseHookName(hook);
  if (ranges === null) return { blocks: h.block === null ? null : [[1, h.block]], hook: h.hook };
  return { blocks: ranges.map((r) => reconcile(r, h, hook ?? '', `${r[0]}-${r[1]}`)!), hook: h.hook };
}

function reconcile(range: [number, number] | null, h: { block: number | null }, hookText: string, blocksText: string): [number, number] | null {
  if (h.block === null) return range;
  if (range === null) return [1, h.block];
  if (range[1] !== h.block) {
    throw paramError('hook', `${hookText} is an output of block ${h.block}, but blocks ${blocksText} end at block ${range[1]} (with a block range A-B, a TransformerLens name must name block B)`);
  }
  return range;
}
