/**
 * Errors a user caused (bad file, bad flag, bad value). The CLI prints their message as one line on stderr and
 * exits with code 2; anything else is a bug and keeps its stack trace behind LLMF_DEBUG.
 */
export class UserError extends Error {
  /** Optional extra lines printed after the message (used only by the selection parser's caret display). */
  readonly detail?: string;
  constructor(message: string, detail?: string) {
    super(message);
    this.name = 'UserError';
    this.detail = detail;
  }
}

export function fail(message: string): never {
  throw new UserError(message);
}
