/**
 * tfjs's `webgpu` backend factory again, the same as tfjs-backend-webgpu's (adapter by
 * WEBGPU_USE_LOW_POWER_GPU, the adapter's limits, 'timestamp-query' where offered) but also
 * requesting 'subgroups' where the adapter offers it, so that kernels (the fused prefill's matmul)
 * can use subgroup operations; `device.features.has('subgroups')` says whether they may. It
 * replaces the registered factory only while no webgpu backend has been made from it.
 *   reregisterWebGPUBackend();   // ./webgpu does this right after importing tfjs-backend-webgpu
 */
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {engine, env, findBackendFactory, registerBackend, removeBackend} from '@tensorflow/tfjs-core';

/** Features requested where the adapter has them (tfjs asks for the first two). */
const WANTED: GPUFeatureName[] = ['timestamp-query', 'bgra8unorm-storage', 'subgroups' as GPUFeatureName];

async function createWebGPUBackend(): Promise<WebGPUBackend> {
  const gpu = (globalThis as unknown as {navigator: {gpu: GPU}}).navigator.gpu;
  const powerPreference = env().get('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance';
  const adapter = await gpu.requestAdapter({powerPreference});
  if (adapter == null) throw new Error('WebGPU: no GPU adapter');
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: WANTED.filter((f) => adapter.features.has(f)),
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  });
  return new WebGPUBackend(device, (adapter as unknown as {info?: GPUAdapterInfo}).info);
}

/** Replaces tfjs's webgpu factory (same priority, 3) if one is registered and not yet used. */
export function reregisterWebGPUBackend(): void {
  if (findBackendFactory('webgpu') == null) return;
  const registry = (engine() as unknown as {registry: Record<string, unknown>}).registry;
  if (registry.webgpu != null) return;
  removeBackend('webgpu');
  registerBackend('webgpu', createWebGPUBackend, 3);
}
