/**
 * How much text one encode accepts. Tokenizers hold a few objects per character (a symbol list, a merge heap), so an
 * unbounded string is an unbounded allocation; a megabyte is far beyond any model's context and still encodes in
 * about a second.
 */
import { UserError } from '../errors.js';

export const MAX_ENCODE_CHARS = 1_000_000;

export function checkEncodeLength(source: string, text: string): void {
  if (text.length > MAX_ENCODE_CHARS) {
    throw new UserError(`${source}: text of ${text.length} characters is longer than the ${MAX_ENCODE_CHARS}-character limit of one encode`);
  }
}
