/**
 * y = x W^T + b with W in PyTorch's [out, in] layout, so checkpoints load without transposes.
 *   const y = linear(x, weight, bias);   // x: [..., in] -> [..., out]
 */
import * as tf from '@tensorflow/tfjs-core';

export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor | null): tf.Tensor {
  return tf.tidy(() => {
    const inDim = x.shape[x.shape.length - 1];
    const outDim = weight.shape[0];
    const x2 = tf.reshape(x, [-1, inDim]);
    let y = tf.matMul(x2, weight, false, true);
    if (bias != null) y = tf.add(y, bias);
    return tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
  });
}
