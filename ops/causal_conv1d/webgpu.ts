/**
 * GriffinCausalConv1d for tfjs-backend-webgpu: one program for y (one invocation per output
 * element, w taps each), one for the carried state. Same arithmetic, in the same order, as the
 * composite in ops/conv1d.ts: x * mask, then * weight, then * same-document, summed onto the bias
 * tap by tap.
 *   for (const k of causalConv1dKernelConfigs) tf.registerKernel(k);   // ops/register/webgpu.ts
 *   // then causalConv1dFused (ops/causal_conv1d) runs it on webgpu
 *
 * Shape letters: b batch, t time steps, e channels, w taps (x, y [b, t, e]; weight [e, 1, w];
 * bias [e]; hist, state [b, w-1, e]; mask [b, t, 1]; segment [b, t]). In WGSL: T, E the same
 * sizes, H = w-1 history steps, bi the batch row, c the channel, r the row within the batch row.
 *
 * Only types are imported from the backend package (importing it registers the backend).
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {WebGPUProgramBase} from '../webgpu_program';
import {CAUSAL_CONV1D, CausalConv1dAttrs} from './index';

/**
 * WGSL shared by both programs: the input at step j of the concatenation [hist (H = w-1 steps),
 * x] (masked), and its document index (0 for the history: the document running before the
 * chunk). Reads go through f32() / i32(): a tensor cast from int32 to float32 keeps its int32
 * buffer on this backend (the mask is one).
 */
function common(a: CausalConv1dAttrs): string {
  return `
    fn fullAt(bi : i32, j : i32, c : i32) -> f32 {
      let T = uniforms.xShape.y;
      let E = uniforms.xShape.z;
      let H = uniforms.histLen;
      if (j < H) {
        ${a.hasHist ? 'return f32(hist[(bi * H + j) * E + c]);' : 'return 0.0;'}
      }
      let tj = j - H;
      var v = f32(x[(bi * T + tj) * E + c]);
      ${a.hasMask ? 'v = v * f32(mask[bi * T + tj]);' : ''}
      return v;
    }
    fn segAt(bi : i32, j : i32) -> i32 {
      let H = uniforms.histLen;
      if (j < H) { return 0; }
      ${a.hasSegment ? 'return i32(segment[bi * uniforms.xShape.y + j - H]);' : 'return 0;'}
    }`;
}

/**
 * The inputs a program binds: WGSL drops a binding the shader never reads from the pipeline's
 * layout, so an absent input must not be bound at all.
 */
function variables(a: CausalConv1dAttrs, withWeights: boolean): string[] {
  return [
    'x',
    ...(withWeights ? ['weight', 'bias'] : []),
    ...(a.hasHist ? ['hist'] : []),
    ...(a.hasMask ? ['mask'] : []),
    ...(a.hasSegment ? ['segment'] : []),
  ];
}

/**
 * One invocation per element of a [b, rows, e] output: what both programs share. `body` is the
 * WGSL after c (channel), r (row within the batch row: a step or a history slot) and bi are set;
 * rowsExpr is rows in WGSL.
 */
abstract class ConvProgram extends WebGPUProgramBase {
  constructor(
    name: string,
    b: number,
    rows: number,
    e: number,
    withWeights: boolean,
    private rowsExpr: string,
    protected attrs: CausalConv1dAttrs,
  ) {
    super({
      name,
      variant: [`${+attrs.hasHist}${+attrs.hasMask}${+attrs.hasSegment}`],
      inputs: variables(attrs, withWeights),
      outputShape: [b, rows, e],
      invocations: b * rows * e,
      size: true,
      uniforms: 'histLen : i32,',
    });
  }

  protected abstract body(seg: boolean): string;

  getUserCode(): string {
    return `
      ${common(this.attrs)}
      fn main(index : i32) {
        if (index >= uniforms.size) { return; }
        let T = uniforms.xShape.y;
        let E = uniforms.xShape.z;
        let H = uniforms.histLen;
        let c = index % E;
        let row = index / E;
        let r = row % (${this.rowsExpr});
        let bi = row / (${this.rowsExpr});
        ${this.body(this.attrs.hasSegment)}
      }`;
  }
}

/** y[bi, t, c] = bias[c] + sum_k weight[c, 0, k] * full[t + k] (* same document, k < w-1). */
class ConvOutputProgram extends ConvProgram {
  constructor(b: number, t: number, e: number, attrs: CausalConv1dAttrs) {
    super('griffinCausalConv1d', b, t, e, true, 'T', attrs);
  }

  protected body(seg: boolean): string {
    return `
        let W = H + 1;
        ${seg ? 'let here = i32(segment[bi * T + r]);' : ''}
        var acc = f32(bias[c]);
        for (var k = 0; k < W; k++) {
          var term = fullAt(bi, r + k, c) * f32(weight[c * W + k]);
          ${seg ? 'if (k < W - 1) { term = term * select(0.0, 1.0, segAt(bi, r + k) == here); }' : ''}
          acc = acc + term;
        }
        result[index] = acc;`;
  }
}

/** state[bi, j, c] = full[t + j] (* same document as step t-1): the next chunk's history. */
class ConvStateProgram extends ConvProgram {
  constructor(b: number, h: number, e: number, attrs: CausalConv1dAttrs) {
    super('griffinCausalConv1dState', b, h, e, false, 'H', attrs);
  }

  protected body(seg: boolean): string {
    return `
        var v = fullAt(bi, T + r, c);
        ${seg ? 'v = v * select(0.0, 1.0, segAt(bi, T + r) == i32(segment[bi * T + T - 1]));' : ''}
        result[index] = v;`;
  }
}

const kernelFunc: KernelFunc = ({inputs, backend, attrs}) => {
  const {x, weight, bias, hist, mask, segment} = inputs as Record<string, TensorInfo>;
  const a = attrs as unknown as CausalConv1dAttrs;
  const [b, t, e] = x.shape;
  const w = weight.shape[2];
  if (weight.shape[0] !== e || bias.shape[0] !== e || w < 2) {
    throw new Error(`${CAUSAL_CONV1D}: x [${x.shape}], weight [${weight.shape}], bias [${bias.shape}] do not agree`);
  }
  const be = backend as WebGPUBackend;
  const optional = [...(a.hasHist ? [hist] : []), ...(a.hasMask ? [mask] : []), ...(a.hasSegment ? [segment] : [])];
  const histLen = [{type: 'int32', data: [w - 1]}];
  const y = be.runWebGPUProgram(new ConvOutputProgram(b, t, e, a), [x, weight, bias, ...optional], 'float32', histLen);
  const state = be.runWebGPUProgram(new ConvStateProgram(b, w - 1, e, a), [x, ...optional], 'float32', histLen);
  return [y, state];
};

export const causalConv1dKernelConfigs: KernelConfig[] = [
  {kernelName: CAUSAL_CONV1D, backendName: 'webgpu', kernelFunc},
];
