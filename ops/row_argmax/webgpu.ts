/**
 * GriffinRowArgmax for tfjs-backend-webgpu: one workgroup of 256 invocations per row. Each
 * invocation scans a strided share of the row (coalesced reads) keeping its first maximum, then
 * the workgroup reduces the 256 candidates in shared memory. NaN is recognised from its bits
 * (drivers may assume no NaN in float comparisons) and never wins; a row of NaN gives -1.
 *   for (const k of rowArgmaxKernelConfigs) tf.registerKernel(k);   // ops/register/webgpu.ts
 *   // then rowArgmax(logits) (ops/row_argmax) runs it on webgpu: [b] int32
 *
 * Shape letters: b rows, n values per row (x [b, n] float32, out [b] int32). In WGSL: row the
 * workgroup's row, t the invocation within it.
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {WebGPUProgramBase} from '../webgpu_program';
import {ROW_ARGMAX} from './index';

const THREADS = 256;

/** One workgroup per row of x [b, n]; uniforms.n is n. */
class RowArgmaxProgram extends WebGPUProgramBase {
  constructor(b: number) {
    super({
      name: 'griffinRowArgmax',
      inputs: ['x'],
      outputShape: [b],
      workgroups: [b, 1, 1],
      workgroupSize: [THREADS, 1, 1],
      uniforms: 'n : i32,',
    });
  }

  getUserCode(): string {
    return `
      var<workgroup> bestV : array<f32, ${THREADS}>;
      var<workgroup> bestI : array<i32, ${THREADS}>;

      fn isNan(v : f32) -> bool {
        let u = bitcast<u32>(v);
        return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u;
      }

      // Candidate (v, i) beats (bv, bi): i = -1 is "none"; larger value, or equal value at a smaller index.
      fn beats(v : f32, i : i32, bv : f32, bi : i32) -> bool {
        if (i < 0) { return false; }
        if (bi < 0) { return true; }
        return v > bv || (v == bv && i < bi);
      }

      fn main(index : i32) {
        let row = i32(workgroupId.x);
        let t = i32(localId.x);
        let n = uniforms.n;
        let base = row * n;
        var bv = 0.0;
        var bi = -1;
        for (var i = t; i < n; i = i + ${THREADS}) {
          let v = f32(x[base + i]);
          // Within one invocation the indices only grow, so a tie never replaces.
          if (!isNan(v) && (bi < 0 || v > bv)) { bv = v; bi = i; }
        }
        bestV[t] = bv;
        bestI[t] = bi;
        workgroupBarrier();
        for (var s = ${THREADS / 2}; s > 0; s = s / 2) {
          if (t < s && beats(bestV[t + s], bestI[t + s], bestV[t], bestI[t])) {
            bestV[t] = bestV[t + s];
            bestI[t] = bestI[t + s];
          }
          workgroupBarrier();
        }
        if (t == 0) { result[row] = bestI[0]; }
      }`;
  }
}

const kernelFunc: KernelFunc = ({inputs, backend}) => {
  const {x} = inputs as {x: TensorInfo};
  const [b, n] = x.shape;
  const rowLength = [{type: 'int32', data: [n]}];
  return (backend as WebGPUBackend).runWebGPUProgram(new RowArgmaxProgram(b), [x], 'int32', rowLength);
};

export const rowArgmaxKernelConfigs: KernelConfig[] = [{kernelName: ROW_ARGMAX, backendName: 'webgpu', kernelFunc}];
