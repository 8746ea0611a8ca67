/**
 * The running WebGPU device's limits on one buffer, for estimates checked before work starts.
 *   const limits = gpuBufferLimits();   // null unless the backend is webgpu
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GpuBufferLimits} from '../src/util/limits';

/** The current backend's device limits when it is webgpu, else null. */
export function gpuBufferLimits(): GpuBufferLimits | null {
  if (tf.getBackend() !== 'webgpu') return null;
  const limits = (tf.backend() as unknown as {device?: {limits?: GpuBufferLimits}}).device?.limits;
  if (limits == null) return null;
  return {maxBufferSize: limits.maxBufferSize, maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize};
}
