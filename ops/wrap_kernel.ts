/**
 * Puts a kernel of this package in front of a backend's own one, keeping the original's setup and
 * dispose (tfjs-wasm binds its wasm functions in setupFunc when the backend starts). Idempotent:
 * with `kernelFunc` already installed nothing changes. Returns the kernel it replaced (the one to
 * delegate to), or null when `kernelFunc` was already there.
 *   let original: tf.KernelConfig | null = null;
 *   const oneHot: tf.KernelFunc = (args) => original!.kernelFunc(args);   // ours, delegating where it may
 *   original = wrapKernel('OneHot', 'wasm', oneHot, 'wasm OneHot: import tfjs-backend-wasm first') ?? original;
 */
import {getKernel, KernelConfig, KernelFunc, registerKernel, unregisterKernel} from '@tensorflow/tfjs-core';

export function wrapKernel(
  kernelName: string,
  backendName: string,
  kernelFunc: KernelFunc,
  missing: string,
): KernelConfig | null {
  const current = getKernel(kernelName, backendName);
  if (current == null) throw new Error(missing);
  if (current.kernelFunc === kernelFunc) return null;
  unregisterKernel(kernelName, backendName);
  registerKernel({kernelName, backendName, setupFunc: current.setupFunc, disposeFunc: current.disposeFunc, kernelFunc});
  return current;
}
