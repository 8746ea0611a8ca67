/**
 * RgLruScan from standard tfjs ops, for backends with no kernel of their own: the `tensorflow`
 * backend of tfjs-node / tfjs-node-gpu, and any other (webgl, ...) as a fallback.
 *   registerRgLruScanComposite('tensorflow');
 *
 * A Hillis-Steele scan over time: log2(t) rounds, each combining every step with the one
 * 2^k before it, so the work is a few large elementwise ops instead of t small ones.
 */
import * as tf from '@tensorflow/tfjs-core';
import {getKernel, KernelConfig, KernelFunc, registerKernel, Tensor, TensorInfo} from '@tensorflow/tfjs-core';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD, scanDims} from './kernel_names';

/** a, x: [b, t, e]; h0: [b, e] -> h: [b, t, e], hLast: [b, e]. */
export function scanComposite(a: Tensor, x: Tensor, h0: Tensor): [Tensor, Tensor] {
  return tf.tidy(() => {
    const [b, t, e] = scanDims(a.shape, x.shape, h0.shape);
    if (t === 0) return [tf.zeros([b, 0, e]), h0.clone()];
    // Fold h0 into the first step: x'[0] = x[0] + a[0] * h0.
    const first = tf.add(
      tf.slice(x, [0, 0, 0], [b, 1, e]),
      tf.mul(tf.slice(a, [0, 0, 0], [b, 1, e]), tf.reshape(h0, [b, 1, e])),
    );
    let h: Tensor = t > 1 ? tf.concat([first, tf.slice(x, [0, 1, 0], [b, t - 1, e])], 1) : first;
    let A: Tensor = a;
    for (let k = 1; k < t; k *= 2) {
      // After this round, h[i] sums the steps (i - 2k, i] and A[i] is the product of their a's.
      const hShift = tf.concat([tf.zeros([b, k, e]), tf.slice(h, [0, 0, 0], [b, t - k, e])], 1);
      const aShift = tf.concat([tf.ones([b, k, e]), tf.slice(A, [0, 0, 0], [b, t - k, e])], 1);
      h = tf.add(h, tf.mul(A, hShift));
      A = tf.mul(A, aShift);
    }
    const hLast = tf.reshape(tf.slice(h, [0, t - 1, 0], [b, 1, e]), [b, e]);
    return [h, hLast];
  });
}

/** The backward pass as a forward scan over reversed time. */
export function scanGradComposite(
  a: Tensor,
  h: Tensor,
  h0: Tensor,
  dh: Tensor,
  dhLast: Tensor,
): [Tensor, Tensor, Tensor] {
  return tf.tidy(() => {
    const [b, t, e] = scanDims(a.shape, h.shape, h0.shape);
    if (t === 0) return [tf.zeros([b, 0, e]), tf.zeros([b, 0, e]), dhLast.clone()];
    // g[i] = dh[i] + a[i+1] g[i+1]; reversed, that is a scan with coefficients a[i+1] (1 at the
    // last step, where dhLast enters as the initial state).
    const aNext = tf.concat([tf.slice(a, [0, 1, 0], [b, t - 1, e]), tf.ones([b, 1, e])], 1);
    const [gRev] = scanComposite(tf.reverse(aNext, 1), tf.reverse(dh, 1), dhLast);
    const g = tf.reverse(gRev, 1);
    const hPrev = tf.concat([tf.reshape(h0, [b, 1, e]), tf.slice(h, [0, 0, 0], [b, t - 1, e])], 1);
    const da = tf.mul(g, hPrev);
    const dh0 = tf.reshape(tf.mul(tf.slice(a, [0, 0, 0], [b, 1, e]), tf.slice(g, [0, 0, 0], [b, 1, e])), [b, e]);
    return [g, da, dh0];
  });
}

// Kernels that return Tensors (not TensorInfos) are taken as they are by the engine: that is
// how tfjs-node's own kernels return their outputs.
const forward: KernelFunc = ({inputs}) => {
  const {a, x, h0} = inputs as unknown as {a: Tensor; x: Tensor; h0: Tensor};
  return scanComposite(a, x, h0) as unknown as TensorInfo[];
};
const backward: KernelFunc = ({inputs}) => {
  const {a, h, h0, dh, dhLast} = inputs as unknown as Record<string, Tensor>;
  return scanGradComposite(a, h, h0, dh, dhLast) as unknown as TensorInfo[];
};

export function compositeKernelConfigs(backendName: string): KernelConfig[] {
  return [
    {kernelName: RG_LRU_SCAN, backendName, kernelFunc: forward},
    {kernelName: RG_LRU_SCAN_GRAD, backendName, kernelFunc: backward},
  ];
}

export function registerRgLruScanComposite(backendName: string): void {
  for (const k of compositeKernelConfigs(backendName)) {
    if (getKernel(k.kernelName, backendName) == null) registerKernel(k);
  }
}
