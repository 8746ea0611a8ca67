/**
 * Kernel contract of the RG-LRU scan, shared by every backend.
 *   const [b, t, e] = scanDims(a.shape, x.shape, h0.shape);   // throws unless a, x: [b, t, e], h0: [b, e]
 *   const [h, hLast] = tf.engine().runKernel(RG_LRU_SCAN, {a, x, h0}) as tf.Tensor[];
 *
 * The contract (inputs by name -> outputs in order):
 *  RgLruScan      {a, x: [b, t, e] float32, h0: [b, e] float32} -> [h: [b, t, e], hLast: [b, e]]
 *  RgLruScanGrad  {a, h: [b, t, e], h0: [b, e], dh: [b, t, e], dhLast: [b, e]} -> [dx, da: [b, t, e], dh0: [b, e]]
 * where h[t] = a[t] * h[t-1] + x[t], h[-1] = h0; the running state is at least float32.
 */
export const RG_LRU_SCAN = 'RgLruScan';
export const RG_LRU_SCAN_GRAD = 'RgLruScanGrad';

/** Reads b, t, e off the inputs and checks that they agree; every kernel calls it first. */
export function scanDims(aShape: number[], xShape: number[], h0Shape: number[]): [number, number, number] {
  if (aShape.length !== 3 || xShape.length !== 3 || aShape.some((d, i) => d !== xShape[i])) {
    throw new Error(`RgLruScan: a and x must both be [b, t, e], got [${aShape}] and [${xShape}]`);
  }
  const [b, t, e] = aShape;
  if (h0Shape.length !== 2 || h0Shape[0] !== b || h0Shape[1] !== e) {
    throw new Error(`RgLruScan: h0 must be [${b}, ${e}], got [${h0Shape}]`);
  }
  return [b, t, e];
}
