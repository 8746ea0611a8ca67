/// <reference types="@webgpu/types" />
/**
 * The parts of tfjs-backend-webgpu (4.22) the fused decode engine reaches into, in one place:
 * the backend's GPUDevice, the GPUBuffer behind a tensor, new tensors over buffers the engine
 * fills, and submitting what tfjs has encoded. The only casts of tfjs internals in the engine.
 *   const be = webgpuBackend();   const buf = gpuBufferOf(be, weight);   const {tensor} = newGpuTensor(be, [b, V]);
 *
 * Shape letters: b batch rows, V vocab_size (any float32 shape works).
 */
import * as tf from '@tensorflow/tfjs';

interface TensorData {
  resource?: unknown;
  values?: unknown;
}

/** The WebGPUBackend members used here. */
export interface WebGPUBackendLike {
  device: GPUDevice;
  tensorMap: {get(id: object): TensorData | undefined; has(id: object): boolean};
  uploadToGPU(id: object): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): {dataId: object; shape: number[]; dtype: 'float32'};
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** The current tfjs backend seen as a WebGPUBackend (the caller checks tf.getBackend() === 'webgpu'). */
export function webgpuBackend(): WebGPUBackendLike {
  return tf.backend() as unknown as WebGPUBackendLike;
}

/** What backs a tensor's data now (a GPUBuffer once uploaded); compared to notice a rebound weight. */
export function resourceOf(be: WebGPUBackendLike, t: tf.Tensor): unknown {
  return be.tensorMap.get(t.dataId)?.resource;
}

/**
 * The GPU buffer of a float32 tensor, or of an int32 one holding packed weight words
 * (uploaded first if its data is still on the host).
 */
export function gpuBufferOf(be: WebGPUBackendLike, t: tf.Tensor): GPUBuffer {
  if (t.dtype !== 'float32' && t.dtype !== 'int32')
    throw new Error(`fused decode: ${t.dtype} tensors are not supported`);
  be.uploadToGPU(t.dataId);
  const r = resourceOf(be, t);
  if (!(r instanceof GPUBuffer)) throw new Error('fused decode: a tensor is not held in a GPU buffer');
  return r;
}

/** A new float32 tf tensor whose GPU buffer the caller fills (tfjs owns and frees it). */
export function newGpuTensor(be: WebGPUBackendLike, shape: number[]): {tensor: tf.Tensor; buffer: GPUBuffer} {
  const info = be.makeTensorInfo(shape, 'float32');
  be.uploadToGPU(info.dataId);
  const buffer = be.tensorMap.get(info.dataId)!.resource as GPUBuffer;
  const tensor = tf.engine().makeTensorFromTensorInfo(info, be as unknown as tf.KernelBackend);
  return {tensor, buffer};
}

/** Submits what tfjs has encoded so far, so that it runs before commands submitted after this. */
export function flushTf(be: WebGPUBackendLike): void {
  if (be.commandEncoder != null) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
}
