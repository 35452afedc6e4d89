/**
 * `--flag @FILE`: the flag's value read from a file. Long values (a selection listing thousands of features) do not
 * fit on a command line: onnxruntime-node crashes on an argument list of about 28 KB (see entry.ts), and shells have
 * their own limits. Surrounding whitespace (the file's final newline) is dropped. `@@x` stands for the literal `@x`.
 */
import { UserError } from '../errors.js';
import { readSmallText } from '../formats/files.js';

/** A selection file is text; this is generous (a million features listed) and still bounds the read. */
const MAX_AT_FILE_BYTES = 16 * 1024 * 1024;

export function resolveAtFile(value: string, flag: string): string {
  if (value.startsWith('@@')) return value.slice(1);
  if (!value.startsWith('@')) return value;
  const file = value.slice(1);
  if (file === '') throw new UserError(`${flag}: "@" must be followed by a file name`);
  let text: string;
  try {
    text = readSmallText(file, `${flag} file`, MAX_AT_FILE_BYTES);
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${flag}: ${e.message}`) : e;
  }
  const trimmed = text.trim();
  if (trimmed === '') throw new UserError(`${flag}: ${file} is empty`);
  return trimmed;
}
