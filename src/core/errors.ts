/**
 * The one error class meant for users: its message says what is wrong and how to fix it, in one
 * line, and the CLI prints it without a stack trace. Anything else that escapes is a bug.
 */

/**
 * Process exit codes (README "Exit codes"). A bug exits 70 (EX_SOFTWARE, set by the launcher),
 * so scripts can tell it from images that failed.
 */
export const EXIT = { ok: 0, imagesFailed: 1, usage: 2, bug: 70, interrupted: 130 } as const;

export class UserError extends Error {
  constructor(
    message: string,
    /** Process exit code: usage or setup error unless said otherwise. */
    readonly exitCode: number = EXIT.usage,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
