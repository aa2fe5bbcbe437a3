/**
 * The one error class meant for users: its message says what is wrong and how to fix it, in one
 * line, and the CLI prints it without a stack trace. Anything else that escapes is a bug.
 */
export class UserError extends Error {
  constructor(
    message: string,
    /** Process exit code: 2 = usage or setup error (see README "Exit codes"). */
    readonly exitCode: number = 2,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
