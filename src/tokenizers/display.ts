import type { Tokenizer } from './types.js';

/**
 * Token ids as a person should see them in a result: the tokenizer's own decoding ("called called called" reads as
 * text), unless that would hide tokens — control tokens decode to nothing and lone byte-fallback tokens to U+FFFD —
 * in which case every token is shown as its piece (`<s>`, `<0xE2>`, ` the`). Without a tokenizer: the ids.
 */
export function displayText(tokenizer: Tokenizer | null, ids: number[]): string {
  if (!tokenizer) return ids.join(' ');
  const text = tokenizer.decode(ids);
  const hidden = text.includes('\uFFFD') || ids.some((id) => tokenizer.decode([id]) === '');
  if (!hidden) return text;
  // Pieces keep their leading space marker as a space; drop one from the first, as decode does for the dummy prefix.
  return ids.map((id) => tokenizer.piece(id)).join('').replace(/^ /, '');
}
