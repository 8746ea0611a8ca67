/**
 * A host-side UnsortedSegmentSum for the cpu and wasm backends: the gradient of every
 * tf.gather (the embedding lookup, the loss's pick of the target log-probability) runs it.
 *   registerSegmentSum('cpu');   // ops/register/cpu.ts and ops/register/wasm.ts do it
 *
 * tfjs-backend-cpu builds it from one equal/multiply/sum per segment, O(segments x tokens): most
 * of a training step even with a small vocabulary (figures: see bench/results/NOTES.md), and a 256k
 * vocabulary would never finish; tfjs-backend-wasm has no such kernel at all, so no gradient through a
 * gather. One pass over the data does the same sum (accumulated in float64 like the cpu Sum
 * kernel, so the result is bitwise the same).
 */
import {
  getKernel,
  KernelBackend,
  KernelFunc,
  registerKernel,
  TensorInfo,
  unregisterKernel,
} from '@tensorflow/tfjs-core';

const KERNEL = 'UnsortedSegmentSum';
const registered = new Set<string>();

type HostBackend = KernelBackend & {
  makeTensorInfo?(shape: number[], dtype: string, values: Float32Array | Int32Array): TensorInfo;
  makeOutput?(shape: number[], dtype: string, memoryOffset: undefined, values: Float32Array | Int32Array): TensorInfo;
};

const segmentSum: KernelFunc = ({inputs, backend, attrs}) => {
  const {x, segmentIds} = inputs as {x: TensorInfo; segmentIds: TensorInfo};
  const numSegments = (attrs as {numSegments: number}).numSegments;
  const be = backend as HostBackend;
  const xv = be.readSync(x.dataId) as ArrayLike<number>;
  const ids = be.readSync(segmentIds.dataId) as ArrayLike<number>;
  const n = ids.length;
  const inner = n === 0 ? 0 : xv.length / n;
  const acc = new Float64Array(numSegments * inner);
  for (let i = 0; i < n; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // TensorFlow drops out-of-range ids
    const src = i * inner,
      dst = s * inner;
    for (let j = 0; j < inner; j++) acc[dst + j] += xv[src + j];
  }
  const shape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const out = x.dtype === 'int32' ? Int32Array.from(acc) : Float32Array.from(acc);
  // cpu calls it makeTensorInfo, wasm makeOutput.
  if (be.makeTensorInfo != null) return be.makeTensorInfo(shape, x.dtype, out);
  return be.makeOutput!(shape, x.dtype, undefined, out);
};

/**
 * Installs the kernel for a host backend ('cpu' or 'wasm'); other backends are left alone.
 * Idempotent. The backend registration modules (ops/register/) call it.
 */
export function registerSegmentSum(backendName: string): void {
  if (!['cpu', 'wasm'].includes(backendName) || registered.has(backendName)) return;
  if (getKernel(KERNEL, backendName) != null) unregisterKernel(KERNEL, backendName);
  registerKernel({kernelName: KERNEL, backendName, kernelFunc: segmentSum});
  registered.add(backendName);
}
