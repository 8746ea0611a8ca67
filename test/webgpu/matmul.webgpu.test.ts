/**
 * tfjs-backend-webgpu 4.22 multiplies wrongly with transposeB when it picks its split-K program
 * (one batch, inner size >= 2000, few output tiles): the 2B model's k/v projections at short
 * chunks and in decode. ops/matmul_webgpu guards BatchMatMul / _FusedMatMul; here products of
 * those shapes, through tf.matMul and tf.fused.matMul on webgpu, against float64 host products.
 */

import {picksBrokenSplitK} from '../../ops/matmul_webgpu';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError, seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

/** a [m, k] times b [n, k]^T in float64. */
function reference(a: Float32Array, b: Float32Array, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let l = 0; l < k; l++) s += a[i * k + l] * b[j * k + l];
      out[i * n + j] = s;
    }
  }
  return out;
}

describeWebGPU('matMul with transposeB on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  // [m, k] x [n, k]^T: k/v projections of the 2B shape (n = 256) at 1 and 8 rows, and an
  // inner size just past the limit.
  test.each([
    [1, 256, 2560],
    [8, 256, 2560],
    [4, 320, 2000],
  ])(
    'm=%i n=%i k=%i equals the float64 product',
    async (m, n, k) => {
      const r = seededUniform(m * 1000 + n);
      const a = Float32Array.from({length: m * k}, () => 2 * r() - 1);
      const b = Float32Array.from({length: n * k}, () => 2 * r() - 1);
      const bias = Float32Array.from({length: n}, () => 2 * r() - 1);
      const want = reference(a, b, m, n, k);
      // The case the guard exists for (with the backend's threshold, as tfjs decides).
      const threshold = (tf.backend() as unknown as {thresholdToIncreaseWorkgroups: number})
        .thresholdToIncreaseWorkgroups;
      expect(picksBrokenSplitK({shape: [m, k]} as never, {shape: [n, k]} as never, false, true, threshold)).toBe(true);
      const A = tf.tensor2d(a, [m, k]),
        B = tf.tensor2d(b, [n, k]),
        C = tf.tensor1d(bias);
      const plain = (await tf.matMul(A, B, false, true).data()) as Float32Array;
      expect(relError(plain, want)).toBeLessThan(1e-5);
      const fused = (await tf.fused.matMul({a: A, b: B, transposeB: true, bias: C}).data()) as Float32Array;
      expect(
        relError(
          fused,
          want.map((v, i) => v + bias[i % n]),
        ),
      ).toBeLessThan(1e-5);
      tf.dispose([A, B, C]);
    },
    120000,
  );
});
