/**
 * GriffinRowArgmax for tfjs-backend-webgpu: one workgroup of 256 invocations per row, the WGSL
 * of wgsl.ts (first maximum, NaN never wins, -1 for a row of NaN).
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
import {rowArgmaxWgsl, ARGMAX_THREADS as THREADS} from './wgsl';

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
    const {decls, body} = rowArgmaxWgsl('x', 'result', 'uniforms.n', 'i32(workgroupId.x)', 'i32(localId.x)');
    return `${decls}

      fn main(index : i32) {${body}
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
