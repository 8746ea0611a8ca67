/**
 * The package's one reader of a bounded integer knob from an environment variable (the engines'
 * tuning switches): the fallback when unset or empty, else the value if it is an integer inside
 * [lo, hi], else refused in one line. In a browser (no `process`) every knob reads as unset.
 *   import {envIntInRange} from './env';
 *   const early = envIntInRange('GRIFFIN_PREFILL_EARLY_SUBMIT', 32, 0, 100000);   // 32 when unset or ''
 */

/**
 * env[name] as an integer in [lo, hi]; `fallback` when unset or ''. Anything else that `Number`
 * does not read as an integer inside the bounds throws `NAME must be an integer in [lo, hi], got "v"`.
 */
export function envIntInRange(name: string, fallback: number, lo: number, hi: number): number {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  if (v == null || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) {
    throw new Error(`${name} must be an integer in [${lo}, ${hi}], got "${v}"`);
  }
  return n;
}
