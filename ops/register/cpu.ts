/**
 * This package's kernels for tfjs's `cpu` backend, registered when this module is imported
 * (the package's entry imports it through ops/register/index.ts).
 *   import './register/cpu';
 *
 * The RG-LRU scan's host kernels, the compact-weight products (ops/compact/host.ts), and a one-pass UnsortedSegmentSum for every gather's gradient
 * (tfjs-cpu's is O(segments x tokens)): for all code, so a hand-written variableGrads loop is
 * usable too, not only the Trainer.
 */
import {registerKernel} from '@tensorflow/tfjs-core';
import {compactHostKernelConfigs} from '../compact/host';
import {registerRgLruScanHostKernels} from '../rg_lru_scan/cpu';
import {registerSegmentSum} from '../segment_sum';

registerRgLruScanHostKernels('cpu');
registerSegmentSum('cpu');
for (const k of compactHostKernelConfigs('cpu')) registerKernel(k);
