/**
 * RMSNorm as in Gemma: the learned scale is stored as an offset from 1.
 *   const y = rmsNorm(x, weight, 1e-6);   // x: [..., d], weight: [d]
 */
import * as tf from '@tensorflow/tfjs-core';

/** x: [..., d], weight: [d] -> [..., d];  x * rsqrt(mean(x^2) + eps) * (1 + weight). */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), tf.add(weight, 1));
  });
}
