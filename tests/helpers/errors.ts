import { expect } from 'vitest';
import { UserError } from '../../src/errors.js';

/** The message of the one-line UserError that `fn` throws (the test fails if it throws nothing or something else). */
export function userErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a UserError, nothing was thrown');
}
