/**
 * Errors a user caused (bad file, bad flag, bad value). The CLI prints their message as one line on stderr and
 * exits with code 2; anything else is a bug and keeps its stack trace behind LLMF_DEBUG.
 */
export class UserError extends Error {
  /** Optional extra lines printed after the message (used only by the selection parser's caret display). */
  readonly detail?: string;
  constructor(message: string, detail?: string) {
    // One line whatever the message quotes (a tensor name or a file's string with a newline in it): control
    // characters are shown escaped, as JSON writes them.
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1)));
    this.name = 'UserError';
    this.detail = detail;
  }
}

export function fail(message: string): never {
  throw new UserError(message);
}
