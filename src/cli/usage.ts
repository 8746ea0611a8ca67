/**
 * Usage errors: a bad option or argument, reported in one line with exit code 2 (other failures
 * exit 1), and the checks shared by the commands: a path an option names must exist, --backend
 * must name a backend.
 *   throw new UsageError('--vocab must be an integer >= 263, got 12');
 *   requirePath('--data', 'train.jsonl', 'file');   // UsageError "--data: file not found: train.jsonl"
 */
import {InvalidArgumentError} from 'commander';
import * as fs from 'fs';
import {BACKENDS} from '../backend';

export class UsageError extends Error {}

/** Refuses (exit 2) an option's path that is missing or of the wrong kind. */
export function requirePath(flag: string, p: string, kind: 'file' | 'dir'): void {
  const st = fs.statSync(p, {throwIfNoEntry: false});
  if (st == null) throw new UsageError(`${flag}: ${kind === 'dir' ? 'directory' : 'file'} not found: ${p}`);
  if (kind === 'dir' && !st.isDirectory()) throw new UsageError(`${flag} must be a directory: ${p}`);
  if (kind === 'file' && !st.isFile()) throw new UsageError(`${flag} must be a file: ${p}`);
}

/** commander's parser of --backend: an unknown name is a usage error. */
export function backendOption(s: string): string {
  if (!(BACKENDS as readonly string[]).includes(s))
    throw new InvalidArgumentError(`unknown backend ${JSON.stringify(s)}: --backend takes ${BACKENDS.join(', ')}.`);
  return s;
}
