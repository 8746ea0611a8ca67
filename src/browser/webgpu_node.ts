/**
 * What the browser bundle gets for src/webgpu_node.ts (Dawn, Node only): the same names, for a
 * browser. webgpuAvailable asks the browser's navigator.gpu; initNodeWebGPU starts the browser's
 * webgpu backend as useBackend('webgpu') does.
 *   if (await webgpuAvailable()) await initNodeWebGPU();   // code written for Node runs unchanged
 */
import {useBackend} from './backend';

export async function webgpuAvailable(): Promise<boolean> {
  try {
    const gpu = (globalThis as {navigator?: {gpu?: {requestAdapter(): Promise<unknown>}}}).navigator?.gpu;
    return gpu != null && (await gpu.requestAdapter()) != null;
  } catch {
    return false;
  }
}

export async function initNodeWebGPU(): Promise<void> {
  await useBackend('webgpu');
}
