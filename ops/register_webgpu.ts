/**
 * Registers this package's WGSL kernels on tfjs's `webgpu` backend; safe to call repeatedly.
 *   registerWebGPUKernels();
 *   await tf.setBackend('webgpu');     // or just: await initNodeWebGPU() (src/webgpu_node.ts)
 */
import {getKernel, registerKernel, unregisterKernel} from '@tensorflow/tfjs-core';
import {webgpuKernelConfigs} from './rg_lru_scan/webgpu';
import {preciseTrigKernelConfigs} from './precise_trig/webgpu';
import {causalConv1dKernelConfigs} from './causal_conv1d/webgpu';
import {matMulGuardKernelConfigs} from './matmul_webgpu';
import {rowArgmaxKernelConfigs} from './row_argmax/webgpu';

export function registerWebGPUKernels(): void {
  for (const k of [...webgpuKernelConfigs, ...preciseTrigKernelConfigs, ...causalConv1dKernelConfigs, ...matMulGuardKernelConfigs(), ...rowArgmaxKernelConfigs]) {
    const existing = getKernel(k.kernelName, k.backendName);
    if (existing?.kernelFunc === k.kernelFunc) continue;
    // What is there already is superseded: for RgLruScan the composite that rgLruScan()
    // installs on a backend with no kernel of its own, for Sin / Cos the backend's kernels
    // built on WGSL's low-precision builtins (see ops/precise_trig/webgpu.ts), for BatchMatMul /
    // _FusedMatMul tfjs's own, wrapped (ops/matmul_webgpu).
    if (existing != null) unregisterKernel(k.kernelName, k.backendName);
    registerKernel(k);
  }
}
