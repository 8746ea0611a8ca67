/**
 * Causal depthwise 1-D convolution of the recurrent block, with a carried input history.
 *   const {y, state} = causalConv1d(x, weight, bias, info);           // no history: zeros before x
 *   const next = causalConv1d(hidden, weight, bias, null, state);      // the next chunk, carrying state
 *
 * x: [b, t, e]; weight: [e, 1, w] (PyTorch Conv1d layout); bias: [e]; state: [b, w-1, e], the
 * last w-1 inputs before this chunk (zeros at the start).
 *  y[t, c] = bias[c] + sum_{k<w} weight[c, 0, k] * x[t - (w-1) + k, c]
 * A tap never reads across a document start (info.segment) and padded inputs are zeroed first.
 */
import * as tf from '@tensorflow/tfjs-core';
import {causalConv1dFused} from './causal_conv1d';
import {SequenceInfo} from './sequence';

export function causalConv1d(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  info: SequenceInfo | null,
  prevState?: tf.Tensor | null,
): {y: tf.Tensor; state: tf.Tensor} {
  // One fused kernel where the backend has one and no gradient is being recorded (inference).
  const fused = causalConv1dFused(x, weight, bias, info, prevState);
  if (fused != null) return fused;
  return tf.tidy(() => {
    const [b, t, e] = x.shape;
    const w = weight.shape[2]!;
    if (info?.tokenMask != null) x = tf.mul(x, info.tokenMask);
    const hist = prevState ?? tf.zeros([b, w - 1, e]);
    const full = w > 1 ? tf.concat([hist, x], 1) : x; // [b, w-1+t, e]
    const taps = tf.reshape(tf.transpose(tf.reshape(weight, [e, w])), [w, 1, 1, e]); // taps[k]: [1,1,e]
    let segFull: tf.Tensor | null = null;
    if (info?.segment != null && w > 1) {
      // History entries belong to the document running before the chunk: segment 0.
      segFull = tf.concat([tf.zeros([b, w - 1], 'int32'), info.segment], 1);
    }
    let y: tf.Tensor = tf.reshape(bias, [1, 1, e]);
    for (let k = 0; k < w; k++) {
      // Tap k reads x[t - j] with j = w-1-k steps back.
      const j = w - 1 - k;
      let term = tf.mul(
        tf.slice(full, [0, k, 0], [b, t, e]),
        tf.slice(taps, [k, 0, 0, 0], [1, 1, 1, e]).reshape([1, 1, e]),
      );
      if (segFull != null && j > 0) {
        const same = tf.equal(tf.slice(segFull, [0, k], [b, t]), info!.segment!);
        term = tf.mul(term, tf.reshape(tf.cast(same, 'float32'), [b, t, 1]));
      }
      y = tf.add(y, term);
    }
    let state = w > 1 ? tf.slice(full, [0, t, 0], [b, w - 1, e]) : tf.zeros([b, 0, e]);
    if (segFull != null) {
      // The next chunk's taps treat the whole history as its running document: drop inputs from
      // before the row's last document start, or they would leak across it.
      const lastSeg = tf.slice(info!.segment!, [0, t - 1], [b, 1]);
      const same = tf.equal(tf.slice(segFull, [0, t], [b, w - 1]), lastSeg);
      state = tf.mul(state, tf.reshape(tf.cast(same, 'float32'), [b, w - 1, 1]));
    }
    return {y, state};
  });
}
