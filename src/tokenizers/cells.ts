/**
 * Token-by-token display: one cell per token, joined by `·`, so token boundaries stay visible ("st·st·g" is five
 * characters of three tokens). Byte-fallback tokens show as ⟨0x0B⟩ and special/control tokens as ⟨s⟩, so neither can
 * be mistaken for text; control characters inside a token are escaped (\n, \t). Positions that are not part of the
 * result (fixed context, positions without gradient) are wrapped in [brackets].
 */
import type { Tokenizer } from './types.js';

export function tokenCell(tokenizer: Tokenizer | null, id: number): string {
  if (!tokenizer) return String(id);
  const piece = tokenizer.piece(id);
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (byte) return `⟨0x${byte[1]!.toUpperCase()}⟩`;
  if (id === tokenizer.bosId || id === tokenizer.eosId || /^<[^\s<>]{1,16}>$/.test(piece) || /^<\|[^\s]{1,30}\|>$/.test(piece)) {
    return `⟨${piece.replace(/^<\|?|\|?>$/g, '')}⟩`;
  }
  return piece.replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/\r/g, '\\r');
}

/** Cells for a sequence; positions not in `result` (when given) are bracketed as context. */
export function tokenCells(tokenizer: Tokenizer | null, ids: number[], result?: Set<number>): string {
  return ids.map((id, t) => (result && !result.has(t) ? `[${tokenCell(tokenizer, id)}]` : tokenCell(tokenizer, id))).join('·');
}
