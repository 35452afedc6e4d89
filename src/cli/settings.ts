/**
 * The settings objects of commands, from parsed flags: the table (src/features/settings.ts) places every value; this
 * file only adds what a command knows and the table does not — the block range and hook of a sweep, the model's
 * tokenizer for settings given as text.
 */
import { buildSettings, type CommandName } from '../features/settings.js';
import type { InvertSettings } from '../features/invert.js';
import type { VisualizeSettings } from '../features/visualize.js';
import type { Hook } from '../models/config.js';
import { parseBlockList } from '../models/block-range.js';
import { resolveBlockListAndHook, resolveBlocksAndHook } from '../models/hooks.js';
import { UserError } from '../errors.js';
import { loadSae, saeHookFlag } from '../features/sae.js';
import type { LoadedModel } from '../models/load.js';
import type { Values } from './args.js';

export function commandSettings(v: Values, model: LoadedModel | null): Record<string, unknown> {
  return buildSettings(v.command as CommandName, v.given, { tokenizer: model?.tokenizer ?? null, modelPath: model?.path });
}

/** VisualizeSettings for one block range and hook (visualize, atlas build). */
export function visualizeSettings(v: Values, model: LoadedModel, blocks: [number, number], hook: Hook): VisualizeSettings {
  return { ...commandSettings(v, model), blocks, hook } as unknown as VisualizeSettings;
}

/** InvertSettings: `--lr-end` follows `--lr` (a tenth of it) when only `--lr` is given. */
export function invertSettings(v: Values, model: LoadedModel, blocks: [number, number], hook: Hook): InvertSettings {
  const s = { ...commandSettings(v, model), blocks, hook } as unknown as InvertSettings;
  if (v.has('lr') && !v.has('lr-end')) s.lrEnd = s.lr / 10;
  if (s.refine) s.refine = { ...s.refine, starts: 1 }; // invert climbs from its one decode: no ranked rows to start from
  return s;
}

/** --hook, or with --sae the hook its cfg names (a Gemma Scope params.npz has none: then --hook). */
function hookFlag(v: Values): string | undefined {
  const sae = v.has('sae') ? v.str('sae') : undefined;
  if (sae === undefined) return v.str('hook');
  return saeHookFlag(loadSae(sae), v.has('hook') ? v.str('hook') : undefined);
}

const NEED_BLOCKS = '--blocks: required (or a TransformerLens --hook such as blocks.0.hook_resid_post)';

/** `--blocks A-B` and `--hook` (native or TransformerLens, models/hooks.ts); one of them must name the blocks. */
export function blocksAndHook(v: Values): { blocks: [number, number]; hook: Hook } {
  const r = resolveBlocksAndHook(v.str('blocks'), hookFlag(v));
  if (!r.blocks) throw new UserError(NEED_BLOCKS);
  return { blocks: r.blocks, hook: r.hook };
}

/** The same for `atlas build`'s list of block ranges. */
export function blockListAndHook(v: Values): { blocks: [number, number][]; hook: Hook } {
  const list = v.str('blocks');
  const r = resolveBlockListAndHook(list === undefined ? null : parseBlockList(list), hookFlag(v));
  if (!r.blocks) throw new UserError(NEED_BLOCKS);
  return { blocks: r.blocks, hook: r.hook };
}
