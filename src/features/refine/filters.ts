/** Token constraints on refinement candidates: banned ids, printable or ASCII pieces, the retokenisation round trip. */
import { paramError, UserError } from '../../errors.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import type { TokenFilterSpec } from './settings.js';

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
const SPECIAL_PIECE = /^<[^\s<>]{1,16}>$/;

/** Allowed-token mask over the vocabulary (1 = may be proposed), or null when nothing is restricted. */
export function allowedTokens(tokenizer: Tokenizer | null, vocab: number, spec: TokenFilterSpec): Uint8Array | null {
  if (spec.ban.length === 0 && !spec.printable && !spec.ascii) return null;
  if ((spec.printable || spec.ascii) && !tokenizer) throw paramError(spec.ascii ? 'refine.filter.ascii' : 'refine.filter.printable', `needs a tokenizer to read token pieces`);
  const mask = new Uint8Array(vocab).fill(1);
  for (const id of spec.ban) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw paramError('refine.filter.ban', `token id ${id} is outside the vocabulary 0-${vocab - 1}`);
    mask[id] = 0;
  }
  if (spec.printable || spec.ascii) {
    for (let id = 0; id < vocab; id++) {
      if (!mask[id]) continue;
      if (!isPrintable(tokenizer!, id) || (spec.ascii && !/^[\x20-\x7e]+$/.test(tokenizer!.piece(id)))) mask[id] = 0;
    }
  }
  if (!mask.some((m) => m === 1)) throw new UserError('ban/printable/ascii: no token is left to propose');
  return mask;
}

function isPrintable(tok: Tokenizer, id: number): boolean {
  if (id === tok.bosId || id === tok.eosId) return false;
  const p = tok.piece(id);
  if (p.length === 0 || BYTE_PIECE.test(p) || SPECIAL_PIECE.test(p)) return false;
  // Control characters, and U+FFFD (a piece that is part of a multi-byte character).
  return !/[\p{Cc}\uFFFD]/u.test(p);
}

/** Does the prompt survive decode → encode? A leading BOS is re-added by the encoder; any other control token is not. */
export function roundTrips(tokenizer: Tokenizer, ids: number[]): boolean {
  const bos = ids.length > 0 && ids[0] === tokenizer.bosId;
  let back: number[];
  try {
    back = tokenizer.encode(tokenizer.decode(ids), { bos });
  } catch {
    return false;
  }
  return back.length === ids.length && back.every((id, i) => id === ids[i]);
}

