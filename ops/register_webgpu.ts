/**
 * Registers this package's WGSL kernels on tfjs's `webgpu` backend; safe to call repeatedly.
 *   registerWebGPUKernels();
 *   await tf.setBackend('webgpu');     // or just: await initNodeWebGPU() (src/webgpu_node.ts)
 */
import {getKernel, registerKernel, unregisterKernel} from '@tensorflow/tfjs-core';
import {webgpuKernelConfigs} from './rg_lru_scan/webgpu';

export function registerWebGPUKernels(): void {
  for (const k of webgpuKernelConfigs) {
    const existing = getKernel(k.kernelName, k.backendName);
    if (existing?.kernelFunc === k.kernelFunc) continue;
    // Anything else there is the composite that rgLruScan() installs as a fallback when it
    // meets a backend with no kernel of its own; the WGSL kernel supersedes it.
    if (existing != null) unregisterKernel(k.kernelName, k.backendName);
    registerKernel(k);
  }
}
