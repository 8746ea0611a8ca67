/**
 * This package's kernels for tfjs-backend-wasm, registered when this module is imported: the
 * RG-LRU scan and the compact-weight products (host kernels), the one-pass UnsortedSegmentSum (every gather's gradient),
 * BatchMatMul through XNNPACK's plain 2D path (ops/wasm_matmul.ts), and a OneHot that honours its
 * dtype (tfjs-wasm 4.22 writes int32 bits whatever the dtype, which made the loss's float mask,
 * hence the loss, ~0). GRIFFIN_WASM_MATMUL=0 keeps tfjs-wasm's own matMul (for measuring).
 *   require('./register/wasm');   // src/backend.ts, when it starts wasm; the browser entry imports it
 *
 * It imports tfjs-backend-wasm first: the wrapped kernels must exist, and importing the backend
 * registers it (priority above cpu), which is why the package's Node entry does not import this
 * module: tfjs would pick wasm for code that never asked for it.
 */
import '@tensorflow/tfjs-backend-wasm';
import {registerKernel} from '@tensorflow/tfjs-core';
import {compactHostKernelConfigs} from '../compact/host';
import {registerRgLruScanHostKernels} from '../rg_lru_scan/cpu';
import {registerSegmentSum} from '../segment_sum';
import {registerWasmMatMul} from '../wasm_matmul';
import {registerWasmOneHot} from '../wasm_onehot';

const env = typeof process !== 'undefined' ? process.env : undefined;

registerRgLruScanHostKernels('wasm');
registerSegmentSum('wasm');
for (const k of compactHostKernelConfigs('wasm')) registerKernel(k);
if (env?.GRIFFIN_WASM_MATMUL !== '0') registerWasmMatMul();
registerWasmOneHot();
