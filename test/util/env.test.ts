/**
 * envIntInRange: the fallback when unset or empty, the value when it is an integer inside the
 * bounds (both ends included), and each bad kind refused with the exact one-line message.
 */
import {envIntInRange} from '../../src/util/env';

const NAME = 'GRIFFIN_TEST_ENV_INT';

describe('envIntInRange', () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env[NAME];
  });
  afterEach(() => {
    if (saved === undefined) delete process.env[NAME];
    else process.env[NAME] = saved;
  });

  it('gives the fallback when unset or empty', () => {
    delete process.env[NAME];
    expect(envIntInRange(NAME, 32, 0, 100000)).toBe(32);
    process.env[NAME] = '';
    expect(envIntInRange(NAME, 8, 1, 64)).toBe(8);
  });

  it('gives the fallback where there is no process (a browser)', () => {
    const proc = globalThis.process;
    process.env[NAME] = 'abc';
    (globalThis as {process?: unknown}).process = undefined;
    let got: number;
    try {
      got = envIntInRange(NAME, 16, 0, 1024);
    } finally {
      globalThis.process = proc;
    }
    expect(got).toBe(16);
  });

  it('gives the value when it is an integer inside the bounds, ends included', () => {
    process.env[NAME] = '7';
    expect(envIntInRange(NAME, 32, 0, 100000)).toBe(7);
    process.env[NAME] = '0';
    expect(envIntInRange(NAME, 32, 0, 100000)).toBe(0);
    process.env[NAME] = '100000';
    expect(envIntInRange(NAME, 32, 0, 100000)).toBe(100000);
    process.env[NAME] = '1';
    expect(envIntInRange(NAME, 8, 1, 64)).toBe(1);
    process.env[NAME] = '64';
    expect(envIntInRange(NAME, 8, 1, 64)).toBe(64);
  });

  it.each([
    ['1.5', 1, 64, 'GRIFFIN_TEST_ENV_INT must be an integer in [1, 64], got "1.5"'],
    ['abc', 1, 64, 'GRIFFIN_TEST_ENV_INT must be an integer in [1, 64], got "abc"'],
    ['0', 1, 64, 'GRIFFIN_TEST_ENV_INT must be an integer in [1, 64], got "0"'],
    ['-1', 0, 1024, 'GRIFFIN_TEST_ENV_INT must be an integer in [0, 1024], got "-1"'],
    ['65', 1, 64, 'GRIFFIN_TEST_ENV_INT must be an integer in [1, 64], got "65"'],
    ['1000001', 0, 1000000, 'GRIFFIN_TEST_ENV_INT must be an integer in [0, 1000000], got "1000001"'],
    ['Infinity', 0, 100000, 'GRIFFIN_TEST_ENV_INT must be an integer in [0, 100000], got "Infinity"'],
  ])('refuses %s in [%d, %d] in one line', (v, lo, hi, message) => {
    process.env[NAME] = v;
    expect(() => envIntInRange(NAME, 8, lo, hi)).toThrow(new Error(message));
  });
});
