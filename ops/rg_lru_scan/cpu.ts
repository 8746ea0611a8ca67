/**
 * RgLruScan kernels for backends whose data can be read synchronously on the host (cpu, wasm):
 * one pass over the data, state in float64 registers, never one tfjs op per time step.
 *   registerRgLruScanHostKernels('cpu');
 */
import {getKernel, KernelBackend, KernelConfig, KernelFunc, registerKernel, TensorInfo} from '@tensorflow/tfjs-core';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD, scanDims} from './kernel_names';

type HostBackend = KernelBackend & {
  makeTensorInfo?(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
  makeOutput?(shape: number[], dtype: 'float32', memoryOffset: undefined, values: Float32Array): TensorInfo;
};

/** An output tensor from host values: cpu calls it makeTensorInfo, wasm makeOutput. */
function output(be: HostBackend, shape: number[], values: Float32Array): TensorInfo {
  if (be.makeTensorInfo != null) return be.makeTensorInfo(shape, 'float32', values);
  return be.makeOutput!(shape, 'float32', undefined, values);
}

function read(backend: KernelBackend, t: TensorInfo): Float32Array {
  const v = backend.readSync(t.dataId);
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

// Loop order: batch, time, then channels innermost, so every read and write walks memory
// contiguously (the reference walks one channel down time instead, simpler but strided).
export function scanForwardChannelsInner(
  a: Float32Array,
  x: Float32Array,
  h0: Float32Array,
  b: number,
  t: number,
  e: number,
) {
  const h = new Float32Array(b * t * e);
  const hLast = new Float32Array(b * e);
  const s = new Float64Array(e);
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < e; c++) s[c] = h0[bi * e + c];
    let i = bi * t * e;
    for (let ti = 0; ti < t; ti++) {
      for (let c = 0; c < e; c++, i++) {
        s[c] = a[i] * s[c] + x[i];
        h[i] = s[c];
      }
    }
    for (let c = 0; c < e; c++) hLast[bi * e + c] = s[c];
  }
  return {h, hLast};
}

export function scanBackwardChannelsInner(
  a: Float32Array,
  h: Float32Array,
  h0: Float32Array,
  dh: Float32Array,
  dhLast: Float32Array,
  b: number,
  t: number,
  e: number,
) {
  const dx = new Float32Array(b * t * e);
  const da = new Float32Array(b * t * e);
  const dh0 = new Float32Array(b * e);
  const g = new Float64Array(e);
  const aNext = new Float64Array(e);
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < e; c++) {
      g[c] = dhLast[bi * e + c];
      aNext[c] = 1;
    }
    for (let ti = t - 1; ti >= 0; ti--) {
      const row = (bi * t + ti) * e;
      for (let c = 0; c < e; c++) {
        const i = row + c;
        const gi = dh[i] + aNext[c] * g[c];
        g[c] = gi;
        dx[i] = gi;
        da[i] = gi * (ti > 0 ? h[i - e] : h0[bi * e + c]);
        aNext[c] = a[i];
      }
    }
    for (let c = 0; c < e; c++) dh0[bi * e + c] = aNext[c] * g[c];
  }
  return {dx, da, dh0};
}

const forward: KernelFunc = ({inputs, backend}) => {
  const {a, x, h0} = inputs as {a: TensorInfo; x: TensorInfo; h0: TensorInfo};
  const [b, t, e] = scanDims(a.shape, x.shape, h0.shape);
  const be = backend as HostBackend;
  const {h, hLast} = scanForwardChannelsInner(read(be, a), read(be, x), read(be, h0), b, t, e);
  return [output(be, [b, t, e], h), output(be, [b, e], hLast)];
};

const backward: KernelFunc = ({inputs, backend}) => {
  const {a, h, h0, dh, dhLast} = inputs as Record<string, TensorInfo>;
  const [b, t, e] = scanDims(a.shape, h.shape, h0.shape);
  const be = backend as HostBackend;
  const {dx, da, dh0} = scanBackwardChannelsInner(
    read(be, a),
    read(be, h),
    read(be, h0),
    read(be, dh),
    read(be, dhLast),
    b,
    t,
    e,
  );
  return [output(be, [b, t, e], dx), output(be, [b, t, e], da), output(be, [b, e], dh0)];
};

export function hostKernelConfigs(backendName: string): KernelConfig[] {
  return [
    {kernelName: RG_LRU_SCAN, backendName, kernelFunc: forward},
    {kernelName: RG_LRU_SCAN_GRAD, backendName, kernelFunc: backward},
  ];
}

export function registerRgLruScanHostKernels(backendName: string): void {
  for (const k of hostKernelConfigs(backendName)) {
    if (getKernel(k.kernelName, backendName) == null) registerKernel(k);
  }
}
