/**
 * The compact-weight WGSL kernels (ops/compact/webgpu.ts) against the reference, on the same
 * cases as the host kernels (test/ops/compact_cases.ts).
 */
import {initNodeWebGPU} from '../../src/webgpu_node';
import {compactKernelCases} from '../ops/compact_cases';
import {describeWebGPU} from '../webgpu_env';

describeWebGPU('compact kernels on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);
  compactKernelCases(1e-5);
});
