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
    const target = tf.cast(tf.slice(labels, [0, 1], [b, t - 1]), 'int32').reshape([-1]);   // [n]
    const logp = tf.logSoftmax(tf.slice(logits, [0, 0, 0], [b, t - 1, V]).reshape([-1, V]));  // [n, V]
    const counted = tf.notEqual(target, IGNORE_INDEX);
    const safeTarget = tf.where(counted, target, tf.zerosLike(target));
    const n = target.shape[0];
    const flatIndex = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(V, 'int32')), safeTarget);
    const picked = tf.gather(tf.reshape(logp, [-1]), flatIndex);                           // [n]
    const weights = tf.cast(counted, 'float32');
    const total = tf.sum(tf.mul(picked, weights));
    const count = tf.sum(weights);
    return tf.neg(tf.div(total, tf.maximum(count, 1))) as tf.Scalar;
  });
}
