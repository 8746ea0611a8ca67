/**
 * OneHot for the wasm backend honouring its dtype.
 *   registerWasmOneHot();   // src/backend.ts does it when starting wasm
 *
 * tfjs-backend-wasm 4.22's OneHot allocates an output of the requested dtype but its C++ kernel
 * always writes int32 values into it: tf.oneHot(ids, V, 1, 0, 'float32') reads back as
 * 1.4e-45 (the bits of int32 1) instead of 1. The causal-LM loss (ops/loss.ts) picks the
 * target's log-probability with exactly such a float32 mask, so on wasm the loss came out as
 * ~1e-44 and its gradient as noise. This kernel keeps the original for int32 and fills other
 * dtypes on the host.
 */
import {KernelConfig, KernelFunc, TensorInfo, util} from '@tensorflow/tfjs-core';
import {wrapKernel} from './wrap_kernel';

let original: KernelConfig | null = null;

type WasmBackend = {
  readSync(id: object): ArrayLike<number>;
  makeOutput(shape: number[], dtype: string, memoryOffset?: number, values?: Float32Array | Int32Array): TensorInfo;
};

const oneHot: KernelFunc = (args) => {
  const {inputs, backend, attrs} = args;
  const {dtype, depth, onValue, offValue} = attrs as unknown as {
    dtype: string;
    depth: number;
    onValue: number;
    offValue: number;
  };
  if (dtype === 'int32' || dtype == null) return original!.kernelFunc(args);
  const {indices} = inputs as {indices: TensorInfo};
  const be = backend as unknown as WasmBackend;
  const ids = be.readSync(indices.dataId);
  const n = util.sizeFromShape(indices.shape);
  const out = new Float32Array(n * depth).fill(offValue);
  for (let i = 0; i < n; i++) {
    const k = ids[i];
    if (k >= 0 && k < depth) out[i * depth + k] = onValue; // out-of-range ids: all off, as in TensorFlow
  }
  return be.makeOutput([...indices.shape, depth], dtype, undefined, out);
};

/** Installs the kernel for wasm (idempotent). Needs tfjs-backend-wasm imported first. */
export function registerWasmOneHot(): void {
  original =
    wrapKernel('OneHot', 'wasm', oneHot, 'wasm OneHot: import @tensorflow/tfjs-backend-wasm first') ?? original;
}
