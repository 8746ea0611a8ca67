/**
 * tfjs's webgpu backend in Node: navigator.gpu from Dawn (the `webgpu` package), then this
 * package's WGSL kernels. With no GPU, Debian's chromium ships SwiftShader (see the error text).
 *   if (await webgpuAvailable()) await initNodeWebGPU();   // tf.getBackend() === 'webgpu' from here on
 *   // initNodeWebGPU({powerPreference: 'low-power'}): the integrated GPU (only the first call's options count)
 * GRIFFIN_DAWN_TOGGLES=disable_robustness,skip_validation (comma-separated Dawn toggle names, read
 * once, when navigator.gpu is first made): enabled on the adapter and device. Both named here trade
 * safety nets for speed: the shaders' index clamps and the API's validation; leave them off unless
 * the kernels that run are trusted (this package's and tfjs's). Figures: bench/results/NOTES.md.
 */
import * as path from 'path';
import {tf} from './tf';

type PowerPreference = 'high-performance' | 'low-power';
interface GpuLike {
  requestAdapter(options?: {powerPreference?: PowerPreference}): Promise<object | null>;
}
interface Dawn {
  create(flags: string[]): GpuLike;
  globals: object;
}

const NO_ADAPTER =
  "WebGPU: no GPU adapter found (without a GPU: install Debian's chromium and libvulkan1 and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json)";

function loadDawn(): Dawn {
  try {
    // The package is an ES module: Node >= 20.19 require()s it, jest's module loader cannot.
    return require('webgpu') as Dawn;
  } catch {
    // Its entry only picks this binary by platform and arch and re-exports it.
    const dir = path.dirname(require.resolve('webgpu/package.json'));
    const arch = process.platform === 'darwin' ? 'universal' : process.arch;
    return require(path.join(dir, 'dist', `${process.platform}-${arch}`, 'dawn.node')) as Dawn;
  }
}

/**
 * The flags Dawn's `create` gets for a GRIFFIN_DAWN_TOGGLES value (unset or empty: none); throws a
 * one-line error for a malformed list.
 */
export function dawnFlags(toggles: string | undefined): string[] {
  if (toggles == null || toggles.trim() === '') return [];
  const names = toggles.split(',').map((t) => t.trim());
  const bad = names.find((t) => !/^[a-z][a-z0-9_]{0,63}$/.test(t));
  if (bad != null || names.length > 16) {
    throw new Error(
      `GRIFFIN_DAWN_TOGGLES must be up to 16 comma-separated Dawn toggle names (like disable_robustness), got "${toggles}"`,
    );
  }
  return [`enable-dawn-features=${names.join(',')}`];
}

/** navigator.gpu, created from Dawn where the runtime has none (Node has none). */
function ensureNavigatorGpu(): GpuLike {
  const g = globalThis as unknown as {navigator?: {gpu?: GpuLike}};
  if (g.navigator?.gpu) return g.navigator.gpu;
  const dawn = loadDawn();
  // The GPUBufferUsage, GPUMapMode, ... constants that tfjs-backend-webgpu reads as globals.
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create(dawnFlags(process.env.GRIFFIN_DAWN_TOGGLES));
  if (g.navigator == null) g.navigator = {gpu};
  else Object.defineProperty(g.navigator, 'gpu', {value: gpu, configurable: true, writable: true});
  return gpu;
}

/** Whether a WebGPU adapter can be had (creating navigator.gpu if needed); never throws. */
export async function webgpuAvailable(opts?: {powerPreference?: PowerPreference}): Promise<boolean> {
  try {
    return (await ensureNavigatorGpu().requestAdapter({powerPreference: opts?.powerPreference})) != null;
  } catch {
    return false;
  }
}

let initializing: Promise<void> | null = null;

/**
 * Makes `webgpu` the tfjs backend, with this package's kernels. Idempotent: later calls wait on
 * the first and ignore their options; a failed call may be retried.
 */
export function initNodeWebGPU(opts?: {powerPreference?: PowerPreference}): Promise<void> {
  initializing ??= init(opts).catch((err) => {
    initializing = null;
    throw err;
  });
  return initializing.then(async () => {
    // Someone may have switched backends since.
    if (tf.getBackend() !== 'webgpu') await tf.setBackend('webgpu');
  });
}

async function init(opts?: {powerPreference?: PowerPreference}): Promise<void> {
  const gpu = ensureNavigatorGpu();
  // Loaded only now: tfjs-backend-webgpu registers its backend on import only if navigator.gpu
  // exists. The registration module imports it, then registers this package's kernels.
  require('../ops/register/webgpu');
  // The backend's own factory picks its adapter by this flag (registered by the import above).
  if (opts?.powerPreference === 'low-power') tf.env().set('WEBGPU_USE_LOW_POWER_GPU', true);
  if ((await gpu.requestAdapter({powerPreference: opts?.powerPreference ?? 'high-performance'})) == null) {
    throw new Error(NO_ADAPTER);
  }
  if (tf.findBackendFactory('webgpu') == null) {
    throw new Error(
      'WebGPU: @tensorflow/tfjs-backend-webgpu was loaded before navigator.gpu existed, so it registered no backend; call initNodeWebGPU() before importing it',
    );
  }
  if (!(await tf.setBackend('webgpu'))) throw new Error('WebGPU: the tfjs webgpu backend failed to initialize');
}
