/**
 * Products with compact weights as tfjs ops: the Linear layer's x W^T (and its gradient's dy W)
 * and the embedding's row lookup, reading packed words (ops/compact/format.ts) directly. The
 * weights stay packed; each kernel unpacks what it multiplies.
 *   import {quantize} from './format';
 *   const w = compactTensors(quantize(data, 48, 128, {dtype: 'int8'}));   // data: Float32Array [48 * 128]
 *   const y = compactMatMul(x, w);                    // x: [n, C] -> [n, R]; d/dx is compactMatMul(dy, w, true)
 *   const rows = compactGatherRows(w, ids);           // ids: [m] int32 -> [m, C] float32
 *   disposeCompact(w);
 *
 * Kernels: GriffinCompactMatMul {x, data, scales, zeros} attrs {dtype, rows, cols, groupSize,
 * zeroPoints, transposed} and GriffinCompactGatherRows {ids, data, scales, zeros} attrs {dtype,
 * rows, cols, groupSize, zeroPoints}: host kernels on cpu, wasm, tensorflow and webgl (ops/compact/host.ts, one block of
 * rows unpacked at a time), WGSL on webgpu (ops/compact/webgpu.ts); registered per backend by
 * ops/register/. The gradient flows to x only: compact weights are frozen (LoRA trains beside them).
 *
 * Shape letters: n rows of x, R weight rows (output features), C weight cols (input features), m ids.
 */
import * as tf from '@tensorflow/tfjs-core';
import {engine, getGradient, registerGradient, type Tensor} from '@tensorflow/tfjs-core';
import {type CompactDtype, checkSpec, type PackedMatrix, perWord} from './format';

export const COMPACT_MATMUL = 'GriffinCompactMatMul';
export const COMPACT_GATHER_ROWS = 'GriffinCompactGatherRows';

/** A packed matrix as tensors on the current backend. */
export interface CompactTensors {
  dtype: CompactDtype;
  rows: number;
  cols: number;
  groupSize: number;
  /** int32 [R, C / perWord]. */
  data: Tensor;
  /** float32 [R] (int8) or [R, G] (int4); [1], unused, for the 16-bit types. */
  scales: Tensor;
  /** float32 [R, G] (int4 with zero points); [1], unused, otherwise. */
  zeros: Tensor;
  /** Whether `zeros` holds zero points. */
  zeroPoints: boolean;
}

export interface CompactAttrs {
  dtype: CompactDtype;
  rows: number;
  cols: number;
  groupSize: number;
  zeroPoints: boolean;
}

/** Uploads a packed matrix (kept: the caller disposes with disposeCompact). */
export function compactTensors(p: PackedMatrix): CompactTensors {
  const k = perWord(p.dtype);
  const G = p.dtype === 'int4' ? p.cols / p.groupSize : 1;
  const shape = p.dtype === 'int4' ? [p.rows, G] : [p.rows];
  return {
    dtype: p.dtype,
    rows: p.rows,
    cols: p.cols,
    groupSize: p.groupSize,
    data: tf.tensor2d(p.data, [p.rows, p.cols / k], 'int32'),
    // Kernels always get three weight inputs (the gradient saves them by name): [1] stands in.
    scales: p.scales ? tf.tensor(p.scales, shape, 'float32') : tf.zeros([1]),
    zeros: p.zeros ? tf.tensor(p.zeros, shape, 'float32') : tf.zeros([1]),
    zeroPoints: p.zeros != null,
  };
}

export function disposeCompact(w: CompactTensors): void {
  tf.dispose([w.data, w.scales, w.zeros]);
}

function weightInputs(w: CompactTensors): Record<string, Tensor> {
  return {data: w.data, scales: w.scales, zeros: w.zeros};
}

function attrsOf(w: CompactTensors): CompactAttrs {
  return {dtype: w.dtype, rows: w.rows, cols: w.cols, groupSize: w.groupSize, zeroPoints: w.zeroPoints};
}

/**
 * x [n, C] -> x W^T [n, R]; with `transposed`, x [n, R] -> x W [n, C] (the input gradient's
 * product). float32 in and out.
 */
export function compactMatMul(x: Tensor, w: CompactTensors, transposed = false): Tensor {
  const inner = transposed ? w.rows : w.cols;
  if (x.rank !== 2 || x.shape[1] !== inner || x.dtype !== 'float32') {
    throw new Error(`compactMatMul: x must be float32 [n, ${inner}], got ${x.dtype} [${x.shape}]`);
  }
  checkSpec({dtype: w.dtype, ...(w.dtype === 'int4' ? {groupSize: w.groupSize} : {})}, w.rows, w.cols);
  return engine().runKernel(COMPACT_MATMUL, {x, ...weightInputs(w)}, {
    ...attrsOf(w),
    transposed,
  } as unknown as tf.NamedAttrMap) as Tensor;
}

/** Rows `ids` [m] of W, unpacked: [m, C] float32. Ids outside [0, R) read as zero rows. */
export function compactGatherRows(w: CompactTensors, ids: Tensor): Tensor {
  if (ids.rank !== 1 || ids.dtype !== 'int32')
    throw new Error(`compactGatherRows: ids must be int32 [m], got ${ids.dtype} [${ids.shape}]`);
  return engine().runKernel(
    COMPACT_GATHER_ROWS,
    {ids, ...weightInputs(w)},
    attrsOf(w) as unknown as tf.NamedAttrMap,
  ) as Tensor;
}

if (getGradient(COMPACT_MATMUL) == null) {
  registerGradient({
    kernelName: COMPACT_MATMUL,
    inputsToSave: ['data', 'scales', 'zeros'],
    gradFunc: (dy, saved, attrs) => {
      const a = attrs as unknown as CompactAttrs & {transposed: boolean};
      const [data, scales, zeros] = saved;
      const w: CompactTensors = {...a, data, scales, zeros};
      return {x: () => compactMatMul(dy as Tensor, w, !a.transposed)};
    },
  });
}
