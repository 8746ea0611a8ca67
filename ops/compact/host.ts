/**
 * Host kernels of the compact-weight ops (ops/compact/index.ts) for backends that can read and
 * write tensors synchronously: cpu, wasm, tensorflow (tfjs-node) and webgl. A block of weight
 * rows is unpacked at a time, so the float32 matrix never exists whole.
 *   for (const k of compactHostKernelConfigs('cpu')) tf.registerKernel(k);   // ops/register/cpu.ts does this
 *   import {compactMatMul, compactTensors} from './index';
 *   import {quantize} from './format';
 *   const y = compactMatMul(x, compactTensors(quantize(data, 48, 128, {dtype: 'bfloat16'})));   // then runs here on cpu
 *
 * Shape letters: n rows of x, R weight rows, C weight cols, m gathered ids.
 */
import type {KernelBackend, KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {type CompactDtype, perWord} from './format';
import {f16ToF32} from './half';
import {COMPACT_GATHER_ROWS, COMPACT_MATMUL, type CompactAttrs} from './index';

type HostBackend = KernelBackend & {
  makeTensorInfo?(shape: number[], dtype: string, values: Float32Array): TensorInfo;
  makeOutput?(shape: number[], dtype: string, memoryOffset: undefined, values: Float32Array): TensorInfo;
  /** wasm: a view of a tensor in the heap (readSync copies). */
  typedArrayFromHeap?(t: TensorInfo): Float32Array | Int32Array;
};

/** A tensor's values without copying where the backend allows it (a 2B model's embedding is 655 MB in int8). */
function values<T extends Float32Array | Int32Array>(
  be: HostBackend,
  t: TensorInfo,
  type: {new (a: ArrayLike<number>): T},
): T {
  const v = be.typedArrayFromHeap != null ? be.typedArrayFromHeap(t) : be.readSync(t.dataId);
  return (v instanceof type ? v : new type(v as ArrayLike<number>)) as T;
}

/** IEEE half code -> float32, for every code: one table instead of bit twiddling per value. */
let halfTable: Float32Array | null = null;
function halves(): Float32Array {
  if (halfTable == null) halfTable = f16ToF32(Uint16Array.from({length: 65536}, (_, i) => i));
  return halfTable;
}

/** The packed words and scales of a weight, read once per kernel call. */
interface Weight extends CompactAttrs {
  words: Int32Array;
  scales: Float32Array;
  zeros: Float32Array;
}

/** Unpacks row r of W into out[0..C). */
function unpackRow(w: Weight, r: number, out: Float32Array): void {
  const C = w.cols,
    k = perWord(w.dtype),
    base = (r * C) / k;
  const words = w.words;
  switch (w.dtype as CompactDtype) {
    case 'bfloat16': {
      const bits = new Uint32Array(out.buffer, out.byteOffset, C);
      for (let j = 0; j < C / 2; j++) {
        const word = words[base + j];
        bits[2 * j] = word << 16;
        bits[2 * j + 1] = word & 0xffff0000;
      }
      return;
    }
    case 'float16': {
      const t = halves();
      for (let j = 0; j < C / 2; j++) {
        const word = words[base + j];
        out[2 * j] = t[word & 0xffff];
        out[2 * j + 1] = t[word >>> 16];
      }
      return;
    }
    case 'int8': {
      const s = w.scales[r];
      for (let j = 0; j < C / 4; j++) {
        const word = words[base + j];
        out[4 * j] = ((word << 24) >> 24) * s;
        out[4 * j + 1] = ((word << 16) >> 24) * s;
        out[4 * j + 2] = ((word << 8) >> 24) * s;
        out[4 * j + 3] = (word >> 24) * s;
      }
      return;
    }
    case 'int4': {
      const g = w.groupSize,
        G = C / g;
      for (let gi = 0; gi < G; gi++) {
        const s = w.scales[r * G + gi];
        const z = w.zeroPoints ? w.zeros[r * G + gi] : 8;
        const c0 = gi * g;
        for (let j = 0; j < g / 8; j++) {
          const word = words[base + c0 / 8 + j];
          for (let q = 0; q < 8; q++) out[c0 + 8 * j + q] = (((word >>> (4 * q)) & 0xf) - z) * s;
        }
      }
      return;
    }
  }
}

/** fusedRow: one row of x dots int8 / int4 rows as they are unpacked (dotRow); false: unpack, then dot (the bench compares them). */
export const compactHostConfig = {fusedRow: true};

/**
 * Row r of an int8 / int4 W dotted with x[xo..xo+C), unpacked in the same pass (no row buffer;
 * the row's int8 scale, an int4 group's scale and zero point applied once per row / group): one
 * row of x (decode's GEMV) reads each packed word once and writes nothing. Null for other dtypes.
 */
function dotRow(w: Weight, r: number, x: Float32Array, xo: number): number | null {
  const C = w.cols,
    words = w.words;
  if (w.dtype === 'int8') {
    const base = r * (C / 4);
    let a0 = 0,
      a1 = 0,
      a2 = 0,
      a3 = 0;
    for (let j = 0, c = xo; j < C / 4; j++, c += 4) {
      const word = words[base + j];
      a0 += x[c] * ((word << 24) >> 24);
      a1 += x[c + 1] * ((word << 16) >> 24);
      a2 += x[c + 2] * ((word << 8) >> 24);
      a3 += x[c + 3] * (word >> 24);
    }
    return (a0 + a1 + a2 + a3) * w.scales[r];
  }
  if (w.dtype === 'int4') {
    const g = w.groupSize,
      G = C / g,
      base = r * (C / 8);
    let acc = 0;
    for (let gi = 0; gi < G; gi++) {
      // sum_c x (q - z) s = s (sum_c x q - z sum_c x)
      let xq = 0,
        xs = 0;
      for (let j = (gi * g) / 8, c = xo + gi * g; j < ((gi + 1) * g) / 8; j++, c += 8) {
        const word = words[base + j];
        for (let q = 0; q < 8; q++) {
          const xv = x[c + q];
          xq += xv * ((word >>> (4 * q)) & 0xf);
          xs += xv;
        }
      }
      const z = w.zeroPoints ? w.zeros[r * G + gi] : 8;
      acc += w.scales[r * G + gi] * (xq - z * xs);
    }
    return acc;
  }
  return null;
}

function readWeight(be: HostBackend, inputs: Record<string, TensorInfo>, attrs: CompactAttrs): Weight {
  return {
    ...attrs,
    words: values(be, inputs.data, Int32Array),
    scales: values(be, inputs.scales, Float32Array),
    zeros: values(be, inputs.zeros, Float32Array),
  };
}

function output(be: HostBackend, shape: number[], values: Float32Array): TensorInfo {
  // cpu and tensorflow call it makeTensorInfo, wasm makeOutput.
  if (be.makeTensorInfo != null) return be.makeTensorInfo(shape, 'float32', values);
  return be.makeOutput!(shape, 'float32', undefined, values);
}

const matMul: KernelFunc = ({inputs, backend, attrs}) => {
  const be = backend as HostBackend;
  const a = attrs as unknown as CompactAttrs & {transposed: boolean};
  const w = readWeight(be, inputs as Record<string, TensorInfo>, a);
  const xInfo = (inputs as Record<string, TensorInfo>).x;
  const x = values(be, xInfo, Float32Array);
  const [n, K] = xInfo.shape;
  const R = a.rows,
    C = a.cols;
  const row = new Float32Array(C);
  if (!a.transposed) {
    // y[i, r] = sum_c x[i, c] W[r, c]
    const y = new Float32Array(n * R);
    // One row of x (decode): int8 / int4 rows unpacked inside the dot product.
    if (n === 1 && compactHostConfig.fusedRow && (a.dtype === 'int8' || a.dtype === 'int4')) {
      for (let r = 0; r < R; r++) y[r] = dotRow(w, r, x, 0)!;
      return output(be, [n, R], y);
    }
    for (let r = 0; r < R; r++) {
      unpackRow(w, r, row);
      for (let i = 0; i < n; i++) {
        let acc = 0;
        const xo = i * K;
        for (let c = 0; c < C; c++) acc += x[xo + c] * row[c];
        y[i * R + r] = acc;
      }
    }
    return output(be, [n, R], y);
  }
  // y[i, c] = sum_r x[i, r] W[r, c]
  const y = new Float32Array(n * C);
  for (let r = 0; r < R; r++) {
    unpackRow(w, r, row);
    for (let i = 0; i < n; i++) {
      const xr = x[i * K + r];
      if (xr === 0) continue;
      const yo = i * C;
      for (let c = 0; c < C; c++) y[yo + c] += xr * row[c];
    }
  }
  return output(be, [n, C], y);
};

const gatherRows: KernelFunc = ({inputs, backend, attrs}) => {
  const be = backend as HostBackend;
  const a = attrs as unknown as CompactAttrs;
  const w = readWeight(be, inputs as Record<string, TensorInfo>, a);
  const ids = values(be, (inputs as Record<string, TensorInfo>).ids, Int32Array);
  const out = new Float32Array(ids.length * a.cols);
  for (let i = 0; i < ids.length; i++) {
    const r = ids[i];
    if (r < 0 || r >= a.rows) continue;
    unpackRow(w, r, out.subarray(i * a.cols, (i + 1) * a.cols));
  }
  return output(be, [ids.length, a.cols], out);
};

export function compactHostKernelConfigs(backendName: string): KernelConfig[] {
  return [
    {kernelName: COMPACT_MATMUL, backendName, kernelFunc: matMul},
    {kernelName: COMPACT_GATHER_ROWS, backendName, kernelFunc: gatherRows},
  ];
}
