/**
 * Errors a user caused (bad file, bad flag, bad value). The CLI prints their message as one line on stderr and
 * exits with code 2; anything else is a bug and keeps its stack trace behind LLMF_DEBUG.
 *
 * The library names its parameters, not the CLI's flags: an error about a setting carries `param` (the setting's
 * parameter name in the settings table, e.g. `blocks` or `refine.ban`) and starts with "param: ". The CLI swaps that
 * prefix for the flag (`--blocks: …`) when it prints the error, so library users and CLI users each read their own
 * vocabulary.
 */
export class UserError extends Error {
  /** Optional extra lines printed after the message (used only by the selection parser's caret display). */
  readonly detail?: string;
  /** The library parameter the error is about, when it is about one (see above). */
  readonly param?: string;
  constructor(message: string, detail?: string, param?: string) {
    // One line whatever the message quotes (a tensor name or a file's string with a newline in it): control
    // characters are shown escaped, as JSON writes them.
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1)));
    this.name = 'UserError';
    this.detail = detail;
    this.param = param;
  }
}

export function fail(message: string): never {
  throw new UserError(message);
}

/** A user error about one parameter: "param: problem". */
export function paramError(param: string, problem: string, detail?: string): UserError {
  return new UserError(`${param}: ${problem}`, detail, param);
}
