/**
 * The compact-weight kernels' cases, run on each backend by compact.test.ts (cpu, wasm) and
 * test/webgpu/compact.webgpu.test.ts: products and row lookups against float64 sums over the
 * reference `valueAt` (ops/compact/format.ts), on random inputs, for every dtype, both products,
 * and the input gradient against the closed form dy W.
 */
import {type CompactSpec, dequantize, type PackedMatrix, quantize} from '../../ops/compact/format';
import {compactGatherRows, compactMatMul, compactTensors, disposeCompact} from '../../ops/compact/index';
import {tf} from '../../src/tf';
import {seededUniform} from '../helpers';

export const SPECS: CompactSpec[] = [
  {dtype: 'bfloat16'},
  {dtype: 'float16'},
  {dtype: 'int8'},
  {dtype: 'int4', groupSize: 32},
  {dtype: 'int4', groupSize: 64, zeroPoints: true},
];

export function randomArray(seed: number, n: number, scale = 1): Float32Array {
  const r = seededUniform(seed);
  return Float32Array.from({length: n}, () => (r() * 2 - 1) * scale);
}

/** x [n, K] times W^T (or W when transposed) in float64 over the dequantized matrix. */
function reference(x: Float32Array, n: number, p: PackedMatrix, transposed: boolean): Float64Array {
  const w = dequantize(p);
  const R = p.rows,
    C = p.cols;
  const out = transposed ? C : R,
    K = transposed ? R : C;
  const y = new Float64Array(n * out);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[i * K + k] * (transposed ? w[k * C + o] : w[o * C + k]);
      y[i * out + o] = acc;
    }
  }
  return y;
}

/** Largest |a - b| over the largest |b|: one relative figure for a whole product. */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0,
    m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

export function compactKernelCases(tol: number): void {
  const R = 48,
    C = 128,
    n = 5;
  for (const spec of SPECS) {
    const name = `${spec.dtype}${spec.groupSize ? ` g${spec.groupSize}` : ''}${spec.zeroPoints ? ' zero points' : ''}`;
    test(`${name}: x W^T, x W and row lookups equal the reference`, async () => {
      const p = quantize(randomArray(1, R * C, 0.5), R, C, spec);
      const w = compactTensors(p);
      const before = tf.memory().numTensors;
      // n rows of x, and one (decode's GEMV: int8 / int4 rows are unpacked inside the dot product).
      for (const rows of [n, 1])
        for (const transposed of [false, true]) {
          const K = transposed ? R : C;
          const x = randomArray(transposed ? 3 : 2 + rows, rows * K);
          const xt = tf.tensor2d(x, [rows, K]);
          const y = compactMatMul(xt, w, transposed);
          expect(y.shape).toEqual([rows, transposed ? C : R]);
          const got = await y.data();
          expect(relMax(got, reference(x, rows, p, transposed))).toBeLessThan(tol);
          tf.dispose([xt, y]);
        }
      const ids = tf.tensor1d([3, 0, R - 1, R, -1, 3], 'int32');
      const rows = compactGatherRows(w, ids);
      const got = await rows.data();
      const full = dequantize(p);
      [3, 0, R - 1].forEach((r, i) => {
        expect(Array.from(got.subarray(i * C, (i + 1) * C))).toEqual(Array.from(full.subarray(r * C, (r + 1) * C)));
      });
      // Ids outside [0, R) read as zero rows; a repeated id reads the same row again.
      expect(Array.from(got.subarray(3 * C, 5 * C)).every((v) => v === 0)).toBe(true);
      expect(Array.from(got.subarray(5 * C, 6 * C))).toEqual(Array.from(got.subarray(0, C)));
      tf.dispose([ids, rows]);
      expect(tf.memory().numTensors).toBe(before);
      disposeCompact(w);
    });

    test(`${name}: the gradient with respect to x is dy W`, async () => {
      const p = quantize(randomArray(4, R * C, 0.5), R, C, spec);
      const w = compactTensors(p);
      const x = tf.tensor2d(randomArray(5, n * C), [n, C]);
      const dyValues = randomArray(6, n * R);
      const dy = tf.tensor2d(dyValues, [n, R]);
      const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(compactMatMul(xi, w), dy)))(x);
      expect(relMax(await g.data(), reference(dyValues, n, p, true))).toBeLessThan(tol);
      tf.dispose([x, dy, g]);
      disposeCompact(w);
    });
  }

  test('a weight of zeros, and rows that are all zero in a group, stay exact zeros', async () => {
    const values = randomArray(7, 8 * 64);
    values.fill(0, 0, 64); // row 0 all zero
    values.fill(0, 64 + 32, 128); // second group of row 1 zero
    for (const spec of SPECS) {
      const p = quantize(values, 8, 64, spec);
      const w = compactTensors(p);
      const rows = compactGatherRows(w, tf.tensor1d([0, 1], 'int32'));
      const got = await rows.data();
      expect(Array.from(got.subarray(0, 64)).every((v) => v === 0)).toBe(true);
      if (spec.dtype === 'int4' && spec.groupSize === 32) {
        expect(Array.from(got.subarray(64 + 32, 128)).every((v) => v === 0)).toBe(true);
      }
      tf.dispose(rows);
      disposeCompact(w);
    }
  });
}
