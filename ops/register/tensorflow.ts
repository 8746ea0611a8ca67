/**
 * This package's kernels for backends that run standard tfjs ops only: `tensorflow` (tfjs-node,
 * tfjs-node-gpu, optional peers) and `webgl` (browser). Registered when this module is imported;
 * registering needs neither backend loaded (tfjs keeps kernels by backend name).
 *   import './register/tensorflow';
 *
 * The RG-LRU scan as a composite of standard ops (ops/rg_lru_scan/composite.ts); the compact-weight
 * products as host kernels (ops/compact/host.ts).
 */
import {registerKernel} from '@tensorflow/tfjs-core';
import {compactHostKernelConfigs} from '../compact/host';
import {registerRgLruScanComposite} from '../rg_lru_scan/composite';

for (const backend of ['tensorflow', 'webgl']) {
  registerRgLruScanComposite(backend);
  // Both read tensors synchronously, so the host kernels serve them (webgl pays a read-back).
  for (const k of compactHostKernelConfigs(backend)) registerKernel(k);
}
