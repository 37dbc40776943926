/**
 * An error caused by what the user asked for (bad file, bad flag, model that is not a decoder). The CLI prints its
 * message as one line and exits non-zero; anything else is a bug and keeps its stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'UserError';
  }
}

export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError;
}
