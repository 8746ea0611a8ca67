/**
 * Where each token stands: positions, document starts and padding, built once per forward
 * and shared by every layer.
 *   const packed = sequenceInfo(2, 4, {positionIds: [[0, 1, 2, 3], [0, 1, 0, 1]]});   // row 1: two documents
 *   const padded = sequenceInfo(1, 3, {attentionMask: [[0, 1, 1]]});   // left padding: positions [0, 0, 1]
 *   disposeSequenceInfo(packed);   disposeSequenceInfo(padded);
 *
 * Shape letters: b batch, t time. A position id of 0 starts a document (packed rows); an
 * attention-mask 0 marks padding.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface SequenceInfo {
  b: number;
  t: number;
  /** [b, t] int32: position within the document (RoPE angle). */
  positions: tf.Tensor;
  /** [b, t, 1] float32: 1 where a document starts at a real token (the recurrence resets). */
  reset: tf.Tensor;
  /** [b, t, 1] float32: 1 for tokens, 0 for padding; null when there is no padding. */
  tokenMask: tf.Tensor | null;
  /**
   * [b, t] int32: document index within this chunk, counted from 0 = the document that was
   * already running before the chunk (carried state). null when each row is one document
   * that starts at t = 0 and nothing else needs segment masks.
   */
  segment: tf.Tensor | null;
  /** Everything above, for disposal. */
  owned: tf.Tensor[];
}

export interface SequenceInputs {
  positionIds?: tf.Tensor | number[][] | null;
  attentionMask?: tf.Tensor | number[][] | null;
}

function toInt2d(v: tf.Tensor | number[][], b: number, t: number, name: string): tf.Tensor {
  const x = v instanceof tf.Tensor ? v : tf.tensor2d(v as number[][], undefined, 'int32');
  if (x.rank !== 2 || x.shape[0] !== b || x.shape[1] !== t) {
    throw new Error(`${name} must have shape [${b}, ${t}] like inputIds, got [${x.shape}]`);
  }
  return x.dtype === 'int32' ? x : tf.cast(x, 'int32');
}

/**
 * Builds the SequenceInfo. Without positionIds they count 0, 1, ... from `offset`, or, with an
 * attentionMask, count only the real tokens (so a left-padded prompt starts at 0).
 */
export function sequenceInfo(b: number, t: number, inputs: SequenceInputs = {}, offset = 0): SequenceInfo {
  return tf.tidy(() => {
    const mask = inputs.attentionMask != null ? toInt2d(inputs.attentionMask, b, t, 'attentionMask') : null;
    let positions: tf.Tensor;
    const packed = inputs.positionIds != null;
    if (packed) {
      positions = toInt2d(inputs.positionIds!, b, t, 'positionIds');
    } else if (mask != null) {
      positions = tf.add(tf.maximum(tf.sub(tf.cumsum(mask, 1), 1), 0), offset);
    } else {
      positions = tf.tile(tf.reshape(tf.range(offset, offset + t, 1, 'int32'), [1, t]), [b, 1]);
    }
    const tokenMask = mask != null ? tf.reshape(tf.cast(mask, 'float32'), [b, t, 1]) : null;
    let reset = tf.cast(tf.equal(positions, 0), 'float32');
    if (mask != null) reset = tf.mul(reset, tf.cast(mask, 'float32'));
    // Documents need separating only when a row can hold more than one of them.
    const segment = packed || mask != null || offset > 0 ? tf.cast(tf.cumsum(reset, 1), 'int32') : null;
    reset = tf.reshape(reset, [b, t, 1]);
    const owned = [positions, reset, tokenMask, segment].filter((x): x is tf.Tensor => x != null);
    const info: SequenceInfo = {b, t, positions, reset, tokenMask, segment, owned};
    return info as unknown as tf.Tensor; // tidy keeps the tensors inside the returned object
  }) as unknown as SequenceInfo;
}

export function disposeSequenceInfo(info: SequenceInfo): void {
  tf.dispose(info.owned);
}
