/**
 * Causal language-model loss: logits at step i predict labels[i + 1]; label -100 is not counted.
 *   const loss = causalLMLoss(labels, logits);   // the argument order of a tfjs LossOrMetricFn
 *
 * labels: [b, t] (int32 or float holding integers); logits: [b, t, V] -> scalar, the mean over
 * counted positions (0 when none is counted). Computed through log-softmax, so it is stable.
 */
import * as tf from '@tensorflow/tfjs-core';

export const IGNORE_INDEX = -100;

export function causalLMLoss(labels: tf.Tensor, logits: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const [b, t, V] = logits.shape;
    if (labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
      throw new Error(`labels must have shape [${b}, ${t}] like the logits' first two axes, got [${labels.shape}]`);
    }
    if (t < 2) return tf.scalar(0);
    const target = tf.cast(tf.slice(labels, [0, 1], [b, t - 1]), 'int32').reshape([-1]); // [n]
    const logp = tf.logSoftmax(tf.slice(logits, [0, 0, 0], [b, t - 1, V]).reshape([-1, V])); // [n, V]
    const counted = tf.notEqual(target, IGNORE_INDEX);
    const safeTarget = tf.where(counted, target, tf.zerosLike(target));
    // The target's log-probability, picked by a one-hot mask rather than by a flat index
    // row * V + label: webgpu's int32 arithmetic is not exact past 2^24, so a flat index into
    // more than 16.7M logits (32 rows of 256 steps at V = 4096) picked a neighbouring column.
    const picked = tf.sum(tf.mul(logp, tf.oneHot(safeTarget, V, 1, 0, 'float32')), -1); // [n]
    const weights = tf.cast(counted, 'float32');
    const total = tf.sum(tf.mul(picked, weights));
    const count = tf.sum(weights);
    return tf.neg(tf.div(total, tf.maximum(count, 1))) as tf.Scalar;
  });
}
