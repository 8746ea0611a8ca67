/**
 * A guard around tfjs-backend-webgpu's BatchMatMul and _FusedMatMul (4.22): for a product with
 * transposeB, one batch, an inner size of 2000 or more and few output tiles, tfjs picks its
 * MatMulSplitKProgram, whose results are wrong with transposeB (figures: see bench/results/NOTES.md;
 * test/webgpu/matmul.webgpu.test.ts). Linear multiplies by [out, in] weights with
 * transposeB, so the 2B model's k/v projections of a short chunk (and of every decode step) went
 * wrong on webgpu. In exactly that case the guard asks tfjs for the program it uses for other
 * few-tile products (MatMulSmallOutputSizeProgram); every other product is untouched.
 *   for (const k of matMulGuardKernelConfigs()) {   // ops/register/webgpu.ts does this, the backend loaded
 *     tf.unregisterKernel(k.kernelName, k.backendName);
 *     tf.registerKernel(k);
 *   }
 *   picksBrokenSplitK(x, weight, false, true, backend.thresholdToIncreaseWorkgroups);   // x weight^T: guarded?
 */
import {env, getKernel, KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

const FLAG = 'WEBGPU_MATMUL_PROGRAM_TYPE';
const SMALL_OUTPUT_SIZE_PROGRAM = 2; // MatMulProgramType.MatMulSmallOutputSizeProgram

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/** Whether tfjs 4.22's choice (BatchMatMul_impl.ts) would be the split-K program with transposeB. */
export function picksBrokenSplitK(
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  threshold: number,
): boolean {
  if (!transposeB || env().getNumber(FLAG) >= 0) return false;
  const ra = a.shape.length,
    rb = b.shape.length;
  const batch = Math.max(prod(a.shape.slice(0, -2)), prod(b.shape.slice(0, -2)));
  const outerA = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const outerB = b.shape[rb - 2];
  const innerB = b.shape[rb - 1];
  const tiles = batch * Math.ceil(outerA / 32) * Math.ceil(outerB / 32);
  const fewTiles = tiles <= threshold || (outerA <= 8 && tiles <= threshold * 2);
  return fewTiles && batch * outerA * outerB > 128 && batch === 1 && innerB >= 2000;
}

function guarded(original: KernelFunc): KernelFunc {
  return (args) => {
    const {a, b} = args.inputs as {a: TensorInfo; b: TensorInfo};
    const {transposeA, transposeB} = args.attrs as unknown as {transposeA: boolean; transposeB: boolean};
    const flagged = env().getNumber('WEBGPU_THRESHOLD_TO_INCREASE_WORKGROUPS_FOR_MATMUL');
    const threshold =
      flagged > 0
        ? flagged
        : (args.backend as unknown as {thresholdToIncreaseWorkgroups: number}).thresholdToIncreaseWorkgroups;
    if (!picksBrokenSplitK(a, b, transposeA, transposeB, threshold)) return original(args);
    env().set(FLAG, SMALL_OUTPUT_SIZE_PROGRAM);
    try {
      return original(args);
    } finally {
      env().set(FLAG, -1);
    }
  };
}

const wrapped = new WeakSet<KernelFunc>();

/** The guarded kernels, built on what the webgpu backend has registered (empty before it loads). */
export function matMulGuardKernelConfigs(): KernelConfig[] {
  const out: KernelConfig[] = [];
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    const k = getKernel(name, 'webgpu');
    if (k == null || wrapped.has(k.kernelFunc)) continue;
    const kernelFunc = guarded(k.kernelFunc);
    wrapped.add(kernelFunc);
    out.push({...k, kernelFunc});
  }
  return out;
}
