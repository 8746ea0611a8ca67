/**
 * int4 weights fitted to what the layer sees (GPTQ, Frantar et al. 2022): the columns of a
 * [rows, cols] matrix are rounded one at a time, left to right, and each column's rounding error
 * is spread over the columns not yet rounded through the inverse of the input's second-moment
 * matrix H = sum x x^T (collected on calibration text: src/core/calibrate.ts). That lowers the
 * error of the layer's output x W^T on inputs like the calibration text, not of W itself. Each
 * group's scale (and zero) is the least-squares fit of format.ts, taken on the group's values as
 * they stand when its first column comes up. The result is an ordinary int4 PackedMatrix: same
 * words, scales and zero points, read by every kernel as it is.
 *   import {dequantize} from './format';
 *   const p = quantizeGptq(data, 64, 256, new Float64Array(256 * 256).fill(1), {dtype: 'int4', groupSize: 64});   // data: Float32Array [64 * 256]; H [256 * 256]
 *   const e = outputError(data, dequantize(p), 64, 256, new Float64Array(256 * 256));   // sum over rows of d^T H d, d = w - q
 *
 * Shape letters: R rows (output channels), C cols (input features), H [C, C].
 */
import {type CompactSpec, checkSpec, fitGroup, type PackedMatrix} from './format';

export interface GptqOptions {
  /** Added to H's diagonal as a fraction of its mean, for a stable inverse (default 0.01, bounds [0, 1]). */
  damp?: number;
  /**
   * Round the inputs of largest second moment first (GPTQ's act-order); each group's scale is then
   * fitted before any rounding, on its stored columns. Default false.
   */
  actOrder?: boolean;
}

/** Lower Cholesky factor L of a symmetric positive-definite [n, n] matrix (A = L L^T), in place of a copy. */
function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) throw new Error('gptq: the input second moments are not positive definite');
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

/** The inverse of a lower-triangular [n, n] matrix (lower triangular too). */
function invertLower(l: Float64Array, n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    m[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += l[i * n + k] * m[k * n + j];
      m[i * n + j] = -s / l[i * n + i];
    }
  }
  return m;
}

/**
 * The upper factor U of H^-1 = U^T U: row i of U holds how column i's error moves the later columns
 * (U[i, j] / U[i, i]). H is damped and its unused inputs (zero diagonal) get the mean diagonal.
 */
function inverseFactor(hessian: Float64Array, n: number, damp: number): Float64Array {
  const h = Float64Array.from(hessian);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean = mean / n > 0 ? mean / n : 1;
  for (let i = 0; i < n; i++) {
    if (!(h[i * n + i] > 0)) {
      // An input never seen: its column is rounded on its own and moves no other.
      for (let j = 0; j < n; j++) h[i * n + j] = h[j * n + i] = 0;
      h[i * n + i] = mean;
    }
    h[i * n + i] += damp * mean;
  }
  const li = invertLower(cholesky(h, n), n);
  // H^-1 = Li^T Li.
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = inv[j * n + i] = s;
    }
  }
  const lc = cholesky(inv, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = lc[j * n + i];
  return u;
}

/** Packs row-major float32 values [R, C] as int4 (spec's group size and zero points), fitted to `hessian` [C, C]. */
export function quantizeGptq(
  values: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  spec: CompactSpec,
  opts: GptqOptions = {},
): PackedMatrix {
  if (spec.dtype !== 'int4') throw new Error(`gptq: fits int4 weights, not ${spec.dtype}`);
  const g = checkSpec(spec, rows, cols);
  if (values.length !== rows * cols) throw new Error(`gptq: ${values.length} values for a [${rows}, ${cols}] matrix`);
  if (hessian.length !== cols * cols)
    throw new Error(`gptq: second moments of ${hessian.length} values, expected ${cols}^2`);
  const damp = opts.damp ?? 0.01;
  if (!(damp >= 0 && damp <= 1)) throw new Error(`gptq: damp must be in [0, 1], got ${damp}`);
  const zp = spec.zeroPoints === true;
  // Column order: as stored, or (actOrder) the inputs of largest second moment first.
  const perm = Array.from({length: cols}, (_, i) => i);
  if (opts.actOrder) perm.sort((a, b) => hessian[b * cols + b] - hessian[a * cols + a] || a - b);
  const hp = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) hp[i * cols + j] = hessian[perm[i] * cols + perm[j]];
  const u = inverseFactor(hp, cols, damp);
  const w = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) w[r * cols + i] = values[r * cols + perm[i]];
  const G = cols / g;
  const data = new Int32Array((rows * cols) / 8);
  const scales = new Float32Array(rows * G);
  const zeros = zp ? new Float32Array(rows * G) : null;
  const group = new Float32Array(g),
    q = new Uint8Array(g);
  const fitInto = (r: number, gi: number, x: (c: number) => number) => {
    for (let c = 0; c < g; c++) group[c] = x(c);
    const fit = fitGroup(group, q, zp);
    scales[r * G + gi] = fit.s;
    if (zeros != null) zeros[r * G + gi] = fit.z;
  };
  // actOrder: groups keep their stored columns, so their scales are fitted up front on the
  // unrounded values; otherwise each group's when its first column comes up.
  if (opts.actOrder) {
    for (let r = 0; r < rows; r++) for (let gi = 0; gi < G; gi++) fitInto(r, gi, (c) => values[r * cols + gi * g + c]);
  }
  for (let i = 0; i < cols; i++) {
    const col = perm[i],
      gi = Math.floor(col / g);
    if (!opts.actOrder && i % g === 0) {
      for (let r = 0; r < rows; r++) fitInto(r, gi, (c) => w[r * cols + i + c]);
    }
    const d = u[i * cols + i];
    for (let r = 0; r < rows; r++) {
      const s = scales[r * G + gi],
        z = zeros != null ? zeros[r * G + gi] : 8;
      const at = r * cols + i,
        to = r * cols + col;
      const k = s > 0 ? Math.max(0, Math.min(15, Math.round(w[at] / s) + z)) : z;
      data[to >> 3] |= k << (4 * (to & 7));
      // The rounded value as the kernels compute it (float32 scale, float32 product).
      const e = (w[at] - Math.fround((k - z) * s)) / d;
      for (let j = i + 1; j < cols; j++) w[r * cols + j] -= e * u[i * cols + j];
    }
  }
  return {dtype: 'int4', rows, cols, groupSize: g, data, scales, zeros};
}

/** sum_r d_r^T H d_r with d = a - b (row-major [R, C]): the squared error of x W^T summed over the inputs behind H. */
export function outputError(
  a: Float32Array,
  b: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = a[r * cols + c] - b[r * cols + c];
    for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += hessian[i * cols + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}
