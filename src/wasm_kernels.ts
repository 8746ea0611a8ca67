/**
 * The project's kernels for tfjs-backend-wasm, one list for Node (src/backend.ts) and the browser
 * (src/browser/backend.ts): the RG-LRU scan (host kernel), the one-pass UnsortedSegmentSum (every
 * gather's gradient), BatchMatMul through XNNPACK's plain 2D path (ops/wasm_matmul.ts), and a
 * OneHot that honours its dtype (tfjs-wasm 4.22 writes int32 bits whatever the dtype, which made
 * the loss's float mask, hence the loss, ~0).
 */
import {registerRgLruScanHostKernels} from '../ops/rg_lru_scan/cpu';
import {registerWasmMatMul} from '../ops/wasm_matmul';
import {registerWasmOneHot} from '../ops/wasm_onehot';
import {registerTrainingKernels} from './training/kernels';

export function registerWasmKernels(opts: {matMul?: boolean} = {}): void {
  registerRgLruScanHostKernels('wasm');
  registerTrainingKernels('wasm');
  if (opts.matMul ?? true) registerWasmMatMul();
  registerWasmOneHot();
}
