/**
 * Activations and small elementwise pieces of Griffin.
 *   const y = geluTanh(x);  const z = softCap(logits, 30);
 */
import * as tf from '@tensorflow/tfjs-core';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** The tanh approximation of GELU (PyTorch's gelu(approximate='tanh')). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  });
}

/** cap * tanh(x / cap). */
export function softCap(x: tf.Tensor, cap: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.tanh(tf.div(x, cap)), cap));
}

/**
 * sqrt with its derivative bounded as in the reference: d sqrt(z)/dz = 1 / sqrt(max(4z, 1e-6)),
 * so that a -> 1 (z -> 0) cannot blow up the gradient.
 */
export const sqrtBoundDerivative = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [z, save] = args as [tf.Tensor, tf.GradSaveFunc];
  save([z]);
  return {
    value: tf.sqrt(z),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.div(dy, tf.sqrt(tf.maximum(tf.mul(saved[0], 4), 1e-6))),
  };
}) as (z: tf.Tensor) => tf.Tensor;

/** Rounds a float to bfloat16 (round to nearest even), as the references do with sqrt(d). */
export function roundToBfloat16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  const lsb = (u[0] >>> 16) & 1;
  u[0] = ((u[0] + 0x7fff + lsb) >>> 16) << 16;
  return f[0];
}
