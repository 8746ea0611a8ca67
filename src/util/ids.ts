/**
 * The package's one validator of token ids, for every entry point that takes them (forward,
 * prefill, decodeStep, generate's options, the embedding lookup, the sampler's penalty).
 *   const rows = idRows([[2, 651]], 'inputIds');                   // number[][], rows of equal length
 *   const {t, owned} = idTensor(rows, 'inputIds');  if (owned) t.dispose();   // int32 [b, t]
 *   checkIdRange([2, 651], 256000, 'stopTokenIds');                  // RangeError when outside [0, V)
 *
 * Shape letters: b batch, t time, V vocabulary size.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Token ids as [b, t]: a tensor, or rows of numbers. */
export type IdsLike = tf.Tensor | number[][];

function checkRank(v: tf.Tensor, name: string): void {
  if (v.rank !== 2) throw new Error(`${name} must be [batch, time], got shape [${v.shape}]`);
}

/**
 * ids as rows of integers, all of one length (a tensor is read synchronously). Rows may be
 * empty only with `allowEmpty` (continuing a state with nothing new).
 */
export function idRows(v: IdsLike, name: string, allowEmpty = false): number[][] {
  let rows: number[][];
  if (v instanceof tf.Tensor) {
    checkRank(v, name);
    rows = v.arraySync() as number[][];
  } else {
    if (!Array.isArray(v) || v.length === 0 || !v.every((r) => Array.isArray(r))) {
      throw new Error(`${name} must be a non-empty number[][]`);
    }
    rows = v;
  }
  if (rows.length === 0) throw new Error(`${name} must have at least one row`);
  const t = rows[0].length;
  if (!rows.every((r) => r.length === t)) {
    throw new Error(`${name} must have rows of equal length (pad on the left and pass attentionMask)`);
  }
  if (t === 0 && !allowEmpty) throw new Error(`${name} must have at least one step`);
  for (const r of rows) {
    for (const x of r) if (!Number.isInteger(x)) throw new Error(`${name} must hold integers, got ${x}`);
  }
  return rows;
}

/** ids as an int32 [b, t] tensor, and whether it was made here (the caller then disposes it). */
export function idTensor(v: IdsLike, name: string): {t: tf.Tensor; owned: boolean} {
  if (v instanceof tf.Tensor) {
    checkRank(v, name);
    return v.dtype === 'int32' ? {t: v, owned: false} : {t: tf.cast(v, 'int32'), owned: true};
  }
  return {t: tf.tensor2d(idRows(v, name), undefined, 'int32'), owned: true};
}

/**
 * Throws a RangeError when an id is not an integer in [0, V): a lookup there would silently read
 * garbage. `name` says whose ids they are; without it they are the model's input tokens.
 */
export function checkIdRange(ids: ArrayLike<number>, vocabSize: number, name?: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (Number.isInteger(id) && id >= 0 && id < vocabSize) continue;
    const what = name == null ? `token id ${id}` : `${name}: id ${id}`;
    throw new RangeError(`${what} is outside the vocabulary [0, ${vocabSize})`);
  }
}
