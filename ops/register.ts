/**
 * One registration list per backend. Importing the package registers the host kernels for
 * cpu and wasm and the composite for tfjs-node's `tensorflow` backend; webgpu kernels are
 * registered by `registerWebGPUKernels()` (ops/register_webgpu.ts) when that backend is used.
 */
import {registerRgLruScanHostKernels} from './rg_lru_scan/cpu';
import {registerRgLruScanComposite} from './rg_lru_scan/composite';
import './rg_lru_scan/index';

export function registerHostKernels(): void {
  registerRgLruScanHostKernels('cpu');
  registerRgLruScanComposite('tensorflow');
}

registerHostKernels();
