/**
 * This package's WGSL kernels for tfjs's `webgpu` backend, registered when this module is
 * imported (and the backend's factory again, ./webgpu_backend: its device gets 'subgroups'): the
 * RG-LRU scan, precise Sin / Cos (WGSL's builtins are low-precision), the causal conv1d, the row argmax, the compact-weight products, and a guard around tfjs's BatchMatMul / _FusedMatMul (its split-K
 * program is wrong with transposeB: ops/matmul_webgpu).
 *   require('./register/webgpu');   // src/webgpu_node.ts once Dawn is up; the browser entry at load
 *
 * It imports tfjs-backend-webgpu first, so that the kernels it replaces or wraps are there. In
 * Node that import must come after navigator.gpu exists (ops/register/index.ts says why).
 */
import '@tensorflow/tfjs-backend-webgpu';
import {getKernel, registerKernel, unregisterKernel} from '@tensorflow/tfjs-core';
import {causalConv1dKernelConfigs} from '../causal_conv1d/webgpu';
import {compactWebGPUKernelConfigs} from '../compact/webgpu';
import {matMulGuardKernelConfigs} from '../matmul_webgpu';
import {preciseTrigKernelConfigs} from '../precise_trig/webgpu';
import {webgpuKernelConfigs} from '../rg_lru_scan/webgpu';
import {rowArgmaxKernelConfigs} from '../row_argmax/webgpu';
import {reregisterWebGPUBackend} from './webgpu_backend';

// Its device, with 'subgroups' where the adapter offers them.
reregisterWebGPUBackend();

const configs = [
  ...webgpuKernelConfigs,
  ...preciseTrigKernelConfigs,
  ...causalConv1dKernelConfigs,
  ...matMulGuardKernelConfigs(),
  ...rowArgmaxKernelConfigs,
  ...compactWebGPUKernelConfigs,
];
for (const k of configs) {
  // What is there already is superseded: tfjs's Sin / Cos (built on WGSL's low-precision
  // builtins), its BatchMatMul / _FusedMatMul (wrapped by the guard).
  if (getKernel(k.kernelName, k.backendName) != null) unregisterKernel(k.kernelName, k.backendName);
  registerKernel(k);
}
