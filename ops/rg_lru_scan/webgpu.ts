/**
 * RgLruScan and RgLruScanGrad for tfjs-backend-webgpu, in WGSL. The recurrence itself (serial,
 * or chunked for long sequences) is webgpu_scan.ts; here are the kernels and the elementwise
 * programs around it: hLast, and the backward pass's da and dh0.
 *   for (const k of webgpuKernelConfigs) tf.registerKernel(k);   // ops/register/webgpu.ts does this
 *   // then rgLruScan(a, x, h0) (ops/rg_lru_scan/index.ts) runs them on webgpu
 *
 * Shape letters: b batch, t time steps, e channels (a, x, h, dh, g, da [b, t, e]; h0, hLast,
 * dhLast, dh0 [b, e]). In WGSL: T, E the same sizes, bi the batch row, c the channel, tt the step.
 *
 * Every program writes one output (the backend binds a single `result` buffer), so a kernel with
 * several outputs runs several programs. Only types are imported from the backend package:
 * importing its code registers the backend, which must wait until navigator.gpu exists.
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {splitIndex, WebGPUProgramBase} from '../webgpu_program';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD, scanDims} from './kernel_names';
import {perChannelWgsl, runScan} from './webgpu_scan';

export {rgLruScanWebGPUConfig, scanPlan} from './webgpu_scan';

/** hLast: the last time step of h [b, t, e] (t >= 1) as [b, e]. */
class LastStepProgram extends WebGPUProgramBase {
  constructor(b: number, e: number) {
    super({name: 'rgLruLastStep', inputs: ['h'], outputShape: [b, e], invocations: b * e});
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        ${perChannelWgsl('h')}
        result[index] = h[(bi * T + T - 1) * E + c];
      }`;
  }
}

/** da = g * h[t-1], with h0 standing in for h[-1]. Inputs g, h [b, t, e], h0 [b, e]. */
class DaProgram extends WebGPUProgramBase {
  constructor(b: number, t: number, e: number) {
    super({name: 'rgLruDa', inputs: ['g', 'h', 'h0'], outputShape: [b, t, e], invocations: b * t * e});
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        let T = uniforms.hShape.y;
        let E = uniforms.hShape.z;
        if (index >= uniforms.hShape.x * T * E) { return; }
        ${splitIndex('index', 'row', 'c', 'E')}
        ${splitIndex('row', 'bi', 'tt', 'T')}
        var prev : f32;
        if (tt > 0) { prev = h[index - E]; } else { prev = h0[bi * E + c]; }
        result[index] = g[index] * prev;
      }`;
  }
}

/** dh0 = a[0] * g[0] (t >= 1). Inputs a, g [b, t, e]; output [b, e]. */
class Dh0Program extends WebGPUProgramBase {
  constructor(b: number, e: number) {
    super({name: 'rgLruDh0', inputs: ['a', 'g'], outputShape: [b, e], invocations: b * e});
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        ${perChannelWgsl('a')}
        let j = bi * T * E + c;
        result[index] = a[j] * g[j];
      }`;
  }
}

/** A new reference to the same data, as tfjs's Identity kernels do. */
function identity(backend: WebGPUBackend, x: TensorInfo): TensorInfo {
  backend.incRef(x.dataId);
  return {dataId: x.dataId, shape: [...x.shape], dtype: x.dtype};
}

const forward: KernelFunc = ({inputs, backend}) => {
  const {a, x, h0} = inputs as {a: TensorInfo; x: TensorInfo; h0: TensorInfo};
  const [b, t, e] = scanDims(a.shape, x.shape, h0.shape);
  const be = backend as WebGPUBackend;
  if (t === 0) return [be.makeTensorInfo([b, 0, e], 'float32'), identity(be, h0)];
  const h = runScan(be, a, x, h0, b, t, e, false);
  const hLast = be.runWebGPUProgram(new LastStepProgram(b, e), [h], 'float32');
  return [h, hLast];
};

const backward: KernelFunc = ({inputs, backend}) => {
  const {a, h, h0, dh, dhLast} = inputs as Record<string, TensorInfo>;
  const [b, t, e] = scanDims(a.shape, h.shape, h0.shape);
  const be = backend as WebGPUBackend;
  if (t === 0) {
    return [be.makeTensorInfo([b, 0, e], 'float32'), be.makeTensorInfo([b, 0, e], 'float32'), identity(be, dhLast)];
  }
  const g = runScan(be, a, dh, dhLast, b, t, e, true);
  const da = be.runWebGPUProgram(new DaProgram(b, t, e), [g, h, h0], 'float32');
  const dh0 = be.runWebGPUProgram(new Dh0Program(b, e), [a, g], 'float32');
  return [g, da, dh0];
};

export const webgpuKernelConfigs: KernelConfig[] = [
  {kernelName: RG_LRU_SCAN, backendName: 'webgpu', kernelFunc: forward},
  {kernelName: RG_LRU_SCAN_GRAD, backendName: 'webgpu', kernelFunc: backward},
];
