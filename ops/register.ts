/**
 * One registration list per backend. Importing the package registers the host kernels for
 * cpu and wasm and the composite for tfjs-node's `tensorflow` backend; webgpu kernels are
 * registered by `registerWebGPUKernels()` (ops/register_webgpu.ts) when that backend is used.
 */
import {registerRgLruScanHostKernels} from './rg_lru_scan/cpu';
import {registerRgLruScanComposite} from './rg_lru_scan/composite';
import './rg_lru_scan/index';
import {registerTrainingKernels} from '../src/training/kernels';

export function registerHostKernels(): void {
  registerRgLruScanHostKernels('cpu');
  // tfjs-cpu's UnsortedSegmentSum (every gather's gradient) is O(segments x tokens): replace it
  // for all code, not only the Trainer's, so a hand-written variableGrads loop is usable too.
  registerTrainingKernels('cpu');
  registerRgLruScanComposite('tensorflow');
}

registerHostKernels();
