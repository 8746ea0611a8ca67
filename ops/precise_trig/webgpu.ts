/**
 * Sin and Cos for tfjs-backend-webgpu with float32 accuracy (~1e-7 absolute up to |x| ~ 8e3),
 * replacing the backend's kernels, which call WGSL's sin/cos builtins.
 *   for (const k of preciseTrigKernelConfigs) tf.registerKernel(k);   // ops/register/webgpu.ts
 *   const c = tf.cos(angles);   // now within ~1 ulp of Math.cos on the same float32
 *
 * Shape letters: n the element count (any input shape runs flat, one invocation per element).
 *
 * Why: WGSL only promises 2^-11 absolute error for sin/cos on [-pi, pi] and nothing outside it;
 * SwiftShader's builtins fall short of float32 everywhere and GPU hardware approximations degrade
 * with |x|. RoPE takes sin/cos of position * frequency (radians in the thousands), and with the
 * builtins the attention layer alone moved tiny-a's logits far more than every other layer
 * (figures: see bench/results/NOTES.md). Here: Cody-Waite reduction by pi/2 in three
 * parts, then Cephes' sinf/cosf minimax polynomials on [-pi/4, pi/4].
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {WebGPUProgramBase} from '../webgpu_program';

/** WGSL: sin and cos of x at once (callers keep the one they need). */
export const PRECISE_SINCOS_WGSL = `
  fn preciseSinCos(x : f32) -> vec2<f32> {
    // k = nearest multiple of pi/2; pi/2 = P1 + P2 + P3 with P1, P2 short enough that k * P1 and
    // k * P2 are exact for |k| < 2^12, so r keeps full precision.
    let k = round(x * 0.636619772367581343);
    var r = x - k * 1.5703125;
    r = r - k * 4.837512969970703125e-4;
    r = r - k * 7.54978995489188216e-8;
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    // Quadrant: sin(r + q pi/2) cycles s, c, -s, -c; cos cycles c, -s, -c, s.
    let q = i32(k - 4.0 * floor(k * 0.25));
    var sc = vec2<f32>(s, c);
    if (q == 1) { sc = vec2<f32>(c, -s); }
    else if (q == 2) { sc = vec2<f32>(-s, -c); }
    else if (q == 3) { sc = vec2<f32>(-c, s); }
    return sc;
  }`;

/** sin or cos of each of x's n elements. */
class PreciseTrigProgram extends WebGPUProgramBase {
  constructor(
    n: number,
    private which: 'sin' | 'cos',
  ) {
    super({name: 'preciseTrig', variant: [which], inputs: ['x'], outputShape: [n], invocations: n, size: true});
  }

  getUserCode(): string {
    return `
      ${PRECISE_SINCOS_WGSL}
      fn main(index : i32) {
        if (index >= uniforms.size) { return; }
        let v = preciseSinCos(x[index]);
        result[index] = v.${this.which === 'sin' ? 'x' : 'y'};
      }`;
  }
}

function trigKernel(which: 'sin' | 'cos'): KernelFunc {
  const host = which === 'sin' ? Math.sin : Math.cos;
  return ({inputs, backend}) => {
    const x = (inputs as {x: TensorInfo}).x;
    const be = backend as WebGPUBackend;
    const n = x.shape.reduce((a, b) => a * b, 1);
    // Small host-resident inputs stay on the host, as the backend's own unary kernels do.
    if (n === 0 || be.shouldExecuteOnCPU([x])) {
      const v = be.readSync(x.dataId) as ArrayLike<number>;
      return be.makeTensorInfo(x.shape, 'float32', Float32Array.from(v, host));
    }
    const flat: TensorInfo = {dataId: x.dataId, shape: [n], dtype: x.dtype};
    const out = be.runWebGPUProgram(new PreciseTrigProgram(n, which), [flat], 'float32');
    return {dataId: out.dataId, shape: [...x.shape], dtype: 'float32'};
  };
}

export const preciseTrigKernelConfigs: KernelConfig[] = [
  {kernelName: 'Sin', backendName: 'webgpu', kernelFunc: trigKernel('sin')},
  {kernelName: 'Cos', backendName: 'webgpu', kernelFunc: trigKernel('cos')},
];
