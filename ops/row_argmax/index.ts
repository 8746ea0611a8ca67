/**
 * The index of each row's largest value, computed where the tensor lives, so that greedy decoding
 * reads back 4 bytes per row instead of the whole vocabulary (1 MB for Gemma's 256,000 logits).
 *   const ids = rowArgmax(logits);          // [b] int32, or null: no kernel on this backend
 *   const picks = ids != null ? await ids.data() : rowArgmaxReference(data, b, V);   // data: logits on the host
 *
 * Kernel GriffinRowArgmax: input {x [b, n] float32}, output [b] int32. The rule is the host
 * sampler's (src/generation/sampling.ts): the first index of the maximum; NaN never wins; -1 when
 * a row has nothing but NaN. Registered on webgpu (ops/row_argmax/webgpu.ts); on cpu and wasm the
 * logits are on the host already and the sampler's own loop is as fast.
 */
import * as tf from '@tensorflow/tfjs-core';
import {engine, getKernel} from '@tensorflow/tfjs-core';

export const ROW_ARGMAX = 'GriffinRowArgmax';

/** Whether this backend has the kernel (rowArgmax would not return null for a valid input). */
export function rowArgmaxAvailable(): boolean {
  return getKernel(ROW_ARGMAX, tf.getBackend()) != null;
}

/** [b] int32 of first-max indices of a [b, n] float32 tensor, or null where no kernel is registered. */
export function rowArgmax(x: tf.Tensor): tf.Tensor1D | null {
  if (!rowArgmaxAvailable()) return null;
  if (x.rank !== 2 || x.dtype !== 'float32' || x.shape[1] === 0) {
    throw new Error(`rowArgmax: expected a [b, n] float32 tensor with n > 0, got ${x.dtype} [${x.shape}]`);
  }
  return engine().runKernel(ROW_ARGMAX, {x}) as tf.Tensor1D;
}

/** The same function on the host: the reference the kernel is tested against. */
export function rowArgmaxReference(x: Float32Array, b: number, n: number): Int32Array {
  const out = new Int32Array(b).fill(-1);
  for (let r = 0; r < b; r++) {
    let best = -1;
    for (let i = 0; i < n; i++) {
      const v = x[r * n + i];
      if (Number.isNaN(v)) continue;
      if (best < 0 || v > x[r * n + best]) best = i;
    }
    out[r] = best;
  }
  return out;
}
