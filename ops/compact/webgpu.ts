/**
 * WGSL kernels of the compact-weight ops (ops/compact/index.ts) for tfjs-backend-webgpu. Weights
 * stay packed in u32 words in GPU memory and are unpacked in the shader: bfloat16 by a 16-bit
 * shift, float16 by WGSL's unpack2x16float (no `shader-f16` needed), int8 and int4 by shifts,
 * times their scales. One invocation per output value.
 *   for (const k of compactWebGPUKernelConfigs) tf.registerKernel(k);   // ops/register/webgpu.ts does this
 *   import {compactMatMul, compactTensors} from './index';
 *   import {quantize} from './format';
 *   const y = compactMatMul(x, compactTensors(quantize(data, 48, 128, {dtype: 'int4'})));   // then runs here on webgpu
 *
 * Shape letters: n rows of x, R weight rows, C weight cols, K values per word, m gathered ids.
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {WebGPUProgramBase} from '../webgpu_program';
import {type CompactDtype, perWord} from './format';
import {COMPACT_GATHER_ROWS, COMPACT_MATMUL, type CompactAttrs} from './index';

const UNIFORMS = 'rows : i32, cols : i32, groupSize : i32,';

/**
 * Every binding must be used by the shader, or the pipeline's automatic layout drops it and the
 * bind group tfjs makes no longer fits: the 16-bit types read no scales, and only int4 with zero
 * points reads zeros. Phony assignments count as uses.
 */
const STATIC_USE = '_ = scales[0]; _ = zeros[0];';

/** WGSL: element (r, c) of the packed matrix as f32. */
function valueAtWgsl(dtype: CompactDtype, zeroPoints: boolean): string {
  const K = perWord(dtype);
  const word = `bitcast<u32>(data[(r * uniforms.cols + c) / ${K}])`;
  const q = `u32((r * uniforms.cols + c) % ${K})`;
  let body: string;
  switch (dtype) {
    case 'bfloat16':
      body = `let w = ${word};
        if (${q} == 0u) { return bitcast<f32>(w << 16u); }
        return bitcast<f32>(w & 0xffff0000u);`;
      break;
    case 'float16':
      body = `let v = unpack2x16float(${word});
        if (${q} == 0u) { return v.x; }
        return v.y;`;
      break;
    case 'int8':
      body = `let w = ${word};
        return f32(bitcast<i32>(w << (24u - 8u * ${q})) >> 24u) * scales[r];`;
      break;
    case 'int4': {
      const g = 'r * (uniforms.cols / uniforms.groupSize) + c / uniforms.groupSize';
      const z = zeroPoints ? `zeros[${g}]` : '8.0';
      body = `let w = ${word};
        return (f32((w >> (4u * ${q})) & 0xfu) - ${z}) * scales[${g}];`;
      break;
    }
  }
  return `fn valueAt(r : i32, c : i32) -> f32 {
        ${body}
      }`;
}

/** WGSL: acc += dot(x[xo .. xo + K), the K values of word w of row r); int8's scale comes after the loop. */
function wordDotWgsl(dtype: CompactDtype, zeroPoints: boolean): string {
  switch (dtype) {
    case 'bfloat16':
      return `acc = acc + x[xo] * bitcast<f32>(w << 16u) + x[xo + 1] * bitcast<f32>(w & 0xffff0000u);`;
    case 'float16':
      return `let v = unpack2x16float(w);
          acc = acc + x[xo] * v.x + x[xo + 1] * v.y;`;
    case 'int8':
      return `for (var q = 0u; q < 4u; q = q + 1u) {
            acc = acc + x[xo + i32(q)] * f32(bitcast<i32>(w << (24u - 8u * q)) >> 24u);
          }`;
    case 'int4': {
      const g = 'r * (uniforms.cols / uniforms.groupSize) + c0 / uniforms.groupSize';
      const z = zeroPoints ? `zeros[${g}]` : '8.0';
      return `let s = scales[${g}];
          let z = ${z};
          var part = 0.0;
          for (var q = 0u; q < 8u; q = q + 1u) {
            part = part + x[xo + i32(q)] * (f32((w >> (4u * q)) & 0xfu) - z);
          }
          acc = acc + part * s;`;
    }
  }
}

/** x [n, C] -> x W^T [n, R] (transposed: x [n, R] -> x W [n, C]). */
class CompactMatMulProgram extends WebGPUProgramBase {
  constructor(
    n: number,
    out: number,
    private a: CompactAttrs,
    private transposed: boolean,
  ) {
    super({
      name: 'griffinCompactMatMul',
      variant: [a.dtype, a.zeroPoints, transposed],
      inputs: ['x', 'data', 'scales', 'zeros'],
      outputShape: [n, out],
      invocations: n * out,
      uniforms: UNIFORMS,
      size: true,
    });
  }

  getUserCode(): string {
    const {dtype, zeroPoints} = this.a;
    if (this.transposed) {
      return `
      ${valueAtWgsl(dtype, zeroPoints)}
      fn main(index : i32) {
        ${STATIC_USE}
        if (index >= uniforms.size) { return; }
        let R = uniforms.rows;
        let C = uniforms.cols;
        let i = index / C;
        let c = index - i * C;
        var acc = 0.0;
        for (var r = 0; r < R; r = r + 1) {
          acc = acc + x[i * R + r] * valueAt(r, c);
        }
        result[index] = acc;
      }`;
    }
    const K = perWord(dtype);
    return `
      fn main(index : i32) {
        ${STATIC_USE}
        if (index >= uniforms.size) { return; }
        let R = uniforms.rows;
        let C = uniforms.cols;
        let i = index / R;
        let r = index - i * R;
        let wpr = C / ${K};
        var acc = 0.0;
        for (var j = 0; j < wpr; j = j + 1) {
          let w = bitcast<u32>(data[r * wpr + j]);
          let c0 = j * ${K};
          let xo = i * C + c0;
          ${wordDotWgsl(dtype, zeroPoints)}
        }
        result[index] = ${dtype === 'int8' ? 'acc * scales[r]' : 'acc'};
      }`;
  }
}

/** Rows ids [m] of W: [m, C]; ids outside [0, R) give zero rows. */
class CompactGatherRowsProgram extends WebGPUProgramBase {
  constructor(
    m: number,
    private a: CompactAttrs,
  ) {
    super({
      name: 'griffinCompactGatherRows',
      variant: [a.dtype, a.zeroPoints],
      inputs: ['ids', 'data', 'scales', 'zeros'],
      outputShape: [m, a.cols],
      invocations: m * a.cols,
      uniforms: UNIFORMS,
      size: true,
    });
  }

  getUserCode(): string {
    return `
      ${valueAtWgsl(this.a.dtype, this.a.zeroPoints)}
      fn main(index : i32) {
        ${STATIC_USE}
        if (index >= uniforms.size) { return; }
        let C = uniforms.cols;
        let i = index / C;
        let c = index - i * C;
        let r = ids[i];
        if (r < 0 || r >= uniforms.rows) { result[index] = 0.0; return; }
        result[index] = valueAt(r, c);
      }`;
  }
}

function uniformsOf(a: CompactAttrs) {
  return [
    {type: 'int32', data: [a.rows]},
    {type: 'int32', data: [a.cols]},
    {type: 'int32', data: [Math.max(1, a.groupSize)]},
  ];
}

const matMul: KernelFunc = ({inputs, backend, attrs}) => {
  const {x, data, scales, zeros} = inputs as Record<string, TensorInfo>;
  const a = attrs as unknown as CompactAttrs & {transposed: boolean};
  const out = a.transposed ? a.cols : a.rows;
  const program = new CompactMatMulProgram(x.shape[0], out, a, a.transposed);
  return (backend as WebGPUBackend).runWebGPUProgram(program, [x, data, scales, zeros], 'float32', uniformsOf(a));
};

const gatherRows: KernelFunc = ({inputs, backend, attrs}) => {
  const {ids, data, scales, zeros} = inputs as Record<string, TensorInfo>;
  const a = attrs as unknown as CompactAttrs;
  const program = new CompactGatherRowsProgram(ids.shape[0], a);
  return (backend as WebGPUBackend).runWebGPUProgram(program, [ids, data, scales, zeros], 'float32', uniformsOf(a));
};

export const compactWebGPUKernelConfigs: KernelConfig[] = [
  {kernelName: COMPACT_MATMUL, backendName: 'webgpu', kernelFunc: matMul},
  {kernelName: COMPACT_GATHER_ROWS, backendName: 'webgpu', kernelFunc: gatherRows},
];
