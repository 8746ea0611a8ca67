/**
 * A usage error: a bad option or argument, reported in one line with exit code 2 (other
 * failures exit 1).
 *   throw new UsageError('--vocab must be an integer >= 263, got 12');
 */
export class UsageError extends Error {}
