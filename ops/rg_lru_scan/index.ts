/**
 * The RG-LRU scan as a tfjs op with a registered gradient.
 *   const {h, hLast} = rgLruScan(a, x, h0);   // a, x: [b, t, e]; h0: [b, e] (optional)
 *
 * Kernels: cpu and wasm (cpu.ts, one host pass), webgpu (webgpu.ts, WGSL), tensorflow and webgl
 * (composite.ts, standard ops), registered per backend by ops/register/. The gradient is the
 * RgLruScanGrad kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import {engine, getGradient, registerGradient, Tensor} from '@tensorflow/tfjs-core';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD} from './kernel_names';

export {RG_LRU_SCAN, RG_LRU_SCAN_GRAD} from './kernel_names';

if (getGradient(RG_LRU_SCAN) == null) {
  registerGradient({
    kernelName: RG_LRU_SCAN,
    inputsToSave: ['a', 'h0'],
    outputsToSave: [true, false],
    gradFunc: (dy, saved) => {
      const [a, h0, h] = saved;
      const [dhIn, dhLastIn] = dy as Tensor[];
      // One backward scan serves all three input gradients. It runs here, not inside the
      // returned closures: each closure runs in its own tidy, which would dispose the others.
      const [dx, da, dh0] = engine().runKernel(RG_LRU_SCAN_GRAD, {
        a,
        h,
        h0,
        dh: dhIn ?? tf.zerosLike(h),
        dhLast: dhLastIn ?? tf.zerosLike(h0),
      }) as Tensor[];
      return {x: () => dx, a: () => da, h0: () => dh0};
    },
  });
}

/** a, x: [b, t, e] float32; h0: [b, e] (zeros when absent) -> h: [b, t, e], hLast: [b, e]. */
export function rgLruScan(a: Tensor, x: Tensor, h0?: Tensor): {h: Tensor; hLast: Tensor} {
  for (const [name, v] of [
    ['a', a],
    ['x', x],
    ['h0', h0],
  ] as const) {
    if (v != null && v.dtype !== 'float32') throw new Error(`rgLruScan: ${name} must be float32, got ${v.dtype}`);
  }
  const [b, , e] = a.shape;
  const init = h0 ?? tf.zeros([b, e]);
  const [h, hLast] = engine().runKernel(RG_LRU_SCAN, {a, x, h0: init}) as Tensor[];
  if (h0 == null) init.dispose();
  return {h, hLast};
}
